//! S1 mutex contention, S2 channel ping-pong, S3 uncontended mutex: the
//! blocking primitives of std, used unchanged inside coroutines (the crate
//! parks a coroutine that waits on a std `Mutex` or `mpsc` receiver),
//! against each peer's own primitive on 2 workers.
//!
//! * S1: 1,000 tasks × 1,000 increments of one counter under a mutex; the
//!   spawning loop runs inside the runtime, as in W2 (threads: 1,000 OS
//!   threads from the main thread). Figure: ms from the first spawn until
//!   every task is joined. The final count must be tasks × increments.
//! * S2: two tasks bounce a u64 through two channels, 100,000 round trips
//!   (threads: 20,000); the pinger sends 0, 1, 2, ... and checks every reply
//!   is the request + 1, the echoer counts and sums what it received; both
//!   sums are checked. Figure: ns per round trip, timed by the pinger.
//! * S3: one task locks and unlocks an uncontended mutex 10,000,000 times,
//!   incrementing the guarded counter (through `black_box`). Figure: ns per
//!   lock+unlock.
//!
//! Primitives: coroutines `std::sync::{Mutex, mpsc}` in `coroutines::spawn`
//! tasks; may `may::sync::{Mutex, mpsc}` in `go!` coroutines; tokio
//! `tokio::sync::Mutex` (`lock().await`) and `mpsc::unbounded_channel` in
//! tasks of a 2-worker runtime; threads `std::sync` in OS threads. S2 and
//! S3 tasks are spawned from the main thread. Each child runs a warm-up
//! round of a tenth of the size first (S1: a tenth of the increments).
//!
//! A wrong count or reply panics the child. A child that has not finished
//! after `WATCHDOG` prints a `NOTE` and exits without a `RESULT` (see
//! `watchdog`), so a runtime that hangs in a primitive is reported as such.

use std::hint::black_box;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{report, runtimes, Params, Runtime, Workload, WORKERS};

const S1_TASKS: u64 = 1_000;
const S1_INCREMENTS: u64 = 1_000;
const S2_ROUND_TRIPS: u64 = 100_000;
const S2_THREAD_ROUND_TRIPS: u64 = 20_000;
const S3_LOCKS: u64 = 10_000_000;

/// How long a child of S1, S2, S3 or SL may run before its watchdog ends it
/// (the parent's timeout, 60 s for may, would only kill it).
pub const WATCHDOG: Duration = Duration::from_secs(30);

pub fn run(w: Workload, rt: Runtime, p: &Params) {
    watchdog(w, rt);
    if rt == Runtime::May {
        runtimes::may_workers(WORKERS);
    }
    match w {
        Workload::S1 => s1(rt, p),
        Workload::S2 => s2(rt, p),
        Workload::S3 => s3(rt, p),
        _ => unreachable!("{} is not a sync workload", w.id()),
    }
}

/// Starts a plain thread that, after `WATCHDOG`, prints a `NOTE` saying the
/// pair did not finish and ends the child with exit status 3 (no `RESULT`).
pub fn watchdog(w: Workload, rt: Runtime) {
    std::thread::spawn(move || {
        std::thread::sleep(WATCHDOG);
        report::note(&format!(
            "no result after {} s: {} did not finish {} (ended by the child's watchdog; hung?)",
            WATCHDOG.as_secs(),
            rt.name(),
            w.id()
        ));
        eprintln!("bench: {} {} watchdog fired", w.id(), rt.name());
        std::process::exit(3);
    });
}

// ---------------------------------------------------------------- S1

fn s1(rt: Runtime, p: &Params) {
    let tasks = p.count(S1_TASKS);
    let increments = p.count(S1_INCREMENTS);
    let round: Box<dyn Fn(u64) -> (Duration, u64)> = match rt {
        Runtime::Coroutines => Box::new(move |k| coroutines::run(move || co_contended(tasks, k))),
        Runtime::May => {
            Box::new(move |k| may::go!(move || may_contended(tasks, k)).join().unwrap())
        }
        Runtime::Tokio => {
            let rt = runtimes::tokio_multi(WORKERS);
            Box::new(move |k| {
                rt.block_on(async move { tokio::spawn(tokio_contended(tasks, k)).await.unwrap() })
            })
        }
        Runtime::Threads => Box::new(move |k| threads_contended(tasks, k)),
    };
    let warm_up = (increments / 10).max(1);
    check_count("S1 warm-up", round(warm_up).1, tasks * warm_up);
    let (elapsed, count) = round(increments);
    check_count("S1", count, tasks * increments);
    report::emit("S1", rt.name(), "ms", elapsed.as_secs_f64() * 1e3);
}

