//! Side-by-side benchmarks of `coroutines` against `may`, `tokio` and OS
//! threads, following the workloads W1..W8 defined in benches/README.md, plus the std::sync
//! and sleep workloads S1, S2, S3 and SL, and the load workloads W4L and SP
//! (README.md).
//!
//! The binary has two modes:
//!
//! * parent (the default): `bench [options] [W1 W2a ...]` runs every
//!   selected (workload, runtime) pair `--reps` times, each repetition in a
//!   fresh child process, and prints a table (median, min, max) plus the
//!   machine-readable `RESULT` and `RATIO` lines;
//! * child: `bench --child <workload> <runtime> [--scale X]` runs exactly one
//!   measurement of one pair and prints its raw `RESULT` lines (plus
//!   `NOTE`/`PROGRESS` lines for the parent).
//!
//! A child per measurement isolates the per-process global runtimes of
//! `coroutines` and `may`, lets the parent set `COROUTINES_WORKERS` /
//! `COROUTINES_SLICE` per pair, keeps RSS measurements independent, and
//! survives a runtime that dies (W8 with `may`).
//!
//! A third, hidden mode, `bench --spin SECS`, is the outside busy process
//! the parent runs around W4L and SP children (`load.rs`).

mod a1_alloc;
mod blocked;
mod c1_sqlite;
mod d1_dump;
mod hog;
mod load;
mod m1_mpsc;
mod parent;
mod report;
mod runtimes;
mod sl_sleep;
mod sp_spawn;
mod sync;
mod sys;
mod w1_yield;
mod w2_spawn;
mod w3_echo;
mod w4_fairness;
mod w6_preempt_cost;
mod w7_slice;
mod z1_zlib;

use std::process::ExitCode;
use std::time::Duration;

/// The runtimes compared, in display order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Runtime {
    Coroutines,
    May,
    Tokio,
    Threads,
}

impl Runtime {
    pub const ALL: [Runtime; 4] = [
        Runtime::Coroutines,
        Runtime::May,
        Runtime::Tokio,
        Runtime::Threads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Coroutines => "coroutines",
            Runtime::May => "may",
            Runtime::Tokio => "tokio",
            Runtime::Threads => "threads",
        }
    }

    pub fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s))
    }
}

/// The workloads W1..W8, then the sync and sleep ones (README.md).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    W1,
    W2a,
    W2b,
    W3,
    W4,
    W4L,
    W5,
    W6,
    W7,
    W8,
    S1,
    S2,
    S3,
    SL,
    Z1,
    M1,
    C1,
    SP,
    D1,
    A1,
    A2,
}

impl Workload {
    pub const ALL: [Workload; 21] = [
        Workload::W1,
        Workload::W2a,
        Workload::W2b,
        Workload::W3,
        Workload::W4,
        Workload::W4L,
        Workload::W5,
        Workload::W6,
        Workload::W7,
        Workload::W8,
        Workload::S1,
        Workload::S2,
        Workload::S3,
        Workload::SL,
        Workload::Z1,
        Workload::M1,
        Workload::C1,
        Workload::SP,
        Workload::D1,
        Workload::A1,
        Workload::A2,
    ];
    /// Run when no workload is named on the command line.
    pub const CORE: [Workload; 6] = [
        Workload::W1,
        Workload::W2a,
        Workload::W2b,
        Workload::W3,
        Workload::W5,
        Workload::W8,
    ];
    /// Selected by `sync` on the command line.
    pub const SYNC: [Workload; 4] = [Workload::S1, Workload::S2, Workload::S3, Workload::SL];

