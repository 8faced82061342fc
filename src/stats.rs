//! Runtime counters, cheap to read at any time ([`stats`]).
//!
//! Every counter is a Relaxed atomic written by the thread that owns it
//! (mostly the executor itself); a snapshot is therefore approximate while
//! the runtime runs, and exact once it is quiet.

use std::sync::atomic::Ordering;

/// Counters of one executor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Executor index.
    pub index: usize,
    /// Coroutines spawned from coroutines running on this executor.
    pub spawned: u64,
    /// Coroutines that finished on this executor.
    pub finished: u64,
    /// Switches into coroutines.
    pub switches: u64,
    /// Successful steals of never-run coroutines from other executors.
    pub steals: u64,
    /// Times a coroutine parked (waited) here.
    pub parks: u64,
    /// Voluntary yields.
    pub yields: u64,
    /// Coroutines preempted at the end of their time slice.
    pub preemptions: u64,
    /// Started coroutines waiting in this executor's ready queue now.
    pub ready: usize,
    /// Preemption requests and deferrals on this executor.
    pub preempt: PreemptStats,
    /// This is the spare executor, which runs only coroutines woken while
    /// every other executor is busy (README, "Sleeps and timers").
    pub spare: bool,
}

/// Preemption counters (see the safe-point list in the crate docs: each
/// `deferred_*` field counts signals the handler declined for that reason;
/// the monitor retries on a later tick).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreemptStats {
    /// SIGURGs the monitor sent (preemption attempts).
    pub signals: u64,
    /// Of those, sent before the end of the slice because a freshly woken
    /// coroutine was waiting (wake-up preemption).
    pub wakeup_signals: u64,
    /// Coroutines actually preempted.
    pub preemptions: u64,
    /// Declined: the executor was in its scheduler, not in a coroutine.
    pub deferred_not_coroutine: u64,
    /// Declined: runtime/hook code or a `no_preempt` section.
    pub deferred_no_preempt: u64,
    /// Declined: not on the coroutine stack, or too little stack left.
    pub deferred_stack: u64,
    /// Declined: in the context-switch assembly.
    pub deferred_switch_code: u64,
    /// Declined: executing code of libc or another shared object.
    pub deferred_foreign_code: u64,
    /// Declined: the coroutine was panicking.
    pub deferred_panicking: u64,
    /// Declined: a frame of the stack was in a no-preempt zone (std's
    /// printing or panic code, a callback from a shared library).
    pub deferred_zone: u64,
    /// Declined: RIP or a frame of the stack was in C (or other non-Rust)
    /// code linked into the executable — an allocator such as mimalloc or
    /// jemalloc, a bundled C library — and not on the allow-list
    /// (`COROUTINES_PREEMPT_C`). A Rust callback called from C counts as
    /// inside C.
    pub deferred_c_code: u64,
    /// Declined: the handler ran on the coroutine stack (a handler installed
    /// over ours without SA_ONSTACK); fixed by the monitor.
    pub deferred_not_on_altstack: u64,
    /// Declined: unusable FP/SIMD image in the signal frame.
    pub deferred_fpstate: u64,
    /// Times the monitor backed off an executor after deferrals.
    pub backoffs: u64,
    /// Due preemptions not sent because the executor's thread was asleep
    /// in the kernel (a call no hook covers): a signal would only have
    /// interrupted that call.
    pub skipped_in_kernel: u64,
    /// Preemptions due while the coroutine was in hook or runtime code,
    /// taken as a yield when it left that code (every hook's exit is a
    /// safe point).
    pub safe_point_yields: u64,
    /// Words of a stack that pointed into a no-preempt zone but were shown
    /// stale by a precise walk of the frames (an old return address left in
    /// a live frame, most often into `malloc` or `free`): the coroutine
    /// was preempted anyway.
    pub scan_hits_cleared: u64,
    /// Preemptions that landed in libc (counted in
    /// `deferred_foreign_code`) and were retried 20 µs later by the
    /// executor's own timer instead of the monitor (at most 50 per run).
    pub quick_retries: u64,
    /// Declined preemptions whose coroutine was inside code never
    /// preempted (libc, C code, std's printing) and whose return into its
    /// Rust caller the handler rewrote to a trampoline that yields there
    /// (README "Safe points": preemption at returns).
    pub return_hijacks: u64,
    /// Hijacked returns that reached their trampoline in the run they were
    /// armed in (the yield there is counted in `safe_point_yields`).
    pub return_landings: u64,
}

