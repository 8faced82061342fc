//! Preemption stress suite (`cargo test --release`): fairness, register
//! integrity, and the hazards preemption must not create (printing, panics,
//! allocation, thread-local borrows, plain threads). Every test re-runs this
//! binary as a child process with its own `COROUTINES_*` settings (the
//! runtime is global per process) and asserts outcomes, not timings.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD: &str = "COROUTINES_PREEMPT_STRESS_CHILD";

/// Runs test `name` of this binary as a child with `env` (see common).
fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    common::run_named_child(CHILD, name, env)
}

fn is_child(name: &str) -> bool {
    common::is_named_child(CHILD, name)
}

/// Runs test `name` as a child with `env`, asserts that its output holds
/// `marker` (what the child prints when every check passed) and echoes it.
fn expect_child(name: &str, env: &[(&str, &str)], marker: &str) -> String {
    let out = run_child(name, env);
    assert!(out.contains(marker), "{out}");
    print!("{out}");
    out
}

use common::hog;

fn jain(xs: &[f64]) -> f64 {
    let s: f64 = xs.iter().sum();
    let q: f64 = xs.iter().map(|x| x * x).sum();
    s * s / (xs.len() as f64 * q)
}

/// 8 hogs on 2 executors plus a probe sleeping 1 ms in a loop. Returns
/// (Jain index, probe wake-ups, lateness p50 ms, p99 ms).
fn fairness_run(dur: Duration) -> (f64, usize, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<_> = (0..8).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hs: Vec<_> = counts
        .iter()
        .map(|c| {
            let (s, c) = (stop.clone(), c.clone());
            coroutines::spawn(move || hog(s, c))
        })
        .collect();
    let ps = stop.clone();
    let probe = coroutines::spawn(move || {
        let mut late = Vec::new();
        while !ps.load(Ordering::Relaxed) {
            let t = Instant::now();
            coroutines::sleep(Duration::from_millis(1));
            late.push(t.elapsed().as_secs_f64() * 1e3 - 1.0);
        }
        late
    });
    std::thread::sleep(dur);
    let snapshot: Vec<f64> = counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed) as f64)
        .collect();
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let mut late = probe.join().unwrap();
    late.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| {
        if late.is_empty() {
            f64::NAN
        } else {
            late[((late.len() - 1) as f64 * p) as usize]
        }
    };
    (jain(&snapshot), late.len(), pct(0.5), pct(0.99))
}

#[test]
fn fairness() {
    const NAME: &str = "fairness";
    if !is_child(NAME) {
        // Jain's index also measures the OS: under outside load the two
        // executor threads get unequal CPU and the index drops below what
        // the runtime does (Linux's own thread fairness reads 0.92 then),
        // and the probe's executor gets the CPU less often (a probe of 84
        // wake-ups in 2 s was seen with 4x more runnable threads than
        // CPUs). So one of up to 5 attempts must show both the issue's
        // 0.95 and a probe that woke at least 300 times; a broken scheduler
        // reads 0.25-0.5 and under 20 wake-ups every time.
        let mut seen = Vec::new();
        for _ in 0..5 {
            let out = run_child(NAME, &[("COROUTINES_WORKERS", "2")]);
            print!("{out}");
            let field = |name: &str| -> f64 {
                out.split(name)
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse().ok())
                    .expect("child printed its figures")
            };
            let (j, w) = (field("jain="), field("wakeups="));
            seen.push((j, w));
            if j >= 0.95 && w >= 300.0 {
                return;
            }
        }
        panic!("no attempt with Jain >= 0.95 and >= 300 probe wake-ups: {seen:?}");
    }
    let (j, wakeups, p50, p99) = fairness_run(Duration::from_secs(2));
    let s = coroutines::stats();
    println!("RESULT fairness jain={j:.4} wakeups={wakeups} lateness_p50_ms={p50:.3} lateness_p99_ms={p99:.3}");
    println!("{:?}", s.preempt);
}

#[test]
fn fairness_off_starves() {
    const NAME: &str = "fairness_off_starves";
    if !is_child(NAME) {
        // No extra executors: the blocked-executor detector counts a hog
        // that never switches as blocked after 20 ms and, with work waiting,
        // starts executors that then serve the probe too (under load the
        // probe woke 104 times in 1 s that way). Starvation by the hogs
        // alone is the point here.
        let out = run_child(
            NAME,
            &[
                ("COROUTINES_WORKERS", "2"),
                ("COROUTINES_MAX_WORKERS", "2"),
                ("COROUTINES_SLICE", "off"),
            ],
        );
        print!("{out}");
        return;
    }
    let (j, wakeups, _, _) = fairness_run(Duration::from_secs(1));
    println!("RESULT fairness_off jain={j:.4} wakeups={wakeups}");
    assert_eq!(coroutines::stats().preemptions, 0);
    assert!(
        wakeups < 20,
        "with preemption off the probe should starve, woke {wakeups} times"
    );
}

// ---------------------------------------------------------------------------
// Register integrity

/// 12 values in named GPRs plus CF carried across loop iterations (`adc`
/// chain; `lea` and `dec` leave CF alone).
fn gpr_mix(seed: u64, iters: u64) -> [u64; 12] {
    let mut v = [0u64; 12];
    for (i, x) in v.iter_mut().enumerate() {
        *x = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(i as u32 * 5)
            ^ i as u64;
    }
    let [mut a, mut d, mut si, mut di, mut r8, mut r9, mut r10, mut r11, mut r12, mut r13, mut r14, mut r15] =
        v;
    // SAFETY: pure register arithmetic on the operands.
    unsafe {
        std::arch::asm!(
            "clc",
            "2:",
            "adc rax, rdx", "adc rdx, rsi", "adc rsi, rdi", "adc rdi, r8",
            "adc r8, r9", "adc r9, r10", "adc r10, r11", "adc r11, r12",
            "adc r12, r13", "adc r13, r14", "adc r14, r15", "adc r15, rax",
            "lea rax, [rax + r13*2 + 1]",
            "lea rdx, [rdx + rcx*4 + 3]",
            "dec rcx",
            "jnz 2b",
            inout("rcx") iters => _,
            inout("rax") a, inout("rdx") d, inout("rsi") si, inout("rdi") di,
            inout("r8") r8, inout("r9") r9, inout("r10") r10, inout("r11") r11,
            inout("r12") r12, inout("r13") r13, inout("r14") r14, inout("r15") r15,
            options(nomem, nostack),
        );
    }
    [a, d, si, di, r8, r9, r10, r11, r12, r13, r14, r15]
}

