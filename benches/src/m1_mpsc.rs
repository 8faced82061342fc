//! M1 mpsc gap: std `mpsc` under preemption. 64 producers (2,000 messages
//! each, ~1 µs of CPU work between sends) into one consumer, 2 workers,
//! `COROUTINES_SLICE=100us` (set by the parent). Figure: the longest time
//! between two consecutive receives (ms; target ≤ 10 ms), and the run's
//! total time. A producer preempted while it writes its slot makes std's
//! receiver spin and call `thread::yield_now` (sched_yield), which the
//! runtime turns into a coroutine yield. Threads: 64 + 1 OS threads.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{report, Params, Runtime};

pub const PRODUCERS: u64 = 64;
pub const MSGS: u64 = 2_000;

fn consume(rx: mpsc::Receiver<(u64, u64)>) -> (u64, Duration) {
    let mut next = vec![0u64; PRODUCERS as usize];
    let (mut n, mut max_gap, mut last) = (0u64, Duration::ZERO, None::<Instant>);
    while let Ok((p, seq)) = rx.recv() {
        let now = Instant::now();
        if let Some(l) = last {
            max_gap = max_gap.max(now - l);
        }
        last = Some(now);
        assert_eq!(seq, next[p as usize], "producer {p} out of order");
        next[p as usize] += 1;
        n += 1;
    }
    (n, max_gap)
}

fn produce(p: u64, msgs: u64, tx: mpsc::Sender<(u64, u64)>) -> u64 {
    let mut x = p;
    for seq in 0..msgs {
        for _ in 0..1_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(seq));
        }
        tx.send((p, seq)).unwrap();
    }
    x
}

pub fn run(rt: Runtime, p: &Params) {
    let msgs = p.count(MSGS);
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let t0 = Instant::now();
    let (n, gap) = match rt {
        Runtime::Coroutines => {
            let c = coroutines::spawn(move || consume(rx));
            let ps: Vec<_> = (0..PRODUCERS)
                .map(|i| {
                    let tx = tx.clone();
                    coroutines::spawn(move || produce(i, msgs, tx))
                })
                .collect();
            drop(tx);
            ps.into_iter().for_each(|h| {
                h.join().unwrap();
            });
            c.join().unwrap()
        }
        Runtime::Threads => {
            let c = std::thread::spawn(move || consume(rx));
            let ps: Vec<_> = (0..PRODUCERS)
                .map(|i| {
                    let tx = tx.clone();
                    std::thread::spawn(move || produce(i, msgs, tx))
                })
                .collect();
            drop(tx);
            ps.into_iter().for_each(|h| {
                h.join().unwrap();
            });
            c.join().unwrap()
        }
        _ => unreachable!("M1 runs coroutines and threads"),
    };
    assert_eq!(n, PRODUCERS * msgs);
    report::emit("M1", rt.name(), "max_gap_ms", gap.as_secs_f64() * 1e3);
    report::emit(
        "M1",
        rt.name(),
        "total_ms",
        t0.elapsed().as_secs_f64() * 1e3,
    );
}
