//! The run loop: which coroutine an executor runs next, the idle search,
//! and running one coroutine until it switches back.
//!
//! One pick (`next_coroutine`), in order; `tick` counts picks:
//! 1. with migration, except every `FRESH_EVERY`-th pick: a woken
//!    coroutine from the inbox (ahead of the preempted CPU hogs);
//! 2. every `GLOBAL_EVERY`-th pick: the global injector, else due timers
//!    and a non-blocking epoll poll;
//! 3. the `next` slot (a spawned coroutine, or a joiner woken by a
//!    finishing one; not stealable, counted by the monitor as waiting
//!    work, so nothing may keep being picked ahead of it);
//! 4. right after a preemption (`prefer_new`), unless another executor has
//!    fewer started coroutines waiting: one never-run coroutine (own
//!    `fresh`, the global injector, another executor's `fresh`);
//! 5. without migration the inbox is drained to the *front* of `ready`
//!    (woken coroutines first, see `push_woken`);
//! 6. every `FRESH_EVERY`-th pick: own `fresh`;
//! 7. `ready` (with migration: inbox, then `runq`), then own `fresh`.
//!
//! None -> `find_work`: due timers (and epoll), the same local queues
//! (`next`, `ready`, with migration inbox and `runq`, `fresh`), the global
//! injector, then stealing from other executors (with migration their
//! inbox and `runq` first, then their `fresh`). Still none -> `idle`:
//! `SEARCH_ROUNDS` rounds of `find_work` (epoll every 16th), spinning
//! `SEARCH_SPINS` of them and yielding the CPU in the rest, then sleep on
//! the parker (sched/mod.rs protocol, idle.rs).
//!
//! `run_coroutine`: publish `current` (for the monitor and the preemption
//! handler), bump `switches`, switch in (switch.rs `prepare_resume`); on
//! return clear `current`, reset the no-preempt level (level.rs) and act on
//! `action`: Yield -> back of `ready` (with migration: `runq`); Preempted
//! -> back of `ready` (with migration: the global injector, so hogs rotate
//! over executors); Park -> CAS ACTIVE->PARKED or requeue if notified
//! meanwhile; Exit -> keep the stack with its TLS block for reuse (or free
//! them) and drop the scheduler's reference.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_deque::Steal;

use super::executor::{
    bump, steal_from, steal_one, Action, Executor, ExecutorShared, TLS_CACHE_CAP,
};
use super::level;
use super::switch::ensure_started;
use crate::arch;
use crate::coroutine::{CoroutineRef, Inner, DONE};
use crate::observe::trace;
use crate::tls;

/// Fairness: every `GLOBAL_EVERY`-th pick looks at the global injector
/// first (then due timers and epoll), and a direct switch (switch.rs) goes
/// through the scheduler instead, so coroutines spawned from outside, timers
/// and fd readiness are not starved by a busy executor. A prime, so it does
/// not fall into step with `FRESH_EVERY` or a program's own period.
pub(super) const GLOBAL_EVERY: u32 = 61;

/// Fairness between woken and never-run coroutines: every `FRESH_EVERY`-th
/// pick takes a never-run one from own `fresh` first (and, with migration,
/// skips the woken-first step), so neither class starves the other.
const FRESH_EVERY: u32 = 8;

/// Idle search: rounds in all, and how many spin before yielding the CPU.
const SEARCH_ROUNDS: u32 = 64;
const SEARCH_SPINS: u32 = 48;

