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
}

/// A snapshot of the runtime's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Executors running now (including extra ones for blocked executors).
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
    /// Timers fired (sleeps and timed waits).
    pub timers_fired: u64,
    /// I/O hooks: coroutine parks waiting for fd readiness.
    pub io_parks: u64,
    /// I/O hooks: coroutines parked on fd readiness right now.
    pub io_waiting: u64,
    /// Sleep hooks (nanosleep, clock_nanosleep, usleep, sleep): coroutine
    /// parks on reactor timers.
    pub sleep_parks: u64,
    /// Hooked calls run on a helper thread (getaddrinfo, file I/O that
    /// would block, poll/select/epoll_wait on fds the reactor does not
    /// manage).
    pub offloaded: u64,
    /// fds registered with the reactor's epoll.
    pub fds_registered: u64,
    /// epoll waits (blocking and non-blocking) and events dispatched.
    pub reactor_polls: u64,
    /// epoll events dispatched to fd registrations.
    pub reactor_events: u64,
    /// Per-executor counters.
    pub executors: Vec<ExecutorStats>,
}

/// Reads the runtime's counters. Before the runtime started, everything is
/// zero.
///
/// ```
/// coroutines::spawn(|| ()).join().unwrap();
/// let s = coroutines::stats();
/// assert!(s.spawned >= 1 && s.finished >= 1 && s.workers >= 1);
/// ```
pub fn stats() -> Stats {
    let Some(rt) = crate::sched::try_runtime_pub() else {
        return Stats::default();
    };
    let mut s = Stats { workers: rt.live_executors().len(), ..Stats::default() };
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
        };
        s.spawned += es.spawned;
        s.finished += es.finished;
        s.switches += es.switches;
        s.steals += es.steals;
        s.preemptions += es.preemptions;
        s.executors.push(es);
    }
    s.timers_fired = crate::reactor::timers().fired_total.load(Ordering::Relaxed);
    let io = &crate::reactor::COUNTERS;
    s.io_parks = io.io_parks.load(Ordering::Relaxed);
    s.io_waiting = io.io_waiting.load(Ordering::Relaxed);
    s.sleep_parks = io.sleep_parks.load(Ordering::Relaxed);
    s.offloaded = io.offloaded.load(Ordering::Relaxed);
    s.fds_registered = io.registered.load(Ordering::Relaxed);
    s.reactor_polls = io.polls.load(Ordering::Relaxed);
    s.reactor_events = io.events.load(Ordering::Relaxed);
    s
}
