//! The process-wide runtime: its settings, executors' shared halves, the
//! global injector, launching the executors, and the spawn/wake entry
//! points.
//!
//! The runtime starts once per process, on the first spawn (configured from
//! the environment) or from `RuntimeBuilder::start`: the composition root
//! (start.rs) settles start-up races, starts the subsystems and calls
//! `Runtime::launch`. Readers use the `RUNTIME` pointer (published with
//! Release by `launch` after the runtime is fully built, read with
//! Acquire) and never lock.

use std::io;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_deque::{Injector, Worker};

use super::executor::{current_executor, ExecutorShared};
use super::level::NoPreempt;
use super::thread::executor_main;
use crate::coroutine::{CoroutineRef, NO_HOME};
use crate::tls::alias::{self, ThreadStack};

/// What the scheduler and its neighbours read of the configuration: the
/// values the composition root (start.rs) resolved from `Config`, with
/// the migration default already settled for the thread-local mode.
pub(crate) struct Settings {
    /// Executors started at runtime start (slots `0..workers` never exit).
    pub(crate) workers: usize,
    /// Executor slots in all, counting the spare executor and extra ones
    /// started for blocked executors.
    pub(crate) max_workers: usize,
    /// Whether slot `workers` is the spare executor (sched/spare.rs); extra
    /// executors then start at `workers + 1`.
    pub(crate) spare: bool,
    /// Default usable stack size of a coroutine, in bytes (coroutine.rs).
    pub(crate) stack_size_bytes: usize,
    /// Time slice; `None`: preemption off (the root then starts the
    /// blocked-executor detector on a thread of its own).
    pub(crate) time_slice: Option<Duration>,
    /// Whether started coroutines may move between executors.
    pub(crate) migrate: bool,
    /// No-progress time after which an executor counts as blocked.
    pub(crate) blocked_after: Duration,
    /// Allow-list of preemptible C symbol-name prefixes (preempt/zones.rs).
    pub(crate) preempt_c: Vec<String>,
    /// Cap of the regular-file helper threads (interpose/offload.rs).
    pub(crate) file_helpers: usize,
    /// Print new blocking call sites (observe/blocking.rs).
    pub(crate) trace_blocking: bool,
}

pub(crate) struct Runtime {
    pub(crate) config: Settings,
    /// Coroutines spawned outside any executor (and, with migration,
    /// started coroutines woken from outside their executor).
    pub(crate) injector: Injector<CoroutineRef>,
    /// `config.max_workers` slots; the first `started` are live threads.
    pub(crate) executors: Box<[ExecutorShared]>,
    /// High-water mark of started executor slots (only grows; slots below
    /// it may be retired and reused, see blocked.rs).
    pub(crate) started: AtomicUsize,
    /// Executors announced as sleeping (idle.rs protocol).
    pub(crate) sleepers: AtomicUsize,
    /// Executors woken to look for work that have not found any yet: while
    /// one searches, new work does not wake another (Go's "spinning Ms").
    pub(crate) searching: AtomicUsize,
    /// Spawns from plain threads.
    pub(crate) external_spawns: AtomicU64,
    /// Deques of executor slots not started yet, handed to their thread.
    /// (Each slot: its `fresh` deque and its migration `runq`.)
    pending_workers: Mutex<Vec<Option<SlotDeques>>>,
}

/// The owner halves of an executor slot's deques: its `fresh` deque and its
/// migration `runq`.
pub(crate) type SlotDeques = (Worker<CoroutineRef>, Worker<CoroutineRef>);

static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// The runtime if it runs already (the composition root, start.rs,
/// starts it).
#[inline]
pub(crate) fn try_runtime() -> Option<&'static Runtime> {
    let p = RUNTIME.load(Ordering::Acquire);
    // SAFETY: published once by `launch`, fully built, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Usable stack of an executor thread (the scheduler and the signal
/// handlers' frames; coroutines run on their own stacks).
const EXECUTOR_STACK: usize = 256 * 1024;

fn warn_plain_stack(e: &io::Error) {
    crate::sys::write_stderr(
        format!(
            "coroutines: warning: cannot set up an executor stack with a TLS alias region ({e}); \
             this executor runs on a plain thread stack, where std::sync::mpsc cannot wake a \
             receiver blocked in another coroutine of the same executor.\n"
        )
        .as_bytes(),
    );
}

