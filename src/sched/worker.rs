//! The executor run loop and the coroutine side of switching.
//!
//! An executor is an OS thread running `executor_main` on its own stack
//! (the *scheduler context*). It resumes one coroutine at a time with
//! `arch::switch`; the coroutine comes back by switching to the saved
//! scheduler stack pointer after setting `action` (why it came back).
//!
//! Run loop, in order (one iteration):
//! 1. `next_task`: with migration, the inbox (woken coroutines) first on 7
//!    of 8 picks; right after a preemption, one never-run coroutine (own
//!    `fresh`, global injector, another executor's `fresh`) unless another
//!    executor has fewer started coroutines waiting; global injector every
//!    61st pick; without migration the inbox is drained to the *front* of
//!    `ready` (woken coroutines first, see `push_woken`); `fresh` first
//!    every 8th pick, else the `next` slot, `ready` (with migration: inbox,
//!    then `runq`), then `fresh`.
//! 2. none -> `find_work`: due timers, the same local queues, global
//!    injector, steal from other executors (with migration their inbox and
//!    `runq` too, else their `fresh`). Still none -> `idle` (spin briefly
//!    while `searching`, then sleep on the parker: sched/mod.rs protocol).
//! 3. `run_task`: publish `current` (for the monitor and the preemption
//!    handler), bump `switches`, switch in; on return clear `current`,
//!    reset the no-preempt level, and act on `action`: Yield -> back of
//!    `ready` (with migration: `runq`); Preempted -> back of `ready` (with
//!    migration: the global injector, so hogs rotate over executors); Park
//!    -> CAS RUNNING->PARKED or requeue if notified meanwhile; Exit ->
//!    recycle the block and the stack and drop the scheduler's reference.
//!
//! Direct switches skip the scheduler when the next coroutine is local, was
//! not preempted and has started or can start from this executor's block
//! cache (a never-run one needing a fresh stack and TLS block gets them in
//! scheduler context: the stack pool's cache is the carrier's
//! thread-local): a yield (`direct_yield_on`) or park
//! (`direct_park_on`) switches straight to the next coroutine and leaves
//! itself in `pending`; the side it switched to completes it first thing
//! (`complete_pending`: requeue, or publish PARKED), once the switch has
//! saved its context — so a thief (migration) or a waker can never resume
//! it half-saved. Every 61st pick goes through the scheduler for fairness
//! (global queue, timers, epoll).
//!
//! Per-coroutine state loaded at every switch besides the registers: the
//! thread pointer (its TLS block, tls.rs: loaded by the switch assembly,
//! with the carrier-bound words written by `prepare_resume`), or, with
//! shared thread-locals, std's thread identity (identity.rs) and the TLS
//! alias window (alias.rs).
//!
//! Executors of the first `config.workers` slots never exit (the runtime
//! lives as long as the process). An extra executor, started for a blocked
//! one, retires once it idled for a while with nothing homed on it: it
//! leaves the loop, hands its `fresh` deque back to the runtime and its
//! thread ends; the slot can be started again (sched/blocked.rs).
//!
//! No-preempt level: runtime code entered from a coroutine raises
//! `ExecutorShared::no_preempt` (a `NoPreempt` guard) so the preemption
//! handler leaves it alone. A suspend consumes the level: the scheduler
//! zeroes it after every switch-out, and `suspend` restores the coroutine's
//! own level when it is resumed.

use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{
    compiler_fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use super::idle::Parker;
use super::runtime::Runtime;
use crate::arch;
use crate::tls::alias::{StackInfo, ThreadStack, Windows};
use crate::tls::identity::{self, Slots};
use crate::tls;
use crate::coroutine::{Inner, Task, DONE, NO_HOME, PARKED, RUNNABLE, RUNNING, STATE_MASK};

/// Why a coroutine gave its executor back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Yield,
    Park,
    Exit,
    /// Set by the preemption handler (signal context) before it lands the
    /// executor in its scheduler.
    Preempted,
}

/// Why a coroutine parks (one variant per kind of wait; shows in stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum WaitReason {
    Park,
    ParkTimeout,
    Sleep,
    Join,
    Io,
    Futex,
    /// A futex wait on the coroutine's own std parker (`thread::park`,
    /// std channels): see alias.rs, lazy windows.
    StdParker,
    Offload,
}

/// Bumps a counter that only the calling (owner) thread writes: a load and
/// a store, no lock prefix; readers see a value at most one bump behind.
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Per-executor counters, written by the owner (Relaxed), read by anyone.
#[derive(Default)]
pub(crate) struct ExecutorStats {
    pub(crate) spawned: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) yields: AtomicU64,
    pub(crate) preemptions: AtomicU64,
}

/// The half of an executor that other threads (spawners, wakers, the
/// monitor, the preemption handler) may touch.
pub(crate) struct ExecutorShared {
    pub(crate) index: usize,
    /// Steals never-run coroutines from this executor's `fresh` deque.
    pub(crate) stealer: Stealer<Task>,
    /// Started coroutines woken from other threads; drained by the owner.
    pub(crate) inbox: Injector<Task>,
    /// Steals from the executor's `runq` (migration only: started
    /// coroutines that yielded or were preempted there, runnable anywhere).
    pub(crate) runq: Stealer<Task>,
    pub(crate) parker: Parker,
    /// Coroutine running now, or null in the scheduler context. Written by
    /// the owner only; read by the monitor (Acquire) and the handler.
    pub(crate) current: AtomicPtr<Inner>,
    /// Incremented by the owner at every switch into a coroutine (single
    /// writer: load+store, no lock prefix). The monitor samples it.
    pub(crate) switches: AtomicU64,
    /// No-preempt level (see module doc). Owner thread only, including
    /// its signal handler, hence Relaxed plus compiler fences.
    pub(crate) no_preempt: AtomicU32,
    /// Kernel thread id, for tgkill.
    pub(crate) tid: AtomicI32,
    /// Whether the slot's thread runs (false before start and after it
    /// retired, see blocked.rs).
    pub(crate) alive: AtomicBool,
    /// Live started coroutines whose home is this executor (incremented by
    /// the owner at first run, decremented when one finishes). A surplus
    /// executor retires only at 0: a homed coroutine's wake targets its
    /// inbox.
    pub(crate) homed: AtomicUsize,
    /// A preemption request in flight: set by the monitor (CAS false ->
    /// true) right before it sends SIGURG, consumed by the handler (swap to
    /// false). See preempt/mod.rs, protocol step 2.
    pub(crate) preempt_pending: AtomicBool,
    /// Length of the owner's `ready` queue (Relaxed, approximate; for the
    /// monitor and stats).
    pub(crate) ready_len: AtomicUsize,
    pub(crate) stats: ExecutorStats,
    /// Preemption requests and deferrals (preempt/signal.rs).
    pub(crate) preempt: crate::preempt::PreemptCounters,
    /// The slot's executor thread: its stack (alias.rs; kept and reused
    /// across retirements) and the thread to join before reuse.
    pub(crate) thread: std::sync::Mutex<SlotThread>,
}

