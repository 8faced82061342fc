//! The coroutine side of switching: suspending to the scheduler, the
//! direct fast paths (yield, park, start) that skip it, and what every
//! switch-in does.
//!
//! A coroutine comes back to its scheduler by switching to the saved
//! scheduler stack pointer after setting `action` (why it came back:
//! `suspend`). The scheduler side of that switch is `run_coroutine` (run.rs).
//!
//! Direct switches skip the scheduler when the next coroutine is local, was
//! not preempted and has started or can start from this executor's block
//! cache (a never-run one needing a fresh stack and TLS block gets them in
//! scheduler context: the stack pool's cache is the carrier's
//! thread-local): a yield (`direct_yield_on`) or park (`direct_park_on`)
//! switches straight to the next coroutine and leaves itself in `pending`;
//! the side it switched to completes it first thing (`complete_pending`:
//! requeue, or publish PARKED), once the switch has saved its context — so
//! a thief (migration) or a waker can never resume it half-saved. Every
//! `GLOBAL_EVERY`-th pick (run.rs) goes through the scheduler instead, for
//! fairness (global queue, timers, epoll).
//!
//! Per-coroutine state loaded at every switch besides the registers
//! (`prepare_resume`): the thread pointer (its TLS block, tls/block.rs:
//! loaded by the switch assembly, with the carrier-bound words written
//! here), or, with shared thread-locals, std's thread identity
//! (tls/identity.rs) and the TLS alias window (tls/alias.rs).
//!
//! The no-preempt level across a switch: level.rs, protocol steps 3-4.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::executor::{bump, current_executor, Action, Executor, WaitReason};
use super::level::{self, NoPreempt};
use super::run::GLOBAL_EVERY;
use crate::arch;
use crate::coroutine::{CoroutineRef, Inner, ACTIVE, DONE, NO_HOME, RUNNABLE, STATE_MASK};
use crate::observe::trace;
use crate::tls;

/// Switches from the running coroutine to its scheduler with `action`.
/// Returns once the coroutine is resumed (possibly on another executor if
/// migration is on). The caller holds `_np`, whose level is restored.
fn suspend(_np: &NoPreempt, action: Action) {
    let exec = current_executor().expect("coroutines: suspend outside an executor");
    let co = exec.current.get();
    let level = level::current();
    exec.action.set(action);
    // SAFETY: we run on coroutine `co`'s stack; its `sp` slot is ours to
    // write while we own the right to run it; the scheduler context is
    // suspended at `sched_sp` and resumed exactly once here.
    let resumed_on = unsafe { arch::switch((*co).sp.get(), *exec.sched_sp.get(), 0, exec.sched_fs) }
        as *const Executor;
    // SAFETY: the scheduler, or a coroutine switching to us directly,
    // passes its own Executor pointer when resuming.
    let exec = unsafe { &*resumed_on };
    exec.complete_pending();
    level::restore(exec, level);
}

/// Parks the running coroutine until woken (`Inner::wake`). May return
/// spuriously: callers loop on their condition.
pub(crate) fn park_current(np: &NoPreempt, reason: WaitReason) {
    if let Some(exec) = current_executor() {
        // SAFETY: we are the running coroutine of this executor.
        let me = unsafe { &*exec.current.get() };
        me.wait.set(reason);
        match reason {
            WaitReason::StdParker { .. } => exec.mark_risky(me),
            // A futex wait may be inside std's channel code after it took
            // the thread's identity address (e.g. waiting for the waker
            // list's lock before registering): keep the window.
            WaitReason::Futex { .. } => {}
            // I/O, sleeps, joins, our own park: no std channel wait is in
            // progress, so the window may serve another coroutine while we
            // wait (a new one is taken at resume if still needed). An
            // address computed through it stays valid: every window maps
            // the same pages and none is ever unmapped.
            _ => {
                // SAFETY: owner thread; our own window slot; the window is
                // handed out only after we switched out.
                let w = unsafe { std::mem::take(&mut *me.window.get()) };
                exec.windows.give(w);
            }
        }
        if exec.sched_fs != 0 {
            crate::tls::pool::before_park(me);
            if me.own_malloc.load(Ordering::Relaxed) {
                // A parked coroutine holds no malloc cache (tls/block.rs).
                let arena = crate::tls::demote_own_malloc(exec.carrier_errno);
                me.own_arena.store(arena, Ordering::Relaxed);
                me.own_malloc.store(false, Ordering::Relaxed);
            }
        }
        if direct_park_on(exec).is_some() {
            return;
        }
    }
    suspend(np, Action::Park);
}