impl PreemptStats {
    /// Sum of all `deferred_*` counters.
    pub fn deferred(&self) -> u64 {
        self.deferred_not_coroutine
            + self.deferred_no_preempt
            + self.deferred_stack
            + self.deferred_switch_code
            + self.deferred_foreign_code
            + self.deferred_panicking
            + self.deferred_zone
            + self.deferred_c_code
            + self.deferred_not_on_altstack
            + self.deferred_fpstate
    }

    fn add(&mut self, o: &PreemptStats) {
        self.signals += o.signals;
        self.wakeup_signals += o.wakeup_signals;
        self.preemptions += o.preemptions;
        self.deferred_not_coroutine += o.deferred_not_coroutine;
        self.deferred_no_preempt += o.deferred_no_preempt;
        self.deferred_stack += o.deferred_stack;
        self.deferred_switch_code += o.deferred_switch_code;
        self.deferred_foreign_code += o.deferred_foreign_code;
        self.deferred_panicking += o.deferred_panicking;
        self.deferred_zone += o.deferred_zone;
        self.deferred_c_code += o.deferred_c_code;
        self.deferred_not_on_altstack += o.deferred_not_on_altstack;
        self.deferred_fpstate += o.deferred_fpstate;
        self.backoffs += o.backoffs;
        self.skipped_in_kernel += o.skipped_in_kernel;
        self.safe_point_yields += o.safe_point_yields;
        self.scan_hits_cleared += o.scan_hits_cleared;
        self.quick_retries += o.quick_retries;
        self.return_hijacks += o.return_hijacks;
        self.return_landings += o.return_landings;
    }
}

