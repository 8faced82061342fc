//! W6 preempt-cost: W4's 8 hogs without the probe, 3 s on 2 workers, once
//! with the default time slice and once with `COROUTINES_SLICE=off` (the
//! parent runs the two as separate children). Figure: total hog
//! iterations/s; the parent derives overhead % = (off − default) / off.
//!
//! The child reports `iters_per_s` under the default slice and
//! `iters_per_s_off` when it runs with `COROUTINES_SLICE=off`.

use std::time::{Duration, Instant};

use crate::hog::hog;
use crate::w4_fairness::{DURATION, HOGS};
use crate::{report, Params, Runtime};

pub const SLICE_ENV: &str = "COROUTINES_SLICE";

/// Whether this process runs with preemption off.
pub fn slice_off() -> bool {
    std::env::var(SLICE_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off"))
}

pub fn run(rt: Runtime, p: &Params) {
    assert_eq!(rt, Runtime::Coroutines, "W6 is coroutines-only");
    let dur: Duration = p.duration(DURATION);
    let t0 = Instant::now();
    let deadline = t0 + dur;
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| coroutines::spawn(move || hog(|| Instant::now() >= deadline)))
        .collect();
    let total: u64 = hogs.into_iter().map(|h| h.join().unwrap()).sum();
    let per_s = total as f64 / t0.elapsed().as_secs_f64();
    let metric = if slice_off() {
        "iters_per_s_off"
    } else {
        "iters_per_s"
    };
    report::emit("W6", rt.name(), metric, per_s);
}