/// Fast path of a park: switch straight to the next local coroutine,
/// without a round trip through the scheduler (what `direct_yield_on`
/// does for a yield). None, having done nothing: the scheduler must
/// decide. Some: parked and resumed, or not parked at all because a wake
/// had already arrived (a spurious return: callers loop).
///
/// Invariant: PARKED is published by the *next* side, after our context
/// is saved (`complete_pending`, as the scheduler does after a switch):
/// whoever wins PARKED -> RUNNABLE may queue us anywhere (migration), and
/// a thief may resume us at once. Our reference travels in `pending`, so
/// the coroutine — and the `sp` slot the switch writes — stays alive.
#[inline]
fn direct_park_on(exec: &'static Executor) -> Option<&'static Executor> {
    let (next, _) = direct_next(exec)?;
    // SAFETY: owner thread; we are the running coroutine.
    let me = unsafe { (*exec.running.get()).take() }.expect("running coroutine");
    exec.account_out(&me, trace::END_PARK);
    let my_sp: *mut usize = me.sp.get();
    let level = level::current();
    // SAFETY: we are `me`, running on this thread: its identity is in the
    // slots and ours to save.
    unsafe { exec.ident.save(&mut *me.ident.get()) };
    let own_malloc = me.own_malloc.load(Ordering::Relaxed);
    exec.pending.set(Some((me, Action::Park)));
    // SAFETY: `my_sp` is ours, kept alive by `pending`.
    Some(unsafe { switch_direct(exec, my_sp, next, level, own_malloc) })
}

/// `coroutines::yield_now`: puts the running coroutine at the back of its
/// executor's ready queue. One thread-local lookup on the fast path (a
/// direct yield), instead of one each for the coroutine check, the
/// no-preempt guard and the switch. Returns false on a plain thread.
pub(crate) fn yield_now_fast() -> bool {
    let Some(exec) = current_executor() else {
        return false;
    };
    if exec.current.get().is_null() {
        return false;
    }
    // Raise the no-preempt level by hand (what NoPreempt::new does: our
    // own level first, then the executor, re-read, is stable; level.rs
    // step 1): the direct yield returns the executor we resume on, where
    // we lower it.
    level::raise_own();
    let Some(exec) = current_executor() else {
        level::unraise_own();
        return false;
    };
    level::publish(exec);
    match direct_yield_on(exec) {
        Some(exec) => level::lower_on(exec),
        None => {
            // Slow path: let a guard own the raised level from here on
            // (suspend restores it on resume; the drop lowers it on
            // whichever executor we then run on).
            let np = NoPreempt::adopt_raised();
            suspend(&np, Action::Yield);
        }
    }
    true
}

/// A preemption came due while the running coroutine was in hook or
/// runtime code (preempt/signal.rs `yield_wanted`), and its no-preempt
/// level just dropped back to 0 (level.rs, `NoPreempt`'s drop): yield here
/// if the preemption handler would have preempted at this point — on the
/// coroutine's own stack (not a signal handler's alternate stack), not
/// panicking, no frame of C code or of a std no-preempt zone on the stack
/// (preempt/zones.rs; a hook called from C returns into C, which must not
/// be switched away from), and none of a library with a pooled thread
/// registration (tls/pool.rs). Otherwise the request is dropped: the monitor
/// asks again at the next due preemption.
/// A preempted-foreign-code hijack landed (preempt/hijack.rs): the
/// coroutine just returned from foreign code into its Rust caller. Yields
/// through `safe_point_yield` if the preemption was asked for in this very
/// run (the executor's switch count is still `armed_at`) and the
/// coroutine's level is 0.
#[cold]
#[inline(never)]
pub(crate) fn hijack_safe_point(armed_at: u64) {
    if level::current() != 0 {
        return;
    }
    let Some(exec) = current_executor() else {
        return;
    };
    // Not the run it was armed in, or a fork child returning through its
    // copy of the trampoline (another thread id).
    if exec.shared.switches.load(Ordering::Relaxed) != armed_at || crate::sys::gettid() != exec.tid
    {
        return;
    }
    bump(&exec.shared.preempt.return_landings);
    safe_point_yield(exec);
}

#[cold]
#[inline(never)]
pub(super) fn safe_point_yield(exec: &'static Executor) {
    exec.shared
        .preempt
        .yield_wanted
        .store(false, Ordering::Relaxed);
    let co = exec.current.get();
    if co.is_null() {
        return;
    }
    // SAFETY: `current` is non-null only while run_coroutine holds the
    // coroutine, which is the one running this code.
    let co = unsafe { &*co };
    let (lo, hi) = (
        co.stack_lo.load(Ordering::Relaxed),
        co.stack_hi.load(Ordering::Relaxed),
    );
    let rsp: usize;
    // SAFETY: reads RSP into a register; no memory access.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    if rsp <= lo || rsp > hi || std::thread::panicking() {
        return;
    }
    let Some(table) = crate::preempt::zones::table() else {
        return;
    };
    if !table.have_symtab
        || crate::preempt::walk::stack_zone(
            table,
            crate::preempt::walk::here(),
            rsp,
            hi,
            &exec.shared.preempt.scan_hits_cleared,
        )
        .is_some()
    {
        return;
    }
    // Not inside a library whose thread registration is pooled (tls/pool.rs
    // `library_on_stack`): the 10,000 coroutines of the tracing test,
    // switched out at their log lines' `write`, overflowed its table.
    if tls::pool::active() && tls::pool::library_on_stack(rsp, hi) {
        return;
    }
    bump(&exec.shared.preempt.safe_point_yields);
    // errno: the hook that just returned may have set it for its caller,
    // who has not read it yet; with shared thread-locals the coroutines run
    // meanwhile would overwrite it (with per-coroutine ones it is the
    // coroutine's own: restoring is then a no-op).
    // SAFETY: __errno_location returns the calling thread's errno (the
    // running coroutine's with per-coroutine thread-locals), valid for
    // reads and writes; re-read after the switch, which may change it.
    let errno = unsafe { *libc::__errno_location() };
    // Through the scheduler (not a direct switch), queued as a preempted
    // coroutine (run.rs, `safe_point`).
    let np = NoPreempt::new();
    exec.safe_point.set(true);
    suspend(&np, Action::Yield);
    drop(np);
    // SAFETY: as above, on whatever thread we resumed on.
    unsafe { *libc::__errno_location() = errno };
}

