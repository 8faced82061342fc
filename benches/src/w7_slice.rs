//! W7 slice: 1 worker, `COROUTINES_SLICE=1ms` (both set by the parent):
//! 1 never-yielding hog + 1 coroutine doing `std::thread::sleep(1 ms)` 200
//! times. Figure: the sleeper's lateness p50/p99/max (ms).
//!
//! As in W4, the sleeper enters its first sleep before the hog is spawned,
//! so a hog that is never preempted shows as one huge lateness. The hog
//! stops when the sleeper is done (or after 60 s × --scale). A note gives
//! the hog's iterations while the sleeper ran: near zero means the sleeps
//! blocked the worker instead of parking the coroutine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hog::{hog, probe_n, wait_flag};
use crate::{report, Params, Runtime};

const SLEEPS: u64 = 200;
const HOG_LIMIT: Duration = Duration::from_secs(60);

pub fn run(rt: Runtime, p: &Params) {
    assert_eq!(rt, Runtime::Coroutines, "W7 is coroutines-only");
    let n = p.count(SLEEPS);
    let started = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, sleeper_stop) = (started.clone(), stop.clone());
    let t0 = Instant::now();
    let sleeper = coroutines::spawn(move || {
        let lateness = probe_n(n, &flag, std::thread::sleep);
        sleeper_stop.store(true, Ordering::Release);
        lateness
    });
    wait_flag(&started);
    let limit = Instant::now() + p.duration(HOG_LIMIT);
    let hog =
        coroutines::spawn(move || hog(|| stop.load(Ordering::Acquire) || Instant::now() >= limit));
    let lateness = sleeper.join().unwrap();
    let sleeper_s = t0.elapsed().as_secs_f64();
    let iters = hog.join().unwrap();
    if Instant::now() >= limit {
        report::note("the hog ran into its time limit (60 s, scaled): the sleeper was starved");
    }
    report::note(&format!(
        "{n} sleeps took {:.1} ms; the hog did {:.2e} iterations ({:.2e}/s of the sleeper's run)",
        sleeper_s * 1e3,
        iters as f64,
        iters as f64 / sleeper_s
    ));
    report::emit_lateness("W7", rt.name(), &lateness, false);
}
