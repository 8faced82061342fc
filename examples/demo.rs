//! The main demo: ordinary blocking, CPU-bound and locking std code, moved
//! from `std::thread::spawn` to `coroutines::spawn`, on 2 executor threads.
//!
//! Run: `cargo run --release --example demo`
//!
//! 1. 1,000 coroutines call the blocking `std::thread::sleep(200 ms)`:
//!    they all sleep at once (the libc sleep is hooked: the coroutine parks,
//!    not the thread).
//! 2. 4 CPU hogs that never yield share the executors with a coroutine
//!    that sleeps 1 ms in a loop: preemption keeps it on time.
//! 3. A `std::net` echo server and 200 clients, each a coroutine, written
//!    with blocking `TcpListener`/`TcpStream` calls.
//! 4. 100 coroutines hammer one `std::sync::Mutex` (contended waits park
//!    the coroutine: the futex is hooked).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = coroutines::RuntimeBuilder::new().workers(2).start() {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }

    // 1. Blocking sleeps.
    let t = Instant::now();
    let hs: Vec<_> = (0..1000)
        .map(|_| coroutines::spawn(|| std::thread::sleep(Duration::from_millis(200))))
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    println!(
        "1. 1000 x thread::sleep(200 ms) on 2 threads: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // 2. CPU hogs and a punctual sleeper.
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            coroutines::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n + 1);
                }
                n
            })
        })
        .collect();
    let probe = coroutines::spawn(|| {
        let mut worst = Duration::ZERO;
        for _ in 0..200 {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
        }
        worst
    });
    let worst = probe.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let iters: Vec<u64> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "2. 4 never-yielding hogs + a 1 ms sleeper: worst lateness {:.2} ms; hog iterations {:?}",
        worst.as_secs_f64() * 1e3,
        iters
    );

    // 3. std::net echo.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(coroutines::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            drop(coroutines::spawn(move || {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => s.write_all(&buf[..n]).unwrap(),
                    }
                }
            }));
        }
    }));
    let t = Instant::now();
    let clients: Vec<_> = (0..200u32)
        .map(|i| {
            coroutines::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let msg = format!("hello from client {i}");
                let mut got = vec![0u8; msg.len()];
                for _ in 0..10 {
                    s.write_all(msg.as_bytes()).unwrap();
                    s.read_exact(&mut got).unwrap();
                    assert_eq!(got, msg.as_bytes());
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|h| h.join().unwrap());
    println!(
        "3. 200 std::net clients x 10 echoes: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // 4. A contended std Mutex.
    let total = Arc::new(Mutex::new(0u64));
    let adds = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let hs: Vec<_> = (0..100)
        .map(|_| {
            let (total, adds) = (total.clone(), adds.clone());
            coroutines::spawn(move || {
                for _ in 0..1000 {
                    *total.lock().unwrap() += 1;
                    adds.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*total.lock().unwrap(), 100_000);
    println!(
        "4. 100 coroutines x 1000 locked increments: total {} in {:.0} ms",
        total.lock().unwrap(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let s = coroutines::stats();
    println!(
        "stats: {} executors, {} coroutines spawned, {} switches, {} preemptions, {} I/O parks, {} sleep parks, {} futex parks",
        s.workers, s.spawned, s.switches, s.preempt.preemptions, s.io_parks, s.sleep_parks, s.futex_parks
    );
}
