//! Tracing (observe/trace.rs): the execution trace file
//! (`COROUTINES_TRACE_FILE`) parses as Chrome trace-event JSON with the
//! scenario's named coroutines, flow pairs and no overlapping slices on an
//! executor's track; the schedule trace (`COROUTINES_TRACE`) prints its
//! lines; a bad value is refused with the usual configuration error.
//!
//! The variables are read when the runtime starts, so each check re-runs
//! this binary for one `#[ignore]`d scenario with the variable set (the
//! scenario runs only when `COROUTINES_TEST_CHILD` is set).

use std::collections::{HashMap, HashSet};
use std::process::{Command, Output};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("COROUTINES_TEST_CHILD", "1");
    for k in ["COROUTINES_TRACE", "COROUTINES_TRACE_FILE"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn child test process")
}

fn is_child() -> bool {
    std::env::var_os("COROUTINES_TEST_CHILD").is_some()
}

fn named<F: FnOnce() + Send + 'static>(name: &str, f: F) -> coroutines::JoinHandle<()> {
    coroutines::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap()
}

/// Ping-pong over channels, a contended mutex, yields and a sleep, by
/// named coroutines on 2 executors.
fn workload(rounds: usize) {
    let (to_pong, pong_rx) = mpsc::channel::<u32>();
    let (to_ping, ping_rx) = mpsc::channel::<u32>();
    let ping = named("ping", move || {
        for i in 0..rounds as u32 {
            to_pong.send(i).unwrap();
            assert_eq!(ping_rx.recv().unwrap(), i);
        }
    });
    let pong = named("pong", move || {
        for _ in 0..rounds {
            let v = pong_rx.recv().unwrap();
            to_ping.send(v).unwrap();
        }
    });
    let m = Arc::new(Mutex::new(0u64));
    let lockers: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            named(&format!("locker-{i}"), move || {
                for _ in 0..200 {
                    *m.lock().unwrap() += 1;
                    coroutines::yield_now();
                }
                std::thread::sleep(Duration::from_millis(5));
            })
        })
        .collect();
    ping.join().unwrap();
    pong.join().unwrap();
    for l in lockers {
        l.join().unwrap();
    }
    assert_eq!(*m.lock().unwrap(), 800);
}

#[test]
#[ignore = "child scenario of trace_file_is_valid"]
fn child_trace_file() {
    if !is_child() {
        return;
    }
    workload(500);
    // On demand, then again at exit with everything.
    coroutines::write_trace().expect("write_trace");
    let s = coroutines::stats();
    assert!(s.trace_events > 0, "{s:?}");
    let h = s.wake_latency.expect("latency is on with a trace file");
    assert!(h.count() > 0 && h.percentile(0.5).is_some(), "{h:?}");
    workload(50);
}

#[test]
fn trace_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.json");
    let out = run_child(
        "child_trace_file",
        &[
            ("COROUTINES_TRACE_FILE", path.to_str().unwrap()),
            ("COROUTINES_WORKERS", "2"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {err}");
    let text = std::fs::read_to_string(&path).expect("trace file written at exit");
    let v: serde_json::Value = serde_json::from_str(&text).expect("trace parses as JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents array");
    assert_eq!(v["metadata"]["dropped_events"], 0, "{}", v["metadata"]);

    let mut slices: HashMap<u64, Vec<(f64, f64)>> = HashMap::new();
    let mut names = HashSet::new();
    let mut ends = HashSet::new();
    let (mut flow_s, mut flow_f) = (HashSet::new(), HashSet::new());
    let mut spawns = 0;
    for e in events {
        let tid = e["tid"].as_u64();
        match e["ph"].as_str().unwrap() {
            "X" => {
                let ts = e["ts"].as_f64().unwrap();
                let dur = e["dur"].as_f64().unwrap();
                assert!(dur >= 0.0);
                slices.entry(tid.unwrap()).or_default().push((ts, ts + dur));
                names.insert(e["name"].as_str().unwrap().to_string());
                let end = e["args"]["end"].as_str().unwrap().to_string();
                if end == "park" {
                    assert!(e["args"]["wait"].is_string(), "park without a wait: {e}");
                }
                ends.insert(end);
            }
            "s" => {
                flow_s.insert(e["id"].as_u64().unwrap());
            }
            "f" => {
                flow_f.insert(e["id"].as_u64().unwrap());
            }
            "i" => spawns += 1,
            _ => {}
        }
    }
    for n in ["ping", "pong", "locker-0", "locker-3"] {
        assert!(names.contains(n), "no slice named {n}: {names:?}");
    }
    for end in ["yield", "park", "exit"] {
        assert!(ends.contains(end), "no slice ending in {end}: {ends:?}");
    }
    assert!(spawns >= 6, "{spawns} spawn events");
    let pairs = flow_s.intersection(&flow_f).count();
    assert!(
        pairs >= 1,
        "no flow pair ({} starts, {} ends)",
        flow_s.len(),
        flow_f.len()
    );
    for (tid, mut v) in slices {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for w in v.windows(2) {
            // ts has microsecond units with ns precision: allow 1 ns.
            assert!(
                w[1].0 + 0.001 >= w[0].1,
                "slices overlap on track {tid}: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
#[ignore = "child scenario of schedule_trace_prints"]
fn child_schedule_trace() {
    if !is_child() {
        return;
    }
    let stop = Instant::now() + Duration::from_millis(1000);
    let hs: Vec<_> = (0..4)
        .map(|i| {
            named(&format!("sleeper-{i}"), move || {
                while Instant::now() < stop {
                    std::thread::sleep(Duration::from_millis(2));
                    coroutines::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    // Let the trace thread print its last line for the period.
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn schedule_trace_prints() {
    let out = run_child(
        "child_schedule_trace",
        &[("COROUTINES_TRACE", "200ms"), ("COROUTINES_WORKERS", "2")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {err}");
    let lines: Vec<_> = err
        .lines()
        .filter(|l| l.starts_with("coroutines-trace "))
        .collect();
    assert!(lines.len() >= 2, "schedule trace lines:\n{err}");
    for l in &lines {
        for field in [
            "executors ",
            "idle ",
            "blocked ",
            "coroutines ",
            "running ",
            "ready ",
            "parked ",
            "switches/s ",
            "preemptions/s ",
            "steals/s ",
            "wake-latency p50 ",
            " p99 ",
        ] {
            assert!(l.contains(field), "no {field:?} in {l:?}");
        }
    }
    // The sleepers were woken by timers: some interval measured latency.
    assert!(
        lines.iter().any(|l| !l.contains("(n=0)")),
        "no wake latency measured:\n{err}"
    );
}

#[test]
#[ignore = "child scenario of bad_trace_value_is_refused"]
fn child_bad_value() {
    if !is_child() {
        return;
    }
    match coroutines::Builder::new().spawn(|| ()) {
        Ok(_) => println!("STARTED"),
        Err(e) => println!("ERROR: {e}"),
    }
}

#[test]
fn bad_trace_value_is_refused() {
    let out = run_child("child_bad_value", &[("COROUTINES_TRACE", "fast")]);
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains("ERROR:") && o.contains("COROUTINES_TRACE") && o.contains("200ms"),
        "{o}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