    pub fn id(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2a => "W2a",
            Workload::W2b => "W2b",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W4L => "W4L",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
            Workload::W7 => "W7",
            Workload::W8 => "W8",
            Workload::S1 => "S1",
            Workload::S2 => "S2",
            Workload::S3 => "S3",
            Workload::SL => "SL",
            Workload::Z1 => "Z1",
            Workload::M1 => "M1",
            Workload::C1 => "C1",
            Workload::SP => "SP",
            Workload::D1 => "D1",
            Workload::A1 => "A1",
            Workload::A2 => "A2",
        }
    }

    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.id().eq_ignore_ascii_case(s))
    }

    /// One-line description for the human-readable report.
    pub fn title(self) -> &'static str {
        match self {
            Workload::W1 => "yield: 2 tasks on ONE worker alternately yield, 10,000,000 yields in all",
            Workload::W2a => "spawn-all: spawn 100,000 empty tasks, then join all (threads: 10,000)",
            Workload::W2b => "spawn-join: spawn one empty task and join it, 100,000 times (threads: 10,000)",
            Workload::W3 => "echo: 128 connections from a std-blocking client thread, 5 rounds of 64-byte echoes per iteration, 10 warm-up + 50 timed iterations",
            Workload::W4 => "fairness: 8 never-yielding CPU hogs for 3 s + 1 probe looping sleep(1 ms)",
            Workload::W4L => "fairness under outside load: W4 (8 hogs + 1 probe sleeping 1 ms, 3 s) while 2 outside busy processes compete for the CPUs",
            Workload::W5 => "memory: 100,000 tasks blocked on a shared condition (threads: 10,000, 64 KiB stacks)",
            Workload::W6 => "preempt-cost: 8 hogs for 3 s, default time slice vs COROUTINES_SLICE=off",
            Workload::W7 => "slice: 1 worker, COROUTINES_SLICE=1ms, 1 hog + 1 task sleeping 1 ms 200 times",
            Workload::W8 => "scale: 1,000,000 blocked tasks, default settings",
            Workload::S1 => "mutex contention: 1,000 tasks × 1,000 increments of one counter under a mutex (threads: 1,000)",
            Workload::S2 => "channel ping-pong: 2 tasks bounce a u64 through 2 channels, 100,000 round trips (threads: 20,000)",
            Workload::S3 => "uncontended mutex: 1 task locks and unlocks a mutex 10,000,000 times",
            Workload::SL => "sleep lateness: 1 task sleeps 1 ms 2,000 times on an otherwise idle runtime",
            Workload::Z1 => "zlib: 8 tasks compress 256 KiB with compress2 for 3 s (coroutines: zlib allow-listed, and COROUTINES_PREEMPT_C=none)",
            Workload::M1 => "mpsc gap: 64 producers x 2,000 sends with ~1 us work into 1 consumer, COROUTINES_SLICE=100us",
            Workload::C1 => "bundled SQLite: 32 tasks × 50 transactions on one WAL database (coroutines vs OS threads)",
            Workload::SP => "first run under load: 1,000 tasks spawned 2 ms apart while 4 hogs run and 2 outside busy processes compete (coroutines vs OS threads)",
            Workload::D1 => "dump: coroutines::dump() of 100,000 parked coroutines while 2 probes wake, spawn and join (coroutines only)",
            Workload::A1 => "allocation-bound hogs: 4 tasks allocating and freeing for 3 s + 1 probe looping sleep(1 ms) (coroutines vs OS threads)",
            Workload::A2 => "libc-bound hogs: 4 tasks copying 1 MiB buffers (99% in memcpy) for 3 s + 1 probe looping sleep(1 ms) (coroutines vs OS threads)",
        }
    }

    /// Runtimes that take part in this workload.
    pub fn runtimes(self) -> &'static [Runtime] {
        match self {
            Workload::W6 | Workload::W7 | Workload::D1 => &[Runtime::Coroutines],
            Workload::Z1 | Workload::M1 => &[Runtime::Coroutines, Runtime::Threads],
            Workload::W8 => &[Runtime::Coroutines, Runtime::May, Runtime::Tokio],
            Workload::C1 | Workload::SP | Workload::A1 | Workload::A2 => {
                &[Runtime::Coroutines, Runtime::Threads]
            }
            _ => &Runtime::ALL,
        }
    }

    /// The figure compared in the `RATIO` lines (lower is better for all).
    pub fn ratio_metric(self) -> Option<&'static str> {
        match self {
            Workload::W1 => Some("ns_per_yield"),
            Workload::W2a | Workload::W2b => Some("ns_per_task"),
            Workload::W3 => Some("ms_median"),
            Workload::W4 | Workload::W4L => Some("lateness_p99_ms"),
            Workload::W5 | Workload::W8 => Some("bytes_per_task"),
            Workload::W6 | Workload::W7 | Workload::D1 => None,
            Workload::S1 => Some("ms"),
            Workload::S2 => Some("ns_per_round_trip"),
            Workload::S3 => Some("ns_per_lock"),
            Workload::SL => Some("lateness_p99_ms"),
            Workload::Z1 => None,
            Workload::M1 => Some("max_gap_ms"),
            Workload::C1 => Some("ms"),
            Workload::SP => Some("first_run_p99_ms"),
            Workload::A1 | Workload::A2 => Some("lateness_p99_ms"),
        }
    }

    /// Further figures compared with threads only, in `RATIO <W> <metric>
    /// coroutines/threads=<x>` lines (for `wakeups`, higher is better).
    pub fn extra_ratio_metrics(self) -> &'static [&'static str] {
        match self {
            Workload::W4L => &["wakeups"],
            Workload::A1 | Workload::A2 => &["iters_per_s", "wakeups"],
            _ => &[],
        }
    }

    /// Outside busy processes the parent runs around each child (`load.rs`).
    pub fn outside_load(self) -> usize {
        match self {
            Workload::W4L | Workload::SP => load::OUTSIDE_PROCS,
            _ => 0,
        }
    }
}

/// Scales the workloads' fixed sizes, for smoke runs (`--scale 0.01`).
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub scale: f64,
}

impl Params {
    pub fn count(&self, base: u64) -> u64 {
        ((base as f64 * self.scale).round() as u64).max(2)
    }

    pub fn duration(&self, base: Duration) -> Duration {
        base.mul_f64(self.scale).max(Duration::from_millis(200))
    }
}

/// Worker (executor) count used by every runtime, as the workload definitions fix it.
pub const WORKERS: usize = 2;