impl ExecutorShared {
    pub(crate) fn new(index: usize, stealer: Stealer<Task>, runq: Stealer<Task>) -> Self {
        ExecutorShared {
            index,
            stealer,
            inbox: Injector::new(),
            runq,
            parker: Parker::default(),
            current: AtomicPtr::new(std::ptr::null_mut()),
            switches: AtomicU64::new(0),
            no_preempt: AtomicU32::new(0),
            tid: AtomicI32::new(0),
            alive: AtomicBool::new(false),
            homed: AtomicUsize::new(0),
            preempt_pending: AtomicBool::new(false),
            ready_len: AtomicUsize::new(0),
            stats: ExecutorStats::default(),
            preempt: crate::preempt::PreemptCounters::default(),
            thread: std::sync::Mutex::new(SlotThread {
                stack: None,
                pthread: None,
                windows: Vec::new(),
            }),
        }
    }

    /// Whether runnable coroutines wait on this executor besides the
    /// running one (approximate; for the monitor).
    pub(crate) fn has_waiting_work(&self) -> bool {
        self.ready_len.load(Ordering::Relaxed) > 0
            || !self.inbox.is_empty()
            || !self.runq.is_empty()
            || !self.stealer.is_empty()
    }
}

/// The executor, owned by its thread.
pub(crate) struct Executor {
    pub(crate) rt: &'static Runtime,
    pub(crate) shared: &'static ExecutorShared,
    pub(crate) index: usize,
    /// Saved stack pointer of the scheduler context while a coroutine runs.
    pub(crate) sched_sp: UnsafeCell<usize>,
    /// The coroutine running now (null in the scheduler context).
    current: Cell<*const Inner>,
    /// Owned reference to the running coroutine (keeps its stack alive).
    running: UnsafeCell<Option<Task>>,
    /// Set by the coroutine (or the preemption handler) before switching
    /// back to the scheduler.
    pub(crate) action: Cell<Action>,
    /// Started coroutines ready to run here. Only the owner thread touches
    /// it, and never while a reference into it is live across a call.
    ready: UnsafeCell<VecDeque<Task>>,
    pub(crate) fresh: Worker<Task>,
    /// Migration only: started coroutines that yielded or were preempted
    /// here, FIFO; other executors steal from it (`ExecutorShared::runq`).
    /// Without migration they go to the owner-only `ready` queue instead.
    runq: Worker<Task>,
    /// The coroutine spawned last on this executor, run before anything
    /// else in `ready` once the spawner gives the executor back, and not
    /// stealable: a spawn followed by a join (the common pattern) then
    /// completes without waking or involving another executor (Go's
    /// `runnext`). A newer spawn pushes the previous one to `fresh`.
    next: Cell<Option<Task>>,
    tick: Cell<u32>,
    /// Set after a preemption: the next pick prefers coroutines that never
    /// ran (own `fresh`, then the global injector), so new coroutines start
    /// within a slice even when started ones keep `ready` full of CPU hogs.
    prefer_new: Cell<bool>,
    /// When this executor last started looking for work without finding
    /// any (None while it finds work). Drives retirement (blocked.rs).
    idle_since: Cell<Option<Instant>>,
    /// This thread's std-identity slots (identity.rs).
    ident: Slots,
    /// This thread's TLS alias windows (alias.rs).
    windows: Windows,
    /// A coroutine that just switched directly to the next one, and what
    /// it did (yield or park): completed by that next side once the
    /// switch saved its context (`complete_pending`). Owner thread only.
    pending: Cell<Option<(Task, Action)>>,
    /// Window-less coroutines of this executor that may be registered in a
    /// std channel with the executor's thread-local addresses (parked in
    /// their std parker, or preempted): while any exists, a window-less
    /// coroutine being switched in gets a window first (alias.rs).
    risky: Cell<u32>,
    /// This OS thread's own thread pointer and libc errno address (the
    /// carrier's: sched/tls.rs), and its thread id.
    carrier_tp: usize,
    carrier_errno: usize,
    tid: i32,
    /// What a switch to the scheduler loads as thread pointer: the
    /// carrier's with per-coroutine thread-locals, else 0 (unchanged).
    sched_fs: usize,
    /// Stacks of finished coroutines with their TLS block still built
    /// (dtv kept), by the size asked of the stack pool: a new coroutine
    /// re-initialises one (`tls::Layout::reuse`) instead of building a
    /// block. Owner thread only; destroyed when the executor retires.
    tls_cache: UnsafeCell<Vec<(crate::stack::Stack, usize, usize)>>,
    /// What ld.so writes into a block, for `tls_cache` reuse without its
    /// lock (`tls::Layout::reuse`). Owner thread only.
    tls_snap: UnsafeCell<Option<tls::Snapshot>>,
}

/// Blocks kept per executor for reuse (each is a stack of a finished
/// coroutine with its TLS block; most of its pages stay resident).
const TLS_CACHE_CAP: usize = 64;

