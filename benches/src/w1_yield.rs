//! W1 yield: 2 tasks on ONE worker alternately yield, 10,000,000 yields in
//! all; figure: ns per yield.
//!
//! coroutines: `COROUTINES_WORKERS=1` (set by the parent), `yield_now()`;
//! may: `set_workers(1)`, `coroutine::yield_now()`; tokio: current_thread
//! runtime, `task::yield_now().await`; threads: 2 threads pinned to CPU 0
//! calling `sched_yield` (`std::thread::yield_now`). A warm-up round of a
//! tenth of the yields runs first in the same process.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::{report, runtimes, sys, Params, Runtime};

const YIELDS: u64 = 10_000_000;

pub fn run(rt: Runtime, p: &Params) {
    let per_task = p.count(YIELDS) / 2;
    let round: fn(u64) -> Duration = match rt {
        Runtime::Coroutines => coroutines_round,
        Runtime::May => {
            runtimes::may_workers(1);
            may_round
        }
        Runtime::Tokio => tokio_round,
        Runtime::Threads => threads_round,
    };
    round((per_task / 10).max(1));
    let elapsed = round(per_task);
    report::emit(
        "W1",
        rt.name(),
        "ns_per_yield",
        elapsed.as_nanos() as f64 / (2 * per_task) as f64,
    );
}

fn coroutines_round(per_task: u64) -> Duration {
    coroutines::run(move || {
        let t0 = Instant::now();
        let a = coroutines::spawn(move || (0..per_task).for_each(|_| coroutines::yield_now()));
        let b = coroutines::spawn(move || (0..per_task).for_each(|_| coroutines::yield_now()));
        a.join().unwrap();
        b.join().unwrap();
        t0.elapsed()
    })
}

fn may_round(per_task: u64) -> Duration {
    let t0 = Instant::now();
    let a = may::go!(move || (0..per_task).for_each(|_| may::coroutine::yield_now()));
    let b = may::go!(move || (0..per_task).for_each(|_| may::coroutine::yield_now()));
    a.join().unwrap();
    b.join().unwrap();
    t0.elapsed()
}

fn tokio_round(per_task: u64) -> Duration {
    runtimes::tokio_current().block_on(async move {
        let t0 = Instant::now();
        let task = move || async move {
            for _ in 0..per_task {
                tokio::task::yield_now().await;
            }
        };
        let a = tokio::spawn(task());
        let b = tokio::spawn(task());
        a.await.unwrap();
        b.await.unwrap();
        t0.elapsed()
    })
}

fn threads_round(per_task: u64) -> Duration {
    // Both threads pin themselves, then start together so that every
    // sched_yield has the other thread runnable on the same CPU.
    let start = Arc::new(Barrier::new(3));
    let spawn = |start: Arc<Barrier>| {
        std::thread::spawn(move || {
            sys::pin_current_thread(0).expect("sched_setaffinity(CPU 0)");
            start.wait();
            (0..per_task).for_each(|_| std::thread::yield_now());
        })
    };
    let a = spawn(start.clone());
    let b = spawn(start.clone());
    start.wait();
    let t0 = Instant::now();
    a.join().unwrap();
    b.join().unwrap();
    t0.elapsed()
}
