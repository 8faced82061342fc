//! Executor state and its accessors: the half other threads may touch
//! (`ExecutorShared`), the half its own thread owns (`Executor`), the
//! thread-local pointer to it, and the owner's queue operations.
//!
//! An executor is an OS thread running the scheduler loop (run.rs) on its
//! own stack (the *scheduler context*); it runs one coroutine at a time.
//! Queues are described in sched/mod.rs; who picks from them in which
//! order is run.rs. Everything here that touches `ready`, `next`,
//! `running` or `pending` runs on the owner thread only.

use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use super::idle::Parker;
use super::level::{self, NoPreempt};
use super::runtime::Runtime;
use super::thread::SlotThread;
use crate::coroutine::{CoroutineRef, Inner, ACTIVE, PARKED, RUNNABLE};
use crate::tls;
use crate::tls::alias::Windows;
use crate::tls::identity::Slots;

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

/// Why a coroutine parks, with its detail (observe/wait.rs).
pub(crate) use crate::observe::wait::WaitReason;

/// The `next` slot (`Executor::next`): an owner-only cell plus a mirror of
/// the queued coroutine's id (`ExecutorShared::next_id`) for `dump()`,
/// which lists a coroutine waiting there (it is not in the registry until
/// it is displaced or first switches out: observe/registry.rs).
pub(crate) struct NextSlot {
    slot: Cell<Option<CoroutineRef>>,
}

impl NextSlot {
    pub(super) fn new() -> Self {
        NextSlot {
            slot: Cell::new(None),
        }
    }

    #[inline]
    pub(super) fn take(&self, mirror: &AtomicU64) -> Option<CoroutineRef> {
        let co = self.slot.take();
        if co.is_some() {
            mirror.store(0, Ordering::Relaxed);
        }
        co
    }

    #[inline]
    pub(super) fn replace(&self, co: CoroutineRef, mirror: &AtomicU64) -> Option<CoroutineRef> {
        mirror.store(co.id.as_u64().get(), Ordering::Relaxed);
        self.slot.replace(Some(co))
    }
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
    /// Coroutines given malloc state of their own (sched/run.rs).
    pub(crate) own_malloc: AtomicU64,
}

/// The half of an executor that other threads (spawners, wakers, the
/// monitor, the preemption handler) may touch.
pub(crate) struct ExecutorShared {
    pub(crate) index: usize,
    /// Steals never-run coroutines from this executor's `fresh` deque.
    pub(crate) stealer: Stealer<CoroutineRef>,
    /// Started coroutines woken from other threads; drained by the owner.
    pub(crate) inbox: Injector<CoroutineRef>,
    /// Steals from the executor's `runq` (migration only: started
    /// coroutines that yielded or were preempted there, runnable anywhere).
    pub(crate) runq: Stealer<CoroutineRef>,
    pub(crate) parker: Parker,
    /// Coroutine running now, or null in the scheduler context. Written by
    /// the owner only; read by the monitor (Acquire) and the handler.
    pub(crate) current: AtomicPtr<Inner>,
    /// Id of the coroutine last switched in (`CoroutineId` as a number),
    /// written by the owner right before it publishes `current`; read by
    /// the detector for the blocking report (observe/blocking.rs), which
    /// must not dereference `current`. Meaningful while `current` is
    /// non-null.
    pub(crate) current_id: AtomicU64,
    /// Id of the never-run coroutine in the owner's `next` slot, 0 for
    /// none (`NextSlot`; for `dump()`, Relaxed).
    pub(crate) next_id: AtomicU64,
    /// Incremented by the owner at every switch into a coroutine (single
    /// writer: load+store, no lock prefix). The monitor samples it.
    pub(crate) switches: AtomicU64,
    /// No-preempt level mirror (level.rs). Owner thread only, including
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
    /// Coroutines that began their first run here, or failed to (no
    /// stack): owner-only bumps, read by the monitor
    /// (`Runtime::never_run_waiting`).
    pub(crate) first_runs: AtomicU64,
    /// Time this executor spent running coroutines, sampled by the monitor
    /// (it adds each tick's length while `current` is non-null; single
    /// writer). A coroutine's CPU time is the growth of this counter while
    /// it ran (observe/mod.rs).
    pub(crate) run_ns: AtomicU64,
    pub(crate) stats: ExecutorStats,
    /// Preemption requests and deferrals (preempt/signal.rs).
    pub(crate) preempt: crate::preempt::PreemptCounters,
    /// The slot's executor thread: its stack (alias.rs; kept and reused
    /// across retirements) and the thread to join before reuse.
    pub(crate) thread: std::sync::Mutex<SlotThread>,
}

