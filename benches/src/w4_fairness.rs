//! W4 fairness: 8 CPU hogs (never yielding, clock checked every ~1,000,000
//! iterations) run for 3 s on 2 workers, plus 1 probe looping `sleep(1 ms)`
//! and recording lateness = elapsed − 1 ms. Figures: probe lateness
//! p50/p99/max (ms), probe wake-ups, Jain's index over the hogs' iteration
//! counts.
//!
//! The probe is spawned first and the hogs only once it has entered its
//! first sleep, so a cooperative runtime shows its starvation as lateness
//! (instead of as a probe that never started). Probe sleeps: coroutines
//! `std::thread::sleep` (the runtime intercepts it), may
//! `coroutine::sleep`, tokio `time::sleep` (1 ms timer granularity), threads
//! `std::thread::sleep`. Tasks are spawned from the main thread.
//!
//! W4L (W4-load) is this same code run while the parent keeps 2 outside
//! busy processes on the machine (`load.rs`); only the workload id of the
//! `RESULT` lines differs.
//!
//! Note on may: its timer thread resumes a coroutine whose sleep expired
//! right there (`run_coroutine` in may's scheduler.rs), so the probe does
//! not need a worker and is not starved; the hogs still are (Jain ≈ 2/8).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hog::{self, hog, probe_until, wait_flag, PROBE_SLEEP};
use crate::{load, report, runtimes, Params, Runtime, Workload, WORKERS};

pub const HOGS: usize = 8;
pub const DURATION: Duration = Duration::from_secs(3);

/// Runs W4 or W4L (`w`), which differ only in the parent's outside load.
pub fn run(w: Workload, rt: Runtime, p: &Params) {
    if w == Workload::W4L {
        load::note_outside_load();
    }
    let id = w.id();
    let dur = p.duration(DURATION);
    let t0 = Instant::now();
    let (lateness, iters) = match rt {
        Runtime::Coroutines => coroutines_run(dur),
        Runtime::May => {
            runtimes::may_workers(WORKERS);
            may_run(dur)
        }
        Runtime::Tokio => tokio_run(dur),
        Runtime::Threads => threads_run(dur),
    };
    let elapsed = t0.elapsed();
    let name = rt.name();
    if rt == Runtime::May {
        report::note(
            "may resumes a coroutine whose sleep expired on its timer thread (a third thread, not a worker), \
             so its probe is not starved although the hogs hold both workers; Jain shows the starvation",
        );
    }
    report::emit_lateness(id, name, &lateness, true);
    let iters: Vec<f64> = iters.iter().map(|&i| i as f64).collect();
    report::emit(id, name, "jain", report::jain(&iters));
    let total: f64 = iters.iter().sum();
    report::note(&format!(
        "hogs did {:.3e} iterations/s in all (min {:.2e}, max {:.2e} per hog); run took {:.2} s",
        total / elapsed.as_secs_f64(),
        iters.iter().copied().fold(f64::INFINITY, f64::min),
        iters.iter().copied().fold(0.0, f64::max),
        elapsed.as_secs_f64()
    ));
}

fn coroutines_run(dur: Duration) -> (Vec<f64>, Vec<u64>) {
    let deadline = Instant::now() + dur;
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let probe = coroutines::spawn(move || probe_until(deadline, &flag, std::thread::sleep));
    wait_flag(&started);
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| coroutines::spawn(move || hog(|| Instant::now() >= deadline)))
        .collect();
    let iters = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    (probe.join().unwrap(), iters)
}

fn may_run(dur: Duration) -> (Vec<f64>, Vec<u64>) {
    let deadline = Instant::now() + dur;
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let probe = may::go!(move || probe_until(deadline, &flag, may::coroutine::sleep));
    wait_flag(&started);
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| may::go!(move || hog(|| Instant::now() >= deadline)))
        .collect();
    let iters = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    (probe.join().unwrap(), iters)
}

fn tokio_run(dur: Duration) -> (Vec<f64>, Vec<u64>) {
    let rt = runtimes::tokio_multi(WORKERS);
    let deadline = Instant::now() + dur;
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let probe = rt.spawn(async move {
        let mut lateness = Vec::with_capacity(8192);
        loop {
            let t0 = Instant::now();
            flag.store(true, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(PROBE_SLEEP).await;
            lateness.push(hog::lateness_ms(t0));
            if Instant::now() >= deadline {
                return lateness;
            }
        }
    });
    wait_flag(&started);
    // The hogs are blocking loops inside async tasks: exactly what starves
    // a cooperative scheduler.
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| rt.spawn(async move { hog(|| Instant::now() >= deadline) }))
        .collect();
    rt.block_on(async move {
        let mut iters = Vec::with_capacity(HOGS);
        for h in hogs {
            iters.push(h.await.unwrap());
        }
        (probe.await.unwrap(), iters)
    })
}

fn threads_run(dur: Duration) -> (Vec<f64>, Vec<u64>) {
    let deadline = Instant::now() + dur;
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let probe = std::thread::spawn(move || probe_until(deadline, &flag, std::thread::sleep));
    wait_flag(&started);
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| std::thread::spawn(move || hog(|| Instant::now() >= deadline)))
        .collect();
    let iters = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    (probe.join().unwrap(), iters)
}