impl Runtime {
    /// Builds the runtime (every executor slot), starts the first
    /// `settings.workers` executor threads and publishes the runtime.
    /// Called once, by the composition root (start.rs) under its start
    /// lock, after the subsystems the executors rely on are set up.
    pub(crate) fn launch(config: Settings) -> &'static Runtime {
        let mut workers = Vec::with_capacity(config.max_workers);
        let mut shared = Vec::with_capacity(config.max_workers);
        for index in 0..config.max_workers {
            let w = Worker::new_fifo();
            let r = Worker::new_fifo();
            shared.push(ExecutorShared::new(index, w.stealer(), r.stealer()));
            workers.push(Some((w, r)));
        }
        let rt: &'static Runtime = Box::leak(Box::new(Runtime {
            config,
            injector: Injector::new(),
            executors: shared.into_boxed_slice(),
            started: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            external_spawns: AtomicU64::new(0),
            pending_workers: Mutex::new(workers),
        }));
        for _ in 0..rt.config.workers + rt.config.spare as usize {
            if let Err(e) = rt.start_executor() {
                crate::sys::fatal_fmt(&format!("cannot start executor thread: {e}"));
            }
        }
        RUNTIME.store(rt as *const Runtime as *mut Runtime, Ordering::Release);
        rt
    }

    /// Starts the thread of a free executor slot: a retired one if any
    /// (its deque is back in `pending_workers`), else the next one never
    /// started. Returns its index.
    pub(crate) fn start_executor(&'static self) -> io::Result<usize> {
        let mut pending = self
            .pending_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let started = self.started.load(Ordering::Relaxed);
        let index = (0..started)
            .find(|&i| pending[i].is_some())
            .unwrap_or(started);
        if index >= self.executors.len() {
            return Err(io::Error::other(
                "all executor slots are in use (COROUTINES_MAX_WORKERS)",
            ));
        }
        let fresh = pending[index].take().expect("executor slot started twice");
        // Alive from now on (stats count it at once; the thread may take a
        // moment to run).
        self.executors[index].alive.store(true, Ordering::Release);
        let name = if self.is_spare(index) {
            "coroutines-spare".to_string()
        } else {
            format!("coroutines-executor-{index}")
        };
        let spawned = {
            let mut slot = self.executors[index]
                .thread
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(old) = slot.pthread.take() {
                // A retired thread of this slot: it left its loop; wait
                // until it is gone before its stack is reused.
                // SAFETY: joinable thread created by `spawn_on`, joined once.
                unsafe { libc::pthread_join(old, std::ptr::null_mut()) };
            }
            if slot.stack.is_none() && !crate::tls::enabled() {
                match ThreadStack::new(EXECUTOR_STACK) {
                    Ok(s) => slot.stack = Some(s),
                    Err(e) => warn_plain_stack(&e),
                }
            }
            match &slot.stack {
                Some(stack) => {
                    let info = stack.info();
                    alias::spawn_on(
                        stack,
                        &name,
                        Box::new(move || executor_main(self, index, fresh, Some(info))),
                    )
                    .map(|th| slot.pthread = Some(th))
                }
                None => std::thread::Builder::new()
                    .name(name)
                    .stack_size(EXECUTOR_STACK)
                    .spawn(move || executor_main(self, index, fresh, None))
                    .map(drop),
            }
        };
        match spawned {
            Ok(()) => {
                if index == started {
                    self.started.store(index + 1, Ordering::Release);
                }
                Ok(index)
            }
            Err(e) => {
                self.executors[index].alive.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Retirement step 1-2 (blocked.rs): if `still_idle()` holds under the
    /// slot lock, marks slot `index` as not alive and returns true.
    pub(crate) fn retire_slot(&self, index: usize, still_idle: impl FnOnce() -> bool) -> bool {
        let _pending = self
            .pending_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !still_idle() {
            return false;
        }
        self.executors[index].alive.store(false, Ordering::Release);
        true
    }

    /// Retirement step 3 (blocked.rs): the retired thread hands its slot's
    /// deque back; from now on `start_executor` may reuse the slot.
    pub(crate) fn return_slot(&self, index: usize, fresh: SlotDeques) {
        let mut pending = self
            .pending_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        debug_assert!(fresh.0.is_empty() && fresh.1.is_empty());
        pending[index] = Some(fresh);
        super::blocked::EXTRA_RETIRED.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether slot `index` is the spare executor (sched/spare.rs).
    #[inline]
    pub(crate) fn is_spare(&self, index: usize) -> bool {
        self.config.spare && index == self.config.workers
    }

    /// The spare executor's shared half, if there is one.
    #[inline]
    pub(crate) fn spare(&self) -> Option<&ExecutorShared> {
        self.config
            .spare
            .then(|| &self.executors[self.config.workers])
    }

    /// Index of the first extra slot (an executor started for a blocked
    /// one, which may retire: blocked.rs).
    #[inline]
    pub(crate) fn first_extra(&self) -> usize {
        self.config.workers + self.config.spare as usize
    }

    /// Whether a spawned coroutine waits for its first run (spawns
    /// counted by the spawning executors and from plain threads, minus first
    /// runs counted by the executors; approximate, for the monitor).
    pub(crate) fn never_run_waiting(&self) -> bool {
        let mut spawned = self.external_spawns.load(Ordering::Relaxed);
        let mut started = 0u64;
        for e in self.live_executors() {
            spawned += e.stats.spawned.load(Ordering::Relaxed);
            started += e.first_runs.load(Ordering::Relaxed);
        }
        spawned > started
    }

    /// Live executors' shared halves.
    pub(crate) fn live_executors(&self) -> &[ExecutorShared] {
        &self.executors[..self.started.load(Ordering::Acquire)]
    }

    /// Wakes one sleeping executor unless one is already searching.
    /// Call after publishing work.
    pub(crate) fn notify_idle(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) == 0 || self.searching.load(Ordering::Relaxed) > 0
        {
            return;
        }
        for e in self.live_executors() {
            // The spare executor takes no general work (spare.rs).
            if !self.is_spare(e.index) && e.parker.unpark() {
                return;
            }
        }
    }
}

/// Queues a coroutine that was never run.
pub(crate) fn spawn_coroutine(rt: &'static Runtime, co: CoroutineRef) {
    let np = NoPreempt::new();
    match current_executor() {
        Some(exec) if std::ptr::eq(exec.rt, rt) => {
            if exec.push_spawned(co) {
                rt.notify_idle();
            }
        }
        _ => {
            crate::observe::registry::register(&co, &np);
            rt.injector.push(co);
            rt.external_spawns.fetch_add(1, Ordering::Relaxed);
            rt.notify_idle();
        }
    }
    // A coroutine waiting for its first run: running ones get a shorter
    // slice (preempt/monitor.rs). Best effort without a fence of its own:
    // a hint lost to the race costs at most one long monitor tick.
    crate::preempt::prompt_work();
}

/// Queues a woken (started) coroutine on its executor, or anywhere when
/// migration is on. `notify`: with migration, whether an idle executor
/// may be woken to take it (false when the caller gives its executor up
/// right away, so it runs here next).
pub(crate) fn schedule(co: CoroutineRef, notify: bool) {
    let _np = NoPreempt::new();
    let Some(rt) = try_runtime() else {
        crate::sys::fatal("schedule() before the runtime started");
    };
    queue_woken(rt, co, notify);
    // Woken: the running coroutine its executor must give way to is timed
    // from now (preempt/monitor.rs; best effort, see `spawn_coroutine`).
    crate::preempt::prompt_work();
}

/// `schedule`'s placement, under its no-preempt level.
#[inline(always)]
fn queue_woken(rt: &'static Runtime, co: CoroutineRef, notify: bool) {
    let home = co.home.load(Ordering::Relaxed);
    let exec = current_executor();
    if home == NO_HOME {
        match exec {
            Some(exec) => exec.fresh.push(co),
            None => rt.injector.push(co),
        }
        rt.notify_idle();
        return;
    }
    if rt.config.migrate {
        // The waker's executor (or the coroutine's last one) runs it next
        // unless an idle executor steals it first from the inbox.
        match exec {
            Some(exec) if std::ptr::eq(exec.rt, rt) => {
                if !notify && exec.in_coroutine_now() {
                    exec.push_woken_next(co);
                    return;
                }
                exec.shared.inbox.push(co);
            }
            // From outside (a timer fired by the monitor, a helper
            // thread): the coroutine's last executor's inbox, where the
            // monitor's wake-up preemption sees it (and idle executors
            // steal it); the global queue if that executor retired.
            _ => {
                let target = &rt.executors[home as usize];
                if target.alive.load(Ordering::Acquire) {
                    target.inbox.push(co);
                    fence(Ordering::SeqCst);
                    if !target.parker.unpark() && !target.parker.is_sleeping() {
                        // Its executor is busy (or searching): the spare
                        // executor may run it first (spare.rs).
                        super::spare::kick_spare(rt);
                    }
                    if !target.alive.load(Ordering::Acquire) {
                        // Retired meanwhile: nobody drains a dead slot's
                        // inbox; move what is there to the global queue.
                        while let crossbeam_deque::Steal::Success(t) = target.inbox.steal() {
                            rt.injector.push(t);
                        }
                    }
                } else {
                    rt.injector.push(co);
                }
            }
        }
        rt.notify_idle();
        return;
    }
    match exec {
        Some(exec) if exec.index == home as usize => exec.push_woken(co),
        _ => {
            let target = &rt.executors[home as usize];
            target.inbox.push(co);
            fence(Ordering::SeqCst);
            target.parker.unpark();
        }
    }
}
