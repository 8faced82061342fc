//! The no-preempt level: the one owner of "may the preemption handler
//! interrupt the running side now?".
//!
//! The level is a counter; the handler preempts only at level 0
//! (preempt/signal.rs, safe-point condition 2). Runtime code entered from
//! a coroutine raises it (a `NoPreempt` guard), so the handler leaves
//! runtime state alone. Two copies:
//! - `LEVEL`, a thread-local, authoritative for the handler (which reads it
//!   through the interrupted thread pointer). With per-coroutine
//!   thread-locals it lives in the coroutine's own TLS block, so it moves
//!   with the coroutine: code that was preempted between reading its
//!   executor and raising the level, and resumed on another executor,
//!   raises its *own* level, never a stale executor's. With shared
//!   thread-locals it is the executor thread's, saved and restored around
//!   suspensions (below).
//! - `ExecutorShared::no_preempt`, a mirror for the monitor (written by
//!   the owner, Relaxed: a hint only).
//!
//! Protocol (every write of the level goes through this file):
//! 1. Raise (`NoPreempt::new`, or by hand on the yield fast path:
//!    `raise_own`, then `publish`): own level + 1 *first*, compiler fence
//!    (the handler runs on this thread: later accesses stay after the
//!    raise), then read the executor — now stable, we cannot be moved —
//!    and mirror the level to it.
//! 2. Lower (`NoPreempt`'s drop): compiler fence, mirror level - 1 to the
//!    executor (read while still raised: ours), compiler fence, own level
//!    minus 1 last. Back at 0 with a preemption requested meanwhile (the
//!    monitor or the handler found the coroutine in hook or runtime code:
//!    `PreemptCounters::yield_wanted`), the drop is a safe point:
//!    `switch::safe_point_yield` yields there if the handler could have
//!    preempted at that point (the executor it read is still ours: the
//!    yield is the last thing the drop does).
//! 3. A suspension consumes the level: the side that suspends saves its
//!    level (`current`) and, once resumed by whichever executor, restores
//!    it there (`restore`: own and mirror, then a compiler fence) first
//!    thing after completing the switch. A fresh coroutine starts at 0
//!    (`restore(exec, 0)` in `coroutine_main`).
//! 4. The scheduler, before switching to a coroutine, sets its own level
//!    to what the resumed side expects until it restores its own
//!    (`set_own`: 1 for a voluntary suspension — it may hold the executor
//!    in a register —, 0 for a preempted one, which resumes through the
//!    full-restore path that restores no level), and zeroes both after
//!    every switch back (`reset`).

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{compiler_fence, Ordering};

use super::executor::{current_executor, Executor, EXECUTOR};

thread_local! {
    /// The no-preempt level of the running side (module doc).
    static LEVEL: Cell<u32> = const { Cell::new(0) };
}

/// The running side's no-preempt level (see `LEVEL`).
#[inline(always)]
pub(crate) fn current() -> u32 {
    LEVEL.with(|l| l.get())
}

/// Sets the running side's no-preempt level and its executor's mirror.
#[inline(always)]
fn set_level(exec: &Executor, n: u32) {
    LEVEL.with(|l| l.set(n));
    exec.shared.no_preempt.store(n, Ordering::Relaxed);
}

/// Protocol step 3: a suspended side, resumed on `exec`, restores the
/// level it saved before it suspended.
#[inline(always)]
pub(super) fn restore(exec: &Executor, saved: u32) {
    set_level(exec, saved);
    compiler_fence(Ordering::SeqCst);
}

/// Protocol step 4: the scheduler's own level until the side it resumes
/// restores its own (mirror untouched).
#[inline(always)]
pub(super) fn set_own(n: u32) {
    LEVEL.with(|l| l.set(n));
}

/// Protocol step 4: the scheduler zeroes the level (own and mirror) after
/// a switch back.
#[inline(always)]
pub(super) fn reset(exec: &Executor) {
    set_level(exec, 0);
}

/// Protocol step 1, first half, by hand (the yield fast path: it knows it
/// runs on an executor): own level + 1, then a compiler fence.
#[inline(always)]
pub(super) fn raise_own() {
    LEVEL.with(|l| l.set(l.get() + 1));
    compiler_fence(Ordering::SeqCst);
}

/// Undoes `raise_own` (the executor re-read after it was gone).
#[inline(always)]
pub(super) fn unraise_own() {
    LEVEL.with(|l| l.set(l.get() - 1));
}

/// Protocol step 1, second half: mirror the raised level to `exec`, the
/// executor read after `raise_own`.
#[inline(always)]
pub(super) fn publish(exec: &Executor) {
    exec.shared
        .no_preempt
        .store(LEVEL.with(|l| l.get()), Ordering::Relaxed);
}

/// Lowers a hand-raised level by one after a direct switch resumed the
/// caller on `exec` (compiler fence, then own and mirror).
#[inline(always)]
pub(super) fn lower_on(exec: &Executor) {
    compiler_fence(Ordering::SeqCst);
    set_level(exec, LEVEL.with(|l| l.get()).saturating_sub(1));
}

/// Guard that keeps the preemption handler away from runtime code.
pub(crate) struct NoPreempt {
    raised: bool,
    _not_send: PhantomData<*const ()>,
}

impl NoPreempt {
    #[inline]
    pub(crate) fn new() -> Self {
        // On an executor: raise our own level first (a preemption before
        // it leaves no stale executor behind; see `LEVEL`), then the
        // executor, read after the raise, stays ours.
        let raised = !EXECUTOR.get().is_null();
        if raised {
            LEVEL.with(|l| l.set(l.get() + 1));
            // The handler runs on this thread: order our later accesses
            // after the raise as far as the compiler is concerned.
            compiler_fence(Ordering::SeqCst);
            if let Some(e) = current_executor() {
                e.shared
                    .no_preempt
                    .store(LEVEL.with(|l| l.get()), Ordering::Relaxed);
            }
        }
        NoPreempt {
            raised,
            _not_send: PhantomData,
        }
    }

    /// A guard for a level already raised by hand (`raise_own` and
    /// `publish`): its drop lowers it, on whichever executor the caller
    /// then runs.
    #[inline]
    pub(super) fn adopt_raised() -> Self {
        NoPreempt {
            raised: true,
            _not_send: PhantomData,
        }
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        if self.raised {
            compiler_fence(Ordering::SeqCst);
            let n = LEVEL.with(|l| l.get()).saturating_sub(1);
            // Still raised: the executor read here is ours.
            let exec = current_executor();
            if let Some(e) = exec {
                e.shared.no_preempt.store(n, Ordering::Relaxed);
            }
            compiler_fence(Ordering::SeqCst);
            LEVEL.with(|l| l.set(n));
            if n == 0 {
                if let Some(e) = exec {
                    if e.shared.preempt.yield_wanted.load(Ordering::Relaxed) {
                        super::switch::safe_point_yield(e);
                    }
                }
            }
        }
    }
}
