//! Stress suite for the core runtime (spawn, join, park, yield, stacks).
//! Run by `cargo test --release`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{is_child, run_child, text, Rng};

/// 100,000 spawns, joined from many threads and coroutines at once: every
/// coroutine runs exactly once and its result reaches its joiner.
#[test]
fn stampede_100k_spawns_joined_everywhere() {
    const N: usize = 100_000;
    const JOINERS: usize = 8;
    let runs: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let runs = runs.clone();
            coroutines::spawn(move || {
                runs[i].fetch_add(1, Ordering::Relaxed);
                i as u64 * 3
            })
        })
        .collect();
    // Deal the handles out to plain threads and to coroutines.
    let mut buckets: Vec<Vec<(usize, coroutines::JoinHandle<u64>)>> =
        (0..JOINERS * 2).map(|_| Vec::new()).collect();
    for (i, h) in handles.into_iter().enumerate() {
        buckets[i % (JOINERS * 2)].push((i, h));
    }
    let total = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut coros = Vec::new();
    for (k, bucket) in buckets.into_iter().enumerate() {
        let total = total.clone();
        let work = move || {
            for (i, h) in bucket {
                let v = h.join().expect("coroutine panicked");
                assert_eq!(v, i as u64 * 3);
                total.fetch_add(1, Ordering::Relaxed);
            }
        };
        if k % 2 == 0 {
            threads.push(std::thread::spawn(work));
        } else {
            coros.push(coroutines::spawn(work));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    for c in coros {
        c.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), N as u64);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(
            r.load(Ordering::Relaxed),
            1,
            "coroutine {i} ran a wrong number of times"
        );
    }
}

fn nest(level: u32, counter: Arc<AtomicUsize>) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed);
    if level == 0 {
        return 1;
    }
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let c = counter.clone();
            coroutines::spawn(move || nest(level - 1, c))
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// Nested spawns 4 levels deep (fan-out 4): 4^4 leaves, 341 coroutines.
#[test]
fn nested_spawns_four_levels() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let leaves = coroutines::run(move || nest(4, c));
    assert_eq!(leaves, 256);
    assert_eq!(counter.load(Ordering::Relaxed), 1 + 4 + 16 + 64 + 256);
}

/// Random panics: every panicking coroutine's payload reaches its joiner,
/// every other coroutine completes, and the runtime keeps serving.
#[test]
fn random_panics_are_contained() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let plan: Vec<bool> = (0..2000).map(|_| rng.next() % 5 == 0).collect();
    let handles: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(i, &boom)| {
            coroutines::spawn(move || {
                coroutines::yield_now();
                if boom {
                    std::panic::panic_any(i);
                }
                i
            })
        })
        .collect();
    for (i, (h, &boom)) in handles.into_iter().zip(plan.iter()).enumerate() {
        match h.join() {
            Ok(v) => {
                assert!(!boom, "coroutine {i} should have panicked");
                assert_eq!(v, i);
            }
            Err(p) => {
                assert!(boom, "coroutine {i} panicked unexpectedly");
                assert_eq!(p.downcast_ref::<usize>(), Some(&i));
            }
        }
    }
    assert_eq!(coroutines::spawn(|| 5).join().unwrap(), 5);
}

