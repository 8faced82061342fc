//! W5 memory and W8 scale: spawn N tasks that each block on a shared
//! condition, wait until all are blocked, read RSS, then release and join
//! them. Figures: bytes per task (RSS delta / N, from /proc/self/statm),
//! spawn_ms (first spawn until the last task is blocked) and, for W8,
//! completed (1/0) and tasks_reached.
//!
//! N: W5 100,000 (threads: 10,000 with 64 KiB stacks); W8 1,000,000
//! (coroutines, may, tokio). Every runtime uses its default stack size
//! (coroutines: its default; may: 0x1000 words = 32 KiB plus a guard page).
//!
//! How each blocks: coroutines and may park (`park()`) until an AtomicBool
//! says go and are released by unparking every handle; tokio tasks await a
//! shared `Notify` (released with `notify_waiters`); threads wait on a std
//! `Condvar`. The spawning loop runs inside the runtime as in W2 (threads:
//! on the main thread); the last task to block wakes it.
//!
//! The RSS delta includes everything the runtime allocates per task (stack
//! pages touched, control block, join handle), but not kernel memory (page
//! tables, and for threads the kernel task structures).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{report, runtimes, sys, Params, Runtime, Workload, WORKERS};

const W5_TASKS: u64 = 100_000;
const W5_THREADS: u64 = 10_000;
const W5_THREAD_STACK_BYTES: usize = 64 * 1024;
const W8_TASKS: u64 = 1_000_000;

/// Tasks spawned so far; read by the main thread if the spawning coroutine
/// panics (may running out of mappings in W8).
static SPAWNED: AtomicU64 = AtomicU64::new(0);

struct Measured {
    spawn: Duration,
    rss_delta: u64,
}

pub fn run(w: Workload, rt: Runtime, p: &Params) {
    let n = match (w, rt) {
        (Workload::W8, _) => p.count(W8_TASKS),
        (_, Runtime::Threads) => p.count(W5_THREADS),
        _ => p.count(W5_TASKS),
    } as usize;
    let progress_every = (n / 100).max(1000) as u64;
    let result = match rt {
        Runtime::Coroutines => coroutines::spawn(move || co_blocked(n, progress_every))
            .join()
            .map_err(panic_message),
        Runtime::May => {
            runtimes::may_workers(WORKERS);
            may::go!(move || may_blocked(n, progress_every))
                .join()
                .map_err(panic_message)
        }
        Runtime::Tokio => runtimes::tokio_multi(WORKERS)
            .block_on(async move { tokio::spawn(tokio_blocked(n, progress_every)).await })
            .map_err(|e| e.to_string()),
        Runtime::Threads => threads_blocked(n),
    };
    let id = w.id();
    match result {
        Ok(m) => {
            report::emit(id, rt.name(), "spawn_ms", m.spawn.as_secs_f64() * 1e3);
            report::emit(
                id,
                rt.name(),
                "bytes_per_task",
                m.rss_delta as f64 / n as f64,
            );
            if w == Workload::W8 {
                report::emit(id, rt.name(), "completed", 1.0);
                report::emit(id, rt.name(), "tasks_reached", n as f64);
            }
        }
        Err(why) => {
            let reached = SPAWNED.load(Ordering::Relaxed);
            report::note(&format!(
                "failed after spawning {reached} of {n} tasks: {why}"
            ));
            report::emit(id, rt.name(), "completed", 0.0);
            report::emit(id, rt.name(), "tasks_reached", reached as f64);
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    format!("panicked: {msg}")
}

fn spawned(i: usize, progress_every: u64) {
    let i = i as u64 + 1;
    SPAWNED.store(i, Ordering::Relaxed);
    if i % progress_every == 0 {
        report::progress(i);
    }
}

/// State shared by the parked coroutines (coroutines and may) and their driver.
struct Gate<H> {
    go: AtomicBool,
    blocked: AtomicUsize,
    driver: H,
}

fn co_blocked(n: usize, progress_every: u64) -> Measured {
    let gate = Arc::new(Gate {
        go: AtomicBool::new(false),
        blocked: AtomicUsize::new(0),
        driver: coroutines::current(),
    });
    let mut handles = Vec::with_capacity(n);
    let rss0 = sys::rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        let gate = gate.clone();
        handles.push(coroutines::spawn(move || {
            if gate.blocked.fetch_add(1, Ordering::AcqRel) + 1 == n {
                gate.driver.unpark();
            }
            while !gate.go.load(Ordering::Acquire) {
                coroutines::park();
            }
        }));
        spawned(i, progress_every);
    }
    while gate.blocked.load(Ordering::Acquire) < n {
        coroutines::park();
    }
    let spawn = t0.elapsed();
    let rss_delta = sys::rss_bytes().saturating_sub(rss0);
    gate.go.store(true, Ordering::Release);
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join().unwrap();
    }
    Measured { spawn, rss_delta }
}

