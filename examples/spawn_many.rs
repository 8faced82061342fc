//! Spawns a million coroutines that all block at once, then releases them,
//! and reports the time and memory it took.
//!
//! Run: `cargo run --release --example spawn_many [count]`

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm format");
    pages * 4096
}

fn main() {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("usage: spawn_many [count]   (count must be a whole number, got {a:?})");
            std::process::exit(2)
        }),
        None => 1_000_000,
    };
    // Start the runtime first so its own memory is not counted.
    coroutines::spawn(|| ()).join().unwrap();
    let base = rss_bytes();
    let go = Arc::new(AtomicBool::new(false));
    let blocked = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let go = go.clone();
            let blocked = blocked.clone();
            coroutines::spawn(move || {
                blocked.fetch_add(1, Ordering::Relaxed);
                while !go.load(Ordering::Acquire) {
                    coroutines::park();
                }
            })
        })
        .collect();
    let spawned = t.elapsed();
    while blocked.load(Ordering::Relaxed) < n {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let all_blocked = t.elapsed();
    let rss = rss_bytes().saturating_sub(base);
    go.store(true, Ordering::Release);
    let t2 = Instant::now();
    for h in &handles {
        h.coroutine().unpark();
    }
    for h in handles {
        h.join().unwrap();
    }
    println!("coroutines:        {n}");
    println!(
        "spawn time:        {:.0} ms ({:.0} ns each)",
        spawned.as_secs_f64() * 1e3,
        spawned.as_nanos() as f64 / n as f64
    );
    println!(
        "all blocked after: {:.0} ms",
        all_blocked.as_secs_f64() * 1e3
    );
    println!(
        "memory (RSS):      {:.1} MiB ({} bytes per blocked coroutine)",
        rss as f64 / (1 << 20) as f64,
        rss / n as u64
    );
    println!(
        "wake + join all:   {:.0} ms",
        t2.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "{:?}",
        coroutines::stats()
            .executors
            .iter()
            .map(|e| e.finished)
            .collect::<Vec<_>>()
    );
}
