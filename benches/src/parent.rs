//! Parent mode: runs each (workload, runtime) pair `reps` times, each
//! repetition in its own child process (`bench --child W RT`), with the
//! environment the pair needs, under a timeout; collects the children's
//! `RESULT`/`NOTE`/`PROGRESS` lines and prints the per-workload report.
//! For W4L and SP it also runs the outside busy processes (`load.rs`) around
//! each child.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::load::{self, OutsideLoad};
use crate::report::{self, WorkloadResults};
use crate::{sys, w6_preempt_cost, Params, Runtime, Workload, WORKERS};

pub struct Options {
    pub workloads: Vec<Workload>,
    pub runtimes: Vec<Runtime>,
    pub reps: usize,
    pub params: Params,
    /// Overrides every child's timeout.
    pub timeout: Option<Duration>,
}

/// One child configuration; each repetition runs it once.
struct Job {
    workload: Workload,
    runtime: Runtime,
    /// Variables to set (`Some`) or remove (`None`) in the child.
    env: Vec<(&'static str, Option<String>)>,
    timeout: Duration,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// may is expected to die or stall near vm.max_map_count (W2a with 100,000
/// live coroutines hung rather than failed here), so give up sooner.
const MAY_TIMEOUT: Duration = Duration::from_secs(60);
const WORKERS_ENV: &str = "COROUTINES_WORKERS";

fn jobs(w: Workload, rt: Runtime, opts: &Options) -> Vec<Job> {
    let timeout = |default| opts.timeout.unwrap_or(default);
    let job = |env| Job {
        workload: w,
        runtime: rt,
        env,
        timeout: timeout(if rt == Runtime::May {
            MAY_TIMEOUT
        } else {
            DEFAULT_TIMEOUT
        }),
    };
    if rt != Runtime::Coroutines {
        return vec![job(vec![])];
    }
    let slice = w6_preempt_cost::SLICE_ENV;
    let one = || Some("1".to_string());
    let default = || Some(WORKERS.to_string());
    match w {
        Workload::W1 => vec![job(vec![(WORKERS_ENV, one())])],
        Workload::W7 => vec![job(vec![(WORKERS_ENV, one()), (slice, Some("1ms".into()))])],
        Workload::Z1 => vec![
            job(vec![
                (WORKERS_ENV, default()),
                (crate::z1_zlib::ALLOW_ENV, None),
            ]),
            job(vec![
                (WORKERS_ENV, default()),
                (crate::z1_zlib::ALLOW_ENV, Some("none".into())),
            ]),
        ],
        Workload::M1 => vec![job(vec![
            (WORKERS_ENV, default()),
            (slice, Some("100us".into())),
        ])],
        Workload::W6 => vec![
            job(vec![(WORKERS_ENV, default()), (slice, None)]),
            job(vec![(WORKERS_ENV, default()), (slice, Some("off".into()))]),
        ],
        _ => vec![job(vec![(WORKERS_ENV, default())])],
    }
}

pub fn run(opts: &Options) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("bench: cannot find own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_header(opts);
    for &w in &opts.workloads {
        let mut results = WorkloadResults::default();
        for &rt in w.runtimes().iter().filter(|rt| opts.runtimes.contains(rt)) {
            for job in jobs(w, rt, opts) {
                for rep in 1..=opts.reps {
                    run_rep(&exe, &job, rep, opts, &mut results);
                }
            }
        }
        if w == Workload::W6 {
            add_w6_overhead(&mut results);
        }
        let title = if opts.params.scale == 1.0 {
            w.title().to_string()
        } else {
            format!(
                "{} [counts and durations scaled ×{}]",
                w.title(),
                opts.params.scale
            )
        };
        print!(
            "{}",
            results.render(w.id(), &title, w.ratio_metric(), w.extra_ratio_metrics())
        );
    }
    ExitCode::SUCCESS
}

fn print_header(opts: &Options) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# bench: {} reps per pair (median [min, max]), scale {}, {} CPUs, vm.max_map_count={}, workers={WORKERS}",
        opts.reps,
        opts.params.scale,
        cpus,
        sys::sysctl("vm/max_map_count").unwrap_or_else(|| "?".into())
    );
    println!("# each runtime at its defaults otherwise (stack sizes, pinning); each measurement in a fresh child process");
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("COROUTINES_")) {
        println!("# inherited {k}={v} (W1, W6, W7 and COROUTINES_WORKERS are set per workload)");
    }
}

/// What a child printed and how it ended.
struct ChildRun {
    stdout: Vec<String>,
    stderr_tail: Vec<String>,
    status: Option<ExitStatus>,
    timed_out: bool,
    elapsed: Duration,
}