thread_local! {
    /// The executor of this thread, or null on other threads.
    static EXECUTOR: Cell<*const Executor> = const { Cell::new(std::ptr::null()) };
    /// The no-preempt level, authoritative for the preemption handler
    /// (which reads it through the interrupted thread pointer). With
    /// per-coroutine thread-locals it lives in the coroutine's own TLS
    /// block, so it moves with the coroutine: code that was preempted
    /// between reading its executor and raising the level, and resumed on
    /// another executor, raises its *own* level, never a stale executor's.
    /// With shared thread-locals it is the executor thread's, saved and
    /// restored around suspensions. `ExecutorShared::no_preempt` mirrors it
    /// for the monitor (owner-written, a hint only).
    static LEVEL: Cell<u32> = const { Cell::new(0) };
}

/// The running side's no-preempt level (see `LEVEL`).
#[inline(always)]
pub(crate) fn level() -> u32 {
    LEVEL.get()
}

/// Sets the running side's no-preempt level and its executor's mirror.
#[inline(always)]
fn set_level(exec: &Executor, n: u32) {
    LEVEL.set(n);
    exec.shared.no_preempt.store(n, Ordering::Relaxed);
}

/// The executor of the calling thread. Not inlined: with migration on, a
/// coroutine may resume on another thread, and the thread-local address
/// must be recomputed after every possible suspension.
#[inline(never)]
pub(crate) fn current_executor() -> Option<&'static Executor> {
    let p = EXECUTOR.with(|e| e.get());
    // SAFETY: set by `executor_main` to an Executor that lives until the
    // thread retires, which clears this pointer first (blocked.rs); no
    // coroutine runs on a retiring executor, so no reference outlives it.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Signal context: this thread's Executor, or null. Reads a const-initialised
/// thread-local without destructor (no lazy registration, cannot fail).
#[inline]
pub(crate) fn current_executor_raw() -> *const Executor {
    EXECUTOR.try_with(|e| e.get()).unwrap_or(std::ptr::null())
}

impl Executor {
    /// The thread pointer the scheduler runs with (0: thread-locals are
    /// shared and nothing changes it). Read by the preemption handler.
    #[inline(always)]
    pub(crate) fn sched_fs(&self) -> usize {
        self.sched_fs
    }
}

/// Top of the running coroutine's usable stack (0 outside a coroutine).
pub(crate) fn current_stack_hi() -> usize {
    let _np = NoPreempt::new(); // see `current_task`
    match current_executor() {
        Some(e) if !e.current.get().is_null() => {
            // SAFETY: `current` points at the live running coroutine.
            unsafe { (*e.current.get()).stack_hi.load(Ordering::Relaxed) }
        }
        _ => 0,
    }
}

/// Address of the calling thread's `EXECUTOR` slot (tls.rs discovery:
/// its offset from the thread pointer is the same in every TLS block).
pub(crate) fn executor_slot_addr() -> usize {
    EXECUTOR.with(|e| e as *const Cell<*const Executor> as usize)
}

/// Signal context: the carrier thread pointer of this thread's executor,
/// or 0 on other threads.
pub(crate) fn carrier_tp_raw() -> usize {
    let p = current_executor_raw();
    // SAFETY: see `current_executor`; `carrier_tp` is immutable.
    if p.is_null() {
        0
    } else {
        unsafe { (*p).carrier_tp }
    }
}

/// The shared half of the calling thread's executor.
#[allow(dead_code)]
pub(crate) fn current_executor_shared() -> Option<&'static ExecutorShared> {
    current_executor().map(|e| e.shared)
}

/// Whether the caller runs on a coroutine.
#[inline]
pub(crate) fn in_coroutine() -> bool {
    current_executor().is_some_and(|e| !e.current.get().is_null())
}

/// Whether the caller is user code on a coroutine: on a coroutine and not
/// inside runtime code (no-preempt level 0). The I/O hooks' test for "may
/// park here"; everything else gets the plain blocking call.
#[inline]
pub(crate) fn in_coroutine_user_code() -> bool {
    LEVEL.get() == 0
        && current_executor().is_some_and(|e| !e.current.get().is_null())
        // A panicking coroutine must not park (the panic count is per
        // thread: a second coroutine panicking on this executor meanwhile
        // would abort the process), so its I/O blocks instead.
        && !std::thread::panicking()
}

/// The running coroutine. Panics (clearly) outside a coroutine.
pub(crate) fn current_task() -> Task {
    // Raised: the executor read below stays ours until we hold the task
    // (a preemption could otherwise move us to another executor between
    // the two reads, with migration).
    let _np = NoPreempt::new();
    let exec = current_executor().expect("coroutines: not on an executor");
    let p = exec.current.get();
    assert!(!p.is_null(), "coroutines: not inside a coroutine");
    // SAFETY: `p` came from Arc::as_ptr of the task `run_task` holds for
    // as long as the coroutine runs; we add one strong reference.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// Id of the running coroutine (`CoroutineId::as_u64`), or 0 outside a
/// coroutine. One thread-local load, no reference count traffic.
pub(crate) fn current_id() -> u64 {
    let _np = NoPreempt::new(); // see `current_task`
    match current_executor() {
        Some(e) if !e.current.get().is_null() => {
            // SAFETY: `current` points at the live Inner of the running
            // coroutine while non-null; `id` is immutable.
            unsafe { (*e.current.get()).id.as_u64().get() }
        }
        _ => 0,
    }
}

/// Signal context: name of the coroutine running on this thread, for the
/// stack-overflow message. Reads a thread-local Cell and immutable fields.
pub(crate) fn current_name_raw() -> (*const u8, usize) {
    let p = EXECUTOR.with(|e| e.get());
    if p.is_null() {
        return (std::ptr::null(), 0);
    }
    // SAFETY: see `current_executor`; `current` points at a live Inner
    // while non-null, and `name` is immutable.
    unsafe {
        let co = (*p).current.get();
        match co.is_null() {
            true => (std::ptr::null(), 0),
            false => match &(*co).name {
                Some(n) => (n.as_ptr(), n.len()),
                None => (std::ptr::null(), 0),
            },
        }
    }
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
            LEVEL.set(LEVEL.get() + 1);
            // The handler runs on this thread: order our later accesses
            // after the raise as far as the compiler is concerned.
            compiler_fence(Ordering::SeqCst);
            if let Some(e) = current_executor() {
                e.shared.no_preempt.store(LEVEL.get(), Ordering::Relaxed);
            }
        }
        NoPreempt {
            raised,
            _not_send: PhantomData,
        }
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        if self.raised {
            compiler_fence(Ordering::SeqCst);
            let n = LEVEL.get().saturating_sub(1);
            // Still raised: the executor read here is ours.
            if let Some(e) = current_executor() {
                e.shared.no_preempt.store(n, Ordering::Relaxed);
            }
            compiler_fence(Ordering::SeqCst);
            LEVEL.set(n);
        }
    }
}