/// Live values in xmm, ymm and (with AVX-512) zmm registers.
#[target_feature(enable = "avx2")]
unsafe fn vec_mix_avx2(seed: u64, iters: u64) -> u64 {
    use std::arch::x86_64::*;
    let s = seed as i64;
    let mut y: [__m256i; 6] = [_mm256_set1_epi64x(s); 6];
    let mut x: [__m128i; 6] = [_mm_set1_epi64x(s ^ 0x55); 6];
    for (i, v) in y.iter_mut().enumerate() {
        *v = _mm256_add_epi64(*v, _mm256_set_epi64x(i as i64, 3, 5, 7));
    }
    for (i, v) in x.iter_mut().enumerate() {
        *v = _mm_add_epi64(*v, _mm_set_epi64x(i as i64, 11));
    }
    for _ in 0..iters {
        for i in 0..6 {
            y[i] = _mm256_add_epi64(
                _mm256_xor_si256(y[i], _mm256_slli_epi64(y[(i + 1) % 6], 13)),
                _mm256_srli_epi64(y[(i + 5) % 6], 7),
            );
            x[i] = _mm_add_epi64(
                _mm_xor_si128(x[i], _mm_slli_epi64(x[(i + 1) % 6], 17)),
                _mm_srli_epi64(x[(i + 2) % 6], 3),
            );
        }
    }
    let mut out = [0u64; 4];
    let mut acc = _mm256_setzero_si256();
    for v in y {
        acc = _mm256_xor_si256(acc, v);
    }
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc);
    let mut o2 = [0u64; 2];
    let mut a2 = _mm_setzero_si128();
    for v in x {
        a2 = _mm_xor_si128(a2, v);
    }
    _mm_storeu_si128(o2.as_mut_ptr() as *mut __m128i, a2);
    out.iter()
        .chain(o2.iter())
        .fold(0, |h, &w| h.rotate_left(9) ^ w)
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::incompatible_msrv)] // test only: AVX-512 intrinsics are stable since 1.89; the library itself keeps 1.85
unsafe fn vec_mix_avx512(seed: u64, iters: u64) -> u64 {
    use std::arch::x86_64::*;
    let mut z: [__m512i; 12] = [_mm512_set1_epi64(seed as i64); 12];
    for (i, v) in z.iter_mut().enumerate() {
        *v = _mm512_add_epi64(*v, _mm512_set_epi64(i as i64, 1, 2, 3, 4, 5, 6, 7));
    }
    for _ in 0..iters {
        for i in 0..12 {
            z[i] = _mm512_add_epi64(
                _mm512_xor_si512(z[i], _mm512_rol_epi64(z[(i + 1) % 12], 13)),
                _mm512_srli_epi64(z[(i + 7) % 12], 5),
            );
        }
    }
    let mut acc = _mm512_setzero_si512();
    for v in z {
        acc = _mm512_xor_si512(acc, v);
    }
    let mut out = [0u64; 8];
    _mm512_storeu_si512(out.as_mut_ptr() as *mut _, acc);
    out.iter().fold(0, |h, &w| h.rotate_left(9) ^ w)
}

/// f64 arithmetic whose result depends on the MXCSR rounding mode.
fn rounding_mix(mode: u32, iters: u64) -> u64 {
    let mut csr = 0u32;
    // SAFETY: stmxcsr/ldmxcsr on a local; only the rounding bits change.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr);
        let new = (csr & !0x6000) | (mode << 13);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &new);
    }
    let mut s = 0.0f64;
    for i in 1..=iters {
        s += std::hint::black_box(1.0 / i as f64);
    }
    let mut after = 0u32;
    // SAFETY: as above; restore the caller's MXCSR.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut after);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr);
    }
    assert_eq!(after & 0x6000, mode << 13, "rounding mode changed under us");
    s.to_bits()
}

fn integrity_job(k: u64) -> Vec<u64> {
    let seed = std::hint::black_box(k * 7919 + 1);
    let mut out = gpr_mix(seed, 30_000_000).to_vec();
    // SAFETY: feature checked at run time.
    out.push(unsafe { vec_mix_avx2(seed, 1_500_000) });
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: feature checked.
        out.push(unsafe { vec_mix_avx512(seed, 600_000) });
    }
    out.push(rounding_mix((k % 4) as u32, 15_000_000));
    out
}

#[test]
fn register_integrity() {
    const NAME: &str = "register_integrity";
    if !is_child(NAME) {
        let out = run_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        );
        print!("{out}");
        return;
    }
    const N: u64 = 8;
    // Reference: plain threads, never preempted by us.
    let expected: Vec<Vec<u64>> = (0..N)
        .map(|k| std::thread::spawn(move || integrity_job(k)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let t = Instant::now();
    // Rounds until preempted often enough to mean something (a heavily
    // loaded machine gives the executors little CPU), at most 20; every
    // round must match the reference.
    for _round in 0..20 {
        let hs: Vec<_> = (0..N)
            .map(|k| coroutines::spawn(move || integrity_job(k)))
            .collect();
        let got: Vec<Vec<u64>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, expected, "results differ from the unpreempted run");
        if coroutines::stats().preempt.preemptions >= 100 {
            break;
        }
    }
    let s = coroutines::stats();
    println!(
        "integrity: {:?} under preemption; {:?}",
        t.elapsed(),
        s.preempt
    );
    assert!(
        s.preempt.preemptions >= 100,
        "too few preemptions to mean anything: {}",
        s.preempt.preemptions
    );
    println!("avx512: {}", std::arch::is_x86_feature_detected!("avx512f"));
}

// ---------------------------------------------------------------------------
// Hazards, each under 100 µs slices

