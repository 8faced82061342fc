//! The CPU hog of W4, W6 and W7, and the sleeping probe of W4 and W7.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Iterations between two checks of the stop condition (the workload definition: the clock
/// is checked only every ~1,000,000 iterations).
pub const CHUNK: u64 = 1_000_000;

/// Spins on an integer recurrence until `done()` holds, checking it every
/// `CHUNK` iterations, and never yields. Returns the iterations done.
pub fn hog(mut done: impl FnMut() -> bool) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut iters = 0;
    loop {
        for _ in 0..CHUNK {
            x = black_box(
                x.wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407),
            );
        }
        iters += CHUNK;
        if done() {
            break;
        }
    }
    black_box(x);
    iters
}

/// The requested sleep of every probe.
pub const PROBE_SLEEP: Duration = Duration::from_millis(1);

/// Lateness of one sleep that started at `t0`: elapsed − 1 ms, in ms.
pub fn lateness_ms(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() - PROBE_SLEEP.as_secs_f64()) * 1e3
}

/// W4's probe for blocking-style runtimes: loops `sleep(1 ms)` until
/// `deadline`, recording each lateness. Sets `started` just before its first
/// sleep, so the hogs can be spawned while it sleeps.
pub fn probe_until(deadline: Instant, started: &AtomicBool, sleep: impl Fn(Duration)) -> Vec<f64> {
    let mut lateness = Vec::with_capacity(8192);
    loop {
        let t0 = Instant::now();
        started.store(true, Ordering::Release);
        sleep(PROBE_SLEEP);
        lateness.push(lateness_ms(t0));
        if Instant::now() >= deadline {
            return lateness;
        }
    }
}

/// W7's probe: `n` sleeps of 1 ms, recording each lateness; sets `started`
/// just before its first sleep, as `probe_until`.
pub fn probe_n(n: u64, started: &AtomicBool, sleep: impl Fn(Duration)) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t0 = Instant::now();
            started.store(true, Ordering::Release);
            sleep(PROBE_SLEEP);
            lateness_ms(t0)
        })
        .collect()
}

/// Waits (on a plain OS thread) until `flag` is set.
pub fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_micros(100));
    }
}
