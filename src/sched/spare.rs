//! The spare executor: one more executor thread that runs coroutines woken
//! from outside the executors (a timer, fd readiness polled by the
//! monitor, a helper thread) while their executor is busy.
//!
//! Problem: with every executor running a CPU-bound coroutine, a sleeper's
//! timer is fired by the monitor into its executor's inbox, and the
//! sleeper runs once that executor is preempted *and* has a CPU. Under
//! CPU load from outside the process the kernel shares the CPUs per
//! thread: an executor is a CPU-bound thread like any other and waits its
//! turn (milliseconds), while a sleeping *thread* is woken promptly (the
//! kernel favours a thread that slept). Measured before this executor
//! (BENCHMARKS.md, W4L): a 1 ms sleeper among 8 hogs on 2 executors with
//! 2 outside busy processes woke 0.55× as often as a sleeping thread, p99
//! lateness 1.9× a thread's.
//!
//! Design: the spare executor (slot `config.workers`) is mostly asleep, so
//! the kernel treats it as a sleeping thread:
//! - while every regular executor runs a coroutine it holds the timers'
//!   sleeper role (reactor/timer.rs), sleeps until the earliest deadline
//!   (timer slack 1 µs), fires due timers and runs the coroutines they
//!   woke;
//! - while one is idle (or searching, or between two coroutines), that one
//!   holds the role (the monitor hands the spare the role once every
//!   executor runs a coroutine again), and what woke on the spare goes to
//!   a sleeping executor's inbox (the spare wakes it) if there is one.
//!   Running woken coroutines on a third thread beside idle executors made
//!   32 SQLite writers sleeping in the busy handler 1.7x slower (bench
//!   C1); leaving them in the spare's queue for an idle executor to steal
//!   lost one for good when none became idle;
//! - a wake from outside the executors whose target executor is not asleep
//!   also wakes it (runtime.rs `schedule`), and it takes woken coroutines
//!   from busy executors' inboxes;
//! - it never takes never-run, yielded or preempted coroutines, and takes
//!   no general work (`notify_idle` skips it); a coroutine spawned on it
//!   goes to the global queue, one that yields too;
//! - the monitor preempts a coroutine that runs on it for a fifth of the
//!   slice even when nothing waits (preempt/monitor.rs), so CPU-bound work
//!   goes to the global queue and the regular executors: at most
//!   `workers + 1` coroutines run at once, the extra one briefly after a
//!   wake;
//! - it does not become a woken coroutine's home: later wakes from
//!   outside still target the coroutine's regular executor;
//! - it never waits in epoll (the regular executors' poller role), never
//!   retires, and is not counted in `Stats::workers`.
//!
//! It exists with preemption and migration on (start.rs); off with
//! `COROUTINES_SPARE_EXECUTOR=0` / `RuntimeBuilder::spare_executor(false)`.
//!
//! Rejected: waking a parked extra executor from the monitor (two kernel
//! wake-ups per timer, each at the mercy of the CPU load), a spare that
//! also serves the global queue (it would be a third CPU-bound thread).

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use super::executor::{steal_one, Executor};
use crate::coroutine::CoroutineRef;

impl Executor {
    /// Whether this is the spare executor.
    #[inline]
    pub(super) fn is_spare(&self) -> bool {
        self.spare
    }

    /// The spare executor's pick: due timers fired first; then the `next`
    /// slot (a joiner woken by a coroutine finishing here), its own inbox
    /// (woken by its timers or by coroutines it runs), then woken
    /// coroutines waiting in other executors' inboxes.
    pub(super) fn spare_next(&self) -> Option<CoroutineRef> {
        self.retry_registry_ops_if_any();
        self.fire_timers(false);
        if let Some(t) = self.next.take(&self.shared.next_id) {
            return Some(t);
        }
        if let Some(free) = self.asleep_regular() {
            // An idle executor takes what woke here (its inbox, where it
            // looks first, and where the monitor's early preemption sees
            // it should it run something else meanwhile): the spare runs
            // coroutines only while no executor sleeps. (It ran whatever
            // its timers woke before: 32 SQLite writers sleeping in the
            // busy handler then ran on 3 threads for 2 CPUs, 1.7x slower,
            // bench C1. Leaving them in its own queue for an idle executor
            // to steal lost one for good when none became idle. Handing
            // them to an executor merely between two coroutines cost C1
            // 30 %: they queued behind its next pick.)
            let mut moved = false;
            while let Some(t) = self.pop_woken() {
                free.inbox.push(t);
                moved = true;
            }
            if moved {
                fence(Ordering::SeqCst);
                free.parker.unpark();
            }
            return None;
        }
        if let Some(t) = self.pop_woken() {
            return Some(t);
        }
        self.rt
            .live_executors()
            .iter()
            .filter(|e| e.index != self.index)
            .find_map(|e| steal_one(&e.inbox))
    }

