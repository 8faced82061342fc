//! Composition root: starting the runtime, every subsystem in order.
//!
//! The runtime starts once per process, on the first spawn (configured from
//! the environment: `runtime`) or from `RuntimeBuilder::start`
//! (`start_with`). Start-up races between threads are settled by
//! `START_LOCK`; afterwards everyone reads the published runtime
//! (`sched::try_runtime`, one Acquire load) and never takes the lock again.
//!
//! Order (each step relies on the ones before it):
//! 1. resolve the configuration (config.rs; a bad value is an error, the
//!    runtime does not start);
//! 2. check that the libc hooks are linked and reached
//!    (`interpose::verify`, which also keeps their object in every build),
//!    and that the `syscall` hook is libc's (`futex::check_linked`: fatal);
//! 3. choose the thread-local mode before any executor exists (they are
//!    built for one or the other): per-coroutine TLS blocks
//!    (`tls::enable`; the stack reserves room for the block, the pool of
//!    library thread ids is set up), else shared thread-locals, where
//!    migration is off unless asked for explicitly;
//! 4. the code-range table (preempt/zones.rs) before any coroutine runs:
//!    the pthread hooks consult it from the first lock;
//! 5. the stack-overflow handler and its name callback (the scheduler
//!    names the running coroutine);
//! 6. the reactor's timer hook to the preemption monitor (a new earliest
//!    timer wakes the monitor if it sleeps past it): the reactor does not
//!    know the monitor;
//! 7. the scheduler: executor slots, the first executors, the runtime
//!    published (`Runtime::launch`);
//! 8. the dump on a signal (observe/signal.rs), if configured: its
//!    thread and handler (a failure is one line on stderr, not an error);
//! 9. the preemption monitor, which also runs the blocked-executor
//!    detector; with preemption off the detector gets a thread of its own;
//! 10. with `COROUTINES_TRACE`, the schedule-trace thread (its flags, and
//!     the trace buffers, are set up before step 7: observe/trace.rs).
//!
//! The scheduler (sched/) gets its settings as a plain `sched::Settings`
//! and imports neither `config` nor `interpose`.

use std::io;
use std::sync::Mutex;

use crate::config::{Config, ConfigError, RuntimeBuilder, ThreadLocals};
use crate::sched::{self, Runtime, Settings};

static START_LOCK: Mutex<()> = Mutex::new(());

/// The runtime, started from the environment if needed.
#[inline]
pub(crate) fn runtime() -> io::Result<&'static Runtime> {
    if let Some(rt) = sched::try_runtime() {
        return Ok(rt);
    }
    start_slow(None).map_err(io::Error::from)
}

/// `RuntimeBuilder::start`.
pub(crate) fn start_with(config: Config) -> Result<(), ConfigError> {
    start_slow(Some(config)).map(|_| ())
}

fn start_slow(config: Option<Config>) -> Result<&'static Runtime, ConfigError> {
    let _g = START_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = sched::try_runtime() {
        if config.is_some() {
            return Err(ConfigError::AlreadyStarted);
        }
        return Ok(rt);
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
    if crate::tls::enable(config.thread_locals == ThreadLocals::PerCoroutine) {
        crate::stack::set_reserved_top(crate::tls::layout().span());
        crate::tls::pool::init();
        crate::tls::enable_own_malloc(
            config.malloc_state == crate::config::MallocState::OwnWhenPreempted,
        );
    } else if config.migrate && !config.migrate_explicit {
        // Migration is the default only because each coroutine carries its
        // own thread-locals; with shared ones, coroutines stay put.
        config.migrate = false;
    }
    crate::preempt::hijack::init(config.preempt_returns && config.time_slice.is_some());
    // The spare executor runs woken coroutines wherever they were woken:
    // only with migration, and only with the monitor that moves one that
    // keeps computing off it (sched/spare.rs).
    let spare = config.spare_executor && config.migrate && config.time_slice.is_some();
    // Its slot comes after the first `workers` (sched/runtime.rs).
    let slots = config.max_workers + spare as usize;
    // The code-range table (C zones, allocator ranges) before any
    // coroutine runs: the pthread hooks consult it from the first lock (a
    // park inside an allocator would re-enter it). The monitor refreshes it
    // after a dlopen.
    if crate::preempt::zones::table().is_none() {
        crate::preempt::zones::refresh(&config.preempt_c);
    }
    crate::stack::install_overflow_handler();
    crate::stack::set_current_name_fn(sched::current_name_raw);
    // Before the runtime is published: from then on a new earliest timer
    // tells the monitor (a no-op until the monitor plans a sleep).
    crate::reactor::set_timer_armed_hook(crate::preempt::timer_armed);
    crate::reactor::set_spread_sleeps(config.spread_sleeps);
    sched::install_fork_child_handler();
    // Tracing flags before any executor runs a coroutine
    // (observe/trace.rs: they never change afterwards).
    crate::observe::trace::init(
        &crate::observe::trace::TraceConfig {
            interval: config.trace,
            file: config.trace_file.clone(),
            wake_latency: config.wake_latency,
        },
        slots,
    );
    let rt = Runtime::launch(Settings {
        workers: config.workers,
        max_workers: slots,
        spare,
        stack_size_bytes: config.stack_size_bytes,
        time_slice: config.time_slice,
        migrate: config.migrate,
        blocked_after: config.blocked_after,
        preempt_c: config.preempt_c,
        file_helpers: config.file_helpers,
        trace_blocking: config.trace_blocking,
    });
    if let Some(sig) = config.dump_signal {
        if let Err(e) = crate::observe::signal::start(sig) {
            crate::sys::write_stderr(
                format!("coroutines: COROUTINES_DUMP_SIGNAL: cannot install the dump on signal {sig}: {e}; dumps on a signal are off\n")
                    .as_bytes(),
            );
        }
    }
    // The blocked-executor detector runs in the preemption monitor's loop
    // (one thread watching the executors, asleep while they are idle); with
    // preemption off it gets a thread of its own.
    match rt.config.time_slice {
        Some(slice) => crate::preempt::start(rt, slice),
        None => {
            if let Err(e) = sched::start_detector(rt) {
                crate::sys::fatal_fmt(&format!(
                    "cannot start the blocked-executor detector thread: {e}"
                ));
            }
        }
    }
    if let Some(interval) = config.trace {
        if let Err(e) = crate::observe::trace::start_thread(interval) {
            crate::sys::fatal_fmt(&format!("cannot start the schedule-trace thread: {e}"));
        }
    }
    Ok(rt)
}
