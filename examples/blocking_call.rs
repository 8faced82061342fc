//! A call nothing can hook: a raw `syscall` instruction (nanosleep) that
//! blocks its executor. The blocked-executor detector starts an extra
//! executor for the waiting coroutines, and retires it after it idled.
//!
//! Run: `cargo run --release --example blocking_call`

use std::time::{Duration, Instant};

/// Sleeps in the kernel without going through libc: no hook sees it.
fn opaque_blocking_call(d: Duration) {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    };
    // SAFETY: nanosleep reads one timespec; rem = null.
    unsafe {
        std::arch::asm!(
            "syscall",
            inout("rax") libc::SYS_nanosleep => _,
            in("rdi") &ts as *const libc::timespec,
            in("rsi") 0usize,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
}

fn main() {
    coroutines::RuntimeBuilder::new()
        .workers(1)
        .blocked_after(Duration::from_millis(20))
        .start()
        .expect("runtime config");
    let t = Instant::now();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = started.clone();
    let blocker = coroutines::spawn(move || {
        s2.store(true, std::sync::atomic::Ordering::SeqCst);
        opaque_blocking_call(Duration::from_secs(1));
    });
    while !started.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // The only executor is stuck for 1 s; these still run.
    let t1 = Instant::now();
    let hs: Vec<_> = (0..10).map(|i| coroutines::spawn(move || i * i)).collect();
    let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let s = coroutines::stats();
    println!(
        "10 coroutines done {:?} after the executor blocked (sum {sum}); workers = {}, blocked_seen = {}, extra_started = {}",
        t1.elapsed(),
        s.workers,
        s.blocked_seen,
        s.extra_started
    );
    blocker.join().unwrap();
    println!("blocking call returned after {:?}", t.elapsed());
    // The extra executor retires after ~1 s without work.
    while coroutines::stats().extra_retired < coroutines::stats().extra_started {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = coroutines::stats();
    println!(
        "after {:?}: workers = {}, extra_started = {}, extra_retired = {}, blocked_time = {:?}",
        t.elapsed(),
        s.workers,
        s.extra_started,
        s.extra_retired,
        s.blocked_time
    );
}
