//! The shared body of the allocator examples: allocation-bound work (a
//! `Vec<u64>` of 64 and 8 short `String`s per iteration, freed at once) on
//! 4 coroutines (2 executors by default) or, with `THREADS=1`, 4 OS
//! threads, for 1 s; prints iterations per ms.

use std::time::{Duration, Instant};

fn work(d: Duration) -> u64 {
    let t = Instant::now();
    let mut k = 0u64;
    while t.elapsed() < d {
        for _ in 0..100 {
            let v: Vec<u64> = (0..64).map(|i| i * k).collect();
            let s: Vec<String> = v.iter().take(8).map(|x| x.to_string()).collect();
            std::hint::black_box((&v, &s));
            k += 1;
        }
    }
    k
}

pub fn run(allocator: &str) {
    let d = Duration::from_secs(1);
    let threads = std::env::var_os("THREADS").is_some();
    let total: u64 = if threads {
        let hs: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || work(d)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    } else {
        let hs: Vec<_> = (0..4).map(|_| coroutines::spawn(move || work(d))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    };
    let who = if threads { "threads" } else { "coroutines" };
    println!(
        "{allocator} {who}: {:.0} iterations/ms",
        total as f64 / 1000.0
    );
}
