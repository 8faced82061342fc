//! CPU-heavy coroutines share the executors fairly, and a latency probe
//! wakes on time among them — without a single `yield_now`.
//!
//! Run: `cargo run --release --example fairness`
//! Compare: `COROUTINES_SLICE=off cargo run --release --example fairness`
//! Knobs: `COROUTINES_WORKERS` (default here: 2), `COROUTINES_SLICE`,
//! `FAIRNESS_HOGS` (8), `FAIRNESS_SECS` (3), `FAIRNESS_PROBE` (1; 0 = none).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var_os("COROUTINES_WORKERS").is_none() {
        coroutines::RuntimeBuilder::new()
            .workers(2)
            .start()
            .expect("runtime");
    }
    let hogs = env_or("FAIRNESS_HOGS", 8) as usize;
    let secs = env_or("FAIRNESS_SECS", 3);
    let with_probe = env_or("FAIRNESS_PROBE", 1) != 0;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<_> = (0..hogs).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hs: Vec<_> = counts
        .iter()
        .map(|c| {
            let (stop, c) = (stop.clone(), c.clone());
            coroutines::spawn(move || {
                // A tight integer loop that never yields; the clock (here: a
                // flag) is looked at only every million iterations.
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1_000_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407),
                        );
                    }
                    c.fetch_add(1, Ordering::Relaxed);
                }
                x
            })
        })
        .collect();
    let probe = with_probe.then(|| {
        let stop = stop.clone();
        coroutines::spawn(move || {
            let mut late = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                coroutines::sleep(Duration::from_millis(1));
                late.push(t.elapsed().as_secs_f64() * 1e3 - 1.0);
            }
            late
        })
    });
    std::thread::sleep(Duration::from_secs(secs));
    let iters: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let total: u64 = iters.iter().sum();
    let slice = std::env::var("COROUTINES_SLICE").unwrap_or_else(|_| "default".into());
    println!(
        "{hogs} hogs, {secs} s, slice {slice}, {} executors",
        coroutines::stats().workers
    );
    println!("{:>4} {:>12} {:>7}", "hog", "Miters", "share");
    for (i, n) in iters.iter().enumerate() {
        println!(
            "{i:>4} {n:>12} {:>6.1}%",
            100.0 * *n as f64 / total.max(1) as f64
        );
    }
    let sum: f64 = iters.iter().map(|&x| x as f64).sum();
    let sq: f64 = iters.iter().map(|&x| (x as f64) * (x as f64)).sum();
    let jain = if sq > 0.0 {
        sum * sum / (hogs as f64 * sq)
    } else {
        0.0
    };
    println!(
        "Jain index {jain:.4}; total {:.1} Miters/s",
        total as f64 / secs as f64
    );
    println!(
        "RESULT fairness iters_per_s={:.1}",
        total as f64 * 1e6 / secs as f64
    );
    println!("RESULT fairness jain={jain:.4}");
    if let Some(p) = probe {
        let mut late = p.join().unwrap();
        late.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |q: f64| {
            if late.is_empty() {
                f64::NAN
            } else {
                late[((late.len() - 1) as f64 * q) as usize]
            }
        };
        println!(
            "probe: {} wake-ups; lateness p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            late.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        println!("RESULT fairness wakeups={}", late.len());
        println!("RESULT fairness lateness_p50_ms={:.3}", pct(0.5));
        println!("RESULT fairness lateness_p99_ms={:.3}", pct(0.99));
        println!("RESULT fairness lateness_max_ms={:.3}", pct(1.0));
    }
    // CPU time of the monitor thread (its cost shows up here, not in the
    // preemption counters).
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == "coroutines-moni" {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                let f: Vec<&str> = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                    + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
                println!("monitor thread CPU: {} ms over {secs} s", ticks * 10);
            }
        }
    }
    let s = coroutines::stats().preempt;
    println!(
        "preemptions {} (signals {}, {} for woken coroutines), deferred {}",
        s.preemptions,
        s.signals,
        s.wakeup_signals,
        s.deferred()
    );
}