impl ExecutorShared {
    pub(crate) fn new(
        index: usize,
        stealer: Stealer<CoroutineRef>,
        runq: Stealer<CoroutineRef>,
    ) -> Self {
        ExecutorShared {
            index,
            stealer,
            inbox: Injector::new(),
            runq,
            parker: Parker::default(),
            current: AtomicPtr::new(std::ptr::null_mut()),
            current_id: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            no_preempt: AtomicU32::new(0),
            tid: AtomicI32::new(0),
            alive: AtomicBool::new(false),
            homed: AtomicUsize::new(0),
            preempt_pending: AtomicBool::new(false),
            ready_len: AtomicUsize::new(0),
            first_runs: AtomicU64::new(0),
            run_ns: AtomicU64::new(0),
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
    /// running one (approximate; for the monitor). The `next` slot counts:
    /// a joiner woken there by a finishing coroutine waits behind whatever
    /// the executor picked first (a preempted hog from the global queue),
    /// and that hog must still be preempted for it.
    pub(crate) fn has_waiting_work(&self) -> bool {
        self.next_id.load(Ordering::Relaxed) != 0
            || self.ready_len.load(Ordering::Relaxed) > 0
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
    pub(super) current: Cell<*const Inner>,
    /// Owned reference to the running coroutine (keeps its stack alive).
    pub(super) running: UnsafeCell<Option<CoroutineRef>>,
    /// Set by the coroutine (or the preemption handler) before switching
    /// back to the scheduler.
    pub(crate) action: Cell<Action>,
    /// Started coroutines ready to run here. Only the owner thread touches
    /// it, and never while a reference into it is live across a call.
    pub(super) ready: UnsafeCell<VecDeque<CoroutineRef>>,
    pub(crate) fresh: Worker<CoroutineRef>,
    /// Migration only: started coroutines that yielded or were preempted
    /// here, FIFO; other executors steal from it (`ExecutorShared::runq`).
    /// Without migration they go to the owner-only `ready` queue instead.
    pub(super) runq: Worker<CoroutineRef>,
    /// The coroutine spawned last on this executor, run before anything
    /// else in `ready` once the spawner gives the executor back, and not
    /// stealable: a spawn followed by a join (the common pattern) then
    /// completes without waking or involving another executor (Go's
    /// `runnext`). A newer spawn pushes the previous one to `fresh`.
    pub(super) next: NextSlot,
    pub(super) tick: Cell<u32>,
    /// `shared.run_ns` when the running coroutine switched in: its CPU
    /// time is what the monitor added since (`account_out`).
    pub(super) run_mark: Cell<u64>,
    /// Registry operations that found their shard held by `dump()`
    /// (`registry_op`): the coroutine (kept alive) and whether to add
    /// (true) or remove it. Owner thread only.
    pub(super) registry_pending: UnsafeCell<Vec<(CoroutineRef, bool)>>,
    /// Execution trace: when the running coroutine's slice began
    /// (observe/trace.rs; 0 when no slice is open). Owner thread only.
    pub(super) slice_start: Cell<u64>,
    /// Set after a preemption: the next pick prefers coroutines that never
    /// ran (own `fresh`, then the global injector), so new coroutines start
    /// within a slice even when started ones keep `ready` full of CPU hogs.
    pub(super) prefer_new: Cell<bool>,
    /// The coroutine now yielding does so at a safe point, for a preemption
    /// that came due in hook code (switch.rs `safe_point_yield`): it is
    /// queued as a preempted one would be. Set right before that yield's
    /// switch, read and cleared when it is queued (run.rs).
    pub(super) safe_point: Cell<bool>,
    /// When this executor last started looking for work without finding
    /// any (None while it finds work). Drives retirement (blocked.rs).
    pub(super) idle_since: Cell<Option<Instant>>,
    /// This thread's std-identity slots (tls/identity.rs).
    pub(super) ident: Slots,
    /// This thread's TLS alias windows (tls/alias.rs).
    pub(super) windows: Windows,
    /// A coroutine that just switched directly to the next one, and what
    /// it did (yield or park): completed by that next side once the
    /// switch saved its context (`complete_pending`). Owner thread only.
    pub(super) pending: Cell<Option<(CoroutineRef, Action)>>,
    /// Window-less coroutines of this executor that may be registered in a
    /// std channel with the executor's thread-local addresses (parked in
    /// their std parker, or preempted): while any exists, a window-less
    /// coroutine being switched in gets a window first (tls/alias.rs).
    pub(super) risky: Cell<u32>,
    /// This OS thread's own thread pointer and libc errno address (the
    /// carrier's: tls/block.rs), and its thread id.
    pub(super) carrier_tp: usize,
    pub(super) carrier_errno: usize,
    pub(super) tid: i32,
    /// What a switch to the scheduler loads as thread pointer: the
    /// carrier's with per-coroutine thread-locals, else 0 (unchanged).
    pub(super) sched_fs: usize,
    /// Stacks of finished coroutines with their TLS block still built
    /// (dtv kept), by the size asked of the stack pool: a new coroutine
    /// re-initialises one (`tls::Layout::reuse`) instead of building a
    /// block. Owner thread only; destroyed when the executor retires.
    pub(super) tls_cache: UnsafeCell<Vec<(crate::stack::Stack, usize, usize)>>,
    /// What ld.so writes into a block, for `tls_cache` reuse without its
    /// lock (`tls::Layout::reuse`). Owner thread only.
    pub(super) tls_snap: UnsafeCell<Option<tls::Snapshot>>,
    /// Quick retries of a preemption that landed in libc, on this
    /// thread's own timer (preempt/retry.rs). Used by the signal handler.
    pub(crate) retry: crate::preempt::retry::Retry,
    /// This is the spare executor (spare.rs). Immutable.
    pub(super) spare: bool,
}

/// Blocks kept per executor for reuse (each is a stack of a finished
/// coroutine with its TLS block; most of its pages stay resident).
pub(super) const TLS_CACHE_CAP: usize = 64;

thread_local! {
    /// The executor of this thread, or null on other threads.
    pub(super) static EXECUTOR: Cell<*const Executor> = const { Cell::new(std::ptr::null()) };
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
    let _np = NoPreempt::new(); // see `current_coroutine`
    match current_executor() {
        Some(e) if !e.current.get().is_null() => {
            // SAFETY: `current` points at the live running coroutine.
            unsafe { (*e.current.get()).stack_hi.load(Ordering::Relaxed) }
        }
        _ => 0,
    }
}

/// Address of the calling thread's `EXECUTOR` slot (tls/block.rs discovery:
/// its offset from the thread pointer is the same in every TLS block).
pub(crate) fn executor_slot_addr() -> usize {
    EXECUTOR.with(|e| e as *const Cell<*const Executor> as usize)
}

/// Signal context: the carrier thread pointer of this thread's executor,
/// or 0 on other threads.
pub(crate) fn carrier_tp_raw() -> usize {
    let p = current_executor_raw();
    if p.is_null() {
        0
    } else {
        // SAFETY: non-null, so it is this thread's executor, which lives as
        // long as the thread (see `current_executor`); `carrier_tp` is
        // immutable after start.
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
    level::current() == 0
        && current_executor().is_some_and(|e| !e.current.get().is_null())
        // A panicking coroutine must not park (the panic count is per
        // thread: a second coroutine panicking on this executor meanwhile
        // would abort the process), so its I/O blocks instead.
        && !std::thread::panicking()
}

/// The running coroutine. Panics (clearly) outside a coroutine.
/// Coroutine context: whether the running coroutine allocates with glibc
/// malloc state of its own (tls/block.rs, "malloc state").
pub(crate) fn current_has_own_malloc() -> bool {
    let _np = NoPreempt::new();
    let Some(exec) = current_executor() else {
        return false;
    };
    let p = exec.current.get();
    // SAFETY: `p` is the running coroutine, kept alive by `run_coroutine`
    // for as long as it runs (us); `own_malloc` is only written by the
    // executor owning the right to run it, while it is switched out.
    !p.is_null() && unsafe { (*p).own_malloc.load(std::sync::atomic::Ordering::Relaxed) }
}

pub(crate) fn current_coroutine() -> CoroutineRef {
    // Raised: the executor read below stays ours until we hold the coroutine
    // (a preemption could otherwise move us to another executor between
    // the two reads, with migration).
    let _np = NoPreempt::new();
    let exec = current_executor().expect("coroutines: not on an executor");
    let p = exec.current.get();
    assert!(!p.is_null(), "coroutines: not inside a coroutine");
    // SAFETY: `p` came from Arc::as_ptr of the coroutine `run_coroutine`
    // holds for as long as it runs; we add one strong reference.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// Id of the running coroutine (`CoroutineId::as_u64`), or 0 outside a
/// coroutine. One thread-local load, no reference count traffic.
pub(crate) fn current_id() -> u64 {
    let _np = NoPreempt::new(); // see `current_coroutine`
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

/// Whether `uaddr` (a futex word the running coroutine is about to wait
/// on) is inside the coroutine's own std `Thread` handle, i.e. it parks in
/// `std::thread::park` (identity.rs gives it its own handle).
pub(crate) fn is_own_std_parker(uaddr: usize) -> bool {
    current_executor().is_some_and(|e| {
        let cur = e.ident.current_value();
        cur > 2 && uaddr.wrapping_sub(cur as usize) < 64
    })
}

/// The owner's queue operations.
impl Executor {
    #[inline]
    pub(crate) fn push_ready(&self, co: CoroutineRef) {
        // SAFETY: owner thread; no reference into `ready` is live (see
        // field doc).
        let ready = unsafe { &mut *self.ready.get() };
        ready.push_back(co);
        self.shared.ready_len.store(ready.len(), Ordering::Relaxed);
    }

    /// Queues a coroutine just woken on this executor at the *front* of
    /// `ready`: it slept, so it has used little CPU, and letting it run
    /// before the CPU hogs is what keeps wake-up latency low (measured:
    /// BENCHMARKS.md, W4/W7). A woken coroutine that then computes is
    /// preempted like any other and goes to the back.
    #[inline]
    pub(crate) fn push_woken(&self, co: CoroutineRef) {
        // SAFETY: as in `push_ready`.
        let ready = unsafe { &mut *self.ready.get() };
        ready.push_front(co);
        self.shared.ready_len.store(ready.len(), Ordering::Relaxed);
    }

    /// Moves the inbox (coroutines woken from other threads) to the front
    /// of `ready`, keeping their wake order.
    pub(super) fn drain_inbox(&self) {
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

    pub(super) fn pop_ready(&self) -> Option<CoroutineRef> {
        // SAFETY: as in `push_ready`.
        let ready = unsafe { &mut *self.ready.get() };
        let t = ready.pop_front();
        self.shared.ready_len.store(ready.len(), Ordering::Relaxed);
        t
    }

    /// Adds `co` to the registry of live coroutines (`register`) or
    /// removes it, without waiting: if `dump()` holds the shard, the
    /// operation waits on this executor's own list, which keeps `co`
    /// alive, and is retried from the scheduler loop
    /// (`retry_registry_ops`). Owner thread, preemption impossible.
    #[cold]
    #[inline(never)]
    pub(crate) fn registry_op(&self, co: &CoroutineRef, register: bool) {
        // SAFETY: owner thread; no reference into the list is live.
        let pending = unsafe { &mut *self.registry_pending.get() };
        if !pending.is_empty() {
            // Keep the order: an earlier registration of `co` may wait.
            pending.push((co.clone(), register));
            self.retry_registry_ops();
            return;
        }
        let done = if register {
            crate::observe::registry::try_register(co)
        } else {
            crate::observe::registry::try_unregister(co)
        };
        if !done {
            pending.push((co.clone(), register));
        }
    }

    #[inline]
    pub(crate) fn retry_registry_ops_if_any(&self) {
        // SAFETY: owner thread; a length read, no reference kept.
        if !unsafe { (*self.registry_pending.get()).is_empty() } {
            self.retry_registry_ops();
        }
    }

    /// Retries registry operations that found their shard busy (see
    /// `registry_op`), in order, until one is busy again.
    pub(crate) fn retry_registry_ops(&self) {
        // SAFETY: owner thread; no reference into the list is live across
        // the calls below (they do not touch it).
        let pending = unsafe { &mut *self.registry_pending.get() };
        let mut done = 0;
        for (co, register) in pending.iter() {
            let ok = if *register {
                // Finished meanwhile: nothing to show any more.
                co.state.load(Ordering::Acquire) & crate::coroutine::STATE_MASK
                    == crate::coroutine::DONE
                    || crate::observe::registry::try_register(co)
            } else {
                crate::observe::registry::try_unregister(co)
            };
            if !ok {
                break;
            }
            done += 1;
        }
        pending.drain(..done);
    }

    /// Queues a coroutine spawned by code running on this executor. Returns
    /// whether stealable work was added (then idle executors are told).
    pub(crate) fn push_spawned(&self, co: CoroutineRef) -> bool {
        bump(&self.shared.stats.spawned);
        if self.is_spare() {
            // The spare executor runs only woken coroutines (spare.rs).
            self.registry_op(&co, true);
            self.rt.injector.push(co);
            return true;
        }
        match self.next.replace(co, &self.shared.next_id) {
            // SAFETY: owner thread; `older` is queued, not running: its
            // `sp` is read by nobody else now (0 = never ran).
            Some(older) if self.rt.config.migrate && unsafe { *older.sp.get() } != 0 => {
                // A started coroutine (a joiner woken by a finishing one).
                self.runq.push(older);
                true
            }
            Some(older) => {
                // Leaving the slot for a stealable queue: from now on only
                // the registry shows it to `dump()`. The caller (spawn)
                // holds a no-preempt level.
                self.registry_op(&older, true);
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
    pub(crate) fn push_woken_next(&self, co: CoroutineRef) {
        match self.next.take(&self.shared.next_id) {
            None => {
                self.next.replace(co, &self.shared.next_id);
            }
            Some(n) => {
                self.next.replace(n, &self.shared.next_id);
                self.shared.inbox.push(co);
            }
        }
    }

    /// A coroutine whose context is saved after it asked to park: publish
    /// PARKED, or requeue it if a wake came first.
    pub(super) fn complete_park(&self, co: CoroutineRef) {
        bump(&self.shared.stats.parks);
        // Release: the coroutine's writes before parking are seen by the
        // waker that wins PARKED -> RUNNABLE.
        if co
            .state
            .compare_exchange(ACTIVE, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // A wake arrived since it started (NOTIFIED): run again (on
            // the spare executor: as a woken one, spare.rs).
            co.state.swap(RUNNABLE, Ordering::AcqRel);
            if self.is_spare() {
                self.shared.inbox.push(co);
            } else {
                self.requeue(co);
            }
        }
        // Else the waker will queue it; drop our reference.
    }

    /// Migration: the next woken coroutine from this executor's inbox.
    pub(super) fn pop_woken(&self) -> Option<CoroutineRef> {
        steal_one(&self.shared.inbox)
    }

    /// Migration: the next yielded or preempted coroutine queued here.
    pub(super) fn pop_runq(&self) -> Option<CoroutineRef> {
        self.runq.pop()
    }

    pub(super) fn requeue(&self, co: CoroutineRef) {
        if self.is_spare() {
            // A yield on the spare executor: to the regular executors
            // (spare.rs), or a spin-yield loop would keep it forever.
            self.rt.injector.push(co);
            self.rt.notify_idle();
            return;
        }
        if self.rt.config.migrate {
            self.runq.push(co);
            // More than one waiting: one of them could run elsewhere now.
            if self.runq.len() > 1 {
                self.rt.notify_idle();
            }
        } else {
            self.push_ready(co);
        }
        // A yield: it waits for the new-work slice, not a whole one
        // (preempt/monitor.rs).
        crate::preempt::prompt_work();
    }
}

/// One coroutine from `steal` (an injector's or another executor's deque),
/// retrying on contention.
fn retry_steal(steal: impl Fn() -> Steal<CoroutineRef>) -> Option<CoroutineRef> {
    loop {
        match steal() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// One coroutine from a stealable queue.
pub(super) fn steal_one(q: &Injector<CoroutineRef>) -> Option<CoroutineRef> {
    retry_steal(|| q.steal())
}

/// One coroutine stolen from another executor's deque.
pub(super) fn steal_from(q: &Stealer<CoroutineRef>) -> Option<CoroutineRef> {
    retry_steal(|| q.steal())
}