/// The coroutine a direct switch (yield or park) goes to, and whether it
/// came from the `next` slot: the `next` slot, else the front of `ready`
/// (with migration: the inbox, then `runq`), if it was not preempted (that
/// one resumes through the full-restore path, which must be entered from
/// the scheduler) and has started (with per-coroutine TLS a never-run one
/// starts here only with a block from `tls_cache`, else in scheduler
/// context). None when the scheduler must
/// decide: the fairness tick (every `GLOBAL_EVERY`-th pick, run.rs),
/// nothing local.
#[inline(always)]
fn direct_next(exec: &'static Executor) -> Option<(CoroutineRef, bool)> {
    // The spare executor picks in its own order (spare.rs).
    if exec.is_spare() {
        return None;
    }
    let tick = exec.tick.get().wrapping_add(1);
    if tick % GLOBAL_EVERY == 0 {
        return None;
    }
    exec.tick.set(tick);
    exec.drain_inbox();
    let from_slot = exec.next.take(&exec.shared.next_id);
    let took_slot = from_slot.is_some();
    let next = match from_slot {
        Some(t) => t,
        None if exec.rt.config.migrate => {
            // Migration: woken coroutines wait in the (stealable) inbox,
            // yielded and preempted ones in `runq`.
            exec.pop_woken().or_else(|| exec.pop_runq())?
        }
        None => {
            // SAFETY: owner thread; no reference into `ready` is live.
            let ready = unsafe { &mut *exec.ready.get() };
            match ready.front() {
                Some(t) if !t.preempted.load(Ordering::Relaxed) => {
                    exec.pop_ready().expect("front exists")
                }
                _ => return None,
            }
        }
    };
    // A coroutine that never ran and needs a TLS block is started here,
    // in the running coroutine's context, only from this executor's block
    // cache (an `Executor` field; `reuse` uses no thread-local of the
    // runtime); a fresh stack comes from the stack pool, whose cache is
    // the carrier's thread-local: that start goes through the scheduler.
    if next.preempted.load(Ordering::Relaxed)
        || (tls::enabled()
            // SAFETY: owner thread; `sp` is 0 only before the first run.
            && unsafe { *next.sp.get() } == 0
            && !exec.has_cached_block(next.stack_size))
    {
        if took_slot || exec.rt.config.migrate {
            // (With migration the slot is empty here: taken just above.)
            exec.next.replace(next, &exec.shared.next_id);
        } else {
            exec.push_woken(next); // back to the front of `ready`
        }
        return None;
    }
    if !ensure_started(exec, &next) {
        return None; // finished with an error instead; the scheduler picks on
    }
    Some((next, took_slot))
}

