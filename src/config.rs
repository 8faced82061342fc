//! Runtime configuration: environment variables and [`RuntimeBuilder`].
//!
//! Every knob can come from an environment variable (read once, when the
//! runtime starts) or from the builder; the builder wins. Bad values are
//! refused with a [`ConfigError`] naming the source, the value and the
//! accepted forms; nothing is silently replaced by a default. Configuring
//! after the runtime has started is [`ConfigError::AlreadyStarted`].
//!
//! This file holds the knobs' defaults, the resolved [`Config`] and the
//! builder, whose `resolve` reads each knob (builder, then environment,
//! then default). The parsing of values, their range checks and the
//! accepted forms are in config/parse.rs; the error type is in
//! config/error.rs.

mod error;
mod parse;

use std::path::PathBuf;
use std::time::Duration;

pub use error::ConfigError;
pub(crate) use parse::check_coroutine_stack;
use parse::{
    check_blocked, check_slice, check_stack, check_trace, check_workers, env_var, invalid,
    parse_duration, parse_preempt_c, parse_size, BLOCKED_FORMS, BOOL_FORMS, FILE_HELPERS_FORMS,
    MALLOC_FORMS, MAX_WORKERS_FORMS, PREEMPT_C_FORMS, SIZE_FORMS, SLICE_FORMS, TLS_FORMS,
    TRACE_FILE_FORMS, TRACE_FORMS, WORKERS_FORMS,
};
use parse::{parse_dump_signal, DUMP_SIGNAL_FORMS};

/// Smallest accepted coroutine stack: four pages.
pub const MIN_STACK_SIZE: usize = 16 * 1024;
/// Largest accepted coroutine stack.
pub const MAX_STACK_SIZE: usize = 1 << 30;
/// Default coroutine stack size (usable bytes, a guard page comes on top).
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
/// Largest accepted executor count.
pub const MAX_WORKERS: usize = 1024;
/// Default time slice before a CPU-bound coroutine is preempted while other
/// CPU-bound ones wait (Go's too; see `RuntimeBuilder::time_slice`).
pub const DEFAULT_SLICE: Duration = Duration::from_millis(10);
/// Default time an executor may make no progress before the monitor starts
/// an extra executor.
pub const DEFAULT_BLOCKED_AFTER: Duration = Duration::from_millis(20);

/// C symbol-name prefixes that stay preemptible by default although they
/// are C code linked into the executable (see the README's safe points
/// section): zlib's compression and decompression loops. zlib keeps all of
/// its state in the caller's `z_stream` (no globals: libz-sys builds it
/// with constant CRC tables), takes no lock and allocates only through
/// `zalloc`, whose own frames (libc's malloc, a C allocator) are not
/// preemptible; so a sibling running zlib on another stream meanwhile is
/// harmless. The entries cover zlib's exported entry points and the
/// internal functions that show in its symbol table: `deflate*`,
/// `inflate*`, `compress*`/`uncompress*`, `_tr_*` (trees.c),
/// `longest_match`, `fill_window`, `build_tree`, `scan_tree`, `send_tree`,
/// `pqdownheap`, `updatewindow`, `adler32*`, `crc32*`, and `zcalloc`/
/// `zcfree` (zlib's malloc/free wrappers: the libc call below them is a
/// zone of its own, and without them stale return addresses into them
/// left on the stack by `deflateInit` deferred every preemption inside
/// `deflate` in the Z1 bench). Not zlib's `gz*`
/// file functions (stdio-like buffers and I/O). Hand-written crypto
/// assembly is not on the list: its calls are short (a buffer at a time),
/// and its names are versioned per crate release (`ring_core_0_17_8_...`).
pub const DEFAULT_PREEMPT_C: &[&str] = &[
    "deflate",
    "inflate",
    "compress",
    "uncompress",
    "_tr_",
    "longest_match",
    "fill_window",
    "build_tree",
    "scan_tree",
    "send_tree",
    "pqdownheap",
    "updatewindow",
    "adler32",
    "crc32",
    "zcalloc",
    "zcfree",
];