/// Background hogs so that executors are always contended.
fn with_hogs<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let s = stop.clone();
            coroutines::spawn(move || hog(s, Arc::new(AtomicU64::new(0))))
        })
        .collect();
    let r = f();
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    r
}

const PRINTERS: usize = 32;
const LINES: usize = 300;

#[test]
fn println_no_torn_lines() {
    const NAME: &str = "println_no_torn_lines";
    if !is_child(NAME) {
        let out = run_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        );
        let mut seen = vec![0usize; PRINTERS];
        // libtest prints "test <name> ... " without a newline first.
        let lines = out.lines().map(|l| match l.find(" ... co ") {
            Some(i) if l.starts_with("test ") => &l[i + 5..],
            _ => l,
        });
        for line in lines.filter(|l| l.starts_with("co ")) {
            // "co NN line NNNN <payload> end"
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 6, "torn or interleaved line: {line:?}");
            let co: usize = parts[1]
                .parse()
                .unwrap_or_else(|_| panic!("bad line {line:?}"));
            let n: usize = parts[3]
                .parse()
                .unwrap_or_else(|_| panic!("bad line {line:?}"));
            assert_eq!(parts[4], payload(co, n), "torn line: {line:?}");
            assert_eq!(parts[5], "end", "torn line: {line:?}");
            seen[co] += 1;
        }
        assert!(seen.iter().all(|&n| n == LINES), "missing lines: {seen:?}");
        print!(
            "{}",
            out.lines()
                .filter(|l| !l.starts_with("co "))
                .collect::<Vec<_>>()
                .join("\n")
        );
        println!();
        return;
    }
    with_hogs(2, || {
        let hs: Vec<_> = (0..PRINTERS)
            .map(|co| {
                coroutines::spawn(move || {
                    for n in 0..LINES {
                        println!("co {co:02} line {n:04} {} end", payload(co, n));
                        // Some computation between lines, so preemption
                        // lands both inside and outside println.
                        let mut x = n as u64;
                        for _ in 0..2000 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let s = coroutines::stats();
    eprintln!("println: {:?}", s.preempt);
    println!(
        "stats preemptions={} deferred_zone={} deferred_foreign={}",
        s.preempt.preemptions, s.preempt.deferred_zone, s.preempt.deferred_foreign_code
    );
    assert!(s.preempt.preemptions > 0);
}

fn payload(co: usize, n: usize) -> String {
    let c = (b'a' + (co % 26) as u8) as char;
    std::iter::repeat_n(c, 40 + (n % 40)).collect()
}

#[test]
fn panics_caught() {
    const NAME: &str = "panics_caught";
    if !is_child(NAME) {
        run_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        );
        return;
    }
    std::panic::set_hook(Box::new(|_| {}));
    let caught = Arc::new(AtomicU64::new(0));
    with_hogs(2, || {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let caught = caught.clone();
                coroutines::spawn(move || {
                    for j in 0..200u64 {
                        let r = std::panic::catch_unwind(|| {
                            let v: Vec<u64> = (0..(j % 50 + i)).collect();
                            if v.len() < 1000 {
                                panic!("boom {i} {j} {}", v.len());
                            }
                        });
                        if r.is_err() {
                            caught.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // One uncaught panic per coroutine, reported by join.
                    if i % 2 == 0 {
                        panic!("uncaught {i}");
                    }
                })
            })
            .collect();
        let errs = hs
            .into_iter()
            .map(|h| h.join())
            .filter(|r| r.is_err())
            .count();
        assert_eq!(errs, 8);
    });
    let _ = std::panic::take_hook();
    assert_eq!(caught.load(Ordering::Relaxed), 16 * 200);
    assert!(coroutines::stats().preempt.preemptions > 0);
}

/// A live allocation of `allocation_churn`: its tag and three heap blocks
/// whose contents derive from it.
type Live = (u64, Vec<u64>, String, Box<[u8; 64]>);

#[test]
fn allocation_churn() {
    const NAME: &str = "allocation_churn";
    if !is_child(NAME) {
        run_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        );
        return;
    }
    let hs: Vec<_> = (0..16u64)
        .map(|k| {
            coroutines::spawn(move || {
                let mut rng = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut live: Vec<Live> = Vec::new();
                let t = Instant::now();
                let mut checked = 0u64;
                while t.elapsed() < Duration::from_millis(1500) {
                    let tag = next();
                    let n = (tag % 2000) as usize;
                    live.push((
                        tag,
                        vec![tag; n],
                        format!("{tag:x}-{n}"),
                        Box::new([tag as u8; 64]),
                    ));
                    if live.len() > 64 || next() % 3 == 0 {
                        let i = (next() as usize) % live.len();
                        let (tag, v, s, b) = live.swap_remove(i);
                        assert!(v.iter().all(|&x| x == tag), "Vec corrupted");
                        assert_eq!(s, format!("{tag:x}-{}", v.len()), "String corrupted");
                        assert!(b.iter().all(|&x| x == tag as u8), "Box corrupted");
                        checked += 1;
                    }
                }
                checked
            })
        })
        .collect();
    let checked: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let s = coroutines::stats();
    println!("allocation churn: {checked} checked; {:?}", s.preempt);
    assert!(checked > 1000);
    assert!(s.preempt.preemptions > 0);
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[test]
fn thread_local_borrow_across_preemption() {
    thread_local_borrow("thread_local_borrow_across_preemption", "coroutine");
}

#[test]
fn thread_local_borrow_across_preemption_shared_tls() {
    thread_local_borrow("thread_local_borrow_across_preemption_shared_tls", "shared");
}

/// A coroutine holds a `RefCell` borrow of a thread-local while it is
/// preempted. With per-coroutine thread-locals a sibling borrows its own
/// value meanwhile; with shared ones it runs into the borrow and fails
/// cleanly (a panic it catches), never into undefined behaviour.
fn thread_local_borrow(name: &str, tls: &str) {
    if !is_child(name) {
        let out = run_child(
            name,
            &[
                ("COROUTINES_WORKERS", "1"),
                ("COROUTINES_SLICE", "100us"),
                ("COROUTINES_THREAD_LOCALS", tls),
            ],
        );
        print!("{out}");
        return;
    }
    std::panic::set_hook(Box::new(|_| {}));
    let holding = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let conflicted = Arc::new(AtomicBool::new(false));
    let (h2, d2, c2) = (holding.clone(), done.clone(), conflicted.clone());
    let holder = coroutines::spawn(move || {
        SCRATCH.with(|s| {
            let mut g = s.borrow_mut();
            h2.store(true, Ordering::Relaxed);
            let t = Instant::now();
            // At least 100 ms, and until the contender borrowed once while
            // we hold ours (a heavily loaded machine may delay the first
            // preemption), at most 10 s.
            while t.elapsed() < Duration::from_millis(100)
                || (!c2.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(10))
            {
                g.push(1);
                g.pop();
            }
        });
        d2.store(true, Ordering::Relaxed);
    });
    let (h3, d3, c3) = (holding.clone(), done.clone(), conflicted.clone());
    let contender = coroutines::spawn(move || {
        let mut conflicts = 0u64;
        let mut ok = 0u64;
        while !d3.load(Ordering::Relaxed) {
            if !h3.load(Ordering::Relaxed) {
                continue;
            }
            // A sibling holds the borrow: borrowing must fail cleanly.
            match std::panic::catch_unwind(|| SCRATCH.with(|s| s.borrow_mut().len())) {
                Ok(_) => ok += 1,
                Err(_) => conflicts += 1,
            }
            if !d3.load(Ordering::Relaxed) {
                c3.store(true, Ordering::Relaxed); // ran while the holder held
            }
        }
        (conflicts, ok)
    });
    holder.join().unwrap();
    let (conflicts, ok) = contender.join().unwrap();
    let _ = std::panic::take_hook();
    println!("thread_local: {conflicts} clean borrow panics, {ok} clean borrows");
    if coroutines::ThreadLocals::per_coroutine_active() {
        assert_eq!(tls, "coroutine");
        assert_eq!(conflicts, 0, "a sibling saw another coroutine's borrow");
        assert!(
            ok > 0,
            "the contender never ran while the holder was preempted"
        );
    } else {
        assert_eq!(tls, "shared");
        // It runs into the holder's borrow (a clean panic) or, once the
        // preempted holder got a TLS alias window of its own (alias.rs),
        // borrows the executor's value cleanly; which one depends on when
        // the first preemption lands (seen both ways under load).
        assert!(
            conflicts + ok > 0,
            "the contender never ran while the holder was preempted"
        );
    }
}

#[test]
fn plain_threads_see_no_eintr() {
    const NAME: &str = "plain_threads_see_no_eintr";
    if !is_child(NAME) {
        run_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        );
        return;
    }
    with_hogs(6, || {
        // Rounds until the hogs were preempted often enough to matter (a
        // heavily loaded machine gives the executors little CPU), at most 20.
        for _round in 0..20 {
            plain_thread_io_round();
            if coroutines::stats().preempt.preemptions > 100 {
                break;
            }
        }
    });
    assert!(coroutines::stats().preempt.preemptions > 100);
}

/// One round of `plain_threads_see_no_eintr`: plain threads sleep and
/// block on a pipe while executors are being preempted.
fn plain_thread_io_round() {
    {
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let e1 = errors.clone();
        let sleeper = std::thread::spawn(move || {
            for _ in 0..300 {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                if t.elapsed() < Duration::from_millis(1) {
                    e1.lock().unwrap().push("sleep returned early".into());
                }
            }
        });
        let mut fds = [0; 2];
        // SAFETY: pipe into a local array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (rfd, wfd) = (fds[0], fds[1]);
        let writer = std::thread::spawn(move || {
            for i in 0..300u32 {
                std::thread::sleep(Duration::from_millis(1));
                // SAFETY: 4 bytes from a local to our pipe.
                let n = unsafe { libc::write(wfd, &i as *const u32 as *const libc::c_void, 4) };
                assert_eq!(n, 4);
            }
        });
        let e2 = errors.clone();
        let reader = std::thread::spawn(move || {
            for i in 0..300u32 {
                let mut v = 0u32;
                // SAFETY: 4 bytes into a local (a pipe write of 4 bytes is atomic).
                let n = unsafe { libc::read(rfd, &mut v as *mut u32 as *mut libc::c_void, 4) };
                if n != 4 {
                    e2.lock()
                        .unwrap()
                        .push(format!("read: {n} {}", std::io::Error::last_os_error()));
                } else if v != i {
                    e2.lock().unwrap().push(format!("read {v}, expected {i}"));
                }
            }
        });
        sleeper.join().unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
        let errors = errors.lock().unwrap();
        assert!(errors.is_empty(), "{errors:?}");
    }
}

/// Recurses `depth` frames of ~1 KiB each, then spins until `stop`.
/// Returns (address of a local at the deepest frame, a value).
#[inline(never)]
fn deep_then_spin(depth: usize, stop: &AtomicBool) -> (usize, u64) {
    let mut pad = [0u8; 1000];
    pad[depth % 1000] = depth as u8;
    let r = if depth == 0 {
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        (std::hint::black_box(&pad) as *const _ as usize, x)
    } else {
        deep_then_spin(depth - 1, stop)
    };
    std::hint::black_box(&pad);
    (r.0, r.1.wrapping_add(pad[depth % 1000] as u64))
}

#[test]
fn nearly_full_stack_defers() {
    const NAME: &str = "nearly_full_stack_defers";
    if !is_child(NAME) {
        print!(
            "{}",
            run_child(
                NAME,
                &[("COROUTINES_WORKERS", "1"), ("COROUTINES_SLICE", "100us")]
            )
        );
        return;
    }
    const STACK: usize = 64 * 1024;
    // Calibrate: bytes per frame and the entry overhead.
    let done = Arc::new(AtomicBool::new(true));
    let d2 = done.clone();
    let (top, b10, b20) = coroutines::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let top = &d2 as *const _ as usize;
            (top, deep_then_spin(10, &d2).0, deep_then_spin(20, &d2).0)
        })
        .unwrap()
        .join()
        .unwrap();
    let per_frame = (b10 - b20) / 10;
    let overhead = (top - b10) - 10 * per_frame;
    // Coroutines whose deepest frame leaves about `free` bytes of stack:
    // below the ~2.9 KiB save area + margin the handler must defer
    // (reason "stack"), and it must never overflow the stack itself.
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    // (The estimate of what is left ignores the frames above `top`, about
    // 1.2 KiB, and the save area's size depends on which register state
    // is in use: 2000 alone sometimes still fitted, so 1000 is there too.)
    for free in [40_000usize, 6000, 4500, 3000, 2000, 1000] {
        let depth = (STACK - free - overhead - 512) / per_frame;
        let s = stop.clone();
        hs.push(
            coroutines::Builder::new()
                .stack_size(STACK)
                .spawn(move || {
                    let top = &s as *const _ as usize;
                    let (bottom, _) = deep_then_spin(depth, &s);
                    (free, STACK - (top - bottom))
                })
                .unwrap(),
        );
    }
    // At least 300 ms, and until a preemption attempt was deferred for
    // lack of stack (a loaded machine gives the one executor little CPU:
    // once, 300 ms saw 425 preemptions and no attempt at the deepest
    // coroutine), at most 10 s.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300)
        || (coroutines::stats().preempt.deferred_stack == 0
            && t.elapsed() < Duration::from_secs(10))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let (free, left) = h.join().unwrap();
        println!("asked {free} B free, about {left} B left");
    }
    let s = coroutines::stats().preempt;
    println!(
        "nearly full stacks ({per_frame} B/frame): {} preemptions, {} stack deferrals",
        s.preemptions, s.deferred_stack
    );
    assert!(s.preemptions > 0);
    assert!(
        s.deferred_stack > 0,
        "no coroutine came close enough to its stack limit"
    );
}

#[test]
fn migration_with_preemption() {
    const NAME: &str = "migration_with_preemption";
    if !is_child(NAME) {
        print!(
            "{}",
            run_child(
                NAME,
                &[
                    ("COROUTINES_WORKERS", "2"),
                    ("COROUTINES_SLICE", "100us"),
                    ("COROUTINES_MIGRATE", "1")
                ]
            )
        );
        return;
    }
    // Preempted coroutines may resume on another executor: the full
    // restore must not depend on the thread.
    let hs: Vec<_> = (0..6u64)
        .map(|k| coroutines::spawn(move || integrity_job(k)))
        .collect();
    let got: Vec<Vec<u64>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let expected: Vec<Vec<u64>> = (0..6u64).map(integrity_job).collect();
    assert_eq!(got, expected);
    let s = coroutines::stats();
    println!(
        "migration: {} preemptions, {} steals",
        s.preempt.preemptions, s.steals
    );
    // Bit-identical results above are the point; a few preemptions prove
    // the restore path ran (how many depends on the machine's load).
    assert!(s.preempt.preemptions > 10, "{:?}", s.preempt);
}

/// Work conservation: 8 CPU-bound coroutines spawned at once from a plain
/// thread run on both executors. A producer skips its wake-up while an
/// executor searches for work; that searcher must pass the search on
/// when it finds some, and a preempted coroutine pushed to the global
/// queue must wake a sleeper. Without either, one executor slept through
/// whole rounds (W6: 6 of 16 runs used one executor of two; this test
/// then saw 4 or 5 such rounds of 20 in each of 3 runs; 0 with the fix).
#[test]
fn spawned_hogs_use_every_executor() {
    const NAME: &str = "spawned_hogs_use_every_executor";
    if !is_child(NAME) {
        print!("{}", run_child(NAME, &[("COROUTINES_WORKERS", "2")]));
        return;
    }
    const ROUNDS: usize = 20;
    let mut one_thread = 0;
    for _ in 0..ROUNDS {
        let deadline = Instant::now() + Duration::from_millis(40);
        let hs: Vec<_> = (0..8)
            .map(|_| {
                coroutines::spawn(move || {
                    let mut tids = vec![gettid()];
                    let mut x = 1u64;
                    while Instant::now() < deadline {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        }
                        let t = gettid();
                        if !tids.contains(&t) {
                            tids.push(t);
                        }
                    }
                    tids
                })
            })
            .collect();
        let mut seen: Vec<i64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() < 2 {
            one_thread += 1;
        }
    }
    println!("rounds on one executor only: {one_thread} of {ROUNDS}");
    // Generous: a loaded machine may keep one executor thread off the CPU
    // for a whole 40 ms round now and then.
    assert!(
        one_thread <= 2,
        "{one_thread} of {ROUNDS} rounds ran on one executor"
    );
}

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// A coroutine parked on a socket wakes when the socket turns readable
/// even while every executor runs a CPU hog that never yields: a lone hog
/// per executor is not preempted (nothing waits for it) and no executor
/// sits in epoll, so the monitor polls fd readiness itself. Before, the
/// reader woke only when the hogs ended (here after 10 s).
#[test]
fn socket_wakes_while_every_executor_runs_a_hog() {
    const NAME: &str = "socket_wakes_while_every_executor_runs_a_hog";
    if !is_child(NAME) {
        let out = run_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_MAX_WORKERS", "2")],
        );
        assert!(out.contains("READER_WOKE"), "{out}");
        return;
    }
    use std::io::{Read, Write};
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let reader = coroutines::spawn(move || {
        let mut byte = [0u8; 1];
        b.read_exact(&mut byte).unwrap();
        Instant::now()
    });
    // Let it park on the socket first.
    std::thread::sleep(Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            coroutines::spawn(move || hog(stop, count))
        })
        .collect();
    // Safety net: the hogs end after 10 s whatever happens.
    let s = stop.clone();
    let net = std::thread::spawn(move || {
        let t = Instant::now();
        while !s.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        s.store(true, Ordering::Relaxed);
    });
    while count.load(Ordering::Relaxed) < 100 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    let wrote = Instant::now();
    a.write_all(b"!").unwrap();
    let woke = reader.join().unwrap();
    let hogs_still_running = !stop.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    net.join().unwrap();
    let late = woke.saturating_duration_since(wrote);
    assert!(
        hogs_still_running && late < Duration::from_secs(5),
        "the reader woke {late:?} after the write (hogs still running: {hogs_still_running})"
    );
    println!("READER_WOKE after {late:?}");
}