fn usage() -> &'static str {
    "usage: bench [--reps N] [--scale X] [--runtimes coroutines,may,tokio,threads] [--timeout SECS] [W1 W2a W2b W3 W4 W4L W5 W6 W7 W8 S1 S2 S3 SL Z1 M1 C1 SP D1 A1 A2 | sync | all]\n\
     \x20      bench --child <workload> <runtime> [--scale X]   (one measurement; used by the parent)\n\
     no workload = the core set: W1 W2a W2b W3 W5 W8; sync = S1 S2 S3 SL; all = every workload"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, secs] = args.as_slice() {
        if flag == "--spin" {
            match secs.parse::<f64>() {
                Ok(secs) => load::spin(secs),
                Err(_) => return ExitCode::from(2),
            }
            return ExitCode::SUCCESS;
        }
    }
    match parse_args(&args) {
        Ok(Mode::Child {
            workload,
            runtime,
            params,
        }) => {
            run_child(workload, runtime, &params);
            // Exit without tearing down global runtimes (may, coroutines) or
            // waiting for blocked tasks: the measurement is printed already.
            std::process::exit(0);
        }
        Ok(Mode::Parent(opts)) => parent::run(&opts),
        Err(msg) if msg == "help" => {
            println!("{}", usage());
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("bench: {msg}\n{}", usage());
            ExitCode::from(2)
        }
    }
}

enum Mode {
    Child {
        workload: Workload,
        runtime: Runtime,
        params: Params,
    },
    Parent(parent::Options),
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    let mut opts = parent::Options {
        workloads: Vec::new(),
        runtimes: Runtime::ALL.to_vec(),
        reps: 3,
        params: Params { scale: 1.0 },
        timeout: None,
    };
    let mut child: Option<(Workload, Runtime)> = None;
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, flag: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err("help".into()),
            "--child" => {
                let w = value(&mut it, "--child")?;
                let r = value(&mut it, "--child")?;
                let w = Workload::parse(&w).ok_or_else(|| format!("unknown workload {w}"))?;
                let r = Runtime::parse(&r).ok_or_else(|| format!("unknown runtime {r}"))?;
                child = Some((w, r));
            }
            "--reps" => {
                let v = value(&mut it, "--reps")?;
                opts.reps = v.parse().map_err(|_| format!("bad --reps {v}"))?;
                if opts.reps == 0 {
                    return Err("--reps must be at least 1".into());
                }
            }
            "--scale" => {
                let v = value(&mut it, "--scale")?;
                opts.params.scale = v.parse().map_err(|_| format!("bad --scale {v}"))?;
                if !opts.params.scale.is_finite() || opts.params.scale <= 0.0 {
                    return Err("--scale must be positive".into());
                }
            }
            "--timeout" => {
                let v = value(&mut it, "--timeout")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --timeout {v}"))?;
                opts.timeout = Some(Duration::from_secs_f64(secs));
            }
            "--runtimes" => {
                let v = value(&mut it, "--runtimes")?;
                opts.runtimes = v
                    .split(',')
                    .map(|s| Runtime::parse(s.trim()).ok_or_else(|| format!("unknown runtime {s}")))
                    .collect::<Result<_, _>>()?;
            }
            "all" | "ALL" => opts.workloads.extend(Workload::ALL),
            "sync" | "SYNC" => opts.workloads.extend(Workload::SYNC),
            w => opts
                .workloads
                .push(Workload::parse(w).ok_or_else(|| format!("unknown argument {w}"))?),
        }
    }
    if let Some((workload, runtime)) = child {
        return Ok(Mode::Child {
            workload,
            runtime,
            params: opts.params,
        });
    }
    if opts.workloads.is_empty() {
        opts.workloads = Workload::CORE.to_vec();
    }
    let mut seen = Vec::new();
    opts.workloads.retain(|w| {
        if seen.contains(w) {
            false
        } else {
            seen.push(*w);
            true
        }
    });
    Ok(Mode::Parent(opts))
}

fn run_child(w: Workload, rt: Runtime, p: &Params) {
    if !w.runtimes().contains(&rt) {
        eprintln!("bench: {} does not run {}", w.id(), rt.name());
        std::process::exit(2);
    }
    match w {
        Workload::W1 => w1_yield::run(rt, p),
        Workload::W2a => w2_spawn::run(w, rt, p),
        Workload::W2b => w2_spawn::run(w, rt, p),
        Workload::W3 => w3_echo::run(rt, p),
        Workload::W4 | Workload::W4L => w4_fairness::run(w, rt, p),
        Workload::W5 | Workload::W8 => blocked::run(w, rt, p),
        Workload::W6 => w6_preempt_cost::run(rt, p),
        Workload::W7 => w7_slice::run(rt, p),
        Workload::S1 | Workload::S2 | Workload::S3 => sync::run(w, rt, p),
        Workload::SL => sl_sleep::run(rt, p),
        Workload::Z1 => z1_zlib::run(rt, p),
        Workload::M1 => m1_mpsc::run(rt, p),
        Workload::C1 => c1_sqlite::run(rt, p),
        Workload::A1 | Workload::A2 => a1_alloc::run(w, rt, p),
        Workload::SP => sp_spawn::run(rt, p),
        Workload::D1 => d1_dump::run(rt, p),
    }
}
