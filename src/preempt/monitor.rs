//! The monitor thread: time-slices CPU-bound coroutines, fires timers while
//! every executor is busy, and sleeps when the runtime is idle.
//!
//! Who may call: `start` once from runtime start; `executor_woke` from an
//! executor leaving its idle path. Everything else runs on the monitor
//! thread, a plain thread (hooks pass its calls through).

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::signal;
use super::zones;
use crate::sched::{ExecutorShared, Runtime};

/// Shortest tick: the monitor never wakes more often than this.
const MIN_TICK: Duration = Duration::from_micros(50);
/// Wake-up preemption: a coroutine freshly woken for an executor (its
/// inbox) preempts the running coroutine once that has run this long,
/// instead of waiting for the end of its slice. Measured: see BENCHMARKS.md.
pub(crate) const MIN_GRANULARITY: Duration = Duration::from_micros(100);
/// Longest backoff, in ticks, from an executor found at unsafe points.
const MAX_BACKOFF_SHIFT: u32 = 4;
/// How often the monitor checks whether shared objects were loaded.
const ZONE_RECHECK: Duration = Duration::from_secs(1);

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;

/// The monitor's futex word: `SLEEPING` while it waits for an executor to
/// become active (idle runtime), `AWAKE` otherwise.
static STATE: AtomicU32 = AtomicU32::new(AWAKE);
/// Futex word the monitor waits on between ticks (nobody changes it: the
/// wait is a precise sleep).
static TICK: AtomicU32 = AtomicU32::new(0);

/// Called by an executor after it leaves its parker (woken or cancelled):
/// wakes the monitor if it sleeps. The idle path only, never the switch
/// path. Mirror of the monitor's step 2 in `run`: the SeqCst fence orders
/// our parker-state store (AWAKE) before the load of `STATE`.
pub(crate) fn executor_woke() {
    fence(Ordering::SeqCst);
    if STATE.load(Ordering::Relaxed) == SLEEPING && STATE.swap(AWAKE, Ordering::AcqRel) == SLEEPING {
        crate::sys::futex_wake(&STATE, 1);
    }
}

/// Starts the monitor thread for `slice`.
pub(crate) fn start(rt: &'static Runtime, slice: Duration) {
    signal::install();
    let r = std::thread::Builder::new()
        .name("coroutines-monitor".into())
        .stack_size(256 * 1024)
        .spawn(move || run(rt, slice));
    if let Err(e) = r {
        crate::sys::fatal_fmt(&format!("cannot start the preemption monitor thread: {e}"));
    }
}

/// What the monitor remembers about one executor between ticks.
#[derive(Clone)]
struct Seen {
    /// Last sampled switch count and coroutine.
    switches: u64,
    current: usize,
    /// When that (switches, current) pair was first seen: a lower bound of
    /// how long the coroutine has run (the executors never read a clock on
    /// the switch path; the monitor does the timekeeping).
    since: Instant,
    /// A signal was sent during this run; check the outcome next tick.
    sent: bool,
    deferred_at_send: u64,
    /// Consecutive deferrals of this run, and the tick before which the
    /// executor is left alone (exponential backoff).
    failures: u32,
    skip_until: u64,
}

