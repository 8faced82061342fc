//! SP: first run of a task spawned under load. With the parent's outside
//! load (2 busy processes, `load.rs`) and 4 never-yielding CPU hogs running
//! on 2 workers, the main thread spawns 1,000 short tasks one at a time,
//! sleeping 2 ms after each spawn; each task's first instruction records the
//! time since the instant taken just before its `spawn` call. Figures: that
//! delay's p50/p99/max (ms), the spawn count, Jain's index over the hogs.
//!
//! Coroutines and OS threads only (`std::thread::spawn` with the same 4 hogs
//! as threads): on tokio and may the hogs would hold both workers until the
//! spawning stops, so every delay would be the length of the run.
//!
//! The hogs are spawned first and given 50 ms to occupy the workers; they
//! stop on a flag once every task has been spawned. Every handle is joined
//! at the end, so a task that never ran shows up as a hang (the parent's
//! timeout), not as a missing sample.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hog::hog;
use crate::{load, report, Params, Runtime};

pub const HOGS: usize = 4;
pub const SPAWNS: u64 = 1_000;
/// Pause of the spawning thread after each spawn.
pub const INTERVAL: Duration = Duration::from_millis(2);
/// Time the hogs get to occupy the workers before the first spawn.
const SETTLE: Duration = Duration::from_millis(50);

pub fn run(rt: Runtime, p: &Params) {
    load::note_outside_load();
    let n = p.count(SPAWNS);
    let t0 = Instant::now();
    let (delays, iters) = match rt {
        Runtime::Coroutines => measure(n, coroutines::spawn, |h| h.join().unwrap()),
        Runtime::Threads => measure(n, std::thread::spawn, |h| h.join().unwrap()),
        Runtime::May | Runtime::Tokio => unreachable!("SP runs coroutines and threads only"),
    };
    let elapsed = t0.elapsed();
    let name = rt.name();
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    report::emit("SP", name, "spawns", sorted.len() as f64);
    report::emit(
        "SP",
        name,
        "first_run_p50_ms",
        report::percentile(&sorted, 0.50),
    );
    report::emit(
        "SP",
        name,
        "first_run_p99_ms",
        report::percentile(&sorted, 0.99),
    );
    report::emit("SP", name, "first_run_max_ms", *sorted.last().unwrap());
    let iters: Vec<f64> = iters.iter().map(|&i| i as f64).collect();
    report::emit("SP", name, "jain", report::jain(&iters));
    report::note(&format!(
        "{} of {} first runs later than 20 ms; hogs did {:.3e} iterations/s in all; run took {:.2} s",
        delays.iter().filter(|&&d| d > 20.0).count(),
        delays.len(),
        iters.iter().sum::<f64>() / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    ));
}

/// Runs the hogs and the `n` timed spawns with one runtime's `spawn` and
/// `join`; returns the delays (ms) and the hogs' iteration counts.
fn measure<H>(
    n: u64,
    spawn: impl Fn(Box<dyn FnOnce() -> u64 + Send>) -> H,
    join: impl Fn(H) -> u64,
) -> (Vec<f64>, Vec<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<H> = (0..HOGS)
        .map(|_| {
            let stop = stop.clone();
            spawn(Box::new(move || hog(|| stop.load(Ordering::Relaxed))))
        })
        .collect();
    std::thread::sleep(SETTLE);
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        // The task's first instruction reads the clock; the delay travels
        // back as nanoseconds through the same join as the hogs' counts.
        tasks.push(spawn(Box::new(move || t.elapsed().as_nanos() as u64)));
        std::thread::sleep(INTERVAL);
    }
    stop.store(true, Ordering::Relaxed);
    let delays = tasks.into_iter().map(|h| join(h) as f64 / 1e6).collect();
    let iters = hogs.into_iter().map(join).collect();
    (delays, iters)
}