/// A snapshot of the runtime's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Executors running now (including extra ones for blocked executors,
    /// not counting retired ones).
    pub workers: usize,
    /// Coroutines spawned in all (from coroutines and from plain threads).
    pub spawned: u64,
    /// Coroutines finished in all.
    pub finished: u64,
    /// Switches into coroutines, in all.
    pub switches: u64,
    /// Steals, in all.
    pub steals: u64,
    /// Preemptions, in all.
    pub preemptions: u64,
    /// Times a preempted coroutine was given glibc malloc state of its own
    /// (a thread cache and an arena; again after each park, which gives
    /// the cache back) ([`MallocState::OwnWhenPreempted`](crate::MallocState)).
    pub own_malloc: u64,
    /// Timers fired (sleeps and timed waits).
    pub timers_fired: u64,
    /// Sleeps that landed in a herd (other timers due within 0.5 ms of
    /// theirs) and were moved later by a random delay below a tenth of
    /// their length (at most 10 ms), so that sleepers polling one resource
    /// do not all wake together (README, "Sleeps and timers").
    pub sleeps_spread: u64,
    /// Preemption counters, summed over executors.
    pub preempt: PreemptStats,
    /// I/O hooks: coroutine parks waiting for fd readiness.
    pub io_parks: u64,
    /// I/O hooks: coroutines parked on fd readiness right now.
    pub io_waiting: u64,
    /// Sleep hooks (nanosleep, clock_nanosleep, usleep, sleep): coroutine
    /// parks on reactor timers.
    pub sleep_parks: u64,
    /// Hooked calls run on a helper thread (getaddrinfo, file I/O that
    /// would block, and a poll-family call over an fd the reactor's epoll
    /// refuses — poll/select/epoll_wait otherwise park on the reactor).
    pub offloaded: u64,
    /// Helper threads of the regular-file pool alive now (at most
    /// `Config::file_helpers`; more calls queue).
    pub file_helpers: usize,
    /// The most regular-file helper threads alive at once.
    pub file_helpers_peak: usize,
    /// Helper threads of the uncapped pool (getaddrinfo, polls over fds
    /// the reactor cannot watch) alive now.
    pub other_helpers: usize,
    /// The most uncapped-pool helper threads alive at once.
    pub other_helpers_peak: usize,
    /// fds registered with the reactor's epoll.
    pub fds_registered: u64,
    /// epoll waits (blocking and non-blocking) and events dispatched.
    pub reactor_polls: u64,
    /// epoll events dispatched to fd registrations.
    pub reactor_events: u64,
    /// Futex waits of coroutines that parked instead of blocking their
    /// executor (std `Mutex`, `Condvar`, `Barrier`, … under contention).
    pub futex_parks: u64,
    /// Of those, waits that ended with ETIMEDOUT.
    pub futex_timeouts: u64,
    /// Coroutines woken by a FUTEX_WAKE (from a coroutine or a thread).
    pub futex_wakes: u64,
    /// Blocked episodes: an executor made no progress for
    /// `blocked_after` while work waited for it.
    pub blocked_seen: u64,
    /// Blocking reports made: blocked episodes whose system call and call
    /// site were recorded (see [`crate::blocking_reports`]).
    pub blocking_reports: u64,
    /// Time executors spent blocked while work waited (sampled).
    pub blocked_time: std::time::Duration,
    /// Extra executors started for blocked ones.
    pub extra_started: u64,
    /// Extra executors retired after idling.
    pub extra_retired: u64,
    /// TLS alias windows in existence (one per started coroutine that got
    /// its own thread-local addresses; pooled, capped at 16,384).
    pub tls_windows: u64,
    /// Wake-to-run latency: from the wake that makes a parked coroutine
    /// runnable (`Inner::wake`: an unlock, a send, fd readiness, a timer)
    /// to its switch-in on an executor, summed over executors. Opt-in:
    /// `Some` only when `COROUTINES_TRACE` or `COROUTINES_TRACE_FILE` is
    /// set or [`crate::RuntimeBuilder::wake_latency`] is on, because it
    /// costs a monotonic clock read (vDSO, ~20 ns) at each wake and at the
    /// woken coroutine's switch-in — a large share of a ~44 ns yield-sized
    /// switch; when off the runtime pays one load of a global flag per
    /// switch. Yields and preemptions are not wakes and are not counted.
    /// (Per-coroutine CPU time is sampled by the monitor, always on, and
    /// shown by [`crate::dump`].)
    pub wake_latency: Option<crate::LatencyHistogram>,
    /// Execution trace (`COROUTINES_TRACE_FILE`): events kept so far (at
    /// most [`crate::observe::TRACE_CAPACITY`]).
    pub trace_events: u64,
    /// Execution trace: events dropped because the buffers were full.
    pub trace_dropped: u64,
    /// Per-executor counters.
    pub executors: Vec<ExecutorStats>,
}

fn preempt_stats(e: &crate::sched::ExecutorShared) -> PreemptStats {
    use crate::preempt::Defer;
    let p = &e.preempt;
    let d = |k: Defer| p.deferred[k as usize].load(Ordering::Relaxed);
    PreemptStats {
        signals: p.signals.load(Ordering::Relaxed),
        wakeup_signals: p.wakeup_signals.load(Ordering::Relaxed),
        preemptions: e.stats.preemptions.load(Ordering::Relaxed),
        deferred_not_coroutine: d(Defer::NotCoroutine),
        deferred_no_preempt: d(Defer::NoPreempt),
        deferred_stack: d(Defer::Stack),
        deferred_switch_code: d(Defer::SwitchCode),
        deferred_foreign_code: d(Defer::ForeignCode),
        deferred_panicking: d(Defer::Panicking),
        deferred_zone: d(Defer::Zone),
        deferred_c_code: d(Defer::CCode),
        deferred_not_on_altstack: d(Defer::NotOnAltstack),
        deferred_fpstate: d(Defer::FpState),
        backoffs: p.backoffs.load(Ordering::Relaxed),
        skipped_in_kernel: p.in_kernel.load(Ordering::Relaxed),
        safe_point_yields: p.safe_point_yields.load(Ordering::Relaxed),
        scan_hits_cleared: p.scan_hits_cleared.load(Ordering::Relaxed),
        quick_retries: p.retries.load(Ordering::Relaxed),
        return_hijacks: p.return_hijacks.load(Ordering::Relaxed),
        return_landings: p.return_landings.load(Ordering::Relaxed),
    }
}

