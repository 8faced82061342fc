//! Blocked-executor detector: executors stuck in a call nothing can hook
//! get help from extra executors, which retire afterwards.
//!
//! Runs in a child process (this binary, one test) with a fixed number of
//! executors, since the runtime is global per process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "COROUTINES_BLOCKED_STRESS_CHILD";

fn in_child(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    common::in_child(CHILD, name, env, Duration::from_secs(60), body)
}

/// Sleeps with a raw `syscall` instruction: no hook can turn it into a
/// park, so the executor running it is blocked. Not inlined: the blocking
/// report test looks for its name.
#[inline(never)]
fn raw_nanosleep(d: Duration) {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    };
    let mut ret: isize = libc::SYS_nanosleep as isize;
    // SAFETY: nanosleep reads one timespec and writes none (rem = null).
    unsafe {
        std::arch::asm!(
            "syscall",
            inout("rax") ret,
            in("rdi") &ts as *const libc::timespec,
            in("rsi") 0usize,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    assert!(
        ret == 0 || ret == -(libc::EINTR as isize),
        "nanosleep: {ret}"
    );
}

fn spin_for(d: Duration) -> u64 {
    let t = Instant::now();
    let mut x = 0u64;
    while t.elapsed() < d {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::hint::black_box(x);
    }
    x
}

#[test]
fn blocked_executors_get_help_then_retire() {
    in_child(
        "blocked_executors_get_help_then_retire",
        &[
            ("COROUTINES_WORKERS", "2"),
            ("COROUTINES_BLOCKED_AFTER", "20ms"),
            ("COROUTINES_MAX_WORKERS", "8"),
        ],
        || {
            let t0 = Instant::now();
            let blocking = Arc::new(AtomicUsize::new(0));
            let blockers: Vec<_> = (0..2)
                .map(|_| {
                    let blocking = blocking.clone();
                    coroutines::spawn(move || {
                        blocking.fetch_add(1, Ordering::SeqCst);
                        raw_nanosleep(Duration::from_secs(2));
                    })
                })
                .collect();
            while blocking.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
            // Both executors are now stuck in the kernel.
            let t1 = Instant::now();
            let workers: Vec<_> = (0..100)
                .map(|_| coroutines::spawn(|| spin_for(Duration::from_millis(2))))
                .collect();
            let mut first = None;
            for h in workers {
                h.join().unwrap();
                first.get_or_insert_with(|| t1.elapsed());
            }
            let cpu_done = t1.elapsed();
            let s = coroutines::stats();
            eprintln!(
                "first worker done after {:?}, all 100 after {cpu_done:?}; blocked_seen={} extra_started={} workers={}",
                first.unwrap(),
                s.blocked_seen,
                s.extra_started,
                s.workers
            );
            // The blocked executors are still inside their 2 s call: the
            // work did not wait for them. (No tighter wall-clock bound: the
            // machine may be loaded; see the printed figures.)
            assert!(
                blockers.iter().all(|b| !b.is_finished()) && cpu_done < Duration::from_secs(2),
                "CPU work waited for the blocked executors: {cpu_done:?}"
            );
            assert!(s.extra_started >= 1 && s.blocked_seen >= 1, "{s:?}");
            assert!(s.workers > 2, "{s:?}");
            for h in blockers {
                h.join().unwrap();
            }
            assert!(t0.elapsed() >= Duration::from_secs(2));
            // Extra executors retire after ~1 s idle.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let s = coroutines::stats();
                if s.extra_retired >= s.extra_started && s.workers == 2 {
                    eprintln!("retired: {s:?}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "extra executors did not retire: {s:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // A retired slot is reused: block again, get help again.
            let started_before = coroutines::stats().extra_started;
            let blocking = Arc::new(AtomicUsize::new(0));
            let spawn_blocker = || {
                let blocking = blocking.clone();
                coroutines::spawn(move || {
                    blocking.fetch_add(1, Ordering::SeqCst);
                    raw_nanosleep(Duration::from_millis(300));
                })
            };
            let (b, b2) = (spawn_blocker(), spawn_blocker());
            while blocking.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
            let t2 = Instant::now();
            let hs: Vec<_> = (0..20)
                .map(|_| coroutines::spawn(|| spin_for(Duration::from_millis(1))))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let again = t2.elapsed();
            b.join().unwrap();
            b2.join().unwrap();
            let s = coroutines::stats();
            eprintln!("second round: 20 done after {again:?}; {s:?}");
            assert!(s.extra_started > started_before);
            assert!(s.executors.len() <= 8);
        },
    );
}

/// Started coroutines are not stuck behind an executor blocked in a call
/// nothing can hook: with migration (the default with per-coroutine
/// thread-locals) the siblings that started on it — and yield, sleep and
/// wake meanwhile — finish on the other executors while it is still
/// blocked. Pinned (`COROUTINES_MIGRATE=0`) they would wait for it.
#[test]
fn started_siblings_leave_a_blocked_executor() {
    in_child(
        "started_siblings_leave_a_blocked_executor",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_MAX_WORKERS", "2")],
        || {
            assert!(
                coroutines::RuntimeBuilder::new().resolve().unwrap().migrate,
                "migration should be the default"
            );
            const BLOCK: Duration = Duration::from_secs(4);
            // SAFETY: gettid has no arguments and cannot fail.
            let gettid = || unsafe { libc::syscall(libc::SYS_gettid) };
            // A parent coroutine starts the siblings on its own executor
            // (the `next` slot runs each at once: they start here), then
            // blocks that executor.
            let parent = coroutines::spawn(move || {
                let started = Arc::new(AtomicUsize::new(0));
                let handles: Vec<_> = (0..20)
                    .map(|_| {
                        let started = started.clone();
                        let h = coroutines::spawn(move || {
                            let first = gettid();
                            started.fetch_add(1, Ordering::SeqCst);
                            for _ in 0..50 {
                                std::thread::sleep(Duration::from_millis(2));
                                spin_for(Duration::from_micros(200));
                                coroutines::yield_now();
                            }
                            (first, gettid(), Instant::now())
                        });
                        coroutines::yield_now(); // let it start (here, mostly)
                        h
                    })
                    .collect();
                while started.load(Ordering::SeqCst) < 20 {
                    coroutines::yield_now();
                }
                // The executor this coroutine runs on now (it may have
                // moved since it started) is stuck from here on.
                let blocked = gettid();
                let t0 = Instant::now();
                raw_nanosleep(BLOCK);
                (blocked, t0, handles)
            });
            let (blocked, t0, handles) = parent.join().unwrap();
            let mut started_there = 0;
            let mut finished_while_blocked = 0;
            for h in handles {
                let (first, last, done) = h.join().unwrap();
                if first == blocked {
                    started_there += 1;
                }
                if done < t0 + BLOCK {
                    finished_while_blocked += 1;
                    assert_ne!(
                        last, blocked,
                        "finished on the blocked executor while it was blocked?"
                    );
                }
            }
            println!(
                "started on the executor that blocked {started_there}, finished while it was blocked {finished_while_blocked}/20"
            );
            assert_eq!(
                finished_while_blocked, 20,
                "siblings waited for the blocked executor"
            );
        },
    );
}

#[inline(never)]
fn blocked_in_raw_nanosleep() {
    raw_nanosleep(Duration::from_millis(1500));
    std::hint::black_box(());
}

#[inline(never)]
fn blocked_in_libc_syscall() {
    let ts = libc::timespec {
        tv_sec: 1,
        tv_nsec: 500_000_000,
    };
    // SAFETY: nanosleep reads one timespec; rem = null. Goes through the
    // runtime's `syscall` shim, which passes it to the kernel unchanged.
    let r = unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &ts as *const libc::timespec,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    assert_eq!(r, 0);
    std::hint::black_box(());
}

#[inline(never)]
fn blocked_in_semop(id: i32) {
    let mut op = libc::sembuf {
        sem_num: 0,
        sem_op: -1,
        sem_flg: 0,
    };
    // SAFETY: a semaphore set of ours with one semaphore; op is valid.
    let r = unsafe { libc::semop(id, &mut op, 1) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    std::hint::black_box(());
}

/// Blocks the only executor with `block` inside a coroutine, keeps work
/// queued until a blocking report whose frames name `caller` appears, and
/// returns it with the blocked coroutine's id.
fn report_for(
    caller: &str,
    block: impl FnOnce() + Send + 'static,
    release: impl FnOnce(),
) -> (coroutines::observe::BlockingReport, u64) {
    let before = coroutines::blocking_reports().len();
    let id = Arc::new(AtomicUsize::new(0));
    let id2 = id.clone();
    let h = coroutines::Builder::new()
        .name("the-blocked-one".into())
        .spawn(move || {
            // Suspends once first: then it is in the registry of live
            // coroutines, where the report finds its name.
            coroutines::yield_now();
            id2.store(
                coroutines::current().id().as_u64().get() as usize,
                Ordering::SeqCst,
            );
            block();
        })
        .unwrap();
    while id.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        // Work that waits for the blocked executor, so the detector
        // counts it as blocked.
        let ws: Vec<_> = (0..4)
            .map(|_| coroutines::spawn(|| spin_for(Duration::from_micros(200))))
            .collect();
        let found = coroutines::blocking_reports()
            .into_iter()
            .skip(before.min(15))
            .find(|r| {
                r.frames
                    .iter()
                    .any(|f| f.symbol.as_deref().is_some_and(|s| s.ends_with(caller)))
            });
        for w in ws {
            w.join().unwrap();
        }
        if let Some(r) = found {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no blocking report naming {caller}: {:#?}\n{:?}",
            coroutines::blocking_reports(),
            coroutines::stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    release();
    h.join().unwrap();
    (found, id.load(Ordering::SeqCst) as u64)
}

/// The blocking report names the system call, the caller's frames and
/// the coroutine, for a raw `syscall` instruction, libc's `syscall()`
/// (through the runtime's shim, whose frames the call site skips) and a
/// libc wrapper nothing hooks (SysV `semop`: frames of libc first).
#[test]
fn blocking_report_names_syscall_and_caller() {
    in_child(
        "blocking_report_names_syscall_and_caller",
        &[
            ("COROUTINES_WORKERS", "1"),
            ("COROUTINES_MAX_WORKERS", "4"),
            ("COROUTINES_BLOCKED_AFTER", "10ms"),
            ("COROUTINES_TRACE_BLOCKING", "1"),
        ],
        || {
            let site = |r: &coroutines::observe::BlockingReport| -> Vec<String> {
                r.call_site()
                    .iter()
                    .map(|f| f.symbol.clone().unwrap_or_default())
                    .collect()
            };

            let (r, id) = report_for("blocked_in_raw_nanosleep", blocked_in_raw_nanosleep, || {});
            println!("raw syscall: {r}\n{:#?}", r.frames);
            assert_eq!(r.syscall, "nanosleep", "{r}");
            assert_eq!(r.coroutine.map(|c| c.as_u64().get()), Some(id), "{r}");
            assert_eq!(r.coroutine_name.as_deref(), Some("the-blocked-one"), "{r}");
            assert!(
                r.to_string().contains("by coroutine 'the-blocked-one' (#"),
                "{r}"
            );
            let s = site(&r);
            assert!(s[0].ends_with("raw_nanosleep"), "{s:?}");
            assert!(s[1].ends_with("blocked_in_raw_nanosleep"), "{s:?}");
            assert!(r.blocked_for >= Duration::from_millis(10), "{r}");
            assert!(r.to_string().contains("in nanosleep (called from "), "{r}");

            let (r, _) = report_for("blocked_in_libc_syscall", blocked_in_libc_syscall, || {});
            println!("libc syscall(): {r}\n{:#?}", r.frames);
            assert_eq!(r.syscall, "nanosleep", "{r}");
            let s = site(&r);
            assert!(
                s[0].ends_with("blocked_in_libc_syscall"),
                "runtime frames first: {s:?}"
            );

            // SAFETY: plain SysV calls on a private set of one semaphore.
            let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, 0o600) };
            assert!(id >= 0, "{}", std::io::Error::last_os_error());
            let (r, _) = report_for(
                "blocked_in_semop",
                move || blocked_in_semop(id),
                || {
                    let mut op = libc::sembuf {
                        sem_num: 0,
                        sem_op: 1,
                        sem_flg: 0,
                    };
                    // SAFETY: as above; posts the semaphore the coroutine waits on.
                    assert_eq!(unsafe { libc::semop(id, &mut op, 1) }, 0);
                },
            );
            // SAFETY: removes the set created above.
            unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
            println!("semop: {r}\n{:#?}", r.frames);
            assert!(r.syscall == "semtimedop" || r.syscall == "semop", "{r}");
            assert!(
                r.frames[0]
                    .object
                    .as_deref()
                    .is_some_and(|o| o.starts_with("libc.so")),
                "{:#?}",
                r.frames
            );
            let s = site(&r);
            assert!(
                s[0].ends_with("blocked_in_semop"),
                "libc frames first: {s:?}"
            );

            let s = coroutines::stats();
            assert!(
                s.blocking_reports >= 3 && s.blocked_seen >= s.blocking_reports,
                "{s:?}"
            );
        },
    );
}

/// Work that reaches an executor after its blocked episode was helped is
/// not stranded when every executor is blocked: a coroutine that slept on
/// executor E wakes into E's inbox while E and all the extra executors
/// started for the other blocked ones are stuck in eventfd reads (not
/// hooked) that only the sleeper will satisfy. The detector helped E once
/// (an extra executor, which took a reader and blocked too) and, without
/// a second look, nobody was left to steal the sleeper: a permanent hang
/// (seen in `stress/crates3.rs`, `eventfd_reads_block_executors`).
#[test]
fn work_arriving_after_help_is_not_stranded() {
    in_child(
        "work_arriving_after_help_is_not_stranded",
        &[("COROUTINES_WORKERS", "2"), ("COROUTINES_SLICE", "100us")],
        || {
            const READERS: usize = 6;
            // SAFETY: eventfd creates new fds; no memory is involved.
            let fds: Vec<i32> = (0..READERS)
                .map(|_| unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
                .collect();
            assert!(fds.iter().all(|&fd| fd >= 0));
            // The sleeper starts first (its home is an executor that will
            // block), then the readers fill every executor there is.
            let wfds = fds.clone();
            let writer = coroutines::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                for (i, &fd) in wfds.iter().enumerate() {
                    let v = i as u64 + 1;
                    // SAFETY: writes 8 bytes from a live u64 to an fd the
                    // test owns until the joins below.
                    assert_eq!(unsafe { libc::write(fd, (&v as *const u64).cast(), 8) }, 8);
                }
            });
            std::thread::sleep(Duration::from_millis(20));
            let readers: Vec<_> = fds
                .iter()
                .map(|&fd| {
                    coroutines::spawn(move || {
                        let mut v = 0u64;
                        // SAFETY: reads 8 bytes into a live u64 from an fd
                        // the test owns until the joins below.
                        assert_eq!(unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) }, 8);
                        v
                    })
                })
                .collect();
            writer.join().unwrap();
            let got: Vec<u64> = readers.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(got, (1..=READERS as u64).collect::<Vec<_>>());
            for fd in fds {
                // SAFETY: closes an fd this test created and no longer uses.
                unsafe { libc::close(fd) };
            }
        },
    );
}

/// Work that arrives while every live executor is blocked and each one's
/// episode was helped already: two coroutines block their executors in
/// eventfd reads (not hooked) while a third waits, so both episodes are
/// helped (an extra executor runs the third and retires after idling 1
/// s); then a writer is spawned from outside into the global queue. No
/// executor was free to take it and no episode was left to help: a
/// permanent hang, since the blocked reads wait for that writer.
#[test]
fn work_arriving_when_all_blocked_executors_were_helped() {
    in_child(
        "work_arriving_when_all_blocked_executors_were_helped",
        &[("COROUTINES_WORKERS", "2")],
        || {
            // SAFETY: eventfd creates new fds; no memory is involved.
            let fds: Vec<i32> = (0..2)
                .map(|_| unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
                .collect();
            assert!(fds.iter().all(|&fd| fd >= 0));
            let blocking = Arc::new(AtomicUsize::new(0));
            let readers: Vec<_> = fds
                .iter()
                .map(|&fd| {
                    let blocking = blocking.clone();
                    coroutines::spawn(move || {
                        blocking.fetch_add(1, Ordering::SeqCst);
                        let mut v = 0u64;
                        // SAFETY: reads 8 bytes into a live u64 from an fd
                        // the test owns until the joins below.
                        assert_eq!(unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) }, 8);
                        v
                    })
                })
                .collect();
            // Both executors are in (or about to enter) their reads: the
            // third waits in the global queue when the detector looks.
            while blocking.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(5));
            let third = coroutines::spawn(|| 3u64);
            assert_eq!(third.join().unwrap(), 3);
            // The extra executors started for the two episodes retire
            // after 1 s idle.
            let t0 = Instant::now();
            while {
                let s = coroutines::stats();
                s.extra_retired == 0 || s.extra_retired < s.extra_started
            } {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "no retirement: {:?}",
                    coroutines::stats()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let wfds = fds.clone();
            let writer = coroutines::spawn(move || {
                for (i, &fd) in wfds.iter().enumerate() {
                    let v = i as u64 + 1;
                    // SAFETY: writes 8 bytes from a live u64 to an fd the
                    // test owns until the joins below.
                    assert_eq!(unsafe { libc::write(fd, (&v as *const u64).cast(), 8) }, 8);
                }
            });
            writer.join().unwrap();
            let got: Vec<u64> = readers.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(got, vec![1, 2]);
            for fd in fds {
                // SAFETY: closes an fd this test created and no longer uses.
                unsafe { libc::close(fd) };
            }
        },
    );
}