fn may_blocked(n: usize, progress_every: u64) -> Measured {
    let gate = Arc::new(Gate {
        go: AtomicBool::new(false),
        blocked: AtomicUsize::new(0),
        driver: may::coroutine::current(),
    });
    let mut handles = Vec::with_capacity(n);
    let rss0 = sys::rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        let gate = gate.clone();
        handles.push(may::go!(move || {
            if gate.blocked.fetch_add(1, Ordering::AcqRel) + 1 == n {
                gate.driver.unpark();
            }
            while !gate.go.load(Ordering::Acquire) {
                may::coroutine::park();
            }
        }));
        spawned(i, progress_every);
    }
    while gate.blocked.load(Ordering::Acquire) < n {
        may::coroutine::park();
    }
    let spawn = t0.elapsed();
    let rss_delta = sys::rss_bytes().saturating_sub(rss0);
    gate.go.store(true, Ordering::Release);
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join().unwrap();
    }
    Measured { spawn, rss_delta }
}

async fn tokio_blocked(n: usize, progress_every: u64) -> Measured {
    struct Shared {
        go: AtomicBool,
        blocked: AtomicUsize,
        release: tokio::sync::Notify,
        all_blocked: tokio::sync::Notify,
    }
    let shared = Arc::new(Shared {
        go: AtomicBool::new(false),
        blocked: AtomicUsize::new(0),
        release: tokio::sync::Notify::new(),
        all_blocked: tokio::sync::Notify::new(),
    });
    let mut handles = Vec::with_capacity(n);
    let rss0 = sys::rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        let s = shared.clone();
        handles.push(tokio::spawn(async move {
            // Register for `notify_waiters` before checking `go`, so the
            // release cannot slip between the check and the await.
            let released = s.release.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if s.blocked.fetch_add(1, Ordering::AcqRel) + 1 == n {
                s.all_blocked.notify_one();
            }
            if !s.go.load(Ordering::Acquire) {
                released.await;
            }
        }));
        spawned(i, progress_every);
    }
    while shared.blocked.load(Ordering::Acquire) < n {
        // notify_one stores a permit if we are not waiting yet.
        shared.all_blocked.notified().await;
    }
    let spawn = t0.elapsed();
    let rss_delta = sys::rss_bytes().saturating_sub(rss0);
    shared.go.store(true, Ordering::Release);
    shared.release.notify_waiters();
    for h in handles {
        h.await.unwrap();
    }
    Measured { spawn, rss_delta }
}

fn threads_blocked(n: usize) -> Result<Measured, String> {
    struct State {
        go: bool,
        blocked: usize,
    }
    let shared = Arc::new((
        Mutex::new(State {
            go: false,
            blocked: 0,
        }),
        Condvar::new(),
        Condvar::new(),
    ));
    let mut handles = Vec::with_capacity(n);
    let rss0 = sys::rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        let shared = shared.clone();
        let h = std::thread::Builder::new()
            .stack_size(W5_THREAD_STACK_BYTES)
            .spawn(move || {
                let (lock, release, all_blocked) = &*shared;
                let mut st = lock.lock().unwrap();
                st.blocked += 1;
                if st.blocked == n {
                    all_blocked.notify_one();
                }
                while !st.go {
                    st = release.wait(st).unwrap();
                }
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => return Err(format!("thread spawn failed: {e}")),
        }
        spawned(i, 1000);
    }
    let (lock, release, all_blocked) = &*shared;
    let mut st = lock.lock().unwrap();
    while st.blocked < n {
        st = all_blocked.wait(st).unwrap();
    }
    let spawn = t0.elapsed();
    let rss_delta = sys::rss_bytes().saturating_sub(rss0);
    st.go = true;
    release.notify_all();
    drop(st);
    for h in handles {
        h.join().unwrap();
    }
    Ok(Measured { spawn, rss_delta })
}