/// The resolved configuration the runtime runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Executors started at runtime start.
    pub workers: usize,
    /// Upper bound on executors, counting extra ones started for blocked
    /// executors.
    pub max_workers: usize,
    /// Default usable stack size of a coroutine, in bytes.
    pub stack_size_bytes: usize,
    /// Time slice; `None` disables preemption.
    pub time_slice: Option<Duration>,
    /// Whether started coroutines may move between executors. Default: on
    /// with per-coroutine thread-locals (turned off at start if those are
    /// unavailable, unless asked for explicitly), off with shared ones.
    pub migrate: bool,
    /// Whether `migrate` was set explicitly (builder or environment)
    /// rather than defaulted.
    pub migrate_explicit: bool,
    /// No-progress time after which an executor counts as blocked.
    pub blocked_after: Duration,
    /// Where `thread_local!` values live: per coroutine (the default) or
    /// shared by the coroutines of one executor.
    pub thread_locals: ThreadLocals,
    /// Whose glibc malloc thread cache and arena a coroutine uses (with
    /// per-coroutine thread-locals).
    pub malloc_state: MallocState,
    /// Allow-list: symbol-name prefixes of C functions linked into the
    /// executable that may be preempted like Rust code (reentrant CPU
    /// loops). Every other non-Rust function is a no-preempt zone.
    pub preempt_c: Vec<String>,
    /// Cap of the helper-thread pool for regular-file I/O that would block
    /// (`COROUTINES_FILE_HELPERS`, default 16); more calls queue.
    pub file_helpers: usize,
    /// Signal that prints [`dump()`](crate::dump) to stderr
    /// (`COROUTINES_DUMP_SIGNAL`); None: off (the default).
    pub dump_signal: Option<i32>,
    /// Print each new call site of a blocked executor to stderr
    /// (`COROUTINES_TRACE_BLOCKING`, default off; the reports are kept
    /// and counted either way, see [`crate::blocking_reports`]).
    pub trace_blocking: bool,
    /// Spread sleeps that would wake in a herd (`COROUTINES_SPREAD_SLEEPS`,
    /// default on; README "Sleeps and timers").
    pub spread_sleeps: bool,
    /// Preempt code inside libc or C code at its return into Rust code
    /// (`COROUTINES_PREEMPT_RETURNS`, default on).
    pub preempt_returns: bool,
    /// Run a spare executor that sleeps until the next timer and runs the
    /// coroutines that timer wakes while every executor is busy
    /// (`COROUTINES_SPARE_EXECUTOR`, default on; it runs only with
    /// preemption and migration on).
    pub spare_executor: bool,
    /// Schedule trace: one line on stderr per interval
    /// (`COROUTINES_TRACE`, default off).
    pub trace: Option<Duration>,
    /// Execution trace file, Chrome trace-event JSON
    /// (`COROUTINES_TRACE_FILE`, default none).
    pub trace_file: Option<PathBuf>,
    /// Whether the wake-to-run latency histogram is recorded
    /// (`Stats::wake_latency`): on with `trace` or `trace_file`, or
    /// through [`RuntimeBuilder::wake_latency`].
    pub wake_latency: bool,
}

/// Where thread-local values live inside coroutines
/// (`COROUTINES_THREAD_LOCALS`, [`RuntimeBuilder::thread_locals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadLocals {
    /// Each coroutine has its own thread-local storage, as each thread
    /// does: `thread_local!` values (std's, tokio's, rayon's, tracing's,
    /// yours) and libc's per-thread state (errno, pthread keys) start
    /// fresh in every coroutine and their destructors run when it
    /// finishes. Needs glibc 2.36 on x86-64 with FSGSBASE; checked at
    /// start, with one line on stderr and [`ThreadLocals::Shared`]
    /// otherwise.
    PerCoroutine,
    /// Coroutines of one executor share its thread-locals (only std's
    /// thread identity is swapped). The fallback, and a way to measure
    /// what per-coroutine storage costs.
    Shared,
}

