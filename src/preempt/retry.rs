//! Quick retries of a preemption that landed in libc, by the executor's own
//! one-shot timer.
//!
//! A signal that lands in libc (or another shared object) is declined
//! (safe-point condition 5). Rust code that allocates a lot is inside
//! `malloc`/`free` for about half of its time, but only for ~50-100 ns
//! each time. Retrying through the monitor costs a monitor wake-up per
//! attempt, and under CPU load the monitor itself waits for a CPU: a 1 ms
//! sleeper beside four allocation-bound serde_json coroutines was woken
//! p99 8-20 ms late (threads: 2-3 ms), with the monitor's own wake-ups
//! seen 1.5-8 ms late, always at the kernel's 4 ms scheduler tick.
//!
//! So each executor owns a POSIX timer (`timer_create`, `SIGEV_THREAD_ID`
//! to itself, signal SIGURG, value [`COOKIE`]), and the handler, declining
//! for condition 5, re-arms the request (`preempt_pending`) and the timer
//! [`DELAY`] ahead, at most [`MAX_PER_RUN`] times per run of a coroutine.
//! The kernel delivers that signal on the executor's own CPU: no other
//! thread has to be scheduled. A retry whose run ended meanwhile (the
//! `switches` count moved) is dropped. The monitor cannot send while the
//! request is pending (its CAS fails), so there is still one request in
//! flight at a time.
//!
//! Unlike the monitor, which signals only a thread it sees running (state
//! `R`), a timer cannot look first: if the libc code enters a blocking
//! system call no hook covers within the delay, the signal interrupts it
//! (restartable calls restart by `SA_RESTART`; `poll`, `nanosleep`,
//! `epoll_wait` and the like return `EINTR`). The window is the delay,
//! during runs that are already due for preemption; README "Limits".
//!
//! Created by the executor thread at start (only with preemption on) and
//! deleted when the executor's state is dropped at its exit. A failed
//! `timer_create` (a process out of timers) leaves the executor without
//! quick retries: the monitor's backoff still retries.

use std::cell::Cell;
use std::time::Duration;

/// `sigev_value` of the retry timers' signals: tells them from other
/// SIGURG sources in the handler.
pub(crate) const COOKIE: usize = 0x636f_726f_7574_696e; // "coroutin"
/// Delay of a retry.
pub(crate) const DELAY: Duration = Duration::from_micros(20);
/// Most retries per run (about 1 ms of them); then the monitor's backoff.
pub(crate) const MAX_PER_RUN: u32 = 50;

/// An executor's retry timer. Owner thread only (the executor, and its
/// own signal handler, which interrupts it and is not reentrant: SIGURG is
/// blocked while it runs).
pub(crate) struct Retry {
    /// Kernel timer id, or -1 without a timer.
    timer: i32,
    /// The run (executor switch count) the retries were counted for, and
    /// how many.
    run: Cell<(u64, u32)>,
    /// The switch count when the pending retry was armed.
    armed_for: Cell<u64>,
}

impl Retry {
    /// No timer (preemption off, or creation failed).
    pub(crate) fn none() -> Self {
        Retry {
            timer: -1,
            run: Cell::new((u64::MAX, 0)),
            armed_for: Cell::new(u64::MAX),
        }
    }

    /// A timer that signals the calling thread.
    pub(crate) fn for_this_thread() -> Self {
        // SAFETY: zeroed is a valid sigevent (plain integers and a union
        // of an int and a pointer); the fields we use are set below.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGURG;
        sev.sigev_value = libc::sigval {
            sival_ptr: COOKIE as *mut libc::c_void,
        };
        sev.sigev_notify_thread_id = crate::sys::gettid();
        let mut id: libc::c_int = -1;
        // SAFETY: the kernel reads `sev` and writes the new timer's id to
        // `id`; both outlive the call. The raw system call, not glibc's
        // wrapper, so the id is the kernel's (no glibc bookkeeping).
        let r = unsafe {
            libc::syscall(
                libc::SYS_timer_create,
                libc::CLOCK_MONOTONIC,
                &mut sev as *mut libc::sigevent,
                &mut id as *mut libc::c_int,
            )
        };
        let mut t = Retry::none();
        if r == 0 {
            t.timer = id;
        }
        t
    }

    /// Signal context: a retry signal arrived; whether the run it was armed
    /// for is still the current one (`switches`: the executor's count).
    pub(crate) fn current(&self, switches: u64) -> bool {
        self.armed_for.get() == switches
    }

    /// Signal context: the handler declined for libc code during the run
    /// `switches`; arms a retry unless this run had its share. Returns
    /// whether one was armed (the caller then re-sets the request).
    pub(crate) fn arm(&self, switches: u64) -> bool {
        if self.timer < 0 {
            return false;
        }
        let (run, n) = self.run.get();
        let n = if run == switches { n } else { 0 };
        if n >= MAX_PER_RUN {
            return false;
        }
        self.run.set((switches, n + 1));
        self.armed_for.set(switches);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: DELAY.as_nanos() as libc::c_long,
            },
        };
        // SAFETY: a system call on our own timer id with a valid spec; it
        // is async-signal-safe (no memory besides `spec` is touched).
        let r = unsafe {
            libc::syscall(
                libc::SYS_timer_settime,
                self.timer,
                0,
                &spec as *const libc::itimerspec,
                std::ptr::null_mut::<libc::itimerspec>(),
            )
        };
        r == 0
    }
}

impl Drop for Retry {
    fn drop(&mut self) {
        if self.timer >= 0 {
            // SAFETY: deletes our own timer (a pending signal of it is
            // discarded by the kernel).
            unsafe { libc::syscall(libc::SYS_timer_delete, self.timer) };
        }
    }
}