/// Fast path of a yield: switch straight to the next local coroutine,
/// without a round trip through the scheduler context (one switch instead
/// of two). Returns None, having done nothing, when the scheduler must
/// decide (fairness ticks, migration, nothing local, or a next coroutine
/// that resumes through the preemption full-restore path — that path does
/// not restore a no-preempt level, so it must be entered from the
/// scheduler, which zeroes the level).
///
/// Invariant: the yielding coroutine is queued by the *next* side
/// (`complete_pending`), after its context is saved, so no other executor
/// can resume it half-saved even where it may be stolen (migration). The
/// handler does not preempt this window (the no-preempt level is raised
/// until the switch).
///
/// `exec` is the calling thread's executor; returns the executor the
/// coroutine was resumed on (None: nothing was done).
#[inline]
fn direct_yield_on(exec: &'static Executor) -> Option<&'static Executor> {
    let (next, _) = direct_next(exec)?;
    // SAFETY: owner thread; we are the running coroutine.
    let me = unsafe { (*exec.running.get()).take() }.expect("running coroutine");
    exec.account_out(&me, trace::END_YIELD);
    let my_sp: *mut usize = me.sp.get();
    let level = level::current();
    // SAFETY: we are `me`, running on this thread: its identity is in the
    // slots and ours to save before anyone else can run it.
    unsafe { exec.ident.save(&mut *me.ident.get()) };
    // Queued by the next side, once our context is saved.
    let own_malloc = me.own_malloc.load(Ordering::Relaxed);
    exec.pending.set(Some((me, Action::Yield)));
    // SAFETY: `my_sp` is ours, kept alive by `pending`.
    Some(unsafe { switch_direct(exec, my_sp, next, level, own_malloc) })
}

/// The switch of a direct yield or park: makes `next` the running
/// coroutine and switches to it, saving our context at `my_sp`. Returns
/// the executor we are resumed on, with our no-preempt `level` restored.
///
/// # Safety
/// `my_sp` is the `sp` slot of the calling coroutine, kept alive by a
/// reference outside this stack; `next` is a coroutine this executor owns
/// the right to run (from `direct_next`).
#[inline(always)]
unsafe fn switch_direct(
    exec: &'static Executor,
    my_sp: *mut usize,
    next: CoroutineRef,
    level: u32,
    own_malloc: bool,
) -> &'static Executor {
    // Where the carrier's malloc words are: in this coroutine's block if
    // it has one and uses them, else in the carrier's. A `next` that uses
    // them takes them straight from there (one copy, as before malloc
    // state per coroutine); a `next` with its own leaves them alone, so
    // they go back to the carrier first, as at a switch-out through the
    // scheduler.
    let from_errno = if exec.sched_fs != 0 && !own_malloc {
        let mine = tls::layout().errno_of(tls::read_fs_base());
        if next.own_malloc.load(Ordering::Relaxed) {
            // SAFETY: our own running block and the carrier's, on this
            // thread; neither is in a malloc call (the switch path).
            unsafe { tls::copy_malloc_words(mine, exec.carrier_errno) };
            exec.carrier_errno
        } else {
            mine
        }
    } else {
        exec.carrier_errno
    };
    let (sp, fs) = exec.prepare_resume(next, from_errno);
    // SAFETY: caller for `my_sp`; `sp` is the suspended frame of a
    // coroutine we own the right to run and that restores its own
    // no-preempt level (it suspended through `suspend` or a direct switch,
    // or is fresh and starts at level 0 in `coroutine_main`); `fs` is its
    // block (or 0).
    let resumed_on =
        unsafe { arch::switch(my_sp, sp, exec as *const Executor as usize, fs) } as *const Executor;
    // SAFETY: whoever resumes us passes its Executor.
    let exec = unsafe { &*resumed_on };
    exec.complete_pending();
    level::restore(exec, level);
    exec
}

