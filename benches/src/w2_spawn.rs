//! W2a spawn-all: spawn 100,000 empty tasks, then join all.
//! W2b spawn-join: spawn one empty task and join it at once, 100,000 times.
//! Threads: 10,000 in both. Figure: ns per task (W2b: per round trip).
//!
//! The spawning loop runs inside the runtime, as a server spawning per
//! request would: in a `coroutines::run` coroutine, in a may coroutine, in a
//! tokio task (not in `block_on`), and on the main thread for threads. A
//! warm-up round of the same size runs first in the same process, so pools
//! and lazily started runtimes are warm.

use std::time::{Duration, Instant};

use crate::{report, runtimes, Params, Runtime, Workload, WORKERS};

const TASKS: u64 = 100_000;
const THREADS: u64 = 10_000;

pub fn run(w: Workload, rt: Runtime, p: &Params) {
    let all = w == Workload::W2a;
    let n = p.count(if rt == Runtime::Threads {
        THREADS
    } else {
        TASKS
    }) as usize;
    let round: Box<dyn Fn(usize) -> Duration> = match rt {
        Runtime::Coroutines => {
            Box::new(move |n| coroutines::run(move || if all { co_all(n) } else { co_join(n) }))
        }
        Runtime::May => {
            runtimes::may_workers(WORKERS);
            Box::new(move |n| {
                may::go!(move || if all { may_all(n) } else { may_join(n) })
                    .join()
                    .unwrap()
            })
        }
        Runtime::Tokio => {
            let rt = runtimes::tokio_multi(WORKERS);
            Box::new(move |n| {
                rt.block_on(async move {
                    let driver = if all {
                        tokio::spawn(tokio_all(n))
                    } else {
                        tokio::spawn(tokio_join(n))
                    };
                    driver.await.unwrap()
                })
            })
        }
        Runtime::Threads => Box::new(move |n| if all { threads_all(n) } else { threads_join(n) }),
    };
    round(n);
    let elapsed = round(n);
    report::emit(
        w.id(),
        rt.name(),
        "ns_per_task",
        elapsed.as_nanos() as f64 / n as f64,
    );
}

fn co_all(n: usize) -> Duration {
    let mut handles = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        handles.push(coroutines::spawn(|| ()));
    }
    for h in handles {
        h.join().unwrap();
    }
    t0.elapsed()
}

fn co_join(n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        coroutines::spawn(|| ()).join().unwrap();
    }
    t0.elapsed()
}

fn may_all(n: usize) -> Duration {
    let mut handles = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        handles.push(may::go!(|| ()));
    }
    for h in handles {
        h.join().unwrap();
    }
    t0.elapsed()
}

fn may_join(n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        may::go!(|| ()).join().unwrap();
    }
    t0.elapsed()
}

async fn tokio_all(n: usize) -> Duration {
    let mut handles = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        handles.push(tokio::spawn(async {}));
    }
    for h in handles {
        h.await.unwrap();
    }
    t0.elapsed()
}

async fn tokio_join(n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        tokio::spawn(async {}).await.unwrap();
    }
    t0.elapsed()
}

fn threads_all(n: usize) -> Duration {
    let mut handles = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        handles.push(std::thread::spawn(|| ()));
    }
    for h in handles {
        h.join().unwrap();
    }
    t0.elapsed()
}

fn threads_join(n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        std::thread::spawn(|| ()).join().unwrap();
    }
    t0.elapsed()
}
