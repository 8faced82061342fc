//! glibc pthread primitives used by C code linked into the executable,
//! from coroutines: a coroutine that must wait parks, so the holder (a
//! sibling on the same executor) runs and releases. Every test body runs
//! in a child process with one executor (`COROUTINES_WORKERS=1`: all
//! coroutines are siblings) and checks that the blocked-executor detector
//! started no extra executor (its threshold raised to 60 ms: on a loaded
//! 2-core machine an executor can wait 20+ ms for a CPU, which the
//! detector cannot tell from a blocked call).

#[path = "../../stress/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coroutines_thirdparty::c::*;

const LIMIT: Duration = Duration::from_secs(60);

fn one_executor(name: &str, body: impl FnOnce()) {
    common::in_child(
        "COROUTINES_PTHREAD_CHILD",
        name,
        &[
            ("COROUTINES_WORKERS", "1"),
            ("COROUTINES_BLOCKED_AFTER", "60ms"),
        ],
        LIMIT,
        || {
            body();
            let s = coroutines::stats();
            assert_eq!(
                s.extra_started, 0,
                "the detector had to start executors: {s:?}"
            );
        },
    );
}

/// Issue 10's test: a C library's recursive mutex held across a sleep by
/// one coroutine while 31 siblings on the same executor wait for it.
#[test]
fn recursive_mutex_held_across_sleep_one_executor() {
    one_executor("recursive_mutex_held_across_sleep_one_executor", || {
        let t = Instant::now();
        let hs: Vec<_> = (0..32)
            .map(|_| {
                coroutines::spawn(|| {
                    for _ in 0..3 {
                        assert_eq!(rec_critical(2000), 0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        {
            assert_eq!(rec_total(), 96);
            assert_eq!(rec_max_inside(), 1, "two coroutines inside the mutex");
        }
        // 96 sleeps of 2 ms in sequence: well under the bound.
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    });
}

/// Ownership is per coroutine: a sibling's trylock of a recursive mutex is
/// EBUSY (not a re-entry) and its lock waits; error-checking unlock by a
/// non-owner is EPERM, relock by the owner EDEADLK; timedlock times out.
#[test]
fn ownership_is_per_coroutine() {
    one_executor("ownership_is_per_coroutine", || {
        for which in [Mutex::Recursive, Mutex::ErrorCheck] {
            let held = Arc::new(AtomicBool::new(false));
            let release = Arc::new(AtomicBool::new(false));
            let (h2, r2) = (held.clone(), release.clone());
            let owner = coroutines::spawn(move || {
                let m = which;
                {
                    assert_eq!(m.lock(), 0);
                    if matches!(which, Mutex::Recursive) {
                        assert_eq!(m.lock(), 0, "recursive re-entry");
                        assert_eq!(m.trylock(), 0, "recursive try re-entry");
                    } else {
                        assert_eq!(m.lock(), libc::EDEADLK);
                        assert_eq!(m.trylock(), libc::EBUSY);
                    }
                }
                h2.store(true, Ordering::SeqCst);
                while !r2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                {
                    let levels = if matches!(which, Mutex::Recursive) {
                        3
                    } else {
                        1
                    };
                    for _ in 0..levels {
                        assert_eq!(m.unlock(), 0);
                    }
                    assert_eq!(m.unlock(), libc::EPERM, "unlock of an unlocked mutex");
                }
            });
            let got = Arc::new(AtomicBool::new(false));
            let (h3, g3, r3) = (held.clone(), got.clone(), release.clone());
            let sibling = coroutines::spawn(move || {
                while !h3.load(Ordering::SeqCst) {
                    coroutines::yield_now();
                }
                let m = which;
                {
                    assert_eq!(m.trylock(), libc::EBUSY, "a sibling is not the owner");
                    assert_eq!(m.unlock(), libc::EPERM, "unlock by a non-owner");
                    let t = Instant::now();
                    assert_eq!(m.timedlock_ms(50), libc::ETIMEDOUT);
                    assert!(
                        t.elapsed() >= Duration::from_millis(45),
                        "{:?}",
                        t.elapsed()
                    );
                    r3.store(true, Ordering::SeqCst);
                    assert_eq!(m.lock(), 0);
                    g3.store(true, Ordering::SeqCst);
                    assert_eq!(m.unlock(), 0);
                }
            });
            owner.join().unwrap();
            sibling.join().unwrap();
            assert!(got.load(Ordering::SeqCst));
        }
    });
}

/// A static normal mutex guarding a non-atomic read-modify-write with a
/// park inside, from 16 coroutines and 2 plain threads at once.
#[test]
fn normal_mutex_coroutines_and_threads() {
    one_executor("normal_mutex_coroutines_and_threads", || {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        fn critical() {
            let m = Mutex::Normal;
            assert_eq!(m.lock(), 0);
            let v = COUNTER.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(200)); // parks a coroutine
            COUNTER.store(v + 1, Ordering::Relaxed);
            assert_eq!(m.unlock(), 0);
        }
        let cos: Vec<_> = (0..16)
            .map(|_| coroutines::spawn(|| (0..20).for_each(|_| critical())))
            .collect();
        let ths: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(|| (0..20).for_each(|_| critical())))
            .collect();
        for h in cos {
            h.join().unwrap();
        }
        for h in ths {
            h.join().unwrap();
        }
        assert_eq!(COUNTER.load(Ordering::Relaxed), 18 * 20);
    });
}

/// A C bounded channel (mutex + two condvars, capacity 4): 6 producer
/// coroutines and a producer thread, 3 consumer coroutines and a consumer
/// thread; every value arrives exactly once.
#[test]
fn condvar_channel_coroutines_and_threads() {
    one_executor("condvar_channel_coroutines_and_threads", || {
        const PER: i64 = 300;
        let producer = |base: i64| {
            move || {
                for i in 0..PER {
                    chan_put(base * PER + i + 1);
                }
            }
        };
        let consumer = |n: i64| {
            move || {
                let mut sum = 0;
                for _ in 0..n {
                    sum += chan_get();
                }
                sum
            }
        };
        // 7 producers x 300 = 2100 values; 4 consumers x 525.
        let ps: Vec<_> = (0..6).map(|b| coroutines::spawn(producer(b))).collect();
        let pt = std::thread::spawn(producer(6));
        let cs: Vec<_> = (0..3).map(|_| coroutines::spawn(consumer(525))).collect();
        let ct = std::thread::spawn(consumer(525));
        for h in ps {
            h.join().unwrap();
        }
        pt.join().unwrap();
        let mut sum: i64 = cs.into_iter().map(|h| h.join().unwrap()).sum();
        sum += ct.join().unwrap();
        let n = 7 * PER;
        assert_eq!(sum, n * (n + 1) / 2);
    });
}

/// 31 coroutines and a plain thread wait on one C condvar; a coroutine
/// broadcasts: all wake.
#[test]
fn condvar_broadcast_wakes_all() {
    one_executor("condvar_broadcast_wakes_all", || {
        let cos: Vec<_> = (0..31).map(|_| coroutines::spawn(gate_wait)).collect();
        let th = std::thread::spawn(gate_wait);
        let t = Instant::now();
        while gate_waiting() < 32 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "waiters never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        coroutines::spawn(gate_open).join().unwrap();
        for h in cos {
            h.join().unwrap();
        }
        th.join().unwrap();
    });
}

/// pthread_cond_timedwait on the default (REALTIME) and a MONOTONIC
/// condvar (300 ms) times out in a coroutine with the mutex re-acquired, while a
/// sibling on the same executor keeps running.
#[test]
fn condvar_timedwait_times_out_and_parks() {
    one_executor("condvar_timedwait_times_out_and_parks", || {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t2, s2) = (ticks.clone(), stop.clone());
        let sibling = coroutines::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                t2.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        for monotonic in [0, 1] {
            let before = ticks.load(Ordering::SeqCst);
            let (r, el) = coroutines::spawn(move || {
                let t = Instant::now();
                let r = cond_timeout_ms(300, monotonic);
                (r, t.elapsed())
            })
            .join()
            .unwrap();
            assert_eq!(r, libc::ETIMEDOUT, "monotonic={monotonic}");
            assert!(el >= Duration::from_millis(295), "{el:?}");
            // The sibling ran during the 300 ms wait (it would not if the
            // wait blocked the only executor).
            assert!(ticks.load(Ordering::SeqCst) > before + 5);
        }
        stop.store(true, Ordering::SeqCst);
        sibling.join().unwrap();
    });
}

/// A C rwlock: 24 reader and 8 writer coroutines plus a writer thread,
/// each holding it across a sleep: readers share, writers exclude.
#[test]
fn rwlock_readers_share_writers_exclude() {
    one_executor("rwlock_readers_share_writers_exclude", || {
        let mut hs: Vec<_> = (0..24)
            .map(|_| coroutines::spawn(|| (0..5).for_each(|_| rw_read(1000))))
            .collect();
        hs.extend((0..8).map(|_| coroutines::spawn(|| (0..5).for_each(|_| rw_write(1000)))));
        let th = std::thread::spawn(|| (0..5).for_each(|_| rw_write(1000)));
        for h in hs {
            h.join().unwrap();
        }
        th.join().unwrap();
        {
            assert_eq!(rw_bad(), 0, "a writer overlapped another holder");
            assert_eq!(rw_writes(), 45);
            assert!(rw_max_readers() > 1, "readers never shared the lock");
        }
    });
}

/// A C semaphore of 2 shared by 16 coroutines holding it across a sleep:
/// at most 2 inside; then a timed wait on an exhausted semaphore times out.
#[test]
fn semaphore_counts_and_times_out() {
    one_executor("semaphore_counts_and_times_out", || {
        static INSIDE: AtomicUsize = AtomicUsize::new(0);
        static MAX: AtomicUsize = AtomicUsize::new(0);
        sem_init(2);
        let hs: Vec<_> = (0..16)
            .map(|_| {
                coroutines::spawn(|| {
                    for _ in 0..5 {
                        assert_eq!(sem_wait(), 0);
                        let n = INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
                        MAX.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(1));
                        INSIDE.fetch_sub(1, Ordering::SeqCst);
                        assert_eq!(sem_post(), 0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(MAX.load(Ordering::SeqCst), 2);
        let r = coroutines::spawn(|| {
            assert_eq!(sem_wait(), 0);
            assert_eq!(sem_wait(), 0);
            let t = Instant::now();
            let r = sem_timedwait_ms(50);
            (r, t.elapsed())
        })
        .join()
        .unwrap();
        assert_eq!(r.0, libc::ETIMEDOUT);
        assert!(r.1 >= Duration::from_millis(45), "{:?}", r.1);
    });
}

/// pthread_once whose routine sleeps 50 ms, called by 16 coroutines at
/// once: it runs once and every caller returns after it completed.
#[test]
fn once_runs_once_while_callers_park() {
    one_executor("once_runs_once_while_callers_park", || {
        let hs: Vec<_> = (0..16).map(|_| coroutines::spawn(once)).collect();
        for h in hs {
            assert_eq!(
                h.join().unwrap(),
                1,
                "pthread_once returned before the routine ended"
            );
        }
        assert_eq!(once_runs(), 1);
    });
}

/// A C barrier of 16 shared by 15 coroutines and a plain thread, 3 rounds:
/// every round releases all 16 with exactly one serial waiter.
#[test]
fn barrier_rounds_coroutines_and_thread() {
    one_executor("barrier_rounds_coroutines_and_thread", || {
        barrier_init(16);
        let round = || (0..3).map(|_| barrier_wait()).collect::<Vec<_>>();
        let hs: Vec<_> = (0..15).map(|_| coroutines::spawn(round)).collect();
        let th = std::thread::spawn(round);
        let mut all: Vec<i32> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.extend(th.join().unwrap());
        assert!(all.iter().all(|&r| r == 0 || r == 1), "{all:?}");
        assert_eq!(all.iter().sum::<i32>(), 3, "one serial waiter per round");
        assert_eq!(barrier_serials(), 3);
    });
}

/// A C spin lock held across a (hooked, parking) sleep by one coroutine
/// while 7 siblings on the same executor try to lock it, plus a plain
/// thread sharing it: the waiters yield between tries, so the parked
/// holder runs again and releases. Without the hook a waiter spins in
/// glibc's loop forever on the only executor (the holder never runs).
#[test]
fn spin_lock_held_across_sleep_one_executor() {
    one_executor("spin_lock_held_across_sleep_one_executor", || {
        spin_init();
        let t = Instant::now();
        let hs: Vec<_> = (0..8)
            .map(|_| {
                coroutines::spawn(|| {
                    for _ in 0..3 {
                        assert_eq!(spin_critical(2000), 0);
                    }
                })
            })
            .collect();
        let th = std::thread::spawn(|| {
            for _ in 0..3 {
                assert_eq!(spin_critical(2000), 0);
            }
        });
        for h in hs {
            h.join().unwrap();
        }
        th.join().unwrap();
        assert_eq!(spin_total(), 27);
        assert_eq!(spin_max_inside(), 1, "two holders inside the spin lock");
        // 27 sleeps of 2 ms in sequence: well under the bound.
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    });
}