/// Entry function of every coroutine (see asm/x86_64/entry.S).
unsafe extern "C" fn coroutine_main(arg: usize, exec: usize) -> ! {
    // A fresh coroutine starts at no-preempt level 0 whoever switched to
    // it (the scheduler already zeroed it; a direct yield did not).
    // SAFETY: the resumer passes its Executor.
    unsafe {
        let exec = &*(exec as *const Executor);
        exec.complete_pending();
        level::restore(exec, 0);
    };
    let inner = arg as *const Inner;
    // SAFETY: the executor running us holds a strong reference for as long
    // as we run, and we own `entry` (first run).
    let body = unsafe { (*(*inner).entry.get()).take() };
    if let Some(body) = body {
        // The body catches the user's panic itself; this outer catch only
        // guards the runtime's own bookkeeping, which must not unwind into
        // the assembly frame (it has no landing pad).
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.run(None))).is_err() {
            crate::sys::fatal("coroutine bookkeeping panicked");
        }
    }
    // In a fork child this coroutine ran on as a plain thread, the only
    // thread there (sched/thread.rs `FORK_CHILD`): it finished, so the
    // child exits, as a process does when its last thread returns (the
    // scheduler's copy must not run the parent's coroutines).
    if super::thread::fork_child() && current_executor().is_none() {
        // SAFETY: exit runs atexit handlers and flushes stdio, as the end of
        // the last thread does.
        unsafe { libc::exit(0) };
    }
    let np = NoPreempt::new();
    if let Some(e) = current_executor() {
        e.ident.release_current();
    }
    suspend(&np, Action::Exit);
    crate::sys::fatal("a finished coroutine was resumed");
}

impl Executor {
    /// Slow path of `prepare_resume`: a window for `inner` (tls/alias.rs).
    #[cold]
    #[inline(never)]
    pub(super) fn give_window(&self, inner: &Inner) {
        // SAFETY: owner thread, the coroutine is not running.
        unsafe { *inner.window.get() = self.windows.take() };
    }

    /// Counts `inner` (switched out, or about to be) as risky if it has
    /// no window (see `risky`).
    pub(super) fn mark_risky(&self, inner: &Inner) {
        if !self.windows.enabled() {
            // No windows (migration on, or a plain stack): nothing to
            // decide, and a migrating coroutine must not carry a count
            // from one executor to another.
            return;
        }
        // SAFETY: owner thread; the window slot is touched only by it.
        let windowless = unsafe { *inner.window.get() } == 0;
        if windowless && !inner.risky.load(Ordering::Relaxed) {
            inner.risky.store(true, Ordering::Relaxed);
            self.risky.set(self.risky.get() + 1);
        }
    }