/// Whose glibc malloc per-thread state — the thread cache (`tcache`) and
/// the arena — a coroutine allocates from (`COROUTINES_MALLOC_STATE`,
/// [`RuntimeBuilder::malloc_state`]). Only with
/// [`ThreadLocals::PerCoroutine`]; with shared thread-locals every
/// coroutine uses its executor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocState {
    /// A coroutine starts with its executor's cache and arena; once
    /// preempted (it runs like a thread, for a whole time slice, or is
    /// preempted for a woken coroutine; not when only cut short for
    /// coroutines that never ran) it
    /// has its own, as a thread does, chosen by glibc's own arena policy,
    /// until it parks or finishes: then its cache is emptied back into the
    /// arenas (parked coroutines hold no cache) and it keeps its arena for
    /// its next preemption. Coroutines that allocate while preempted then stop
    /// interleaving their chunks in one heap: allocation-bound coroutines
    /// preempted on 2 executors ran at 0.4× the speed of threads with the
    /// executor's state and at 0.9-1.0× with their own (BENCHMARKS.md,
    /// A1). The default.
    OwnWhenPreempted,
    /// Every coroutine uses the cache and arena of the executor running
    /// it: no memory per coroutine, slower allocation for preempted ones.
    Executor,
}

impl ThreadLocals {
    /// Whether [`ThreadLocals::PerCoroutine`] is in force in the running
    /// runtime (requested and available). False before the runtime starts.
    pub fn per_coroutine_active() -> bool {
        crate::tls::enabled()
    }
}

/// Configures the process-wide runtime before it starts.
///
/// Settings left unset come from the environment (`COROUTINES_*`), then
/// from the defaults. The builder wins over the environment.
///
/// ```
/// use std::time::Duration;
/// // Start the runtime with 2 executors and a 1 ms time slice
/// // (unless an earlier test in this process already started it).
/// match coroutines::RuntimeBuilder::new().workers(2).time_slice(Some(Duration::from_millis(1))).start() {
///     Ok(()) | Err(coroutines::ConfigError::AlreadyStarted) => {}
///     Err(e) => panic!("{e}"),
/// }
/// let h = coroutines::spawn(|| 6 * 7);
/// assert_eq!(h.join().unwrap(), 42);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    workers: Option<usize>,
    max_workers: Option<usize>,
    stack_size_bytes: Option<usize>,
    time_slice: Option<Option<Duration>>,
    migrate: Option<bool>,
    blocked_after: Option<Duration>,
    thread_locals: Option<ThreadLocals>,
    malloc_state: Option<MallocState>,
    preempt_c: Option<Vec<String>>,
    file_helpers: Option<usize>,
    dump_signal: Option<Option<i32>>,
    trace_blocking: Option<bool>,
    spread_sleeps: Option<bool>,
    preempt_returns: Option<bool>,
    spare_executor: Option<bool>,
    trace: Option<Option<Duration>>,
    trace_file: Option<Option<PathBuf>>,
    wake_latency: Option<bool>,
}