fn run(rt: &'static Runtime, slice: Duration) {
    // A precise tick: the default 50 µs timer slack is a third of a tick.
    // SAFETY: prctl(PR_SET_TIMERSLACK) on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
    zones::refresh();
    signal::ensure_onstack();
    let tick = (slice / 4).max(MIN_TICK);
    let mut seen: Vec<Seen> = Vec::new();
    let mut tick_no: u64 = 0;
    let mut altstack_defers: u64 = 0;
    let mut last_zone_check = Instant::now();
    loop {
        tick_no += 1;
        let now = Instant::now();
        let execs = rt.live_executors();
        if seen.len() < execs.len() {
            let fresh = Seen { switches: 0, current: 0, since: now, sent: false, deferred_at_send: 0, failures: 0, skip_until: 0 };
            seen.resize(execs.len(), fresh);
        }
        // 1. Busy executors do not look at timers while a coroutine runs:
        //    fire them here so a sleeper wakes on time among CPU hogs.
        let running = execs.iter().any(|e| !e.current.load(Ordering::Relaxed).is_null());
        if running {
            crate::reactor::timers().fire_due(now);
        }
        let mut defers = 0;
        let mut recheck: Option<Instant> = None;
        for (e, s) in execs.iter().zip(seen.iter_mut()) {
            if let Some(t) = check(rt, e, s, now, slice, tick_no) {
                recheck = Some(recheck.map_or(t, |r| r.min(t)));
            }
            defers += e.preempt.deferred[signal::Defer::NotOnAltstack as usize].load(Ordering::Relaxed);
        }
        // A handler installed over ours without SA_ONSTACK makes ours run on
        // the coroutine stack, where it declines; fix the flags.
        if defers != altstack_defers {
            altstack_defers = defers;
            signal::ensure_onstack();
        }
        if now.duration_since(last_zone_check) >= ZONE_RECHECK {
            last_zone_check = now;
            if zones::stale() {
                zones::refresh();
            }
        }
        // 2. Idle runtime: sleep until an executor wakes (no periodic
        //    wake-ups). Mirror of `executor_woke`: announce, fence, recheck.
        if !running && execs.iter().all(|e| e.parker.is_sleeping()) {
            STATE.store(SLEEPING, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if execs.iter().all(|e| e.parker.is_sleeping()) {
                crate::sys::futex_wait(&STATE, SLEEPING, None);
            }
            STATE.store(AWAKE, Ordering::SeqCst);
            continue;
        }
        // 3. Sleep one tick, or less if a timer is due earlier or a woken
        //    coroutine waits for a run to reach MIN_GRANULARITY.
        let mut wait = tick;
        let mut until = crate::reactor::timers().next_deadline();
        if let Some(r) = recheck {
            until = Some(until.map_or(r, |u| u.min(r)));
        }
        if let Some(d) = until {
            wait = wait.min(d.saturating_duration_since(Instant::now()).max(Duration::from_micros(5)));
        }
        if !wait.is_zero() {
            crate::sys::futex_wait(&TICK, 0, Some(wait));
        }
    }
}

/// One executor, one tick: decide whether to ask for a preemption.
/// Returns when to look again if a woken coroutine waits for the running
/// one to reach [`MIN_GRANULARITY`] (sooner than the next tick).
fn check(rt: &Runtime, e: &ExecutorShared, s: &mut Seen, now: Instant, slice: Duration, tick_no: u64) -> Option<Instant> {
    let current = e.current.load(Ordering::Acquire) as usize;
    let switches = e.switches.load(Ordering::Relaxed);
    if current == 0 {
        s.current = 0;
        return None;
    }
    if switches != s.switches || current != s.current {
        // A new run began since the last tick.
        *s = Seen { switches, current, since: now, sent: false, deferred_at_send: 0, failures: 0, skip_until: 0 };
        return (!e.inbox.is_empty()).then(|| now + MIN_GRANULARITY);
    }
    if s.sent {
        s.sent = false;
        // Still the same run after our signal: if the handler declined,
        // back off exponentially (2, 4, 8, 16 ticks).
        if e.preempt.deferred_total() != s.deferred_at_send {
            s.failures = (s.failures + 1).min(MAX_BACKOFF_SHIFT);
            s.skip_until = tick_no + (1 << s.failures);
            e.preempt.backoffs.fetch_add(1, Ordering::Relaxed);
        }
    }
    if tick_no < s.skip_until {
        return None;
    }
    // Never interrupt runtime or hook code (syscall hygiene: a hooked call
    // raises the level, so no EINTR from us there).
    if e.no_preempt.load(Ordering::Relaxed) != 0 {
        return None;
    }
    let ran = now.duration_since(s.since);
    let woken = !e.inbox.is_empty();
    if woken && ran < MIN_GRANULARITY {
        return Some(s.since + MIN_GRANULARITY);
    }
    let early = woken && ran < slice;
    let due = ran >= slice && (woken || e.has_waiting_work() || !rt.injector.is_empty());
    if !(early || due) {
        return None;
    }
    let deferred = e.preempt.deferred_total();
    if signal::request(e) {
        s.sent = true;
        s.deferred_at_send = deferred;
        if early {
            e.preempt.wakeup_signals.fetch_add(1, Ordering::Relaxed);
        }
    }
    None
}