    /// Makes `co` the running coroutine of this executor (state, home,
    /// `current`, switch counter, its TLS block's carrier-bound words).
    /// The caller switches to it next: returns its saved stack pointer and
    /// thread pointer (0: unchanged). `from_errno`: errno address of the
    /// side running now (carrier or coroutine block; 0 without blocks).
    #[inline(always)]
    pub(super) fn prepare_resume(&self, co: CoroutineRef, from_errno: usize) -> (usize, usize) {
        let inner: &Inner = &co;
        self.idle_since.set(None);
        if inner.state.load(Ordering::Relaxed) & STATE_MASK == RUNNABLE {
            // Acquire: see every condition set by the wakers (module doc of
            // coroutine.rs, step 3).
            inner.state.swap(ACTIVE, Ordering::AcqRel);
        }
        let home = inner.home.load(Ordering::Relaxed);
        if home == NO_HOME {
            inner.home.store(self.index as u32, Ordering::Relaxed);
            self.shared.homed.fetch_add(1, Ordering::Relaxed);
        } else if self.rt.config.migrate && home != self.index as u32 && !self.is_spare() {
            // With migration `home` is the last executor (wakes from
            // outside go to its inbox); the count moves with it.
            inner.home.store(self.index as u32, Ordering::Relaxed);
            self.rt.executors[home as usize]
                .homed
                .fetch_sub(1, Ordering::Relaxed);
            self.shared.homed.fetch_add(1, Ordering::Relaxed);
        }
        inner.preempted.store(false, Ordering::Relaxed);
        if trace::flags() != 0 {
            trace::switch_in(self.index, inner, &self.slice_start);
        }
        self.run_mark
            .set(self.shared.run_ns.load(Ordering::Relaxed));
        let p = Arc::as_ptr(&co);
        self.current.set(p);
        // Before `current` (Release): a reader that sees it sees the id.
        self.shared
            .current_id
            .store(inner.id.as_u64().get(), Ordering::Relaxed);
        self.shared
            .current
            .store(p as *mut Inner, Ordering::Release);
        bump(&self.shared.switches);
        super::blocked::note_running();
        // SAFETY: we own the right to run `co`; nobody else touches `sp`
        // or `ident`; the slots are this thread's.
        let sp = unsafe {
            self.ident.load(&*inner.ident.get());
            // Owner-only flag: plain load/store (a swap would be a locked
            // instruction on every switch).
            if inner.risky.load(Ordering::Relaxed) {
                inner.risky.store(false, Ordering::Relaxed);
                self.risky.set(self.risky.get() - 1);
            }
            if *inner.window.get() == 0 && self.risky.get() > 0 {
                self.give_window(inner);
            }
            self.windows.enter(*inner.window.get());
            *inner.sp.get()
        };
        // SAFETY: owner thread, the coroutine is not running: its block is
        // ours to update (tls/block.rs, switch-in).
        let fs = unsafe { *inner.tls.get() };
        if fs != 0 {
            // SAFETY: a live block of a coroutine not running anywhere;
            // `from_errno` holds the carrier's malloc words (caller).
            unsafe {
                tls::layout().switch_in(
                    fs,
                    self as *const Executor as usize,
                    self.tid,
                    from_errno,
                    inner.own_malloc.load(Ordering::Relaxed),
                );
                crate::tls::pool::switching_in(inner, fs);
            }
        }
        // SAFETY: owner thread; `running` is only touched around switches.
        unsafe { *self.running.get() = Some(co) };
        (sp, fs)
    }

    /// Adds the sampled CPU time of the run ending now to `co` (owner: the
    /// coroutine switching out, on this executor), and ends its trace
    /// slice (`why`: observe/trace.rs `END_*`) when tracing.
    #[inline(always)]
    pub(super) fn account_out(&self, co: &CoroutineRef, why: u8) {
        if trace::flags() != 0 {
            trace::switch_out(self.index, co, why, &self.slice_start);
        }
        // First suspension: into the registry of live coroutines (a
        // coroutine that finishes without ever suspending never pays for
        // it; observe/registry.rs). Callers run in the scheduler context
        // or with the level raised around a direct switch.
        if why != trace::END_EXIT
            && co.reg_slot.load(Ordering::Relaxed) == crate::observe::registry::UNREGISTERED
        {
            self.registry_op(co, true);
        }
        let d = self.shared.run_ns.load(Ordering::Relaxed) - self.run_mark.get();
        if d != 0 {
            co.cpu_ns
                .store(co.cpu_ns.load(Ordering::Relaxed) + d, Ordering::Relaxed);
        }
    }

    /// Whether `tls_cache` holds a block for a stack of `stack_size`
    /// (what `ensure_started` reuses).
    #[inline]
    pub(super) fn has_cached_block(&self, stack_size: usize) -> bool {
        // SAFETY: owner thread (callers run on it, with preemption off);
        // no reference into the cache is live.
        unsafe {
            (*self.tls_cache.get())
                .iter()
                .rev()
                .any(|c| c.2 == stack_size)
        }
    }

    /// Completes what the coroutine that switched directly to the running
    /// side did (`pending`): called first thing by every side a direct
    /// switch can resume (suspend, switch_direct, coroutine_main).
    #[inline(always)]
    pub(super) fn complete_pending(&self) {
        if let Some((co, action)) = self.pending.take() {
            self.complete_pending_slow(co, action);
        }
    }

    #[inline(never)]
    pub(super) fn complete_pending_slow(&self, co: CoroutineRef, action: Action) {
        if action == Action::Park {
            self.complete_park(co);
        } else {
            bump(&self.shared.stats.yields);
            self.requeue(co);
        }
    }
}

