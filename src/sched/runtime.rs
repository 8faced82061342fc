//! The process-wide runtime: configuration, executors' shared halves, the
//! global injector, start-up, and the spawn/wake entry points.
//!
//! The runtime starts once per process, on the first spawn (configured from
//! the environment) or from `RuntimeBuilder::start`. Start-up races between
//! threads are settled by `START_LOCK`; readers use the `RUNTIME` pointer
//! (published with Release after the runtime is fully built, read with
//! Acquire) and never take the lock again.

use std::io;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_deque::{Injector, Worker};

use super::worker::{self, ExecutorShared};
use crate::config::{Config, ConfigError, RuntimeBuilder};
use crate::coroutine::{Task, NO_HOME};
use crate::tls::alias::{self, ThreadStack};

pub(crate) struct Runtime {
    pub(crate) config: Config,
    /// Coroutines spawned outside any executor (and, with migration,
    /// started coroutines woken from outside their executor).
    pub(crate) injector: Injector<Task>,
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
    pending_workers: Mutex<Vec<Option<(Worker<Task>, Worker<Task>)>>>,
}

static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());
static START_LOCK: Mutex<()> = Mutex::new(());

/// The runtime, started from the environment if needed.
#[inline]
pub(crate) fn runtime() -> io::Result<&'static Runtime> {
    let p = RUNTIME.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: published once, fully built, never freed.
        return Ok(unsafe { &*p });
    }
    start_slow(None).map_err(io::Error::from)
}

/// The runtime if it runs already.
#[inline]
pub(crate) fn try_runtime() -> Option<&'static Runtime> {
    let p = RUNTIME.load(Ordering::Acquire);
    // SAFETY: as in `runtime`.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// `RuntimeBuilder::start`.
pub(crate) fn start_with(config: Config) -> Result<(), ConfigError> {
    start_slow(Some(config)).map(|_| ())
}

fn start_slow(config: Option<Config>) -> Result<&'static Runtime, ConfigError> {
    let _g = START_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let p = RUNTIME.load(Ordering::Acquire);
    if !p.is_null() {
        if config.is_some() {
            return Err(ConfigError::AlreadyStarted);
        }
        // SAFETY: as in `runtime`.
        return Ok(unsafe { &*p });
    }
    let config = match config {
        Some(c) => c,
        None => RuntimeBuilder::new().resolve()?,
    };
    // The libc hooks must be linked and reached (this call also keeps
    // their object in every build: see interpose/mod.rs).
    crate::interpose::verify().map_err(ConfigError::HooksNotLinked)?;
    if let Err(msg) = crate::interpose::futex::check_linked() {
        crate::sys::fatal(msg);
    }
    // Before any executor starts: they are built for one mode or the other.
    let mut config = config;
    if crate::tls::enable(config.thread_locals == crate::config::ThreadLocals::PerCoroutine) {
        crate::stack::set_reserved_top(crate::tls::layout().span());
        crate::tls::pool::init();
    } else if config.migrate && !config.migrate_explicit {
        // Migration is the default only because each coroutine carries its
        // own thread-locals; with shared ones, coroutines stay put.
        config.migrate = false;
    }
    // The code-range table (C zones, allocator ranges) before any
    // coroutine runs: the pthread hooks consult it from the first lock (a
    // park inside an allocator would re-enter it). The monitor refreshes it
    // after a dlopen.
    if crate::preempt::zones::table().is_none() {
        crate::preempt::zones::refresh(&config.preempt_c);
    }
    crate::stack::install_overflow_handler();
    crate::stack::set_current_name_fn(worker::current_name_raw);
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
    for _ in 0..rt.config.workers {
        if let Err(e) = rt.start_executor() {
            crate::sys::fatal_fmt(&format!("cannot start executor thread: {e}"));
        }
    }
    RUNTIME.store(rt as *const Runtime as *mut Runtime, Ordering::Release);
    // The blocked-executor detector runs in the preemption monitor's loop
    // (one thread watching the executors, asleep while they are idle); with
    // preemption off it gets a thread of its own.
    match rt.config.time_slice {
        Some(slice) => crate::preempt::start(rt, slice),
        None => {
            if let Err(e) = super::blocked::start_detector(rt) {
                crate::sys::fatal_fmt(&format!(
                    "cannot start the blocked-executor detector thread: {e}"
                ));
            }
        }
    }
    Ok(rt)
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
        let name = format!("coroutines-executor-{index}");
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
                        Box::new(move || worker::executor_main(self, index, fresh, Some(info))),
                    )
                    .map(|th| slot.pthread = Some(th))
                }
                None => std::thread::Builder::new()
                    .name(name)
                    .stack_size(EXECUTOR_STACK)
                    .spawn(move || worker::executor_main(self, index, fresh, None))
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
    pub(crate) fn return_slot(&self, index: usize, fresh: (Worker<Task>, Worker<Task>)) {
        let mut pending = self
            .pending_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        debug_assert!(fresh.0.is_empty() && fresh.1.is_empty());
        pending[index] = Some(fresh);
        super::blocked::EXTRA_RETIRED.fetch_add(1, Ordering::Relaxed);
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
            if e.parker.unpark() {
                return;
            }
        }
    }
}

/// Queues a coroutine that was never run.
pub(crate) fn spawn_task(rt: &'static Runtime, task: Task) {
    let _np = worker::NoPreempt::new();
    match worker::current_executor() {
        Some(exec) if std::ptr::eq(exec.rt, rt) => {
            if exec.push_spawned(task) {
                rt.notify_idle();
            }
        }
        _ => {
            rt.injector.push(task);
            rt.external_spawns.fetch_add(1, Ordering::Relaxed);
            rt.notify_idle();
        }
    }
}

/// Queues a woken (started) coroutine on its executor, or anywhere when
/// migration is on. `notify`: with migration, whether an idle executor
/// may be woken to take it (false when the caller gives its executor up
/// right away, so it runs here next).
pub(crate) fn schedule(task: Task, notify: bool) {
    let _np = worker::NoPreempt::new();
    let Some(rt) = try_runtime() else {
        crate::sys::fatal("schedule() before the runtime started");
    };
    let home = task.home.load(Ordering::Relaxed);
    let exec = worker::current_executor();
    if home == NO_HOME {
        match exec {
            Some(exec) => exec.fresh.push(task),
            None => rt.injector.push(task),
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
                    exec.push_woken_next(task);
                    return;
                }
                exec.shared.inbox.push(task);
            }
            // From outside (a timer fired by the monitor, a helper
            // thread): the coroutine's last executor's inbox, where the
            // monitor's wake-up preemption sees it (and idle executors
            // steal it); the global queue if that executor retired.
            _ => {
                let target = &rt.executors[home as usize];
                if target.alive.load(Ordering::Acquire) {
                    target.inbox.push(task);
                    fence(Ordering::SeqCst);
                    target.parker.unpark();
                    if !target.alive.load(Ordering::Acquire) {
                        // Retired meanwhile: nobody drains a dead slot's
                        // inbox; move what is there to the global queue.
                        while let crossbeam_deque::Steal::Success(t) = target.inbox.steal() {
                            rt.injector.push(t);
                        }
                    }
                } else {
                    rt.injector.push(task);
                }
            }
        }
        rt.notify_idle();
        return;
    }
    match exec {
        Some(exec) if exec.index == home as usize => exec.push_woken(task),
        _ => {
            let target = &rt.executors[home as usize];
            target.inbox.push(task);
            fence(Ordering::SeqCst);
            target.parker.unpark();
        }
    }
}