impl Executor {
    #[inline]
    pub(super) fn next_coroutine(&self) -> Option<CoroutineRef> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if self.rt.config.migrate && tick % FRESH_EVERY != 0 {
            // Woken coroutines first (low wake-up latency), as `ready`'s
            // front is without migration: ahead of the preempted CPU hogs
            // waiting in the global queue.
            if let Some(t) = self.pop_woken() {
                return Some(t);
            }
        }
        if tick % GLOBAL_EVERY == 0 {
            self.retry_registry_ops_if_any();
            if let Some(t) = self.steal_global() {
                return Some(t);
            }
            self.fire_timers(true);
        }
        // Before the preference for new coroutines: with migration the
        // global queue it serves also holds preempted ones, and a lone
        // hog preempted for the coroutine in `next` (the monitor counts
        // it as waiting work) was picked again from there at every
        // preemption while `next` waited for good.
        if let Some(t) = self.next.take(&self.shared.next_id) {
            return Some(t);
        }
        let prefer_new = self.prefer_new.replace(false);
        if prefer_new && !self.busier_than_others() {
            if let Some(t) = self.take_one_new() {
                return Some(t);
            }
        }
        self.drain_inbox();
        if tick % FRESH_EVERY == 0 {
            if let Some(t) = self.fresh.pop() {
                return Some(t);
            }
        }
        if let Some(t) = self.pop_ready() {
            return Some(t);
        }
        if self.rt.config.migrate {
            if let Some(t) = self.pop_woken().or_else(|| self.pop_runq()) {
                return Some(t);
            }
        }
        self.fresh.pop()
    }

    /// Whether some other executor has fewer started coroutines waiting
    /// than we do: then we leave never-run coroutines to it, so that CPU
    /// hogs spawned together end up spread evenly (without migration
    /// spawn-time placement decides fairness).
    pub(super) fn busier_than_others(&self) -> bool {
        // Started coroutines waiting: `ready`, or with migration the
        // stealable queues.
        let waiting =
            |e: &ExecutorShared| e.ready_len.load(Ordering::Relaxed) + e.runq.len() + e.inbox.len();
        let mine = waiting(self.shared);
        self.rt
            .live_executors()
            .iter()
            .any(|e| e.index != self.index && waiting(e) < mine)
    }

    /// One never-run coroutine: own `fresh`, else one from the global
    /// injector, else stolen from another executor's `fresh`.
    pub(super) fn take_one_new(&self) -> Option<CoroutineRef> {
        if let Some(t) = self.fresh.pop() {
            return Some(t);
        }
        if !self.rt.injector.is_empty() {
            loop {
                match self.rt.injector.steal() {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        self.steal_others()
    }

    pub(super) fn steal_global(&self) -> Option<CoroutineRef> {
        loop {
            match self.rt.injector.steal_batch_and_pop(&self.fresh) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    pub(super) fn steal_others(&self) -> Option<CoroutineRef> {
        let others = self.rt.live_executors();
        let n = others.len();
        if n <= 1 {
            return None;
        }
        let start = (self.tick.get() as usize).wrapping_mul(0x9E37_79B9) % n;
        for k in 0..n {
            let victim = &others[(start + k) % n];
            if victim.index == self.index {
                continue;
            }
            // Migration: a woken coroutine runs on whichever executor is
            // free (its executor may be busy, blocked or descheduled).
            if self.rt.config.migrate {
                if let Some(t) = steal_one(&victim.inbox).or_else(|| steal_from(&victim.runq)) {
                    bump(&self.shared.stats.steals);
                    return Some(t);
                }
            }
            loop {
                match victim.stealer.steal_batch_and_pop(&self.fresh) {
                    Steal::Success(t) => {
                        bump(&self.shared.stats.steals);
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }

    /// Due timers, and (if `poll`) a non-blocking epoll poll while
    /// coroutines wait on fds.
    pub(super) fn fire_timers(&self, poll: bool) {
        crate::reactor::timers().fire_due(Instant::now());
        if poll {
            crate::reactor::poll_nonblocking();
        }
    }

    /// Every source of work in turn. `poll`: include a non-blocking epoll
    /// poll (a system call; the idle search asks only now and then).
    pub(super) fn find_work(&self, poll: bool) -> Option<CoroutineRef> {
        self.retry_registry_ops_if_any();
        self.fire_timers(poll);
        self.drain_inbox();
        if let Some(t) = self.next.take(&self.shared.next_id) {
            return Some(t);
        }
        if let Some(t) = self.pop_ready() {
            return Some(t);
        }
        if self.rt.config.migrate {
            // Woken by the timers or epoll just fired, or queued here.
            if let Some(t) = self.pop_woken().or_else(|| self.pop_runq()) {
                return Some(t);
            }
        }
        if let Some(t) = self.fresh.pop() {
            return Some(t);
        }
        if let Some(t) = self.steal_global() {
            return Some(t);
        }
        self.steal_others()
    }

    pub(super) fn has_visible_work(&self) -> bool {
        // `next` is always empty here: find_work took it.
        !self.shared.inbox.is_empty()
            || !self.shared.runq.is_empty()
            || !self.fresh.is_empty()
            || !self.rt.injector.is_empty()
            || self.rt.live_executors().iter().any(|e| {
                e.index != self.index
                    && (!e.stealer.is_empty()
                        || (self.rt.config.migrate && !(e.inbox.is_empty() && e.runq.is_empty())))
            })
            || crate::reactor::timers().any_due(Instant::now())
    }

    /// Nothing to run: search a little (`SEARCH_SPINS` rounds spinning,
    /// then a few `sched_yield`s that let a thread sharing the CPU — say a
    /// client of this server — run), then sleep until woken or until
    /// the next timer is due (if this executor holds the timer role).
    pub(super) fn idle(&self) -> Option<CoroutineRef> {
        let rt = self.rt;
        rt.searching.fetch_add(1, Ordering::SeqCst);
        for i in 0..SEARCH_ROUNDS {
            // epoll at the start and every 16th round (each is a system
            // call; the blocking poll at sleep time catches the rest).
            if let Some(t) = self.find_work(i % 16 == 0) {
                rt.searching.fetch_sub(1, Ordering::SeqCst);
                // A searcher that found work stops searching: producers
                // that skipped their wake-up because it searched
                // (`notify_idle`) may have queued more, so it passes the
                // search on to a sleeper, as Go's spinning Ms do. Without
                // this, 8 coroutines spawned at once could all land on one
                // executor while the other slept for good (W6: 1 run in
                // 3 used one executor of two).
                rt.notify_idle();
                return Some(t);
            }
            if i < SEARCH_SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        rt.searching.fetch_sub(1, Ordering::SeqCst);
        self.shared.parker.prepare();
        rt.sleepers.fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.has_visible_work() {
            self.shared.parker.cancel();
            crate::preempt::executor_woke();
            rt.sleepers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let timers = crate::reactor::timers();
        let role = timers.claim_sleeper(self.index);
        let mut timeout = if role { timers.until_next() } else { None };
        // Registry updates deferred because `dump()` held their shard
        // (executor.rs `registry_op`) must not wait for this executor's
        // next wake-up, which may never come: retry now, and if a shard is
        // still busy, sleep at most 1 ms before trying again.
        self.retry_registry_ops_if_any();
        // SAFETY: owner thread; a length read, no reference kept.
        if !unsafe { (*self.registry_pending.get()).is_empty() } {
            let retry = std::time::Duration::from_millis(1);
            timeout = Some(timeout.map_or(retry, |t| t.min(retry)));
        }
        if self.is_surplus() {
            // Wake up in time to retire (blocked.rs).
            let since = *self.idle_since.get().get_or_insert(Instant::now());
            let left = super::blocked::RETIRE_AFTER.saturating_sub(since.elapsed())
                + std::time::Duration::from_millis(1);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
            self.idle_since.set(Some(since));
        }
        self.shared.parker.wait(self.index, timeout);
        // Leaving the parker: the monitor may sleep because every executor
        // was parked (preempt/monitor.rs `run`, step 3), so the time it
        // stamps parks with is stale: refresh it before anything runs (one
        // clock read per wake-up from sleep; observe/wait.rs `NOW`).
        crate::observe::wait::tick(Instant::now());
        crate::preempt::executor_woke();
        if role {
            timers.release_sleeper(self.index);
        }
        rt.sleepers.fetch_sub(1, Ordering::SeqCst);
        // Woken: we are searching until we find work or sleep again.
        None
    }

    /// Queues a coroutine that was preempted (or yielded at a safe point
    /// for a preemption): never-run coroutines come first at the next pick.
    fn queue_preempted(&self, co: CoroutineRef) {
        self.prefer_new.set(true);
        if self.rt.config.migrate {
            // Like Go's preempted goroutines: to the global queue, which
            // every executor serves in turn, so CPU hogs rotate over all
            // executors and share them evenly.
            self.rt.injector.push(co);
            // Every executor serves that queue, a sleeping one too.
            self.rt.notify_idle();
        } else {
            self.requeue(co)
        }
    }

    // Inlined into the executor loop (sched/thread.rs), as it was when
    // both lived in one file: a call per coroutine run measured +2 % on
    // spawn+join (W2b).
    #[inline]
    pub(super) fn run_coroutine(&self, co: CoroutineRef) {
        if !ensure_started(self, &co) {
            return;
        }
        // A coroutine resuming after a voluntary suspension restores its own
        // level first thing; until then (and with shared thread-locals the
        // level is this thread's) it must not be preempted: it may be
        // holding the executor it was resumed by in a register. A preempted
        // one resumes at level 0 (the full-restore path sets none).
        let resumes_preempted = co.preempted.load(Ordering::Relaxed);
        level::set_own(if resumes_preempted { 0 } else { 1 });
        let (sp, fs) = self.prepare_resume(co, self.carrier_errno);
        // SAFETY: we own the right to run the coroutine (popped from a queue);
        // its saved sp is a suspended frame on its live stack, which
        // `running` keeps alive until the coroutine switches back; `fs` is
        // its block (or 0).
        unsafe {
            arch::switch(
                self.sched_sp.get(),
                sp,
                self as *const Executor as usize,
                fs,
            )
        };
        // The coroutine that switched back is whatever `running` holds now
        // (a direct yield may have changed it).
        // SAFETY: owner thread, scheduler context.
        let co = unsafe { (*self.running.get()).take() }
            .unwrap_or_else(|| crate::sys::fatal("scheduler resumed with no running coroutine"));
        let inner: &Inner = &co;
        // A safe-point yield asked for the run that just ended is moot.
        let wanted = &self.shared.preempt.yield_wanted;
        if wanted.load(Ordering::Relaxed) {
            wanted.store(false, Ordering::Relaxed);
        }
        self.account_out(
            &co,
            match self.action.get() {
                Action::Yield => trace::END_YIELD,
                Action::Park => trace::END_PARK,
                Action::Preempted => trace::END_PREEMPTED,
                Action::Exit => trace::END_EXIT,
            },
        );
        // SAFETY: owner thread; the coroutine is switched out: its block's
        // malloc words flow back to the carrier unless they are its own
        // (tls/block.rs).
        unsafe {
            let fs = *inner.tls.get();
            if fs != 0 && !inner.own_malloc.load(Ordering::Relaxed) {
                let l = tls::layout();
                tls::copy_malloc_words(l.errno_of(fs), self.carrier_errno);
                let preempted = matches!(self.action.get(), Action::Preempted)
                    || (matches!(self.action.get(), Action::Yield) && self.safe_point.get());
                if preempted
                    && tls::own_malloc()
                    && !self.shared.preempt.for_new_work.load(Ordering::Relaxed)
                {
                    // Preempted after a whole slice, or for a woken
                    // coroutine: it runs like a thread, so it allocates
                    // like one until it parks (tls/block.rs "malloc
                    // state"). Not when only cut short for coroutines that
                    // never ran: a coroutine spawning many (bench W2a) is
                    // preempted for its own children, and with an arena
                    // of its own it no longer reused what the executors
                    // freed (+20-25 % per spawn, and 0.5-0.7x tokio
                    // without).
                    tls::give_own_malloc(fs, inner.own_arena.load(Ordering::Relaxed));
                    inner.own_malloc.store(true, Ordering::Relaxed);
                    bump(&self.shared.stats.own_malloc);
                }
            }
        }
        // SAFETY: owner thread; the coroutine is switched out, so its
        // identity is ours to save; the slots are this thread's.
        unsafe {
            self.ident.save(&mut *inner.ident.get());
            self.ident.restore_own();
        }
        self.windows.leave();
        self.shared
            .current
            .store(std::ptr::null_mut(), Ordering::Release);
        self.current.set(std::ptr::null());
        level::reset(self);
        match self.action.get() {
            Action::Yield if self.safe_point.replace(false) => {
                // A preemption taken at a hook's exit (switch.rs
                // `safe_point_yield`): queued as the preempted are, so
                // never-run coroutines get their turn and hogs rotate.
                // It counts as one of the coroutine's preemptions.
                bump(&self.shared.stats.yields);
                bump(&inner.preemptions);
                self.queue_preempted(co);
            }
            Action::Yield => {
                bump(&self.shared.stats.yields);
                self.requeue(co)
            }
            Action::Preempted => {
                bump(&self.shared.stats.preemptions);
                bump(&inner.preemptions);
                self.mark_risky(inner);
                // It resumes through the full-restore path, which does not
                // restore a no-preempt level: see `direct_yield_on` (switch.rs).
                inner.preempted.store(true, Ordering::Relaxed);
                self.queue_preempted(co);
            }
            Action::Park => self.complete_park(co),
            Action::Exit => {
                inner.state.store(DONE, Ordering::Release);
                if inner.reg_slot.load(Ordering::Relaxed) != crate::observe::registry::UNREGISTERED
                {
                    self.registry_op(&co, false);
                }
                let home = inner.home.load(Ordering::Relaxed) as usize;
                self.rt.executors[home]
                    .homed
                    .fetch_sub(1, Ordering::Relaxed);
                bump(&self.shared.stats.finished);
                // SAFETY: the coroutine finished and will never run again;
                // we own it, so taking its stack and window back is
                // exclusive (the window is this executor's: no migration).
                let stack = unsafe { (*inner.stack.get()).take() };
                self.windows.give(std::mem::take(
                    // SAFETY: as above: the finished coroutine is ours alone.
                    unsafe { &mut *inner.window.get() },
                ));
                // SAFETY: as above; the coroutine ran its destructors
                // (coroutine.rs) and its block lives in `stack`.
                unsafe {
                    let fs = std::mem::take(&mut *inner.tls.get());
                    let cache = &mut *self.tls_cache.get();
                    match stack {
                        // Kept with its block for the next coroutine.
                        Some(stack) if fs != 0 && cache.len() < TLS_CACHE_CAP => {
                            cache.push((stack, fs, inner.stack_size));
                        }
                        stack => {
                            if fs != 0 {
                                tls::layout().destroy(fs);
                            }
                            drop(stack);
                        }
                    }
                }
            }
        }
    }
}