/// Reads the runtime's counters. Before the runtime started, everything is
/// zero. `finished` counts a coroutine once it has left its executor,
/// which may be a moment after `join` returned.
///
/// ```
/// coroutines::spawn(|| ()).join().unwrap();
/// let s = coroutines::stats();
/// assert!(s.spawned >= 1 && s.workers >= 1);
/// ```
pub fn stats() -> Stats {
    let Some(rt) = crate::sched::try_runtime_pub() else {
        return Stats::default();
    };
    let alive = rt
        .live_executors()
        .iter()
        .filter(|e| e.alive.load(Ordering::Relaxed) && !rt.is_spare(e.index))
        .count();
    let mut s = Stats {
        workers: alive,
        ..Stats::default()
    };
    s.spawned = rt.external_spawns.load(Ordering::Relaxed);
    for e in rt.live_executors() {
        let st = &e.stats;
        let es = ExecutorStats {
            index: e.index,
            spawned: st.spawned.load(Ordering::Relaxed),
            finished: st.finished.load(Ordering::Relaxed),
            switches: e.switches.load(Ordering::Relaxed),
            steals: st.steals.load(Ordering::Relaxed),
            parks: st.parks.load(Ordering::Relaxed),
            yields: st.yields.load(Ordering::Relaxed),
            preemptions: st.preemptions.load(Ordering::Relaxed),
            ready: e.ready_len.load(Ordering::Relaxed),
            spare: rt.is_spare(e.index),
            preempt: preempt_stats(e),
        };
        s.preempt.add(&es.preempt);
        s.spawned += es.spawned;
        s.finished += es.finished;
        s.switches += es.switches;
        s.steals += es.steals;
        s.preemptions += es.preemptions;
        s.own_malloc += st.own_malloc.load(Ordering::Relaxed);
        s.executors.push(es);
    }
    s.timers_fired = crate::reactor::timers().fired_total.load(Ordering::Relaxed);
    s.sleeps_spread = crate::reactor::timers()
        .spread_total
        .load(Ordering::Relaxed);
    let io = &crate::reactor::COUNTERS;
    s.io_parks = io.io_parks.load(Ordering::Relaxed);
    s.io_waiting = io.io_waiting.load(Ordering::Relaxed);
    s.sleep_parks = io.sleep_parks.load(Ordering::Relaxed);
    s.offloaded = io.offloaded.load(Ordering::Relaxed);
    let ((fnow, fpeak), (onow, opeak)) = crate::interpose::helper_counts();
    s.file_helpers = fnow;
    s.file_helpers_peak = fpeak;
    s.other_helpers = onow;
    s.other_helpers_peak = opeak;
    s.fds_registered = io.registered.load(Ordering::Relaxed);
    s.reactor_polls = io.polls.load(Ordering::Relaxed);
    s.reactor_events = io.events.load(Ordering::Relaxed);
    {
        use crate::interpose::futex;
        s.futex_parks = futex::WAITS_PARKED.load(Ordering::Relaxed);
        s.futex_timeouts = futex::WAIT_TIMEOUTS.load(Ordering::Relaxed);
        s.futex_wakes = futex::WAKES.load(Ordering::Relaxed);
    }
    {
        use crate::sched::{BLOCKED_NS, BLOCKED_SEEN, EXTRA_RETIRED, EXTRA_STARTED};
        s.blocked_seen = BLOCKED_SEEN.load(Ordering::Relaxed);
        s.blocking_reports = crate::observe::blocking::REPORTS.load(Ordering::Relaxed);
        s.blocked_time = std::time::Duration::from_nanos(BLOCKED_NS.load(Ordering::Relaxed));
        s.extra_started = EXTRA_STARTED.load(Ordering::Relaxed);
        s.extra_retired = EXTRA_RETIRED.load(Ordering::Relaxed);
    }
    s.tls_windows = crate::tls::alias::windows_created() as u64;
    s.wake_latency = crate::observe::trace::wake_latency();
    (s.trace_events, s.trace_dropped) = crate::observe::trace::trace_counts();
    s
}