/// Yield storms: many coroutines yielding many times across executors; the
/// total number of yields is exact.
#[test]
fn yield_storm() {
    const CO: usize = 200;
    const YIELDS: usize = 2_000;
    let count = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..CO)
        .map(|_| {
            let count = count.clone();
            coroutines::spawn(move || {
                for _ in 0..YIELDS {
                    coroutines::yield_now();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(count.load(Ordering::Relaxed), CO * YIELDS);
}

#[inline(never)]
fn recurse(depth: usize, frame_bytes: &mut [u8; 1024]) -> u64 {
    frame_bytes[depth % 1024] = depth as u8;
    let mut local = [0u8; 1024];
    local[0] = frame_bytes[0];
    if depth == 0 {
        return std::hint::black_box(local[0]) as u64;
    }
    recurse(depth - 1, std::hint::black_box(&mut local)) + 1
}

/// Recursion close to (not over) the stack size: 64 KiB stack, ~40 KiB used.
#[test]
fn deep_recursion_within_stack() {
    let h = coroutines::Builder::new()
        .stack_size(64 * 1024)
        .spawn(|| {
            let mut buf = [0u8; 1024];
            recurse(36, &mut buf)
        })
        .unwrap();
    assert_eq!(h.join().unwrap(), 36);
}

/// Overflowing a coroutine stack prints one clear line and aborts.
#[test]
fn stack_overflow_is_reported() {
    if is_child() {
        let h = coroutines::Builder::new()
            .name("deep-diver".into())
            .stack_size(64 * 1024)
            .spawn(|| {
                let mut buf = [0u8; 1024];
                recurse(100_000, &mut buf)
            })
            .unwrap();
        let _ = h.join();
        unreachable!("the overflow must abort the process");
    }
    let out = run_child("stack_overflow_is_reported", &[]);
    let (_, err) = text(&out);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr: {err}");
    assert!(
        err.contains("coroutine 'deep-diver' has overflowed its stack (65536 B)"),
        "stderr: {err}"
    );
    assert!(err.contains("COROUTINES_STACK_SIZE"), "stderr: {err}");
}

/// Runtime start racing from several threads: exactly one runtime, every
/// spawn works.
#[test]
fn runtime_start_race() {
    if is_child() {
        let barrier = Arc::new(Barrier::new(8));
        let ts: Vec<_> = (0..8)
            .map(|i| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    coroutines::spawn(move || i * 10).join().unwrap()
                })
            })
            .collect();
        let sum: i32 = ts.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(sum, 280);
        assert_eq!(coroutines::stats().workers, 3);
        return;
    }
    let out = run_child("runtime_start_race", &[("COROUTINES_WORKERS", "3")]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "child failed:\n{o}\n{e}");
}

/// park/unpark with std semantics: an unpark before park is remembered.
#[test]
fn park_token_semantics() {
    let h = coroutines::spawn(|| {
        let me = coroutines::current();
        me.unpark();
        coroutines::park(); // returns at once: token was available
        coroutines::park_timeout(Duration::from_millis(20)); // times out
        7
    });
    assert_eq!(h.join().unwrap(), 7);

    let waiting = Arc::new(AtomicUsize::new(0));
    let w = waiting.clone();
    let h = coroutines::spawn(move || {
        w.store(1, Ordering::SeqCst);
        while w.load(Ordering::SeqCst) != 2 {
            coroutines::park();
        }
        coroutines::current().id()
    });
    while waiting.load(Ordering::SeqCst) != 1 {
        std::thread::yield_now();
    }
    let id = h.coroutine().id();
    waiting.store(2, Ordering::SeqCst);
    h.coroutine().unpark();
    assert_eq!(h.join().unwrap(), id);
}

/// Join works from a coroutine (parks it) and from a plain thread.
#[test]
fn join_from_coroutine_and_thread() {
    let slow = coroutines::spawn(|| {
        coroutines::sleep(Duration::from_millis(30));
        11
    });
    let via_co = coroutines::spawn(move || slow.join().unwrap() + 1);
    let via_thread = std::thread::spawn(move || via_co.join().unwrap() + 1);
    assert_eq!(via_thread.join().unwrap(), 13);
}

/// Coroutine ids are unique; names and ids are visible through handles.
#[test]
fn ids_and_names() {
    let hs: Vec<_> = (0..100)
        .map(|i| {
            coroutines::Builder::new()
                .name(format!("c{i}"))
                .spawn(coroutines::current)
                .unwrap()
        })
        .collect();
    let mut ids = HashSet::new();
    for (i, h) in hs.into_iter().enumerate() {
        let id = h.coroutine().id();
        let me = h.join().unwrap();
        assert_eq!(me.id(), id);
        assert_eq!(me.name(), Some(format!("c{i}").as_str()));
        assert!(ids.insert(id));
    }
    assert!(coroutines::try_current().is_none());
}

/// A backtrace captured inside a coroutine walks the user's frames and
/// stops cleanly at the entry frame.
#[test]
fn backtrace_inside_coroutine() {
    #[inline(never)]
    fn marker_function_for_backtrace() -> String {
        std::backtrace::Backtrace::force_capture().to_string()
    }
    let bt = coroutines::spawn(marker_function_for_backtrace)
        .join()
        .unwrap();
    assert!(bt.contains("marker_function_for_backtrace"), "{bt}");
}

/// Bad configuration is refused with one clear line naming the variable,
/// the value and the accepted forms.
#[test]
fn bad_env_values_are_refused() {
    if is_child() {
        let err = coroutines::Builder::new().spawn(|| ()).unwrap_err();
        println!("ERR:{err}");
        let caught = std::panic::catch_unwind(|| coroutines::spawn(|| ()));
        assert!(caught.is_err(), "spawn must panic on a bad configuration");
        return;
    }
    for (var, val, needle) in [
        (
            "COROUTINES_WORKERS",
            "banana",
            "COROUTINES_WORKERS=\"banana\" is not valid: expected a whole number",
        ),
        ("COROUTINES_WORKERS", "0", "COROUTINES_WORKERS=\"0\""),
        (
            "COROUTINES_STACK_SIZE",
            "4096",
            "COROUTINES_STACK_SIZE=\"4096\" is not valid: expected a size with a unit",
        ),
        (
            "COROUTINES_SLICE",
            "10",
            "COROUTINES_SLICE=\"10\" is not valid: expected a duration with a unit",
        ),
        ("COROUTINES_MIGRATE", "yes", "COROUTINES_MIGRATE=\"yes\""),
        (
            "COROUTINES_TRACE_BLOCKING",
            "on",
            "COROUTINES_TRACE_BLOCKING=\"on\" is not valid: expected 1, 0, true or false",
        ),
        (
            "COROUTINES_SPREAD_SLEEPS",
            "off",
            "COROUTINES_SPREAD_SLEEPS=\"off\" is not valid: expected 1, 0, true or false",
        ),
        (
            "COROUTINES_SPARE_EXECUTOR",
            "spare",
            "COROUTINES_SPARE_EXECUTOR=\"spare\" is not valid: expected 1, 0, true or false",
        ),
    ] {
        let out = run_child("bad_env_values_are_refused", &[(var, val)]);
        let (o, e) = text(&out);
        assert!(out.status.success(), "{var}={val}: child failed:\n{o}\n{e}");
        assert!(o.contains(needle), "{var}={val}: stdout was:\n{o}");
    }
}

/// `COROUTINES_SPREAD_SLEEPS=0` turns the spreading of sleepers off: 16
/// coroutines sleeping together are all fired at their deadline (none
/// moved); with the default, most of them are moved.
#[test]
fn spread_sleeps_switch() {
    if is_child() {
        let hs: Vec<_> = (0..16)
            .map(|_| coroutines::spawn(|| coroutines::sleep(Duration::from_millis(50))))
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        println!("SPREAD:{}", coroutines::stats().sleeps_spread);
        return;
    }
    let spread = |env: &[(&str, &str)]| {
        let out = run_child("spread_sleeps_switch", env);
        let (o, e) = text(&out);
        assert!(out.status.success(), "child failed:\n{o}\n{e}");
        o.lines()
            .find_map(|l| l.split("SPREAD:").nth(1))
            .unwrap_or_else(|| panic!("no SPREAD line:\n{o}"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(spread(&[("COROUTINES_SPREAD_SLEEPS", "0")]), 0);
    assert!(spread(&[]) >= 8);
}

/// Configuring after the runtime started is an error, not ignored.
#[test]
fn configure_after_start_is_an_error() {
    coroutines::spawn(|| ()).join().unwrap();
    let e = coroutines::RuntimeBuilder::new()
        .workers(2)
        .start()
        .unwrap_err();
    assert_eq!(e, coroutines::ConfigError::AlreadyStarted);
}

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the zeroed struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime))
}

/// An idle runtime sleeps: ~0% CPU.
#[test]
fn idle_runtime_uses_no_cpu() {
    if is_child() {
        // Start the runtime and let it go idle with a parked coroutine.
        let h = coroutines::spawn(coroutines::park);
        coroutines::spawn(|| ()).join().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let before = cpu_time();
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_time() - before;
        println!("IDLE_CPU_US:{} over {:?}", used.as_micros(), t.elapsed());
        h.coroutine().unpark();
        h.join().unwrap();
        return;
    }
    let out = run_child("idle_runtime_uses_no_cpu", &[("COROUTINES_WORKERS", "4")]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    let us: u64 = o
        .split("IDLE_CPU_US:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    // Generous: 5% of one core over the idle second.
    assert!(us < 50_000, "idle runtime used {us} us of CPU in 1 s");
}

/// With the migration opt-in, started coroutines can be stolen; without
/// it, a started coroutine always resumes on the executor it started on.
#[test]
fn started_coroutines_stay_home_unless_migration() {
    // The OS thread (a coroutine's std::thread::current() is its own).
    fn executor_name() -> i32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
    if is_child() {
        let migrate = coroutines::RuntimeBuilder::new()
            .resolve()
            .map(|c| c.migrate)
            .unwrap_or(false);
        let moved = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let moved = moved.clone();
                coroutines::spawn(move || {
                    let home = executor_name();
                    for i in 0..2000u64 {
                        // Uneven work so executors fall out of step.
                        let mut x = i;
                        for _ in 0..(i % 7) * 50 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                        }
                        coroutines::yield_now();
                        if executor_name() != home {
                            moved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        println!("MOVED:{} MIGRATE:{migrate}", moved.load(Ordering::Relaxed));
        return;
    }
    // Pinned: migration off explicitly, or thread-locals shared.
    for env in [
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_MIGRATE", "0")][..],
        &[
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_THREAD_LOCALS", "shared"),
        ][..],
    ] {
        let out = run_child("started_coroutines_stay_home_unless_migration", env);
        let (o, e) = text(&out);
        assert!(out.status.success(), "{o}\n{e}");
        assert!(o.contains("MOVED:0 MIGRATE:false"), "{env:?}: {o}");
    }
    // Migration is the default with per-coroutine thread-locals.
    let out = run_child(
        "started_coroutines_stay_home_unless_migration",
        &[("COROUTINES_WORKERS", "2")],
    );
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    let moved: u64 = o
        .split("MOVED:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        moved > 0,
        "with migration on, some coroutine should have moved: {o}"
    );
}

/// Work spreads: coroutines spawned from one coroutine run on several
/// executors (never-run coroutines are stolen).
#[test]
fn spawned_work_spreads_across_executors() {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let s = seen.clone();
    coroutines::run(move || {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let s = s.clone();
                coroutines::spawn(move || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_millis(5) {
                        std::hint::spin_loop();
                    }
                    s.lock()
                        .unwrap()
                        // SAFETY: gettid has no preconditions.
                        .insert(unsafe { libc::gettid() });
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let workers = coroutines::stats().workers;
    if workers > 1 {
        assert!(
            seen.lock().unwrap().len() > 1,
            "all work stayed on one executor: {:?}",
            seen.lock().unwrap()
        );
    }
}

/// Exhausted address space: a coroutine whose stack cannot be allocated
/// finishes with a clear error at `join`, and the runtime keeps serving.
#[test]
fn stack_exhaustion_is_reported_at_join() {
    if is_child() {
        // 3 GiB of address space: a few 1 GiB stacks fit, 8 cannot.
        let lim = libc::rlimit {
            rlim_cur: 3 << 30,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain setrlimit on this process.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
        let go = Arc::new(AtomicUsize::new(0));
        // What a body that never ran captured is dropped by its joiner
        // (here, this thread), not by an executor thread.
        struct DropWhere(Arc<std::sync::Mutex<Vec<i32>>>);
        impl Drop for DropWhere {
            fn drop(&mut self) {
                // SAFETY: gettid has no preconditions.
                self.0.lock().unwrap().push(unsafe { libc::gettid() });
            }
        }
        let dropped_on = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let go = go.clone();
                let guard = DropWhere(dropped_on.clone());
                coroutines::Builder::new()
                    .name(format!("big-{i}"))
                    .stack_size(1 << 30)
                    .spawn(move || {
                        let _guard = guard;
                        // Stay alive (holding the stack) until all ran or failed.
                        while go.load(Ordering::SeqCst) == 0 {
                            coroutines::sleep(Duration::from_millis(1));
                        }
                        i
                    })
                    .expect("spawn itself does not allocate the stack")
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        go.store(1, Ordering::SeqCst);
        let (mut ok, mut failed) = (0, 0);
        for h in hs {
            match h.join() {
                Ok(_) => ok += 1,
                Err(p) => {
                    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
                    assert!(
                        msg.contains("could not start") && msg.contains("big-"),
                        "{msg}"
                    );
                    assert!(msg.contains("ENOMEM") || msg.contains("memory"), "{msg}");
                    println!("ERR:{msg}");
                    failed += 1;
                }
            }
        }
        println!("OK:{ok} FAILED:{failed}");
        assert!(
            failed > 0,
            "8 stacks of 1 GiB fit in 3 GiB of address space?"
        );
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        let on = dropped_on.lock().unwrap().clone();
        assert_eq!(on.len(), 8, "every captured guard dropped once: {on:?}");
        assert_eq!(
            on.iter().filter(|&&t| t == me).count(),
            failed,
            "the bodies that never ran were dropped by their joiner: {on:?}"
        );
        // Still serving.
        assert_eq!(coroutines::spawn(|| 7).join().unwrap(), 7);
        return;
    }
    let out = run_child(
        "stack_exhaustion_is_reported_at_join",
        &[("COROUTINES_WORKERS", "2")],
    );
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    assert!(o.contains("FAILED:"), "{o}");
}
