//! Waiting for signals from coroutines: `sigwait`, `sigwaitinfo`,
//! `sigtimedwait` and `sigsuspend` park the coroutine (the wait runs on a
//! helper thread). SIGUSR1 and SIGUSR2 are blocked in the main thread
//! before `main` runs (an `.init_array` constructor), so every thread of
//! the process — libtest's, the runtime's executors, monitor and helpers —
//! inherits the block: the usual "block in main, wait in one place"
//! pattern. Each body runs in a child process with ONE executor and no
//! extra ones allowed: if a wait blocked the executor, the sibling that
//! sends the signal could never run and the child would be killed at its
//! deadline.

#[path = "../stress/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

extern "C" fn block_usr_signals() {
    // SAFETY: plain signal-mask calls on our own set, before main.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, libc::SIGUSR1);
        libc::sigaddset(&mut s, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut());
    }
}

#[used]
#[link_section = ".init_array"]
static BLOCK_AT_START: extern "C" fn() = block_usr_signals;

fn one_executor(name: &str, body: impl FnOnce()) {
    common::in_child(
        "COROUTINES_SIGNAL_CHILD",
        name,
        &[("COROUTINES_WORKERS", "1"), ("COROUTINES_MAX_WORKERS", "1")],
        Duration::from_secs(60),
        body,
    );
}

fn set_of(sig: i32) -> libc::sigset_t {
    // SAFETY: a zeroed sigset filled by the libc calls.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, sig);
        s
    }
}

fn kill_self(sig: i32) {
    // SAFETY: kill to our own pid.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

/// Spawns a ticker (a sibling sleeping 5 ms at a time) and a sender that
/// waits until `waiting` is set, sleeps 100 ms (parks), then sends `sig`
/// to the process. Returns the ticks seen when the signal was sent.
fn sender_with_ticker(
    sig: i32,
    waiting: Arc<AtomicBool>,
) -> (coroutines::JoinHandle<u64>, Arc<AtomicBool>) {
    let ticks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (t2, s2) = (ticks.clone(), stop.clone());
    coroutines::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            t2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let sender = coroutines::spawn(move || {
        while !waiting.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        let during = ticks.load(Ordering::Relaxed) - before;
        kill_self(sig);
        during
    });
    (sender, stop)
}

/// sigwait and sigwaitinfo for a process-directed SIGUSR1 sent by a
/// sibling coroutine while a ticker keeps running on the same executor.
#[test]
fn sigwait_parks_the_coroutine() {
    one_executor("sigwait_parks_the_coroutine", || {
        for info in [false, true] {
            let waiting = Arc::new(AtomicBool::new(false));
            let w2 = waiting.clone();
            let waiter = coroutines::spawn(move || {
                let set = set_of(libc::SIGUSR1);
                w2.store(true, Ordering::Release);
                if info {
                    // SAFETY: a zeroed siginfo for the kernel to fill.
                    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    // SAFETY: valid set and siginfo.
                    let r = unsafe { libc::sigwaitinfo(&set, &mut si) };
                    // SAFETY: si_pid of a kill-generated siginfo.
                    (r, si.si_code, unsafe { si.si_pid() })
                } else {
                    let mut sig = 0;
                    // SAFETY: valid set and int.
                    let r = unsafe { libc::sigwait(&set, &mut sig) };
                    assert_eq!(r, 0);
                    (sig, 0, 0)
                }
            });
            let (sender, stop) = sender_with_ticker(libc::SIGUSR1, waiting);
            let ticks_while_waiting = sender.join().unwrap();
            let (sig, code, pid) = waiter.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            assert_eq!(sig, libc::SIGUSR1);
            if info {
                assert_eq!(code, libc::SI_USER);
                // SAFETY: getpid has no preconditions.
                assert_eq!(pid, unsafe { libc::getpid() });
            }
            // The ticker ran while the waiter waited (100 ms of 5 ms ticks;
            // generous for a loaded machine).
            assert!(ticks_while_waiting >= 3, "ticks {ticks_while_waiting}");
        }
    });
}

/// sigtimedwait: a signal sent before the wait is taken at once (the
/// inline try); with nothing pending the timeout is honoured (EAGAIN)
/// while siblings run; a plain thread's call is libc's.
#[test]
fn sigtimedwait_timeout_and_pending() {
    one_executor("sigtimedwait_timeout_and_pending", || {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 150_000_000,
        };
        let set = set_of(libc::SIGUSR2);
        let (r, e, waited) = coroutines::spawn(move || {
            let t = Instant::now();
            // SAFETY: valid set and timeout.
            let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
            (
                r,
                std::io::Error::last_os_error().raw_os_error(),
                t.elapsed(),
            )
        })
        .join()
        .unwrap();
        assert_eq!((r, e), (-1, Some(libc::EAGAIN)));
        assert!(waited >= Duration::from_millis(140), "{waited:?}");
        // Pending before the wait: taken without waiting.
        let r = coroutines::spawn(move || {
            kill_self(libc::SIGUSR2);
            // SAFETY: valid set and timeout.
            unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) }
        })
        .join()
        .unwrap();
        assert_eq!(r, libc::SIGUSR2);
        // A sibling keeps running during a timed wait on one executor.
        let waiting = Arc::new(AtomicBool::new(false));
        let w2 = waiting.clone();
        let long = libc::timespec {
            tv_sec: 30,
            tv_nsec: 0,
        };
        let waiter = coroutines::spawn(move || {
            w2.store(true, Ordering::Release);
            // SAFETY: valid set and timeout.
            unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &long) }
        });
        let (sender, stop) = sender_with_ticker(libc::SIGUSR2, waiting);
        assert!(sender.join().unwrap() >= 3);
        assert_eq!(waiter.join().unwrap(), libc::SIGUSR2);
        stop.store(true, Ordering::Relaxed);
        // A plain thread: libc's call (zero timeout, nothing pending).
        let r = std::thread::spawn(move || {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid set and timeout.
            let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
            (r, std::io::Error::last_os_error().raw_os_error())
        })
        .join()
        .unwrap();
        assert_eq!(r, (-1, Some(libc::EAGAIN)));
    });
}

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr2(_: i32) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// sigsuspend with SIGUSR2 unblocked in its mask returns -1/EINTR after
/// the handler ran, while a sibling on the one executor sends it.
#[test]
fn sigsuspend_parks_the_coroutine() {
    one_executor("sigsuspend_parks_the_coroutine", || {
        // SAFETY: installing a handler that only touches an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr2 as *const () as usize;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        }
        let waiting = Arc::new(AtomicBool::new(false));
        let w2 = waiting.clone();
        let waiter = coroutines::spawn(move || {
            // The current mask (SIGUSR1 and SIGUSR2 blocked) minus SIGUSR2.
            // SAFETY: reading the mask into our own set.
            let mut m: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above; sigdelset on our own set.
            unsafe {
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut m);
                libc::sigdelset(&mut m, libc::SIGUSR2);
            }
            w2.store(true, Ordering::Release);
            // SAFETY: a valid mask.
            let r = unsafe { libc::sigsuspend(&m) };
            (r, std::io::Error::last_os_error().raw_os_error())
        });
        let (sender, stop) = sender_with_ticker(libc::SIGUSR2, waiting);
        assert!(sender.join().unwrap() >= 3);
        assert_eq!(waiter.join().unwrap(), (-1, Some(libc::EINTR)));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(HANDLED.load(Ordering::SeqCst), 1);
    });
}