impl RuntimeBuilder {
    /// A builder with nothing set: everything comes from the environment or
    /// the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of executors (OS threads running coroutines). Overrides
    /// `COROUTINES_WORKERS`. Default: available parallelism. 1 to 1024.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Upper bound on executors including extra ones started when an
    /// executor is blocked. Overrides `COROUTINES_MAX_WORKERS`.
    /// Default: workers + 64 (at most 1024).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Default stack size of coroutines, in bytes (16 KiB to 1 GiB).
    /// Overrides `COROUTINES_STACK_SIZE`. Default: 256 KiB.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size_bytes = Some(bytes);
        self
    }

    /// Time slice after which a CPU-bound coroutine is preempted when other
    /// CPU-bound coroutines wait; `None` turns preemption off. A coroutine
    /// that never ran, yielded, or waits in an executor's `next` slot gets
    /// the executor after a fifth of the slice (at least 100 µs), a woken
    /// one after 100 µs. Overrides `COROUTINES_SLICE`. Default: 10 ms.
    pub fn time_slice(mut self, slice: Option<Duration>) -> Self {
        self.time_slice = Some(slice);
        self
    }

    /// Prints one line to stderr per new call site that blocks an
    /// executor: the system call, the caller's frames and the coroutine
    /// (see [`crate::blocking_reports`]). Overrides
    /// `COROUTINES_TRACE_BLOCKING`. Default: off.
    pub fn trace_blocking(mut self, yes: bool) -> Self {
        self.trace_blocking = Some(yes);
        self
    }

    /// Whether a sleep that would wake together with other timers (due
    /// within 0.5 ms of two others) is moved later by a pseudo-random delay
    /// below a tenth of its length (at most 10 ms), so that coroutines
    /// polling one resource by sleeping (SQLite's busy handler, retry
    /// loops) do not stay in lockstep. A lone sleeper is never moved; timed
    /// waits never are. Overrides `COROUTINES_SPREAD_SLEEPS`. Default: on.
    pub fn spread_sleeps(mut self, on: bool) -> Self {
        self.spread_sleeps = Some(on);
        self
    }

    /// Whether a coroutine due for preemption while it runs code that is
    /// never preempted (libc, another shared object, C code linked into
    /// the executable, std's printing) is preempted when that code returns
    /// into its Rust caller: the preemption handler rewrites that return
    /// address to a trampoline that yields (README "Safe points").
    /// Otherwise only retried signals that happen to land in Rust code
    /// preempt it. Needs per-coroutine thread-locals. Overrides
    /// `COROUTINES_PREEMPT_RETURNS`. Default: on.
    pub fn preempt_returns(mut self, on: bool) -> Self {
        self.preempt_returns = Some(on);
        self
    }

    /// Whether a spare executor runs coroutines woken by timers while every
    /// executor is busy. It is one more OS thread, asleep until the next
    /// timer's deadline; the kernel wakes a sleeping thread promptly even
    /// when CPU-bound threads (the executors, other processes) compete for
    /// the CPUs, so a sleeping coroutine wakes about as punctually as a
    /// sleeping thread. It runs only coroutines that were woken (never
    /// never-run or preempted ones), and hands one that keeps computing
    /// past a time slice to the executors. Overrides
    /// `COROUTINES_SPARE_EXECUTOR`. Default: on; it needs preemption and
    /// migration (otherwise there is no spare executor).
    ///
    /// ```
    /// // A runtime whose coroutines only ever run on its 2 executors.
    /// let _ = coroutines::RuntimeBuilder::new().workers(2).spare_executor(false).start();
    /// ```
    pub fn spare_executor(mut self, on: bool) -> Self {
        self.spare_executor = Some(on);
        self
    }

    /// How long an executor may make no scheduling progress, while work
    /// waits, before the monitor starts an extra executor. Overrides
    /// `COROUTINES_BLOCKED_AFTER`. Default: 20 ms.
    pub fn blocked_after(mut self, d: Duration) -> Self {
        self.blocked_after = Some(d);
        self
    }

    /// C functions linked into the executable that may be preempted like
    /// Rust code, by symbol-name prefix (reentrant CPU loops: no globals,
    /// no locks, no per-thread state). Added to the defaults
    /// ([`DEFAULT_PREEMPT_C`]: zlib); a first item `"none"` drops the
    /// defaults. Overrides `COROUTINES_PREEMPT_C`. Every other C function
    /// is never preempted (see the README's safe points section).
    pub fn preempt_c<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.preempt_c = Some(prefixes.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps every started coroutine on the executor it started on (no
    /// migration; what `COROUTINES_MIGRATE=0` does). Always sound. Use it
    /// for programs whose coroutines must stay on one OS thread each (a
    /// signal mask, `setns`, GUI or interpreter thread state set up in
    /// the coroutine).
    pub fn pin_coroutines(mut self) -> Self {
        self.migrate = Some(false);
        self
    }

    /// Most helper threads doing regular-file reads and writes that would
    /// block (page-cache misses) at once; further calls wait in a FIFO
    /// queue. Overrides `COROUTINES_FILE_HELPERS`. Default: 16. 1 to 1024.
    /// Waits without a bound (getaddrinfo) use a separate, uncapped pool.
    pub fn file_helpers(mut self, n: usize) -> Self {
        self.file_helpers = Some(n);
        self
    }

    /// A signal that prints [`dump()`](crate::dump) (every coroutine, its
    /// wait and backtrace) to stderr, after which the program goes on, like
    /// Go's SIGQUIT: e.g. `Some(libc::SIGQUIT)`; None: off (the default).
    /// Overrides `COROUTINES_DUMP_SIGNAL` (`SIGQUIT`, `SIGUSR1`, ... or
    /// `off`). Accepted: SIGQUIT, SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH,
    /// SIGTTIN, SIGTTOU, SIGPWR; anything else is an error at start.
    pub fn dump_signal(mut self, sig: Option<i32>) -> Self {
        self.dump_signal = Some(sig);
        self
    }

    /// Lets started coroutines move between executors (work stealing of
    /// yielded, woken and preempted coroutines). Overrides
    /// `COROUTINES_MIGRATE`. With per-coroutine thread-locals (the
    /// default, [`ThreadLocals::PerCoroutine`]) migration is already on
    /// and sound, and this call is not needed.
    ///
    /// # Safety
    /// Only matters with shared thread-locals ([`ThreadLocals::Shared`],
    /// or when per-coroutine ones are unavailable):
    /// A coroutine that moves to another OS thread may keep using the
    /// address of a `thread_local!` of the thread it started on: LLVM may
    /// cache thread-local addresses across any call, including a yield.
    /// Safe code could then touch another thread's thread-local without
    /// synchronisation. Only enable this if no coroutine in the program
    /// uses thread-locals across a point where it can be suspended (any
    /// blocking call, yield, or — with preemption — any instruction), and
    /// no library it calls does either.
    pub unsafe fn allow_migration(mut self, yes: bool) -> Self {
        self.migrate = Some(yes);
        self
    }

    /// Where thread-local values live inside coroutines. Overrides
    /// `COROUTINES_THREAD_LOCALS` (`coroutine` or `shared`). Default:
    /// [`ThreadLocals::PerCoroutine`].
    pub fn thread_locals(mut self, mode: ThreadLocals) -> Self {
        self.thread_locals = Some(mode);
        self
    }

    /// Whose glibc malloc cache and arena a coroutine allocates from.
    /// Overrides `COROUTINES_MALLOC_STATE` (`own-when-preempted` or
    /// `executor`). Default: [`MallocState::OwnWhenPreempted`].
    ///
    /// ```
    /// let b = coroutines::RuntimeBuilder::new()
    ///     .malloc_state(coroutines::MallocState::Executor);
    /// # drop(b);
    /// ```
    pub fn malloc_state(mut self, mode: MallocState) -> Self {
        self.malloc_state = Some(mode);
        self
    }

    /// Schedule trace: every `interval`, one line on stderr with the
    /// executors (alive, idle, blocked), the coroutines (running, ready,
    /// parked), switches, preemptions and steals per second and the
    /// wake-to-run latency p50/p99 over the interval, from a thread named
    /// `coroutines-trace`. `None`: off. Overrides `COROUTINES_TRACE`
    /// (`200ms`, `1s`, `off`). Default: off. 1 ms to 1 h.
    pub fn trace(mut self, interval: Option<Duration>) -> Self {
        self.trace = Some(interval);
        self
    }

    /// Execution trace: records which coroutine ran when on each
    /// executor, why each run ended, spawns and wake-ups, and writes them
    /// to `path` in the Chrome trace-event format at exit and on
    /// [`crate::write_trace`]. `None`: off. Overrides
    /// `COROUTINES_TRACE_FILE`. Default: off.
    pub fn trace_file(mut self, path: Option<PathBuf>) -> Self {
        self.trace_file = Some(path);
        self
    }

    /// Records the wake-to-run latency histogram (`Stats::wake_latency`)
    /// even without a trace: a clock read at each wake and at the woken
    /// coroutine's switch-in. Default: on only with a trace.
    pub fn wake_latency(mut self, on: bool) -> Self {
        self.wake_latency = Some(on);
        self
    }

    /// Validates and starts the runtime. Returns
    /// [`ConfigError::AlreadyStarted`] if it already runs.
    pub fn start(self) -> Result<(), ConfigError> {
        let config = self.resolve()?;
        crate::start::start_with(config)
    }

    /// Resolves builder settings, then environment variables, then
    /// defaults, validating each.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let workers = match self.workers {
            Some(n) => check_workers("RuntimeBuilder::workers", n, &n.to_string())?,
            None => match env_var("COROUTINES_WORKERS", WORKERS_FORMS)? {
                Some(v) => {
                    let n = v
                        .trim()
                        .parse()
                        .map_err(|_| invalid("COROUTINES_WORKERS", &v, WORKERS_FORMS))?;
                    check_workers("COROUTINES_WORKERS", n, &v)?
                }
                None => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(MAX_WORKERS),
            },
        };
        let max_workers = match self.max_workers {
            Some(n) => n,
            None => match env_var("COROUTINES_MAX_WORKERS", MAX_WORKERS_FORMS)? {
                Some(v) => {
                    let n: usize = v
                        .trim()
                        .parse()
                        .map_err(|_| invalid("COROUTINES_MAX_WORKERS", &v, MAX_WORKERS_FORMS))?;
                    if n < workers || n > MAX_WORKERS {
                        return Err(invalid("COROUTINES_MAX_WORKERS", &v, MAX_WORKERS_FORMS));
                    }
                    n
                }
                None => (workers + 64).min(MAX_WORKERS),
            },
        };
        if max_workers < workers || max_workers > MAX_WORKERS {
            return Err(invalid(
                "RuntimeBuilder::max_workers",
                &max_workers.to_string(),
                MAX_WORKERS_FORMS,
            ));
        }
        let stack_size_bytes = match self.stack_size_bytes {
            Some(n) => check_stack("RuntimeBuilder::stack_size", n, &n.to_string())?,
            None => match env_var("COROUTINES_STACK_SIZE", SIZE_FORMS)? {
                Some(v) => {
                    let n = parse_size(&v)
                        .ok_or_else(|| invalid("COROUTINES_STACK_SIZE", &v, SIZE_FORMS))?;
                    check_stack("COROUTINES_STACK_SIZE", n, &v)?
                }
                None => DEFAULT_STACK_SIZE,
            },
        };
        let time_slice = match self.time_slice {
            Some(Some(d)) => Some(check_slice(
                "RuntimeBuilder::time_slice",
                d,
                &format!("{d:?}"),
            )?),
            Some(None) => None,
            None => match env_var("COROUTINES_SLICE", SLICE_FORMS)? {
                Some(v) if v.trim() == "off" => None,
                Some(v) => {
                    let d = parse_duration(&v)
                        .ok_or_else(|| invalid("COROUTINES_SLICE", &v, SLICE_FORMS))?;
                    Some(check_slice("COROUTINES_SLICE", d, &v)?)
                }
                None => Some(DEFAULT_SLICE),
            },
        };
        let migrate = match self.migrate {
            Some(b) => Some(b),
            None => match env_var("COROUTINES_MIGRATE", BOOL_FORMS)? {
                Some(v) => match v.trim() {
                    "1" | "true" => Some(true),
                    "0" | "false" => Some(false),
                    _ => return Err(invalid("COROUTINES_MIGRATE", &v, BOOL_FORMS)),
                },
                None => None,
            },
        };
        let blocked_after = match self.blocked_after {
            Some(d) => check_blocked("RuntimeBuilder::blocked_after", d, &format!("{d:?}"))?,
            None => match env_var("COROUTINES_BLOCKED_AFTER", BLOCKED_FORMS)? {
                Some(v) => {
                    let d = parse_duration(&v)
                        .ok_or_else(|| invalid("COROUTINES_BLOCKED_AFTER", &v, BLOCKED_FORMS))?;
                    check_blocked("COROUTINES_BLOCKED_AFTER", d, &v)?
                }
                None => DEFAULT_BLOCKED_AFTER,
            },
        };
        let thread_locals = match self.thread_locals {
            Some(m) => m,
            None => match env_var("COROUTINES_THREAD_LOCALS", TLS_FORMS)? {
                Some(v) => match v.trim() {
                    "coroutine" => ThreadLocals::PerCoroutine,
                    "shared" => ThreadLocals::Shared,
                    _ => return Err(invalid("COROUTINES_THREAD_LOCALS", &v, TLS_FORMS)),
                },
                None => ThreadLocals::PerCoroutine,
            },
        };
        let malloc_state = match self.malloc_state {
            Some(m) => m,
            None => match env_var("COROUTINES_MALLOC_STATE", MALLOC_FORMS)? {
                Some(v) => match v.trim() {
                    "own-when-preempted" => MallocState::OwnWhenPreempted,
                    "executor" => MallocState::Executor,
                    _ => return Err(invalid("COROUTINES_MALLOC_STATE", &v, MALLOC_FORMS)),
                },
                None => MallocState::OwnWhenPreempted,
            },
        };
        let migrate_explicit = migrate.is_some();
        // Sound by default only when every coroutine has its own
        // thread-locals (the runtime turns it off at start if those turn
        // out to be unavailable and it was not asked for).
        let migrate = migrate.unwrap_or(thread_locals == ThreadLocals::PerCoroutine);
        let preempt_c = match &self.preempt_c {
            Some(v) => parse_preempt_c(v.iter().map(String::as_str)).ok_or_else(|| {
                invalid("RuntimeBuilder::preempt_c", &v.join(","), PREEMPT_C_FORMS)
            })?,
            None => match env_var("COROUTINES_PREEMPT_C", PREEMPT_C_FORMS)? {
                Some(v) if v.trim().is_empty() => parse_preempt_c([]).unwrap_or_default(),
                Some(v) => parse_preempt_c(v.split(','))
                    .ok_or_else(|| invalid("COROUTINES_PREEMPT_C", &v, PREEMPT_C_FORMS))?,
                None => parse_preempt_c([]).unwrap_or_default(),
            },
        };
        let file_helpers = match self.file_helpers {
            Some(n) => n,
            None => match env_var("COROUTINES_FILE_HELPERS", FILE_HELPERS_FORMS)? {
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) => n,
                    _ => return Err(invalid("COROUTINES_FILE_HELPERS", &v, FILE_HELPERS_FORMS)),
                },
                None => crate::interpose::DEFAULT_FILE_HELPERS,
            },
        };
        let trace_blocking = match self.trace_blocking {
            Some(b) => b,
            None => match env_var("COROUTINES_TRACE_BLOCKING", BOOL_FORMS)? {
                Some(v) => match v.trim() {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    _ => return Err(invalid("COROUTINES_TRACE_BLOCKING", &v, BOOL_FORMS)),
                },
                None => false,
            },
        };
        let spread_sleeps = match self.spread_sleeps {
            Some(b) => b,
            None => match env_var("COROUTINES_SPREAD_SLEEPS", BOOL_FORMS)? {
                Some(v) => match v.trim() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(invalid("COROUTINES_SPREAD_SLEEPS", &v, BOOL_FORMS)),
                },
                None => true,
            },
        };
        let preempt_returns = match self.preempt_returns {
            Some(b) => b,
            None => match env_var("COROUTINES_PREEMPT_RETURNS", BOOL_FORMS)? {
                Some(v) => match v.trim() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(invalid("COROUTINES_PREEMPT_RETURNS", &v, BOOL_FORMS)),
                },
                None => true,
            },
        };
        let spare_executor = match self.spare_executor {
            Some(b) => b,
            None => match env_var("COROUTINES_SPARE_EXECUTOR", BOOL_FORMS)? {
                Some(v) => match v.trim() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(invalid("COROUTINES_SPARE_EXECUTOR", &v, BOOL_FORMS)),
                },
                None => true,
            },
        };
        if !(1..=1024).contains(&file_helpers) {
            return Err(invalid(
                "RuntimeBuilder::file_helpers",
                &file_helpers.to_string(),
                FILE_HELPERS_FORMS,
            ));
        }
        let dump_signal = match self.dump_signal {
            Some(None) => None,
            Some(Some(sig)) => {
                let ok = [
                    libc::SIGQUIT,
                    libc::SIGUSR1,
                    libc::SIGUSR2,
                    libc::SIGHUP,
                    libc::SIGWINCH,
                    libc::SIGTTIN,
                    libc::SIGTTOU,
                    libc::SIGPWR,
                ];
                if !ok.contains(&sig) {
                    return Err(invalid(
                        "RuntimeBuilder::dump_signal",
                        &sig.to_string(),
                        DUMP_SIGNAL_FORMS,
                    ));
                }
                Some(sig)
            }
            None => match env_var("COROUTINES_DUMP_SIGNAL", DUMP_SIGNAL_FORMS)? {
                Some(v) => parse_dump_signal(&v)
                    .map_err(|_| invalid("COROUTINES_DUMP_SIGNAL", &v, DUMP_SIGNAL_FORMS))?,
                None => None,
            },
        };
        let trace = match self.trace {
            Some(Some(d)) => Some(check_trace("RuntimeBuilder::trace", d, &format!("{d:?}"))?),
            Some(None) => None,
            None => match env_var("COROUTINES_TRACE", TRACE_FORMS)? {
                Some(v) if v.trim() == "off" => None,
                Some(v) => {
                    let d = parse_duration(&v)
                        .ok_or_else(|| invalid("COROUTINES_TRACE", &v, TRACE_FORMS))?;
                    Some(check_trace("COROUTINES_TRACE", d, &v)?)
                }
                None => None,
            },
        };
        let trace_file = match &self.trace_file {
            Some(Some(p)) if p.as_os_str().is_empty() => {
                return Err(invalid("RuntimeBuilder::trace_file", "", TRACE_FILE_FORMS))
            }
            Some(p) => p.clone(),
            None => match std::env::var_os("COROUTINES_TRACE_FILE") {
                Some(v) if v.is_empty() => {
                    return Err(invalid("COROUTINES_TRACE_FILE", "", TRACE_FILE_FORMS))
                }
                Some(v) => Some(PathBuf::from(v)),
                None => None,
            },
        };
        let wake_latency =
            self.wake_latency.unwrap_or(false) || trace.is_some() || trace_file.is_some();
        Ok(Config {
            trace,
            trace_file,
            wake_latency,
            workers,
            max_workers,
            stack_size_bytes,
            time_slice,
            migrate,
            migrate_explicit,
            blocked_after,
            thread_locals,
            malloc_state,
            preempt_c,
            file_helpers,
            dump_signal,
            trace_blocking,
            spread_sleeps,
            preempt_returns,
            spare_executor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_need_units() {
        assert_eq!(parse_size("256K"), Some(256 * 1024));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), None);
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500us"), Some(Duration::from_micros(500)));
        assert_eq!(parse_duration("2ms"), Some(Duration::from_millis(2)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("1"), None);
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_duration("3 hours"), None);
    }

    #[test]
    fn builder_values_are_validated() {
        let e = RuntimeBuilder::new().workers(0).resolve().unwrap_err();
        assert!(
            e.to_string().contains("RuntimeBuilder::workers=\"0\""),
            "{e}"
        );
        let e = RuntimeBuilder::new()
            .workers(2)
            .stack_size(1024)
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("16K"), "{e}");
        let e = RuntimeBuilder::new()
            .workers(2)
            .max_workers(1)
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("max_workers"), "{e}");
        let c = RuntimeBuilder::new()
            .workers(3)
            .max_workers(8)
            .stack_size(64 * 1024)
            .time_slice(None)
            .blocked_after(Duration::from_millis(5))
            .resolve()
            .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.max_workers, 8);
        assert_eq!(c.stack_size_bytes, 64 * 1024);
        assert_eq!(c.time_slice, None);
        assert_eq!(c.blocked_after, Duration::from_millis(5));
        assert_eq!(c.preempt_c.len(), DEFAULT_PREEMPT_C.len());
        let c = RuntimeBuilder::new()
            .trace_blocking(true)
            .resolve()
            .unwrap();
        assert!(c.trace_blocking);
        assert!(c.spread_sleeps, "on by default");
        let c = RuntimeBuilder::new()
            .spread_sleeps(false)
            .resolve()
            .unwrap();
        assert!(!c.spread_sleeps);
    }

    #[test]
    fn preempt_c_allow_list() {
        let d = DEFAULT_PREEMPT_C.len();
        assert_eq!(
            parse_preempt_c(["my_loop", " blake3_ "]).unwrap().len(),
            d + 2
        );
        assert_eq!(
            parse_preempt_c(["none", "tp_spin"]).unwrap(),
            vec!["tp_spin"]
        );
        assert_eq!(parse_preempt_c(["none"]).unwrap(), Vec::<String>::new());
        assert_eq!(parse_preempt_c(["deflate"]).unwrap().len(), d);
        assert_eq!(parse_preempt_c(["3d"]), None);
        assert_eq!(parse_preempt_c([""]), None);
        assert_eq!(parse_preempt_c(["a-b"]), None);
        assert_eq!(parse_preempt_c(["x", "none"]), None);
        let e = RuntimeBuilder::new()
            .preempt_c(["ok_", "bad name"])
            .resolve()
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("RuntimeBuilder::preempt_c=\"ok_,bad name\"") && m.contains("prefixes"),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
    }

    #[test]
    fn file_helpers_cap() {
        let c = RuntimeBuilder::new().file_helpers(8).resolve().unwrap();
        assert_eq!(c.file_helpers, 8);
        for bad in [0, 1025] {
            let m = RuntimeBuilder::new()
                .file_helpers(bad)
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(m.contains("file_helpers") && m.contains("1 to 1024"), "{m}");
        }
    }
}