/// Coroutines that spend their time in hooked calls that never wait (a
/// write and a read on a socket pair that is always ready) are preempted
/// when they leave a hook: 4 of them on 2 executors beside a probe
/// sleeping 1 ms 200 times. The monitor sends no signal while the level is
/// raised (hook code), and almost never found them at level 0: the probe
/// was up to 0.1-0.3 s late (p99 128-161 ms measured); now a preemption
/// due in a hook is taken at its exit (`safe_point_yields`).
#[test]
fn busy_in_hooks_coroutines_are_preempted_at_hook_exit() {
    const NAME: &str = "busy_in_hooks_coroutines_are_preempted_at_hook_exit";
    if !is_child(NAME) {
        // Without the spare executor: the probe must wake through the busy
        // coroutines' preemption.
        let out = run_child(
            NAME,
            &[
                ("COROUTINES_WORKERS", "2"),
                ("COROUTINES_MAX_WORKERS", "2"),
                ("COROUTINES_SPARE_EXECUTOR", "0"),
            ],
        );
        assert!(out.contains("PROBE_OK"), "{out}");
        return;
    }
    use std::io::{Read, Write};
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            coroutines::spawn(move || {
                let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut buf = [0u8; 17];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    a.write_all(&[7u8; 17]).unwrap();
                    b.read_exact(&mut buf).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let probe = coroutines::spawn(|| {
        let mut late: Vec<Duration> = (0..200)
            .map(|_| {
                let t = Instant::now();
                coroutines::sleep(Duration::from_millis(1));
                t.elapsed().saturating_sub(Duration::from_millis(1))
            })
            .collect();
        late.sort();
        late
    });
    let late = probe.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let rounds: u64 = busy.into_iter().map(|h| h.join().unwrap()).sum();
    let s = coroutines::stats();
    let p99 = late[197];
    println!(
        "probe p50 {:?} p99 {p99:?} max {:?}; {rounds} socket rounds; {} safe-point yields",
        late[100], late[199], s.preempt.safe_point_yields
    );
    assert!(rounds > 1000, "{rounds}");
    assert!(s.preempt.safe_point_yields > 0, "{s:?}");
    assert!(
        p99 < Duration::from_millis(60),
        "probe p99 lateness {p99:?}"
    );
    println!("PROBE_OK");
}

/// Preemption at returns from libc must not disturb what reads return
/// addresses: 8 coroutines on 2 executors under a 100 µs slice spend most
/// of their time in `memcpy` (so returns from libc are hijacked all the
/// time) and in between capture backtraces, panic and catch the panic,
/// and sort with a libc callback (`qsort`). Every backtrace still names
/// this test's function, every panic is caught, every sort is right, and
/// returns were hijacked.
#[test]
fn hijacked_returns_with_backtraces_panics_and_callbacks() {
    const NAME: &str = "hijacked_returns_with_backtraces_panics_and_callbacks";
    if !is_child(NAME) {
        print!(
            "{}",
            run_child(
                NAME,
                &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
            )
        );
        return;
    }
    std::panic::set_hook(Box::new(|_| {}));
    extern "C" fn cmp(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
        // SAFETY: qsort passes pointers to two elements of our u64 array.
        let (a, b) = unsafe { (*(a as *const u64), *(b as *const u64)) };
        a.cmp(&b) as libc::c_int
    }
    let hs: Vec<_> = (0..8u64)
        .map(|i| {
            coroutines::spawn(move || {
                let src = vec![i as u8; 256 << 10];
                let mut dst = vec![0u8; 256 << 10];
                let (mut traces, mut caught, mut sorts) = (0u32, 0u32, 0u32);
                for k in 0..300u64 {
                    for _ in 0..8 {
                        dst.copy_from_slice(std::hint::black_box(&src));
                    }
                    assert!(dst.iter().all(|&b| b == i as u8));
                    match k % 3 {
                        0 => {
                            let bt = std::backtrace::Backtrace::force_capture().to_string();
                            assert!(
                                bt.contains("hijacked_returns_with_backtraces"),
                                "a truncated backtrace:\n{bt}"
                            );
                            traces += 1;
                        }
                        1 => {
                            let r = std::panic::catch_unwind(|| {
                                let v: Vec<u64> = (0..k).collect();
                                if v.len() < 1000 {
                                    panic!("boom {i} {k}");
                                }
                            });
                            assert!(r.is_err());
                            caught += 1;
                        }
                        _ => {
                            let mut v: Vec<u64> = (0..2000u64)
                                .map(|x| x.wrapping_mul(2654435761) % 997)
                                .collect();
                            // SAFETY: a valid array of u64 and a comparator
                            // for u64 elements.
                            unsafe {
                                libc::qsort(v.as_mut_ptr().cast(), v.len(), 8, Some(cmp));
                            }
                            assert!(v.windows(2).all(|w| w[0] <= w[1]));
                            sorts += 1;
                        }
                    }
                }
                (traces, caught, sorts)
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), (100, 100, 100));
    }
    let s = coroutines::stats().preempt;
    println!("{s:?}");
    assert!(s.return_hijacks > 0, "no return was hijacked: {s:?}");
}

/// `setjmp` saves its own return address for the second return that
/// `longjmp` makes; a preemption hijacking that return before `setjmp`
/// read it would send the `longjmp` to the trampoline with nothing saved.
/// The same loop as a standalone program (4 coroutines, 3 s) died with
/// "a hijacked return without its saved address" in 3 of 3 runs before
/// `setjmp` was excluded from hijacking, and in none of 3 after; in this
/// test binary it did not reproduce (5 runs), so this test guards the
/// round trips under hijacked returns rather than proving the fix.
/// 4 coroutines doing nothing but `_setjmp`/`longjmp` round trips (FFI
/// glue of C libraries that report errors this way) under a 100 µs slice
/// on 2 executors.
#[test]
fn setjmp_longjmp_under_hijacked_returns() {
    const NAME: &str = "setjmp_longjmp_under_hijacked_returns";
    if !is_child(NAME) {
        print!(
            "{}",
            run_child(
                NAME,
                &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
            )
        );
        return;
    }
    #[repr(C, align(16))]
    struct JmpBuf([u64; 32]);
    extern "C" {
        fn _setjmp(env: *mut JmpBuf) -> libc::c_int;
        fn longjmp(env: *mut JmpBuf, val: libc::c_int) -> !;
    }
    /// One round trip: returns 1 (the value `longjmp` passed). Nothing but
    /// `buf` is live across the two returns of `_setjmp`.
    #[inline(never)]
    fn round_trip(buf: *mut JmpBuf) -> u64 {
        // SAFETY: `buf` is a live jmp_buf-sized buffer; the frame that
        // called `_setjmp` is still live when `longjmp` jumps back to it.
        let r = unsafe { _setjmp(buf) };
        if r == 0 {
            // SAFETY: as above.
            unsafe { longjmp(buf, 1) }
        }
        r as u64
    }
    let hs: Vec<_> = (0..4)
        .map(|_| {
            coroutines::spawn(|| {
                let mut buf = Box::new(JmpBuf([0; 32]));
                let mut n = 0u64;
                let end = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < end {
                    for _ in 0..1000 {
                        n += std::hint::black_box(round_trip(&mut *buf));
                    }
                }
                n
            })
        })
        .collect();
    let n: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let s = coroutines::stats().preempt;
    println!("{n} round trips; {s:?}");
    assert!(n > 0 && n % 1000 == 0, "{n}");
    assert!(s.return_hijacks > 0, "{s:?}");
}

/// The spare executor (sched/spare.rs): while both executors are inside
/// a C function that computes for a long time (in a shared library, where
/// no signal preempts and the return comes only when it is done), a
/// coroutine sleeping 1 ms in a loop keeps waking: the spare executor
/// sleeps until its timer and runs it. Without the spare executor
/// (`COROUTINES_SPARE_EXECUTOR=0`, the second child) the sleeper waits for
/// a C call to return: it did not wake once in that window. The library is
/// built with `cc` (the test says so and passes if there is none).
#[test]
fn sleeper_wakes_while_every_executor_is_inside_c_code() {
    const NAME: &str = "sleeper_wakes_while_every_executor_is_inside_c_code";
    let env = |spare: &'static str| {
        vec![
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_MAX_WORKERS", "2"),
            ("COROUTINES_SPARE_EXECUTOR", spare),
        ]
    };
    if !is_child(NAME) {
        let dir = std::env::temp_dir().join(format!("coroutines-spare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("spin.c");
        let lib = dir.join("libspin.so");
        std::fs::write(
            &src,
            "long spin_until(volatile int *stop) {\n\
             \x20 long n = 0;\n\
             \x20 while (!*stop) n++;\n\
             \x20 return n;\n\
             }\n",
        )
        .unwrap();
        let built = std::process::Command::new("cc")
            .args(["-O1", "-fPIC", "-shared", "-o"])
            .arg(&lib)
            .arg(&src)
            .status();
        if !matches!(built, Ok(s) if s.success()) {
            eprintln!("{NAME}: no C compiler (cc): skipped");
            return;
        }
        let lib = lib.to_str().unwrap();
        let mut on = env("1");
        on.push(("SPIN_LIB", lib));
        let mut off = env("0");
        off.push(("SPIN_LIB", lib));
        let out_on = run_child(NAME, &on);
        let out_off = run_child(NAME, &off);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out_on.contains("SPARE_OK"), "{out_on}");
        assert!(out_off.contains("NO_SPARE_OK"), "{out_off}");
        print!("{out_on}{out_off}");
        return;
    }
    let spare = std::env::var("COROUTINES_SPARE_EXECUTOR").as_deref() == Ok("1");
    let path = std::ffi::CString::new(std::env::var("SPIN_LIB").unwrap()).unwrap();
    // SAFETY: a library of ours without constructors.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!h.is_null(), "dlopen of the spin library failed");
    type Spin = extern "C" fn(*const i32) -> libc::c_long;
    // SAFETY: `spin_until` is ours: `long spin_until(volatile int *)`.
    let spin: Spin = unsafe {
        let p = libc::dlsym(h, c"spin_until".as_ptr());
        assert!(!p.is_null());
        std::mem::transmute::<*mut libc::c_void, Spin>(p)
    };
    static STOP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    static INSIDE: AtomicU64 = AtomicU64::new(0);
    static WAKEUPS: AtomicU64 = AtomicU64::new(0);
    let sleeper = coroutines::spawn(|| {
        while STOP.load(Ordering::Relaxed) == 0 {
            coroutines::sleep(Duration::from_millis(1));
            WAKEUPS.fetch_add(1, Ordering::Relaxed);
        }
    });
    while WAKEUPS.load(Ordering::Relaxed) < 10 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            coroutines::spawn(move || {
                INSIDE.fetch_add(1, Ordering::SeqCst);
                spin(STOP.as_ptr())
            })
        })
        .collect();
    let t = Instant::now();
    while INSIDE.load(Ordering::SeqCst) < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the two spinners never both ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Both executors are in (or about to enter) the C loop; give the
    // sleeper's last wake-up before that time to land.
    std::thread::sleep(Duration::from_millis(100));
    let before = WAKEUPS.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    let during = WAKEUPS.load(Ordering::Relaxed) - before;
    STOP.store(1, Ordering::Relaxed);
    let spun: Vec<_> = spinners.into_iter().map(|h| h.join().unwrap()).collect();
    sleeper.join().unwrap();
    println!("spare={spare}: the sleeper woke {during} times in 1 s while both executors spun in C ({spun:?})");
    if spare {
        assert!(during >= 50, "the sleeper woke only {during} times in 1 s");
        println!("SPARE_OK");
    } else {
        assert!(
            during <= 2,
            "the sleeper woke {during} times with both executors in C"
        );
        println!("NO_SPARE_OK");
    }
}

/// Every path a coroutine can take while it runs on the spare executor,
/// under load: 48 coroutines wake from 1 ms sleeps (the spare executor
/// takes them, since 2 hogs keep both executors busy) and then spawn and
/// join a child, yield, ping a partner over a channel and back, or
/// compute past a time slice (preempted off the spare executor), round
/// after round. Every result is exact, the hogs keep their share, and the
/// spare executor did run coroutines.
#[test]
fn spare_executor_paths_under_busy_executors() {
    const NAME: &str = "spare_executor_paths_under_busy_executors";
    if !is_child(NAME) {
        expect_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "1ms")],
            "SPARE_PATHS_OK",
        );
        return;
    }
    common::watchdog();
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<_> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hogs: Vec<_> = counts
        .iter()
        .map(|c| {
            let (s, c) = (stop.clone(), c.clone());
            coroutines::spawn(move || hog(s, c))
        })
        .collect();
    const ROUNDS: u64 = 40;
    let workers: Vec<_> = (0..48u64)
        .map(|i| {
            coroutines::spawn(move || {
                let (to_echo, echo_in) = std::sync::mpsc::channel::<u64>();
                let (to_me, from_echo) = std::sync::mpsc::channel::<u64>();
                let echo = coroutines::spawn(move || {
                    let mut n = 0;
                    for v in echo_in {
                        to_me.send(v * 2).unwrap();
                        n += 1;
                    }
                    n
                });
                let mut sum = 0u64;
                for r in 0..ROUNDS {
                    coroutines::sleep(Duration::from_millis(1));
                    sum += match (i + r) % 4 {
                        0 => coroutines::spawn(move || i * 1000 + r).join().unwrap(),
                        1 => {
                            coroutines::yield_now();
                            i * 1000 + r
                        }
                        2 => {
                            to_echo.send(i * 1000 + r).unwrap();
                            from_echo.recv().unwrap() / 2
                        }
                        _ => {
                            // About 2 ms of work: past the 1 ms slice.
                            let t = Instant::now();
                            let mut x = 0u64;
                            while t.elapsed() < Duration::from_millis(2) {
                                x = std::hint::black_box(x.wrapping_add(1));
                            }
                            std::hint::black_box(x);
                            i * 1000 + r
                        }
                    };
                }
                drop(to_echo);
                let pings = echo.join().unwrap();
                (sum, pings)
            })
        })
        .collect();
    for (i, w) in workers.into_iter().enumerate() {
        let i = i as u64;
        let (sum, pings) = w.join().unwrap();
        let want: u64 = (0..ROUNDS).map(|r| i * 1000 + r).sum();
        assert_eq!(sum, want, "coroutine {i}");
        let want_pings = (0..ROUNDS).filter(|r| (i + r) % 4 == 2).count();
        assert_eq!(pings, want_pings, "coroutine {i}'s partner");
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    let hogged: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert!(hogged.iter().all(|&n| n > 0), "a hog never ran: {hogged:?}");
    let s = coroutines::stats();
    let spare = s
        .executors
        .iter()
        .find(|e| e.spare)
        .expect("no spare executor in stats");
    println!(
        "spare executor: {} switches, {} preemptions, {} yields; workers {}",
        spare.switches, spare.preemptions, spare.yields, s.workers
    );
    assert!(
        spare.switches > 0,
        "the spare executor never ran a coroutine"
    );
    assert_eq!(s.workers, 2, "the spare executor counts as a worker");
    println!("SPARE_PATHS_OK");
}