fn run_rep(
    exe: &std::path::Path,
    job: &Job,
    rep: usize,
    opts: &Options,
    results: &mut WorkloadResults,
) {
    let (w, rt) = (job.workload.id(), job.runtime.name());
    let variant: String = job
        .env
        .iter()
        .filter(|(k, _)| *k == w6_preempt_cost::SLICE_ENV && job.workload == Workload::W6)
        .map(|(_, v)| format!(" slice={}", v.as_deref().unwrap_or("default")))
        .collect();
    // Outside load (W4L, SP): started before the child, stopped after it;
    // `OutsideLoad` kills the spinners on every path out of this function,
    // and each spinner exits by itself shortly after the child's timeout.
    let outside = job.workload.outside_load();
    let load = if outside > 0 {
        match OutsideLoad::start(exe, outside, job.timeout + Duration::from_secs(30)) {
            Ok(load) => Some(load),
            Err(e) => {
                results.note(
                    rt,
                    &format!("rep {rep}: could not start the outside load: {e}"),
                );
                return;
            }
        }
    } else {
        None
    };
    let run = spawn_child(exe, job, opts.params);
    if let Some(load) = load {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(pct) = load.stop(cpus) {
            results.push(rt, "outside_cpu_pct", pct);
        }
    }
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            results.note(rt, &format!("could not start child: {e}"));
            return;
        }
    };
    let mut figures = Vec::new();
    let mut reached = None;
    for line in &run.stdout {
        if let Some((lw, lrt, metric, value)) = report::parse_result(line) {
            if lw == w && lrt == rt {
                results.push(rt, &metric, value);
                figures.push(format!("{metric}={}", report::fmt_value(value)));
            }
        } else if let Some(msg) = line.strip_prefix("NOTE ") {
            results.note(rt, msg);
        } else if let Some(n) = line.strip_prefix("PROGRESS ") {
            reached = n.trim().parse::<u64>().ok();
        }
    }
    let ok = !run.timed_out && run.status.is_some_and(|s| s.success());
    if !ok {
        let how = if run.timed_out {
            format!(
                "timed out after {:.0} s (killed)",
                job.timeout.as_secs_f64()
            )
        } else {
            format!(
                "exited with {}",
                run.status.map_or("?".into(), |s| s.to_string())
            )
        };
        let tail = run.stderr_tail.join(" | ");
        results.note(
            rt,
            &format!("rep {rep}{variant}: child {how}; stderr: {tail}"),
        );
        let has_completed = run
            .stdout
            .iter()
            .any(|l| l.starts_with(&format!("RESULT {w} {rt} completed=")));
        if job.workload == Workload::W8 && !has_completed {
            let reached = reached.unwrap_or(0);
            results.push(rt, "completed", 0.0);
            results.push(rt, "tasks_reached", reached as f64);
            results.note(
                rt,
                &format!("rep {rep}: died after spawning at least {reached} tasks"),
            );
            figures.push(format!("completed=0 tasks_reached>={reached}"));
        }
    }
    eprintln!(
        "[{w} {rt}{variant} rep {rep}/{}] {} ({:.1} s){}",
        opts.reps,
        figures.join(" "),
        run.elapsed.as_secs_f64(),
        if ok { "" } else { " FAILED" }
    );
}

fn spawn_child(exe: &std::path::Path, job: &Job, params: Params) -> std::io::Result<ChildRun> {
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(job.workload.id())
        .arg(job.runtime.name())
        .arg("--scale")
        .arg(params.scale.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let outside = job.workload.outside_load();
    if outside > 0 {
        cmd.env(load::ENV, outside.to_string());
    }
    for (k, v) in &job.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect()
    });
    let err_reader = std::thread::spawn(move || {
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tail.len() == 4 {
                tail.remove(0);
            }
            tail.push(line);
        }
        tail
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if t0.elapsed() >= job.timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = t0.elapsed();
    Ok(ChildRun {
        stdout: out_reader.join().unwrap_or_default(),
        stderr_tail: err_reader.join().unwrap_or_default(),
        status,
        timed_out,
        elapsed,
    })
}

/// overhead % = (iters/s with preemption off − with the default slice) / off.
fn add_w6_overhead(results: &mut WorkloadResults) {
    let rt = Runtime::Coroutines.name();
    if let (Some(on), Some(off)) = (
        results.median(rt, "iters_per_s"),
        results.median(rt, "iters_per_s_off"),
    ) {
        results.push(rt, "overhead_pct", (off - on) / off * 100.0);
        results.note(
            rt,
            "overhead_pct is computed from the medians of iters_per_s and iters_per_s_off",
        );
    }
}
