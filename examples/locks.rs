//! Coroutines sharing std's `Mutex`, `Condvar`, `mpsc` and `thread::park`
//! on ONE executor.
//!
//! Without the futex interposition a coroutine waiting for a lock held by
//! a parked coroutine would block the only executor forever; here waiting
//! parks the coroutine and the executor runs the others.
//!
//! Run: `cargo run --release --example locks`

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn main() {
    coroutines::RuntimeBuilder::new()
        .workers(1)
        .start()
        .expect("runtime config");
    let t = Instant::now();

    // 1. A Mutex held across a coroutine sleep while 100 others wait for it.
    let counter = Arc::new(Mutex::new(0u32));
    let hs: Vec<_> = (0..100)
        .map(|_| {
            let counter = counter.clone();
            coroutines::spawn(move || {
                let mut g = counter.lock().unwrap();
                coroutines::sleep(Duration::from_micros(100)); // parks, still holding the lock
                *g += 1;
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    println!(
        "mutex: counter = {} (100 expected)",
        *counter.lock().unwrap()
    );

    // 2. A bounded queue with a Condvar: 4 producers, 2 consumers.
    let q = Arc::new((Mutex::new(VecDeque::new()), Condvar::new(), Condvar::new()));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            coroutines::spawn(move || {
                let (m, not_empty, not_full) = &*q;
                let mut sum = 0u64;
                loop {
                    let mut g = m.lock().unwrap();
                    while g.is_empty() {
                        g = not_empty.wait(g).unwrap();
                    }
                    let v: u64 = g.pop_front().unwrap();
                    not_full.notify_one();
                    if v == 0 {
                        return sum;
                    }
                    sum += v;
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            coroutines::spawn(move || {
                let (m, not_empty, not_full) = &*q;
                for v in 1..=1000u64 {
                    let mut g = m.lock().unwrap();
                    while g.len() >= 8 {
                        g = not_full.wait(g).unwrap();
                    }
                    g.push_back(v);
                    not_empty.notify_one();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    {
        let (m, not_empty, _) = &*q;
        let mut g = m.lock().unwrap();
        g.push_back(0);
        g.push_back(0);
        not_empty.notify_all();
    }
    let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    println!("condvar: consumed sum = {total} ({} expected)", 4 * 500_500);

    // 3. mpsc fan-in: 100 producers, one receiving coroutine.
    let (tx, rx) = mpsc::channel();
    let rx = coroutines::spawn(move || rx.iter().sum::<u64>());
    for i in 0..100u64 {
        let tx = tx.clone();
        coroutines::spawn(move || {
            for k in 0..10 {
                tx.send(i * 10 + k).unwrap();
                coroutines::yield_now();
            }
        });
    }
    drop(tx);
    println!(
        "mpsc: sum = {} ({} expected)",
        rx.join().unwrap(),
        (0..1000u64).sum::<u64>()
    );

    // 4. mpsc ping-pong and rendezvous between two coroutines of the one
    //    executor: each coroutine is its own "thread" to std.
    let (to_q, from_p) = mpsc::channel::<u64>();
    let (to_p, from_q) = mpsc::sync_channel::<u64>(0);
    let p = coroutines::spawn(move || {
        (0..10_000u64)
            .map(|i| {
                to_q.send(i).unwrap();
                from_q.recv().unwrap()
            })
            .sum::<u64>()
    });
    let q = coroutines::spawn(move || {
        for v in from_p {
            to_p.send(v * 2).unwrap();
        }
    });
    let sum = p.join().unwrap();
    q.join().unwrap();
    println!(
        "mpsc ping-pong: 10,000 round trips, sum = {sum} ({} expected)",
        2 * (0..10_000u64).sum::<u64>()
    );

    // 5. std::thread::park/unpark: 10 coroutines parked at once.
    let (tx, rx) = mpsc::channel();
    let parked: Vec<_> = (0..10)
        .map(|i| {
            let tx = tx.clone();
            coroutines::spawn(move || {
                let me = std::thread::current();
                tx.send(me.clone()).unwrap();
                std::thread::park(); // may return spuriously; fine for a demo
                (i, me.id())
            })
        })
        .collect();
    let handles: Vec<std::thread::Thread> = (0..10).map(|_| rx.recv().unwrap()).collect();
    for t in handles.iter().rev() {
        t.unpark();
    }
    let ids: std::collections::HashSet<_> =
        parked.into_iter().map(|h| h.join().unwrap().1).collect();
    println!(
        "thread::park: 10 coroutines woken, {} distinct ThreadIds",
        ids.len()
    );

    let s = coroutines::stats();
    println!(
        "one executor (workers = {}), {:?}: {} futex waits parked coroutines, {} futex wakes",
        s.workers,
        t.elapsed(),
        s.futex_parks,
        s.futex_wakes
    );
}