/// Gives a coroutine that never ran its stack and initial frame (first
/// run, by the executor that owns the right to run it, with preemption of
/// the caller disabled: the stack pool has a thread cache). Returns false
/// if no stack could be had: the coroutine is then finished here, its
/// joiner getting the error, and must not be switched to.
pub(super) fn ensure_started(exec: &Executor, co: &CoroutineRef) -> bool {
    // SAFETY: we own the right to run `co`; `sp` is 0 only before the
    // first run.
    if unsafe { *co.sp.get() } != 0 {
        return true;
    }
    // It starts here or finishes with an error: no longer waiting for a
    // first run (the monitor's `never_run_waiting`).
    bump(&exec.shared.first_runs);
    // With its own thread-locals, the coroutine's TLS block takes the top
    // of the stack: ask for that much more, so the usable size stays what
    // the user asked for.
    let extra = if exec.sched_fs != 0 {
        tls::layout().span()
    } else {
        0
    };
    if extra != 0 {
        // SAFETY: owner thread, scheduler context or a direct switch with
        // preemption off (`direct_next`: only when this finds a block, so
        // the stack pool below runs in scheduler context).
        let cache = unsafe { &mut *exec.tls_cache.get() };
        if let Some(i) = cache.iter().rposition(|c| c.2 == co.stack_size) {
            let (stack, tp, _) = cache.swap_remove(i);
            // SAFETY: the block of a finished coroutine, at this stack's
            // top, never to run again; scheduler context.
            // (`tls_snap` is likewise the owner's.)
            let top = unsafe { tls::layout().reuse(tp, &mut *exec.tls_snap.get()) };
            co.stack_lo.store(stack.bottom(), Ordering::Relaxed);
            co.stack_hi.store(top, Ordering::Relaxed);
            // SAFETY: owner of the right to run `co`; the stack is ours,
            // writable below the block, `top` 16-aligned.
            unsafe {
                *co.tls.get() = tp;
                *co.stack.get() = Some(stack);
                *co.sp.get() = arch::init_stack(top, coroutine_main, Arc::as_ptr(co) as usize);
            }
            return true;
        }
    }
    match crate::stack::alloc(co.stack_size + extra) {
        Ok(stack) => {
            let mut top = stack.top();
            if exec.sched_fs != 0 {
                let l = tls::layout();
                // SAFETY: the stack is fresh and ours, `span()` bytes larger
                // than the coroutine's stack size; its top `span()` bytes
                // become the block; scheduler context on the owner thread,
                // so `tls_snap` is ours.
                match unsafe {
                    l.create(
                        top,
                        stack.bottom(),
                        exec.carrier_tp,
                        &mut *exec.tls_snap.get(),
                    )
                } {
                    Some((tp, below)) => {
                        // SAFETY: owner of the right to run `co`.
                        unsafe { *co.tls.get() = tp };
                        top = below;
                    }
                    None => {
                        drop(stack);
                        return fail_start(
                            exec,
                            co,
                            std::io::Error::new(
                                std::io::ErrorKind::OutOfMemory,
                                "cannot allocate the thread-local storage of the coroutine",
                            ),
                        );
                    }
                }
            }
            co.stack_lo.store(stack.bottom(), Ordering::Relaxed);
            co.stack_hi.store(top, Ordering::Relaxed);
            // SAFETY: as above; the stack is fresh, writable, 16-aligned top.
            unsafe {
                *co.stack.get() = Some(stack);
                *co.sp.get() = arch::init_stack(top, coroutine_main, Arc::as_ptr(co) as usize);
            }
            true
        }
        Err(e) => fail_start(exec, co, e),
    }
}

/// A coroutine that could not start (no stack or TLS block): finished here,
/// its joiner getting `e`. Returns false (for `ensure_started`).
fn fail_start(exec: &Executor, co: &CoroutineRef, e: std::io::Error) -> bool {
    // SAFETY: we own the right to run `co`, which never ran: the body is
    // ours to take on first run.
    if let Some(body) = unsafe { (*co.entry.get()).take() } {
        body.run(Some(format!(
            "coroutines: coroutine '{}' could not start: {e}",
            co.name.as_deref().unwrap_or("<unnamed>")
        )));
    }
    co.state.store(DONE, Ordering::Release);
    bump(&exec.shared.stats.finished);
    false
}
