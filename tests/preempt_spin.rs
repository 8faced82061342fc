//! Preemption basics: CPU hogs share an executor without ever yielding, the
//! no-preempt section, and SIGURG chaining to other handlers. Tests that need
//! their own runtime settings re-run this binary as a child process.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "COROUTINES_PREEMPT_SPIN_CHILD";

/// Runs test `name` of this binary as a child with `env`; returns stdout and
/// asserts it succeeded.
fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD, name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {name} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Spins until `stop`, counting iterations; never calls into the runtime.
fn hog(stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    std::hint::black_box(x);
}

#[test]
fn one_worker_four_hogs() {
    if !is_child("one_worker_four_hogs") {
        run_child("one_worker_four_hogs", &[("COROUTINES_WORKERS", "1"), ("COROUTINES_SLICE", "1ms")]);
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<_> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hs: Vec<_> = counts
        .iter()
        .map(|c| {
            let (s, c) = (stop.clone(), c.clone());
            coroutines::spawn(move || hog(s, c))
        })
        .collect();
    let t = Instant::now();
    while counts.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        assert!(t.elapsed() < Duration::from_secs(10), "a hog never ran: {counts:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let s = coroutines::stats();
    println!("all four progressed after {:?}; {:?}", t.elapsed(), s.preempt);
    assert!(s.preempt.preemptions > 0);
}

#[test]
fn no_preempt_section_is_not_preempted() {
    if !is_child("no_preempt_section_is_not_preempted") {
        run_child("no_preempt_section_is_not_preempted", &[("COROUTINES_WORKERS", "1"), ("COROUTINES_SLICE", "200us")]);
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(AtomicU64::new(0));
    let other = {
        let (s, c) = (stop.clone(), c.clone());
        coroutines::spawn(move || hog(s, c))
    };
    let c2 = c.clone();
    // While the section runs, the sibling hog must not advance.
    let frozen = coroutines::spawn(move || {
        coroutines::no_preempt(|| {
            let before = c2.load(Ordering::Relaxed);
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(50) {
                std::hint::spin_loop();
            }
            c2.load(Ordering::Relaxed) == before
        })
    })
    .join()
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    assert!(frozen, "a sibling ran inside no_preempt");
    assert!(coroutines::stats().preempt.preemptions > 0);
}
