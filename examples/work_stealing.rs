//! Load spreading across executors.
//!
//! One coroutine spawns 64 CPU-bound coroutines; idle executors steal the
//! ones that have not run yet, so the work spreads over every executor.
//! Started coroutines stay on their executor unless migration is opted in
//! (`COROUTINES_MIGRATE=1`, or `unsafe RuntimeBuilder::allow_migration`):
//! run it both ways and compare the `steals` and per-executor counts.
//!
//! Run: `cargo run --release --example work_stealing`
//!      `COROUTINES_MIGRATE=1 cargo run --release --example work_stealing`

use std::time::{Duration, Instant};

fn busy(d: Duration) -> u64 {
    let t = Instant::now();
    let mut x = 0u64;
    while t.elapsed() < d {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

fn main() {
    let t = Instant::now();
    coroutines::run(|| {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                coroutines::spawn(|| {
                    for _ in 0..10 {
                        busy(Duration::from_millis(2));
                        coroutines::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let s = coroutines::stats();
    println!(
        "64 coroutines x 20 ms of CPU in {:.0} ms on {} executors",
        t.elapsed().as_secs_f64() * 1e3,
        s.workers
    );
    println!(
        "migration: {}",
        std::env::var("COROUTINES_MIGRATE").unwrap_or_else(|_| "off".into())
    );
    println!(
        "total: spawned {} finished {} switches {} steals {}",
        s.spawned, s.finished, s.switches, s.steals
    );
    for e in &s.executors {
        println!(
            "  executor {}: finished {:>3}  switches {:>5}  steals {:>3}  yields {:>4}",
            e.index, e.finished, e.switches, e.steals, e.yields
        );
    }
}
