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
    /// Timers fired (sleeps and timed waits).
    pub timers_fired: u64,
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
    /// Time executors spent blocked while work waited (sampled).
    pub blocked_time: std::time::Duration,
    /// Extra executors started for blocked ones.
    pub extra_started: u64,
    /// Extra executors retired after idling.
    pub extra_retired: u64,
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
    let alive = rt.live_executors().iter().filter(|e| e.alive.load(Ordering::Relaxed)).count();
    let mut s = Stats { workers: alive, ..Stats::default() };
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
    {
        use crate::interpose::futex;
        s.futex_parks = futex::WAITS_PARKED.load(Ordering::Relaxed);
        s.futex_timeouts = futex::WAIT_TIMEOUTS.load(Ordering::Relaxed);
        s.futex_wakes = futex::WAKES.load(Ordering::Relaxed);
    }
    {
        use crate::sched::{BLOCKED_NS, BLOCKED_SEEN, EXTRA_RETIRED, EXTRA_STARTED};
        s.blocked_seen = BLOCKED_SEEN.load(Ordering::Relaxed);
        s.blocked_time = std::time::Duration::from_nanos(BLOCKED_NS.load(Ordering::Relaxed));
        s.extra_started = EXTRA_STARTED.load(Ordering::Relaxed);
        s.extra_retired = EXTRA_RETIRED.load(Ordering::Relaxed);
    }
    s
}