fn check_count(what: &str, count: u64, expected: u64) {
    if count != expected {
        panic!("{what}: the counter is {count}, expected {expected}");
    }
}

fn std_increments(m: &Mutex<u64>, n: u64) {
    for _ in 0..n {
        *m.lock().unwrap() += 1;
    }
}

/// S1 with std's `Mutex`: `spawn` starts one task (a coroutine or an OS
/// thread) and returns what joins it.
fn std_contended<J: FnOnce()>(
    tasks: u64,
    increments: u64,
    spawn: impl Fn(Box<dyn FnOnce() + Send>) -> J,
) -> (Duration, u64) {
    let m = Arc::new(Mutex::new(0u64));
    let t0 = Instant::now();
    let joins: Vec<J> = (0..tasks)
        .map(|_| {
            let m = m.clone();
            spawn(Box::new(move || std_increments(&m, increments)))
        })
        .collect();
    for join in joins {
        join();
    }
    let elapsed = t0.elapsed();
    let count = *m.lock().unwrap();
    (elapsed, count)
}

fn co_contended(tasks: u64, increments: u64) -> (Duration, u64) {
    std_contended(tasks, increments, |f| {
        let h = coroutines::spawn(f);
        move || h.join().unwrap()
    })
}

fn may_contended(tasks: u64, increments: u64) -> (Duration, u64) {
    let m = Arc::new(may::sync::Mutex::new(0u64));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let m = m.clone();
            may::go!(move || {
                for _ in 0..increments {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = t0.elapsed();
    let count = *m.lock().unwrap();
    (elapsed, count)
}

async fn tokio_contended(tasks: u64, increments: u64) -> (Duration, u64) {
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move {
                for _ in 0..increments {
                    *m.lock().await += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = t0.elapsed();
    let count = *m.lock().await;
    (elapsed, count)
}

fn threads_contended(tasks: u64, increments: u64) -> (Duration, u64) {
    std_contended(tasks, increments, |f| {
        let h = std::thread::spawn(f);
        move || h.join().unwrap()
    })
}

// ---------------------------------------------------------------- S2

fn s2(rt: Runtime, p: &Params) {
    let n = p.count(if rt == Runtime::Threads {
        S2_THREAD_ROUND_TRIPS
    } else {
        S2_ROUND_TRIPS
    });
    let round: Box<dyn Fn(u64) -> Duration> = match rt {
        Runtime::Coroutines => Box::new(co_ping_pong),
        Runtime::May => Box::new(may_ping_pong),
        Runtime::Tokio => {
            let rt = runtimes::tokio_multi(WORKERS);
            Box::new(move |n| rt.block_on(tokio_ping_pong(n)))
        }
        Runtime::Threads => Box::new(threads_ping_pong),
    };
    round((n / 10).max(2));
    let elapsed = round(n);
    report::emit(
        "S2",
        rt.name(),
        "ns_per_round_trip",
        elapsed.as_nanos() as f64 / n as f64,
    );
}

/// The pinger: sends 0..n, one at a time, and checks that every reply is the
/// request + 1. Returns the time taken and the sum of the replies.
fn ping(n: u64, send: impl Fn(u64), mut recv: impl FnMut() -> u64) -> (Duration, u64) {
    let mut sum = 0;
    let t0 = Instant::now();
    for i in 0..n {
        send(i);
        let reply = recv();
        check_reply(i, reply);
        sum += reply;
    }
    (t0.elapsed(), sum)
}

/// The echoer: replies v + 1 to every v until its channel closes. Returns
/// how many values it received and their sum.
fn pong(mut recv: impl FnMut() -> Option<u64>, send: impl Fn(u64)) -> (u64, u64) {
    let (mut count, mut sum) = (0, 0);
    while let Some(v) = recv() {
        count += 1;
        sum += v;
        send(v + 1);
    }
    (count, sum)
}

fn check_reply(request: u64, reply: u64) {
    if reply != request + 1 {
        panic!("S2: the reply to {request} was {reply}");
    }
}

/// Checks the sums of both sides: the echoer received 0..n, the pinger got
/// 1..=n back.
fn check_ping_pong(n: u64, replies_sum: u64, (received, received_sum): (u64, u64)) {
    let expected = (n, n * (n - 1) / 2, n * (n + 1) / 2);
    if (received, received_sum, replies_sum) != expected {
        panic!(
            "S2: echoer received {received} values summing to {received_sum}, replies summed to {replies_sum}; expected {expected:?}"
        );
    }
}

fn co_ping_pong(n: u64) -> Duration {
    let (to_pong, pong_rx) = mpsc::channel::<u64>();
    let (to_ping, ping_rx) = mpsc::channel::<u64>();
    let ponger =
        coroutines::spawn(move || pong(|| pong_rx.recv().ok(), |v| to_ping.send(v).unwrap()));
    // The pinger's sender is dropped when it returns, which ends the echoer.
    let pinger = coroutines::spawn(move || {
        ping(n, |v| to_pong.send(v).unwrap(), || ping_rx.recv().unwrap())
    });
    let (elapsed, replies_sum) = pinger.join().unwrap();
    check_ping_pong(n, replies_sum, ponger.join().unwrap());
    elapsed
}

fn may_ping_pong(n: u64) -> Duration {
    let (to_pong, pong_rx) = may::sync::mpsc::channel::<u64>();
    let (to_ping, ping_rx) = may::sync::mpsc::channel::<u64>();
    let ponger = may::go!(move || pong(|| pong_rx.recv().ok(), |v| to_ping.send(v).unwrap()));
    let pinger =
        may::go!(move || ping(n, |v| to_pong.send(v).unwrap(), || ping_rx.recv().unwrap()));
    let (elapsed, replies_sum) = pinger.join().unwrap();
    check_ping_pong(n, replies_sum, ponger.join().unwrap());
    elapsed
}

async fn tokio_ping_pong(n: u64) -> Duration {
    let (to_pong, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (to_ping, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let ponger = tokio::spawn(async move {
        let (mut count, mut sum) = (0, 0);
        while let Some(v) = pong_rx.recv().await {
            count += 1;
            sum += v;
            to_ping.send(v + 1).unwrap();
        }
        (count, sum)
    });
    let pinger = tokio::spawn(async move {
        let mut sum = 0;
        let t0 = Instant::now();
        for i in 0..n {
            to_pong.send(i).unwrap();
            let reply = ping_rx.recv().await.unwrap();
            check_reply(i, reply);
            sum += reply;
        }
        (t0.elapsed(), sum)
    });
    let (elapsed, replies_sum) = pinger.await.unwrap();
    check_ping_pong(n, replies_sum, ponger.await.unwrap());
    elapsed
}

fn threads_ping_pong(n: u64) -> Duration {
    let (to_pong, pong_rx) = mpsc::channel::<u64>();
    let (to_ping, ping_rx) = mpsc::channel::<u64>();
    let ponger =
        std::thread::spawn(move || pong(|| pong_rx.recv().ok(), |v| to_ping.send(v).unwrap()));
    let pinger = std::thread::spawn(move || {
        ping(n, |v| to_pong.send(v).unwrap(), || ping_rx.recv().unwrap())
    });
    let (elapsed, replies_sum) = pinger.join().unwrap();
    check_ping_pong(n, replies_sum, ponger.join().unwrap());
    elapsed
}

// ---------------------------------------------------------------- S3

fn s3(rt: Runtime, p: &Params) {
    let n = p.count(S3_LOCKS);
    let round: Box<dyn Fn(u64) -> Duration> = match rt {
        Runtime::Coroutines => {
            Box::new(|n| coroutines::spawn(move || std_locks(n)).join().unwrap())
        }
        Runtime::May => Box::new(|n| may::go!(move || may_locks(n)).join().unwrap()),
        Runtime::Tokio => {
            let rt = runtimes::tokio_multi(WORKERS);
            Box::new(move |n| {
                rt.block_on(async move { tokio::spawn(tokio_locks(n)).await.unwrap() })
            })
        }
        Runtime::Threads => Box::new(|n| std::thread::spawn(move || std_locks(n)).join().unwrap()),
    };
    round((n / 10).max(2));
    let elapsed = round(n);
    report::emit(
        "S3",
        rt.name(),
        "ns_per_lock",
        elapsed.as_nanos() as f64 / n as f64,
    );
}

fn std_locks(n: u64) -> Duration {
    let m = Mutex::new(0u64);
    let t0 = Instant::now();
    for _ in 0..n {
        *black_box(&m).lock().unwrap() += 1;
    }
    let elapsed = t0.elapsed();
    check_count("S3", m.into_inner().unwrap(), n);
    elapsed
}

fn may_locks(n: u64) -> Duration {
    let m = may::sync::Mutex::new(0u64);
    let t0 = Instant::now();
    for _ in 0..n {
        *black_box(&m).lock().unwrap() += 1;
    }
    let elapsed = t0.elapsed();
    check_count("S3", *m.lock().unwrap(), n);
    elapsed
}

async fn tokio_locks(n: u64) -> Duration {
    let m = tokio::sync::Mutex::new(0u64);
    let t0 = Instant::now();
    for _ in 0..n {
        *black_box(&m).lock().await += 1;
    }
    let elapsed = t0.elapsed();
    check_count("S3", m.into_inner(), n);
    elapsed
}