/// Switches from the running coroutine to its scheduler with `action`.
/// Returns once the coroutine is resumed (possibly on another executor if
/// migration is on). The caller holds `_np`, whose level is restored.
fn suspend(_np: &NoPreempt, action: Action) {
    let exec = current_executor().expect("coroutines: suspend outside an executor");
    let co = exec.current.get();
    let level = LEVEL.get();
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
    set_level(exec, level);
    compiler_fence(Ordering::SeqCst);
}

/// Parks the running coroutine until woken (`Inner::wake`). May return
/// spuriously: callers loop on their condition.
pub(crate) fn park_current(np: &NoPreempt, reason: WaitReason) {
    if let Some(exec) = current_executor() {
        // SAFETY: we are the running coroutine of this executor.
        let me = unsafe { &*exec.current.get() };
        match reason {
            WaitReason::StdParker => exec.mark_risky(me),
            // A futex wait may be inside std's channel code after it took
            // the thread's identity address (e.g. waiting for the waker
            // list's lock before registering): keep the window.
            WaitReason::Futex => {}
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
    let my_sp: *mut usize = me.sp.get();
    let level = LEVEL.get();
    // SAFETY: we are `me`, running on this thread: its identity is in the
    // slots and ours to save.
    unsafe { exec.ident.save(&mut *me.ident.get()) };
    exec.pending.set(Some((me, Action::Park)));
    // SAFETY: `my_sp` is ours, kept alive by `pending`.
    Some(unsafe { switch_direct(exec, my_sp, next, level) })
}

/// Whether `uaddr` (a futex word the running coroutine is about to wait
/// on) is inside the coroutine's own std `Thread` handle, i.e. it parks in
/// `std::thread::park` (identity.rs gives it its own handle).
pub(crate) fn is_own_std_parker(uaddr: usize) -> bool {
    current_executor().is_some_and(|e| {
        let cur = e.ident.current_value();
        cur > 2 && uaddr.wrapping_sub(cur as usize) < 64
    })
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
    // own level first, then the executor, re-read, is stable): the direct
    // yield returns the executor we resume on, where we lower it.
    LEVEL.set(LEVEL.get() + 1);
    compiler_fence(Ordering::SeqCst);
    let Some(exec) = current_executor() else {
        LEVEL.set(LEVEL.get() - 1);
        return false;
    };
    exec.shared.no_preempt.store(LEVEL.get(), Ordering::Relaxed);
    match direct_yield_on(exec) {
        Some(exec) => {
            compiler_fence(Ordering::SeqCst);
            set_level(exec, LEVEL.get().saturating_sub(1));
        }
        None => {
            // Slow path: let a guard own the raised level from here on
            // (suspend restores it on resume; the drop lowers it on
            // whichever executor we then run on).
            let np = NoPreempt {
                raised: true,
                _not_send: PhantomData,
            };
            suspend(&np, Action::Yield);
        }
    }
    true
}

/// The coroutine a direct switch (yield or park) goes to, and whether it
/// came from the `next` slot: the `next` slot, else the front of `ready`
/// (with migration: the inbox, then `runq`), if it was not preempted (that
/// one resumes through the full-restore path, which must be entered from
/// the scheduler) and has started (with per-coroutine TLS a never-run one
/// starts here only with a block from `tls_cache`, else in scheduler
/// context). None when the scheduler must
/// decide: the fairness tick (every 61st pick), nothing local.
#[inline(always)]
fn direct_next(exec: &'static Executor) -> Option<(Task, bool)> {
    let tick = exec.tick.get().wrapping_add(1);
    if tick % 61 == 0 {
        return None;
    }
    exec.tick.set(tick);
    exec.drain_inbox();
    let from_slot = exec.next.take();
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
    // SAFETY: owner thread; `sp` is 0 only before the first run.
    if next.preempted.load(Ordering::Relaxed)
        || (tls::enabled()
            && unsafe { *next.sp.get() } == 0
            && !exec.has_cached_block(next.stack_size))
    {
        if took_slot || exec.rt.config.migrate {
            // (With migration the slot is empty here: taken just above.)
            exec.next.set(Some(next));
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
    let my_sp: *mut usize = me.sp.get();
    let level = LEVEL.get();
    // SAFETY: we are `me`, running on this thread: its identity is in the
    // slots and ours to save before anyone else can run it.
    unsafe { exec.ident.save(&mut *me.ident.get()) };
    // Queued by the next side, once our context is saved.
    exec.pending.set(Some((me, Action::Yield)));
    // SAFETY: `my_sp` is ours, kept alive by `pending`.
    Some(unsafe { switch_direct(exec, my_sp, next, level) })
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
    next: Task,
    level: u32,
) -> &'static Executor {
    // The side running now: this coroutine's block, if it has one.
    let from_errno = if exec.sched_fs != 0 {
        tls::layout().errno_of(tls::read_fs_base())
    } else {
        0
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
    set_level(exec, level);
    compiler_fence(Ordering::SeqCst);
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
        set_level(exec, 0);
    };
    compiler_fence(Ordering::SeqCst);
    let inner = arg as *const Inner;
    // SAFETY: the executor running us holds a strong reference for as long
    // as we run, and we own `entry` (first run).
    let body = unsafe { (*(*inner).entry.get()).take() };
    if let Some(body) = body {
        // The body catches the user's panic itself; this outer catch only
        // guards the runtime's own bookkeeping, which must not unwind into
        // the assembly frame (it has no landing pad).
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(None))).is_err() {
            crate::sys::fatal("coroutine bookkeeping panicked");
        }
    }
    let np = NoPreempt::new();
    if let Some(e) = current_executor() {
        e.ident.release_current();
    }
    suspend(&np, Action::Exit);
    crate::sys::fatal("a finished coroutine was resumed");
}

impl Executor {
    #[inline]
    pub(crate) fn push_ready(&self, task: Task) {
        // SAFETY: owner thread; no reference into `ready` is live (see
        // field doc).
        let ready = unsafe { &mut *self.ready.get() };
        ready.push_back(task);
        self.shared.ready_len.store(ready.len(), Ordering::Relaxed);
    }

    /// Queues a coroutine just woken on this executor at the *front* of
    /// `ready`: it slept, so it has used little CPU, and letting it run
    /// before the CPU hogs is what keeps wake-up latency low (measured:
    /// BENCHMARKS.md, W4/W7). A woken coroutine that then computes is
    /// preempted like any other and goes to the back.
    #[inline]
    pub(crate) fn push_woken(&self, task: Task) {
        // SAFETY: as in `push_ready`.
        let ready = unsafe { &mut *self.ready.get() };
        ready.push_front(task);
        self.shared.ready_len.store(ready.len(), Ordering::Relaxed);
    }

    /// Moves the inbox (coroutines woken from other threads) to the front
    /// of `ready`, keeping their wake order.
    fn drain_inbox(&self) {
        // With migration the inbox stays stealable: popped directly
        // (`pop_woken`), by this executor first and by idle ones.
        if self.rt.config.migrate || self.shared.inbox.is_empty() {
            return;
        }
        let mut n = 0;
        loop {
            match self.shared.inbox.steal() {
                Steal::Success(t) => {
                    self.push_ready(t);
                    n += 1;
                }
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        // SAFETY: as in `push_ready`.
        let ready = unsafe { &mut *self.ready.get() };
        ready.rotate_right(n);
    }

    fn pop_ready(&self) -> Option<Task> {
        // SAFETY: as in `push_ready`.
        let ready = unsafe { &mut *self.ready.get() };
        let t = ready.pop_front();
        self.shared.ready_len.store(ready.len(), Ordering::Relaxed);
        t
    }

    #[inline]
    fn next_task(&self) -> Option<Task> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if self.rt.config.migrate && tick % 8 != 0 {
            // Woken coroutines first (low wake-up latency), as `ready`'s
            // front is without migration: ahead of the preempted CPU hogs
            // waiting in the global queue.
            if let Some(t) = self.pop_woken() {
                return Some(t);
            }
        }
        if self.prefer_new.replace(false) && !self.busier_than_others() {
            if let Some(t) = self.take_one_new() {
                return Some(t);
            }
        }
        if tick % 61 == 0 {
            if let Some(t) = self.steal_global() {
                return Some(t);
            }
            self.fire_timers(true);
        }
        self.drain_inbox();
        if tick % 8 == 0 {
            if let Some(t) = self.fresh.pop() {
                return Some(t);
            }
        }
        if let Some(t) = self.next.take() {
            return Some(t);
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
    fn busier_than_others(&self) -> bool {
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
    fn take_one_new(&self) -> Option<Task> {
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

    fn steal_global(&self) -> Option<Task> {
        loop {
            match self.rt.injector.steal_batch_and_pop(&self.fresh) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    fn steal_others(&self) -> Option<Task> {
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
    fn fire_timers(&self, poll: bool) {
        crate::reactor::timers().fire_due(Instant::now());
        if poll {
            crate::reactor::poll_nonblocking();
        }
    }

    /// Every source of work in turn. `poll`: include a non-blocking epoll
    /// poll (a system call; the idle search asks only now and then).
    fn find_work(&self, poll: bool) -> Option<Task> {
        self.fire_timers(poll);
        self.drain_inbox();
        if let Some(t) = self.next.take() {
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

    fn has_visible_work(&self) -> bool {
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
    fn idle(&self) -> Option<Task> {
        let rt = self.rt;
        rt.searching.fetch_add(1, Ordering::SeqCst);
        for i in 0..SEARCH_ROUNDS {
            // epoll at the start and every 16th round (each is a system
            // call; the blocking poll at sleep time catches the rest).
            if let Some(t) = self.find_work(i % 16 == 0) {
                rt.searching.fetch_sub(1, Ordering::SeqCst);
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
        let mut timeout = if role {
            timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        } else {
            None
        };
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
        // was parked (preempt/monitor.rs `run`, step 3).
        crate::preempt::executor_woke();
        if role {
            timers.release_sleeper(self.index);
        }
        rt.sleepers.fetch_sub(1, Ordering::SeqCst);
        // Woken: we are searching until we find work or sleep again.
        None
    }

    /// Slow path of `prepare_resume`: a window for `inner` (alias.rs).
    #[cold]
    #[inline(never)]
    fn give_window(&self, inner: &Inner) {
        // SAFETY: owner thread, the coroutine is not running.
        unsafe { *inner.window.get() = self.windows.take() };
    }

    /// Counts `inner` (switched out, or about to be) as risky if it has
    /// no window (see `risky`).
    fn mark_risky(&self, inner: &Inner) {
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

    /// Makes `task` the running coroutine of this executor (state, home,
    /// `current`, switch counter, its TLS block's carrier-bound words).
    /// The caller switches to it next: returns its saved stack pointer and
    /// thread pointer (0: unchanged). `from_errno`: errno address of the
    /// side running now (carrier or coroutine block; 0 without blocks).
    #[inline(always)]
    fn prepare_resume(&self, task: Task, from_errno: usize) -> (usize, usize) {
        let inner: &Inner = &task;
        self.idle_since.set(None);
        if inner.state.load(Ordering::Relaxed) & STATE_MASK == RUNNABLE {
            // Acquire: see every condition set by the wakers (module doc of
            // coroutine.rs, step 3).
            inner.state.swap(RUNNING, Ordering::AcqRel);
        }
        let home = inner.home.load(Ordering::Relaxed);
        if home == NO_HOME {
            inner.home.store(self.index as u32, Ordering::Relaxed);
            self.shared.homed.fetch_add(1, Ordering::Relaxed);
        } else if self.rt.config.migrate && home != self.index as u32 {
            // With migration `home` is the last executor (wakes from
            // outside go to its inbox); the count moves with it.
            inner.home.store(self.index as u32, Ordering::Relaxed);
            self.rt.executors[home as usize]
                .homed
                .fetch_sub(1, Ordering::Relaxed);
            self.shared.homed.fetch_add(1, Ordering::Relaxed);
        }
        inner.preempted.store(false, Ordering::Relaxed);
        let p = Arc::as_ptr(&task);
        self.current.set(p);
        self.shared
            .current
            .store(p as *mut Inner, Ordering::Release);
        bump(&self.shared.switches);
        super::blocked::note_running();
        // SAFETY: we own the right to run `task`; nobody else touches `sp`
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
        // ours to update (tls.rs, switch-in).
        let fs = unsafe { *inner.tls.get() };
        if fs != 0 {
            // SAFETY: a live block of a coroutine not running anywhere;
            // `from_errno` is the running side's (caller).
            unsafe {
                tls::layout().switch_in(fs, self as *const Executor as usize, self.tid, from_errno);
                crate::tls::pool::switching_in(inner, fs);
            }
        }
        // SAFETY: owner thread; `running` is only touched around switches.
        unsafe { *self.running.get() = Some(task) };
        (sp, fs)
    }

    fn run_task(&self, task: Task) {
        if !ensure_started(self, &task) {
            return;
        }
        // A coroutine resuming after a voluntary suspension restores its own
        // level first thing; until then (and with shared thread-locals the
        // level is this thread's) it must not be preempted: it may be
        // holding the executor it was resumed by in a register. A preempted
        // one resumes at level 0 (the full-restore path sets none).
        let resumes_preempted = task.preempted.load(Ordering::Relaxed);
        LEVEL.set(if resumes_preempted { 0 } else { 1 });
        let (sp, fs) = self.prepare_resume(task, self.carrier_errno);
        // SAFETY: we own the right to run the task (popped from a queue);
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
        let task = unsafe { (*self.running.get()).take() }
            .unwrap_or_else(|| crate::sys::fatal("scheduler resumed with no running coroutine"));
        let inner: &Inner = &task;
        // SAFETY: owner thread; the coroutine is switched out: its block's
        // malloc words flow back to the carrier (tls.rs).
        unsafe {
            let fs = *inner.tls.get();
            if fs != 0 {
                let l = tls::layout();
                tls::copy_malloc_words(l.errno_of(fs), self.carrier_errno);
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
        set_level(self, 0);
        match self.action.get() {
            Action::Yield => {
                bump(&self.shared.stats.yields);
                self.requeue(task)
            }
            Action::Preempted => {
                bump(&self.shared.stats.preemptions);
                self.mark_risky(inner);
                // It resumes through the full-restore path, which does not
                // restore a no-preempt level: see `direct_yield`.
                inner.preempted.store(true, Ordering::Relaxed);
                self.prefer_new.set(true);
                if self.rt.config.migrate {
                    // Like Go's preempted goroutines: to the global queue,
                    // which every executor serves in turn, so CPU hogs
                    // rotate over all executors and share them evenly.
                    self.rt.injector.push(task);
                } else {
                    self.requeue(task)
                }
            }
            Action::Park => self.complete_park(task),
            Action::Exit => {
                inner.state.store(DONE, Ordering::Release);
                let home = inner.home.load(Ordering::Relaxed) as usize;
                self.rt.executors[home]
                    .homed
                    .fetch_sub(1, Ordering::Relaxed);
                bump(&self.shared.stats.finished);
                // SAFETY: the coroutine finished and will never run again;
                // we own it, so taking its stack and window back is
                // exclusive (the window is this executor's: no migration).
                let stack = unsafe { (*inner.stack.get()).take() };
                self.windows
                    .give(std::mem::take(unsafe { &mut *inner.window.get() }));
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

    /// Whether `tls_cache` holds a block for a stack of `stack_size`
    /// (what `ensure_started` reuses).
    #[inline]
    fn has_cached_block(&self, stack_size: usize) -> bool {
        // SAFETY: owner thread (callers run on it, with preemption off);
        // no reference into the cache is live.
        unsafe { (*self.tls_cache.get()).iter().rev().any(|c| c.2 == stack_size) }
    }

    /// Queues a coroutine spawned by code running on this executor. Returns
    /// whether stealable work was added (then idle executors are told).
    pub(crate) fn push_spawned(&self, task: Task) -> bool {
        bump(&self.shared.stats.spawned);
        match self.next.replace(Some(task)) {
            // SAFETY: owner thread; `older` is queued, not running: its
            // `sp` is read by nobody else now (0 = never ran).
            Some(older) if self.rt.config.migrate && unsafe { *older.sp.get() } != 0 => {
                // A started coroutine (a joiner woken by a finishing one).
                self.runq.push(older);
                true
            }
            Some(older) => {
                self.fresh.push(older);
                true
            }
            None => false,
        }
    }

    /// Whether a coroutine (not the scheduler) runs on this executor now.
    pub(crate) fn in_coroutine_now(&self) -> bool {
        !self.current.get().is_null()
    }

    /// Migration: a coroutine woken by the one running here, which gives
    /// the executor up right after (it finishes): it runs next, from the
    /// `next` slot if free.
    pub(crate) fn push_woken_next(&self, task: Task) {
        match self.next.take() {
            None => self.next.set(Some(task)),
            Some(n) => {
                self.next.set(Some(n));
                self.shared.inbox.push(task);
            }
        }
    }

    /// Whether this executor is an extra one, started for a blocked
    /// executor, that may retire.
    fn is_surplus(&self) -> bool {
        self.index >= self.rt.config.workers
    }

    /// Whether it is time to retire (blocked.rs): surplus, idle long
    /// enough, nothing homed here.
    fn should_retire(&self) -> bool {
        self.is_surplus()
            && self
                .idle_since
                .get()
                .is_some_and(|t| t.elapsed() >= super::blocked::RETIRE_AFTER)
            && (self.rt.config.migrate || self.shared.homed.load(Ordering::Relaxed) == 0)
    }

    /// Steps 1-2 of retirement (blocked.rs): recheck and mark the slot dead
    /// under the runtime's `pending_workers` lock. On success the caller
    /// stops using this executor and hands its deque back
    /// (`Runtime::return_slot`), which makes the slot reusable.
    fn try_retire(&self) -> bool {
        // SAFETY: owner thread; no reference into `ready` is live.
        let ready_empty = unsafe { (*self.ready.get()).is_empty() };
        // `next` is empty here (find_work took it), but check: a coroutine
        // left there would never run.
        let next_empty = match self.next.take() {
            Some(t) => {
                self.next.set(Some(t));
                false
            }
            None => true,
        };
        if !next_empty {
            return false;
        }
        self.rt.retire_slot(self.index, || {
            ready_empty
                && self.shared.inbox.is_empty()
                && self.shared.runq.is_empty()
                && self.fresh.is_empty()
                && (self.rt.config.migrate || self.shared.homed.load(Ordering::Relaxed) == 0)
        })
    }

    /// A coroutine whose context is saved after it asked to park: publish
    /// PARKED, or requeue it if a wake came first.
    fn complete_park(&self, task: Task) {
        bump(&self.shared.stats.parks);
        // Release: the coroutine's writes before parking are seen by the
        // waker that wins PARKED -> RUNNABLE.
        if task
            .state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // A wake arrived since it started (NOTIFIED): run again.
            task.state.swap(RUNNABLE, Ordering::AcqRel);
            self.requeue(task);
        }
        // Else the waker will queue it; drop our reference.
    }

    /// Completes what the coroutine that switched directly to the running
    /// side did (`pending`): called first thing by every side a direct
    /// switch can resume (suspend, switch_direct, coroutine_main).
    #[inline(always)]
    fn complete_pending(&self) {
        if let Some((task, action)) = self.pending.take() {
            self.complete_pending_slow(task, action);
        }
    }

    #[inline(never)]
    fn complete_pending_slow(&self, task: Task, action: Action) {
        if action == Action::Park {
            self.complete_park(task);
        } else {
            bump(&self.shared.stats.yields);
            self.requeue(task);
        }
    }

    /// Migration: the next woken coroutine from this executor's inbox.
    fn pop_woken(&self) -> Option<Task> {
        steal_one(&self.shared.inbox)
    }

    /// Migration: the next yielded or preempted coroutine queued here.
    fn pop_runq(&self) -> Option<Task> {
        self.runq.pop()
    }

    fn requeue(&self, task: Task) {
        if self.rt.config.migrate {
            self.runq.push(task);
            // More than one waiting: one of them could run elsewhere now.
            if self.runq.len() > 1 {
                self.rt.notify_idle();
            }
        } else {
            self.push_ready(task);
        }
    }
}

/// The `fork` hook (interpose/mod.rs): on an executor thread, forks with
/// the executor's TLS region made private meanwhile (alias.rs).
pub(crate) fn fork_on_executor(real: unsafe extern "C" fn() -> libc::pid_t) -> libc::pid_t {
    match current_executor() {
        Some(exec) => {
            let _np = NoPreempt::new();
            exec.windows.fork(real)
        }
        // SAFETY: libc's fork.
        None => unsafe { real() },
    }
}

/// An executor slot's OS thread (runtime.rs `start_executor`).
pub(crate) struct SlotThread {
    pub(crate) stack: Option<ThreadStack>,
    pub(crate) pthread: Option<libc::pthread_t>,
    /// TLS alias windows (base addresses) left by the slot's last thread.
    pub(crate) windows: Vec<usize>,
}

/// One task from `steal` (an injector's or another executor's deque),
/// retrying on contention.
fn retry_steal(steal: impl Fn() -> Steal<Task>) -> Option<Task> {
    loop {
        match steal() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// One task from a stealable queue.
fn steal_one(q: &Injector<Task>) -> Option<Task> {
    retry_steal(|| q.steal())
}

/// One task stolen from another executor's deque.
fn steal_from(q: &Stealer<Task>) -> Option<Task> {
    retry_steal(|| q.steal())
}

/// Idle search: rounds in all, and how many spin before yielding the CPU.
const SEARCH_ROUNDS: u32 = 64;
const SEARCH_SPINS: u32 = 48;

/// Body of an executor thread. `stack`: the alias-capable stack it runs
/// on, if any (alias.rs).
pub(crate) fn executor_main(
    rt: &'static Runtime,
    index: usize,
    (fresh, runq): (Worker<Task>, Worker<Task>),
    stack: Option<StackInfo>,
) {
    crate::stack::ensure_sigaltstack();
    let shared = &rt.executors[index];
    shared.tid.store(crate::sys::gettid(), Ordering::Relaxed);
    shared.alive.store(true, Ordering::Release);
    // Before any coroutine runs here (and before this thread counts as an
    // executor for the hooks: it may start a probe thread).
    // Per-coroutine thread-locals make std's identity and the alias
    // windows unnecessary (every coroutine has its own block).
    let own_tls = tls::enabled();
    let ident = if own_tls {
        Slots::off()
    } else {
        identity::init_executor()
    };
    let windows = if own_tls {
        Windows::off()
    } else {
        Windows::init(stack, !rt.config.migrate)
    };
    // The carrier's malloc cache exists before any coroutine borrows it
    // (tls.rs: a block never builds one of its own).
    // SAFETY: a malloc/free pair.
    unsafe { libc::free(std::hint::black_box(libc::malloc(16))) };
    let carrier_tp = if own_tls { tls::read_fs_base() } else { 0 };
    // SAFETY: libc's errno location of this thread.
    let carrier_errno = unsafe { libc::__errno_location() } as usize;
    windows.adopt(std::mem::take(
        &mut shared
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .windows,
    ));
    let exec_ptr: *mut Executor = Box::into_raw(Box::new(Executor {
        rt,
        shared,
        index,
        sched_sp: UnsafeCell::new(0),
        current: Cell::new(std::ptr::null()),
        running: UnsafeCell::new(None),
        action: Cell::new(Action::Yield),
        ready: UnsafeCell::new(VecDeque::with_capacity(256)),
        fresh,
        runq,
        next: Cell::new(None),
        tick: Cell::new(0),
        prefer_new: Cell::new(false),
        idle_since: Cell::new(None),
        ident,
        windows,
        risky: Cell::new(0),
        pending: Cell::new(None),
        carrier_tp,
        carrier_errno,
        tid: crate::sys::gettid(),
        sched_fs: carrier_tp,
        tls_cache: UnsafeCell::new(Vec::new()),
        tls_snap: UnsafeCell::new(None),
    }));
    // SAFETY: freshly boxed; freed only below, after the loop ends and the
    // thread-local pointer is cleared.
    let exec: &Executor = unsafe { &*exec_ptr };
    EXECUTOR.with(|e| e.set(exec_ptr));
    // An executor started while the monitor sleeps (an extra one for a
    // blocked executor) must wake it, like one leaving its parker.
    crate::preempt::executor_woke();
    loop {
        let task = match exec.next_task() {
            Some(t) => Some(t),
            None => exec.find_work(true).or_else(|| exec.idle()),
        };
        match task {
            Some(task) => exec.run_task(task),
            None => {
                if exec.idle_since.get().is_none() {
                    exec.idle_since.set(Some(Instant::now()));
                }
                if exec.should_retire() && exec.try_retire() {
                    break;
                }
            }
        }
    }
    // Retired (blocked.rs step 3). A wake from outside may have pushed to
    // our inbox after the retirement check but before it saw `alive`
    // false: after this fence, either that waker sees `alive` false and
    // moves the task itself, or we see the task here (runtime.rs
    // `schedule`).
    std::sync::atomic::fence(Ordering::SeqCst);
    let mut moved = false;
    while let Some(t) = steal_one(&shared.inbox) {
        rt.injector.push(t);
        moved = true;
    }
    if moved {
        rt.notify_idle();
    }
    // Kept blocks go (dtv freed), then their stacks.
    // SAFETY: owner thread, scheduler context; the blocks' coroutines
    // finished.
    for (stack, tp, _) in unsafe { (*exec.tls_cache.get()).drain(..) } {
        // SAFETY: as above.
        unsafe { tls::layout().destroy(tp) };
        drop(stack);
    }
    EXECUTOR.with(|e| e.set(std::ptr::null()));
    // SAFETY: created by Box::into_raw above; the thread-local pointer is
    // cleared and no coroutine runs here, so this is the last reference.
    let exec = unsafe { Box::from_raw(exec_ptr) };
    shared
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .windows = exec.windows.release_all();
    let Executor { fresh, runq, .. } = *exec;
    rt.return_slot(index, (fresh, runq));
    // This thread may have been the reactor's poller until its last sleep
    // (the role is released before `park_in_epoll` returns). Executors
    // that went to sleep meanwhile found the role taken and sleep on their
    // futex, so nobody would collect epoll edges. Wake one: it takes the
    // free role when it sleeps again (notify_idle: an executor searching or
    // about to sleep will try the role itself).
    rt.notify_idle();
}

/// Gives a coroutine that never ran its stack and initial frame (first
/// run, by the executor that owns the right to run it, with preemption of
/// the caller disabled: the stack pool has a thread cache). Returns false
/// if no stack could be had: the coroutine is then finished here, its
/// joiner getting the error, and must not be switched to.
fn ensure_started(exec: &Executor, task: &Task) -> bool {
    // SAFETY: we own the right to run `task`; `sp` is 0 only before the
    // first run.
    if unsafe { *task.sp.get() } != 0 {
        return true;
    }
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
        if let Some(i) = cache.iter().rposition(|c| c.2 == task.stack_size) {
            let (stack, tp, _) = cache.swap_remove(i);
            // SAFETY: the block of a finished coroutine, at this stack's
            // top, never to run again; scheduler context.
            // (`tls_snap` is likewise the owner's.)
            let top = unsafe { tls::layout().reuse(tp, &mut *exec.tls_snap.get()) };
            task.stack_lo.store(stack.bottom(), Ordering::Relaxed);
            task.stack_hi.store(top, Ordering::Relaxed);
            // SAFETY: owner of the right to run `task`; the stack is ours,
            // writable below the block, `top` 16-aligned.
            unsafe {
                *task.tls.get() = tp;
                *task.stack.get() = Some(stack);
                *task.sp.get() = arch::init_stack(top, coroutine_main, Arc::as_ptr(task) as usize);
            }
            return true;
        }
    }
    match crate::stack::alloc(task.stack_size + extra) {
        Ok(stack) => {
            let mut top = stack.top();
            if exec.sched_fs != 0 {
                let l = tls::layout();
                // SAFETY: the stack is fresh and ours, `span()` bytes larger
                // than the coroutine's stack size; its top `span()` bytes
                // become the block; scheduler context on the owner thread,
                // so `tls_snap` is ours.
                match unsafe { l.create(top, exec.carrier_tp, &mut *exec.tls_snap.get()) } {
                    Some((tp, below)) => {
                        // SAFETY: owner of the right to run `task`.
                        unsafe { *task.tls.get() = tp };
                        top = below;
                    }
                    None => {
                        drop(stack);
                        return fail_start(
                            exec,
                            task,
                            std::io::Error::new(
                                std::io::ErrorKind::OutOfMemory,
                                "cannot allocate the thread-local storage of the coroutine",
                            ),
                        );
                    }
                }
            }
            task.stack_lo.store(stack.bottom(), Ordering::Relaxed);
            task.stack_hi.store(top, Ordering::Relaxed);
            // SAFETY: as above; the stack is fresh, writable, 16-aligned top.
            unsafe {
                *task.stack.get() = Some(stack);
                *task.sp.get() = arch::init_stack(top, coroutine_main, Arc::as_ptr(task) as usize);
            }
            true
        }
        Err(e) => fail_start(exec, task, e),
    }
}

/// A coroutine that could not start (no stack or TLS block): finished here,
/// its joiner getting `e`. Returns false (for `ensure_started`).
fn fail_start(exec: &Executor, task: &Task, e: std::io::Error) -> bool {
    // SAFETY: we own the right to run `task`, which never ran: the body is
    // ours to take on first run.
    if let Some(body) = unsafe { (*task.entry.get()).take() } {
        body(Some(e));
    }
    task.state.store(DONE, Ordering::Release);
    bump(&exec.shared.stats.finished);
    false
}
