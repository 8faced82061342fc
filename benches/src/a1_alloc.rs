//! A1 allocation-bound hogs: 4 tasks that allocate and free without pause
//! (a `Vec<u64>` of 64 and 8 short `String`s per iteration, freed at once;
//! about half of the time inside libc's malloc and free) run for 3 s on 2
//! workers, plus 1 probe looping `sleep(1 ms)` as in W4. Figures: probe
//! lateness (as W4) and the hogs' iterations per second in all.
//!
//! A2 libc-bound hogs: the same with 4 tasks copying a 1 MiB buffer into
//! another without pause (`copy_from_slice`: 99 % of the time inside
//! libc's `memcpy`); iterations are copies. What it shows: preemption at
//! the return from libc (hijacked returns) — a signal that lands inside
//! libc is declined.
//!
//! What it shows: a preemption signal that lands in libc must be retried
//! (no safe point there), so allocation-bound coroutines are preempted
//! later than compute-bound ones; and when they are, a coroutine moved to
//! another executor mixes glibc's per-thread arenas. Coroutines and OS
//! threads only (the hogs never yield: a cooperative runtime starves the
//! probe, as W4 shows already).

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hog::{probe_until, wait_flag};
use crate::{report, Params, Runtime};

pub const HOGS: usize = 4;
pub const DURATION: Duration = Duration::from_secs(3);

/// Iterations between two checks of the clock.
const CHUNK: u64 = 1_000;

/// Allocates and frees until `deadline`; returns the iterations done.
fn alloc_hog(deadline: Instant) -> u64 {
    let mut k: u64 = 0;
    loop {
        for _ in 0..CHUNK {
            let v: Vec<u64> = (0..64).map(|i| i * k).collect();
            let s: Vec<String> = v.iter().take(8).map(|x| x.to_string()).collect();
            black_box((&v, &s));
            k += 1;
        }
        if Instant::now() >= deadline {
            return k;
        }
    }
}

/// Copies 1 MiB until `deadline`; returns the copies made.
fn copy_hog(deadline: Instant) -> u64 {
    let src = vec![7u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let mut k: u64 = 0;
    loop {
        for _ in 0..16 {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
            k += 1;
        }
        if Instant::now() >= deadline {
            return k;
        }
    }
}

pub fn run(w: crate::Workload, rt: Runtime, p: &Params) {
    let id = w.id();
    let hog: fn(Instant) -> u64 = if w == crate::Workload::A2 {
        copy_hog
    } else {
        alloc_hog
    };
    let dur = p.duration(DURATION);
    let t0 = Instant::now();
    let deadline = t0 + dur;
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let (lateness, iters): (Vec<f64>, Vec<u64>) = match rt {
        Runtime::Coroutines => {
            let probe = coroutines::spawn(move || probe_until(deadline, &flag, std::thread::sleep));
            wait_flag(&started);
            let hogs: Vec<_> = (0..HOGS)
                .map(|_| coroutines::spawn(move || hog(deadline)))
                .collect();
            let iters = hogs.into_iter().map(|h| h.join().unwrap()).collect();
            (probe.join().unwrap(), iters)
        }
        Runtime::Threads => {
            let probe =
                std::thread::spawn(move || probe_until(deadline, &flag, std::thread::sleep));
            wait_flag(&started);
            let hogs: Vec<_> = (0..HOGS)
                .map(|_| std::thread::spawn(move || hog(deadline)))
                .collect();
            let iters = hogs.into_iter().map(|h| h.join().unwrap()).collect();
            (probe.join().unwrap(), iters)
        }
        _ => unreachable!("A1 and A2 run on coroutines and threads only"),
    };
    let elapsed = t0.elapsed().as_secs_f64();
    let name = rt.name();
    report::emit_lateness(id, name, &lateness, true);
    let total: u64 = iters.iter().sum();
    report::emit(id, name, "iters_per_s", total as f64 / elapsed);
    let f: Vec<f64> = iters.iter().map(|&i| i as f64).collect();
    report::emit(id, name, "jain", report::jain(&f));
    if rt == Runtime::Coroutines {
        let s = coroutines::stats();
        report::note(&format!(
            "preemptions {}, deferred in libc {}, quick retries {}, hijacked returns {} (landed {}), own malloc {}, steals {}",
            s.preempt.preemptions,
            s.preempt.deferred_foreign_code,
            s.preempt.quick_retries,
            s.preempt.return_hijacks,
            s.preempt.return_landings,
            s.own_malloc,
            s.steals
        ));
    }
}
