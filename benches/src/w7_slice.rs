//! W7 slice: 1 worker, `COROUTINES_SLICE=1ms` (both set by the parent):
//! 1 never-yielding hog + 1 coroutine doing `std::thread::sleep(1 ms)` 200
//! times. Figure: the sleeper's lateness p50/p99/max (ms). The hog stops
//! when the sleeper is done (or after 60 s, if it is never preempted).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hog::{hog, probe_n};
use crate::{report, Params, Runtime};

const SLEEPS: u64 = 200;
const HOG_LIMIT: Duration = Duration::from_secs(60);

pub fn run(rt: Runtime, p: &Params) {
    assert_eq!(rt, Runtime::Coroutines, "W7 is coroutines-only");
    let n = p.count(SLEEPS);
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Instant::now() + HOG_LIMIT;
    let hog_stop = stop.clone();
    let hog = coroutines::spawn(move || hog(|| hog_stop.load(Ordering::Acquire) || Instant::now() >= limit));
    let sleeper = coroutines::spawn(move || {
        let lateness = probe_n(n, std::thread::sleep);
        stop.store(true, Ordering::Release);
        lateness
    });
    let lateness = sleeper.join().unwrap();
    hog.join().unwrap();
    if Instant::now() >= limit {
        report::note("coroutines: the hog ran into its 60 s limit: the sleeper was starved");
    }
    report::emit_lateness("W7", rt.name(), &lateness, false);
}