/// While an executor is idle the spare executor runs nothing: the idle
/// executor holds the timers' role and runs what they wake. A coroutine
/// sleeping 1 ms 300 times beside an idle executor (almost) never runs
/// on the spare one. (When the spare executor ran whatever its timers woke, 32
/// SQLite writers sleeping in the busy handler ran on 3 threads for 2
/// CPUs: 1.7x slower, bench C1.)
#[test]
fn spare_executor_idles_while_an_executor_is_idle() {
    const NAME: &str = "spare_executor_idles_while_an_executor_is_idle";
    if !is_child(NAME) {
        expect_child(NAME, &[("COROUTINES_WORKERS", "2")], "SPARE_IDLE_OK");
        return;
    }
    let n = coroutines::spawn(|| {
        let mut n = 0;
        for _ in 0..300 {
            coroutines::sleep(Duration::from_millis(1));
            n += 1;
        }
        n
    })
    .join()
    .unwrap();
    assert_eq!(n, 300);
    let s = coroutines::stats();
    let spare = s
        .executors
        .iter()
        .find(|e| e.spare)
        .expect("no spare executor in stats");
    println!(
        "spare executor: {} switches after 300 sleeps beside an idle executor",
        spare.switches
    );
    // Not exactly 0: an executor's "running" mark outlives its coroutine's
    // switch-out by a few instructions, so the spare executor can see every
    // executor busy for an instant (1 of 300 once in a full suite).
    assert!(
        spare.switches <= 5,
        "the spare executor ran coroutines beside an idle executor"
    );
    println!("SPARE_IDLE_OK");
}

