//! SL sleep lateness on an otherwise idle runtime (2 workers): one task
//! loops `sleep(1 ms)` 2,000 times and records lateness = elapsed − 1 ms.
//! Figures: lateness p50/p99/max (ms), as W4 and W7.
//!
//! Sleeps: coroutines `std::thread::sleep` inside a coroutine (the runtime
//! intercepts it and parks the coroutine), may `coroutine::sleep`, tokio
//! `time::sleep(..).await` (1 ms timer granularity), threads
//! `std::thread::sleep` in a plain thread. The task is spawned from the main
//! thread, which only joins it. The child's watchdog is S1–S3's.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::hog::{self, probe_n, PROBE_SLEEP};
use crate::{report, runtimes, sync, Params, Runtime, Workload, WORKERS};

const SLEEPS: u64 = 2_000;

pub fn run(rt: Runtime, p: &Params) {
    sync::watchdog(Workload::SL, rt);
    let n = p.count(SLEEPS);
    // Nobody waits for the probe to start here (W4 and W7 do).
    let started = || AtomicBool::new(false);
    let lateness = match rt {
        Runtime::Coroutines => {
            coroutines::spawn(move || probe_n(n, &started(), std::thread::sleep))
                .join()
                .unwrap()
        }
        Runtime::May => {
            runtimes::may_workers(WORKERS);
            may::go!(move || probe_n(n, &started(), may::coroutine::sleep))
                .join()
                .unwrap()
        }
        Runtime::Tokio => runtimes::tokio_multi(WORKERS).block_on(async move {
            tokio::spawn(async move {
                let mut lateness = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let t0 = Instant::now();
                    tokio::time::sleep(PROBE_SLEEP).await;
                    lateness.push(hog::lateness_ms(t0));
                }
                lateness
            })
            .await
            .unwrap()
        }),
        Runtime::Threads => std::thread::spawn(move || probe_n(n, &started(), std::thread::sleep))
            .join()
            .unwrap(),
    };
    let sleep_ms = PROBE_SLEEP.as_secs_f64() * 1e3;
    let slept_ms: f64 = lateness.iter().map(|l| l + sleep_ms).sum();
    report::note(&format!("{n} sleeps of 1 ms took {slept_ms:.1} ms"));
    report::emit_lateness("SL", rt.name(), &lateness, false);
}