    /// Whether the spare executor has something to run (its recheck before
    /// sleeping).
    fn spare_has_work(&self) -> bool {
        crate::reactor::timers().any_due(Instant::now())
            || !self.shared.inbox.is_empty()
            || (self.all_busy()
                && self
                    .rt
                    .live_executors()
                    .iter()
                    .any(|e| e.index != self.index && !e.inbox.is_empty()))
    }

    /// A live regular executor asleep (idle), if any.
    fn asleep_regular(&self) -> Option<&'static super::ExecutorShared> {
        self.rt.live_executors().iter().find(|e| {
            e.index != self.index && e.alive.load(Ordering::Relaxed) && e.parker.is_sleeping()
        })
    }

    /// A live regular executor not running a coroutine now (idle,
    /// searching, or between two coroutines), if any.
    fn free_regular(&self) -> Option<&'static super::ExecutorShared> {
        self.rt.live_executors().iter().find(|e| {
            e.index != self.index
                && e.alive.load(Ordering::Relaxed)
                && e.current.load(Ordering::Relaxed).is_null()
        })
    }

    /// Whether every regular executor runs a coroutine now (none is
    /// idle, searching, or between two coroutines).
    fn all_busy(&self) -> bool {
        self.free_regular().is_none()
    }

    /// The spare executor's sleep: until the earliest timer if it gets the
    /// sleeper role, else until woken (`kick_spare`, an earlier timer
    /// armed, a wake from outside).
    pub(super) fn spare_idle(&self) {
        let parker = &self.shared.parker;
        parker.prepare();
        fence(Ordering::SeqCst);
        if self.spare_has_work() {
            parker.cancel();
            return;
        }
        // The sleeper role while every regular executor is busy. While one
        // is idle it should hold the role (what wakes then runs there);
        // if none does — it went to sleep while we held the role, so
        // without a deadline — wake one to take it: otherwise nobody would
        // fire the timers (the monitor sleeps while every executor does).
        let timers = crate::reactor::timers();
        let busy = self.all_busy();
        let role = busy && timers.claim_sleeper(self.index);
        if !busy && !timers.has_sleeper() && timers.next_deadline().is_some() {
            self.rt.notify_idle();
        }
        let mut timeout = if role { timers.until_next() } else { None };
        // SAFETY: owner thread; a length read, no reference kept.
        if !unsafe { (*self.registry_pending.get()).is_empty() } {
            let retry = Duration::from_millis(1);
            timeout = Some(timeout.map_or(retry, |t| t.min(retry)));
        }
        parker.wait_futex(timeout);
        // As an executor leaving its parker (run.rs `idle`).
        crate::observe::wait::tick(Instant::now());
        crate::preempt::executor_woke();
        if role {
            timers.release_sleeper(self.index);
        }
    }
}

/// Sets a finer timer slack on the spare executor's thread: its sleeps
/// end at timer deadlines, and the default 50 µs slack would be added to
/// every wake-up it exists for.
pub(super) fn init_spare_thread() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
}

/// Wakes the spare executor if it sleeps (it then decides whether to take
/// the timers' sleeper role, or runs what was woken). Called when no
/// executor holds the sleeper role while timers are armed, and when a
/// coroutine is woken from outside for an executor that is not asleep.
pub(crate) fn kick_spare(rt: &super::Runtime) {
    if let Some(s) = rt.spare() {
        s.parker.unpark();
    }
}