/// A coroutine woken on the spare executor while some executor is between
/// two coroutines goes to that executor, and still runs if every executor
/// then stays busy: 4 coroutines yielding in a loop on 2 executors (each
/// yield is a moment between two coroutines), a 100 µs slice, and a
/// sleeper doing 300 1-ms sleeps. Once, in a full suite, such a sleeper
/// was left in the spare executor's own queue, where nobody looked while
/// the executors stayed busy: it never ran again.
#[test]
fn woken_on_the_spare_executor_while_executors_yield() {
    const NAME: &str = "woken_on_the_spare_executor_while_executors_yield";
    if !is_child(NAME) {
        expect_child(
            NAME,
            &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
            "SLEEPER_DONE",
        );
        return;
    }
    common::watchdog();
    let stop = Arc::new(AtomicBool::new(false));
    let yielders: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            coroutines::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..50 {
                        std::hint::black_box(n);
                        n += 1;
                    }
                    coroutines::yield_now();
                }
                n
            })
        })
        .collect();
    let sleeper = coroutines::spawn(|| {
        for _ in 0..300 {
            coroutines::sleep(Duration::from_millis(1));
        }
        300
    });
    assert_eq!(sleeper.join().unwrap(), 300);
    stop.store(true, Ordering::Relaxed);
    let n: u64 = yielders.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(n > 0);
    println!("SLEEPER_DONE");
}
