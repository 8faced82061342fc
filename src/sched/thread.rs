//! An executor's OS thread: its start (`executor_main`: per-thread
//! identity and alias windows, the carrier's thread pointer and errno,
//! the thread-local `EXECUTOR`), its loop around run.rs, its retirement,
//! and the `fork` hook on executor threads.
//!
//! Executors of the first `config.workers` slots never exit (the runtime
//! lives as long as the process). An extra executor, started for a blocked
//! one, retires once it idled for a while with nothing homed on it: it
//! leaves the loop, hands its `fresh` deque back to the runtime and its
//! thread ends; the slot can be started again (sched/blocked.rs).

use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_deque::Worker;

use super::executor::{current_executor, steal_one, Action, Executor, EXECUTOR};
use super::level::NoPreempt;
use super::runtime::Runtime;
use crate::coroutine::CoroutineRef;
use crate::tls;
use crate::tls::alias::{StackInfo, ThreadStack, Windows};
use crate::tls::identity::{self, Slots};

/// Set in a child of `fork` (any fork glibc runs its atfork handlers for:
/// `fork` itself, `daemon`, `forkpty`), never cleared: the child has only
/// the thread that forked, not the executors, the monitor, the detector
/// or the helper threads, while its memory holds copies of every other
/// coroutine and of the scheduler, and it shares the reactor's epoll
/// instance with the parent. So in the child the runtime stands down, as
/// the other threads of a forked thread program are simply gone:
/// - the forking thread stops being an executor (`on_fork_child` clears
///   its executor pointer): a coroutine that forked goes on as a plain
///   thread — its calls block the thread, as they would in a
///   single-threaded child — and never enters the scheduler, which would
///   run copies of the parent's coroutines and take the parent's epoll
///   events;
/// - when it finishes, the child process exits (status 0: what the last
///   thread returning does), see `coroutine_main`;
/// - `spawn` in the child gives each new coroutine an OS thread of its own
///   (`Builder::dedicated_thread`), since no executor runs there;
/// - the reactor's epoll instance and eventfd are replaced by private ones
///   (closing a registered fd in the child removed the *parent's*
///   registration from the shared instance: lost wake-ups there).
static FORK_CHILD: AtomicBool = AtomicBool::new(false);

/// Whether this process is a child of `fork` of a process that ran the
/// runtime (see `FORK_CHILD`).
#[inline]
pub(crate) fn fork_child() -> bool {
    FORK_CHILD.load(Ordering::Relaxed)
}

/// glibc's atfork child handler (registered at runtime start): runs in
/// the child, on the forking thread, before `fork` returns there.
extern "C" fn on_fork_child() {
    FORK_CHILD.store(true, Ordering::Relaxed);
    // The forking thread is a plain thread in the child (see FORK_CHILD).
    // With per-coroutine thread-locals this is the running coroutine's
    // copy of the carrier-bound slot, which is what it reads from now on
    // (it is never switched again).
    EXECUTOR.with(|e| e.set(std::ptr::null()));
    // And its reactor objects are its own (reactor/epoll.rs).
    crate::reactor::private_after_fork();
}

/// Registers `on_fork_child` with glibc (once, at runtime start).
pub(crate) fn install_fork_child_handler() {
    // SAFETY: pthread_atfork with a plain extern "C" function that only
    // stores an atomic and a const-initialised thread-local and makes raw
    // system calls (no lock, no allocation: safe in a fork child).
    let r = unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
    if r != 0 {
        crate::sys::write_stderr(
            b"coroutines: warning: pthread_atfork failed: a fork child would keep the runtime's \
              copy; fork only to exec\n",
        );
    }
}

/// The `fork` hook (interpose/mod.rs): on an executor thread, forks with
/// the executor's TLS region made private meanwhile (tls/alias.rs).
pub(crate) fn fork_on_executor(real: unsafe extern "C" fn() -> libc::pid_t) -> libc::pid_t {
    match current_executor() {
        Some(exec) => {
            let _np = NoPreempt::new();
            exec.windows.fork(real)
        }
        // SAFETY: `real` is glibc's fork (resolved by the hook), which has no
        // precondition; not an executor thread, so no TLS region to guard.
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

/// Body of an executor thread. `stack`: the alias-capable stack it runs
/// on, if any (tls/alias.rs).
pub(crate) fn executor_main(
    rt: &'static Runtime,
    index: usize,
    (fresh, runq): (Worker<CoroutineRef>, Worker<CoroutineRef>),
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
    // (tls/block.rs: a block never builds one of its own).
    // SAFETY: frees exactly the block just returned by malloc (or null).
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
        next: super::executor::NextSlot::new(),
        tick: Cell::new(0),
        run_mark: Cell::new(0),
        registry_pending: UnsafeCell::new(Vec::new()),
        slice_start: Cell::new(0),
        prefer_new: Cell::new(false),
        safe_point: Cell::new(false),
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
        retry: if rt.config.time_slice.is_some() {
            crate::preempt::retry::Retry::for_this_thread()
        } else {
            crate::preempt::retry::Retry::none()
        },
        spare: rt.is_spare(index),
    }));
    // SAFETY: freshly boxed; freed only below, after the loop ends and the
    // thread-local pointer is cleared.
    let exec: &Executor = unsafe { &*exec_ptr };
    EXECUTOR.with(|e| e.set(exec_ptr));
    // An executor started while the monitor sleeps (an extra one for a
    // blocked executor) must wake it, like one leaving its parker.
    crate::preempt::executor_woke();
    let spare = exec.is_spare();
    if spare {
        super::spare::init_spare_thread();
    }
    loop {
        // One call site of `run_coroutine` (inlined here: see run.rs).
        let next = if spare {
            // Never retires: the runtime lives as long as the process.
            match exec.spare_next() {
                Some(t) => Some(t),
                None => {
                    exec.spare_idle();
                    continue;
                }
            }
        } else {
            match exec.next_coroutine() {
                Some(t) => Some(t),
                None => exec.find_work(true).or_else(|| exec.idle()),
            }
        };
        match next {
            Some(co) => exec.run_coroutine(co),
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
    // moves the coroutine itself, or we see the coroutine here (runtime.rs
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

impl Executor {
    /// Whether this executor is an extra one, started for a blocked
    /// executor, that may retire.
    pub(super) fn is_surplus(&self) -> bool {
        self.index >= self.rt.first_extra()
    }

    /// Whether it is time to retire (blocked.rs): surplus, idle long
    /// enough, nothing homed here.
    pub(super) fn should_retire(&self) -> bool {
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
    pub(super) fn try_retire(&self) -> bool {
        // SAFETY: owner thread; no reference into `ready` is live.
        let ready_empty = unsafe { (*self.ready.get()).is_empty() };
        // `next` is empty here (find_work took it), but check: a coroutine
        // left there would never run.
        let next_empty = match self.next.take(&self.shared.next_id) {
            Some(t) => {
                self.next.replace(t, &self.shared.next_id);
                false
            }
            None => true,
        };
        // Registry updates still deferred (a dump holds their shard):
        // finish them first, or the coroutines they add would stay
        // invisible to `dump()`.
        self.retry_registry_ops_if_any();
        // SAFETY: owner thread; a length read, no reference kept.
        if !next_empty || !unsafe { (*self.registry_pending.get()).is_empty() } {
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
}
