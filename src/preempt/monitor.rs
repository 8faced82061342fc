//! The monitor thread: time-slices CPU-bound coroutines (a whole slice
//! while only CPU-bound ones wait, a fifth of it while a coroutine that
//! never ran or yielded waits, 100 µs for a woken one), fires timers and
//! polls fd readiness (non-blocking) while every executor is busy, and
//! sleeps when the runtime is idle. While the spare executor
//! (sched/spare.rs) sleeps until the next timer, the monitor leaves the
//! timers to it; while nobody sleeps until the next timer and coroutines
//! run, it wakes the spare executor to take that role.
//!
//! Who may call: `start` once from runtime start; `executor_woke` from an
//! executor leaving its idle path. Everything else runs on the monitor
//! thread, a plain thread (hooks pass its calls through).

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
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
/// A run is preempted after `slice / NEW_WORK_DIVISOR` (at least
/// `MIN_GRANULARITY`) when a coroutine that never ran, one that yielded
/// or one in an executor's `next` slot waits; after the whole slice when
/// only preempted CPU-bound coroutines wait (`new_work_slice`).
pub(crate) const NEW_WORK_DIVISOR: u32 = 5;

/// How long a run lasts while new work waits (see `NEW_WORK_DIVISOR`).
pub(crate) fn new_work_slice(slice: Duration) -> Duration {
    (slice / NEW_WORK_DIVISOR).max(MIN_GRANULARITY)
}

/// Longest backoff, in ticks, from an executor found at unsafe points.
const MAX_BACKOFF_SHIFT: u32 = 4;
/// How often the monitor checks whether shared objects were loaded.
const ZONE_RECHECK: Duration = Duration::from_secs(1);

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;

/// The monitor's futex word: `SLEEPING` while it waits for an executor to
/// become active (idle runtime), `AWAKE` otherwise.
static STATE: AtomicU32 = AtomicU32::new(AWAKE);
/// Futex word the monitor waits on between ticks; bumped by
/// `timer_armed` to cut the wait short.
static TICK: AtomicU32 = AtomicU32::new(0);

/// The monitor's planned wake-up while coroutines run, in `Timers` ns; 0
/// while it does not fire timers (idle sleep, or not started).
static NEXT_WAKE_NS: AtomicU64 = AtomicU64::new(0);

/// Called when a timer becomes the earliest (after `next_ns` was stored,
/// SeqCst): wakes the monitor if it planned to sleep past `ns`. Mirror of
/// step 4 of `run` (store the plan, SeqCst, re-read the earliest deadline).
pub(crate) fn timer_armed(ns: u64) {
    let planned = NEXT_WAKE_NS.load(Ordering::SeqCst);
    if planned != 0 && ns < planned {
        TICK.fetch_add(1, Ordering::SeqCst);
        crate::sys::futex_wake(&TICK, 1);
    }
}

/// Called by an executor after it leaves its parker (woken or cancelled):
/// wakes the monitor if it sleeps. The idle path only, never the switch
/// path. Mirror of the monitor's step 2 in `run`: the SeqCst fence orders
/// our parker-state store (AWAKE) before the load of `STATE`.
pub(crate) fn executor_woke() {
    fence(Ordering::SeqCst);
    if STATE.load(Ordering::Relaxed) == SLEEPING && STATE.swap(AWAKE, Ordering::AcqRel) == SLEEPING
    {
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
    /// When that run began, as far as the monitor knows: the time of its
    /// own signal if the previous run ended by our preemption, else the
    /// first sighting (a lower bound). The executors never read a clock on
    /// the switch path; the monitor does the timekeeping.
    since: Instant,
    /// When we last signalled this executor (None: not during this run).
    sent_at: Option<Instant>,
    deferred_at_send: u64,
    /// The ForeignCode deferrals counted when we signalled.
    foreign_at_send: u64,
    /// `since` is the time of our signal (the run started by our
    /// preemption), not a first sighting.
    exact: bool,
    /// Consecutive deferrals of this run, and until when the executor is
    /// left alone (exponential backoff).
    failures: u32,
    skip_until: Option<Instant>,
    /// The executor thread's stat file, kept open (its state is read
    /// before every signal).
    stat: crate::sys::ThreadStat,
}

/// Sleep until `t` (at least a few microseconds) or an earlier timer is
/// armed (`timer_armed`).
fn sleep_until(mut t: Instant) {
    let timers = crate::reactor::timers();
    let seen = TICK.load(Ordering::SeqCst);
    NEXT_WAKE_NS.store(timers.ns(t).max(1), Ordering::SeqCst);
    if let Some(d) = timers.next_deadline() {
        t = t.min(d);
    }
    let wait = t
        .saturating_duration_since(Instant::now())
        .max(Duration::from_micros(5));
    crate::sys::futex_wait(&TICK, seen, Some(wait));
    NEXT_WAKE_NS.store(0, Ordering::Relaxed);
}

fn run(rt: &'static Runtime, slice: Duration) {
    // Precise wake-ups: the default 50 µs timer slack is a large part of a
    // tick and of the probe lateness we aim for.
    // SAFETY: prctl(PR_SET_TIMERSLACK) on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
    // The runtime's start built the table (start.rs); build it here only
    // if that did not happen or an object was loaded since.
    if zones::table().is_none() || zones::stale() {
        zones::refresh(&rt.config.preempt_c);
    }
    // The precise stack walk of the handler (walk.rs) reads the
    // executable's unwind tables: parse their header before any signal.
    crate::observe::unwind::init_exe_tables();
    signal::ensure_onstack();
    // The longest the monitor sleeps while coroutines run: runs that did
    // not start by our preemption are sighted within a tick, so they last
    // at most a tick longer than due. Runs that follow our preemption are
    // timed from our signal and preempted on time. Two ticks. Short (half the new-work slice): while a run's start is
    // known only from sighting it, or work waits that must not wait a whole
    // slice. Long (half the slice): while every run started by our
    // preemption (timed from our signal, so its deadline is known) and
    // only preempted CPU-bound coroutines wait — then the monitor wakes
    // about once per slice per executor, and work that arrives meanwhile
    // cuts the sleep short (`prompt_work`). Each wake-up costs ~20 µs of
    // a CPU on this VM: a 1 ms tick alone cost ~1.5 % of 8 hogs' throughput.
    let tick = (new_work_slice(slice) / 2).max(MIN_TICK);
    let long_tick = (slice / 2).max(tick);
    let mut seen: Vec<Seen> = Vec::new();
    let mut altstack_defers: u64 = 0;
    let mut last_zone_check = Instant::now();
    let mut last_sample = Instant::now();
    // The blocked-executor detector (sched/blocked.rs) samples every
    // blocked_after/4 while coroutines run; it has nothing to look at while
    // every executor is idle, so it adds no wake-up to an idle runtime.
    let blocked_tick = (rt.config.blocked_after / 4).max(Duration::from_micros(250));
    let mut next_blocked_check = Instant::now();
    loop {
        let now = Instant::now();
        crate::observe::wait::tick(now);
        let execs = rt.live_executors();
        if seen.len() < execs.len() {
            let fresh = Seen {
                switches: 0,
                current: 0,
                since: now,
                sent_at: None,
                deferred_at_send: 0,
                foreign_at_send: 0,
                failures: 0,
                skip_until: None,
                exact: false,
                stat: crate::sys::ThreadStat::new(),
            };
            seen.resize(execs.len(), fresh);
        }
        // 1. Busy executors do not look at timers while a coroutine runs:
        //    fire them here so a sleeper wakes on time among CPU hogs.
        let running = execs
            .iter()
            .any(|e| !e.current.load(Ordering::Relaxed).is_null());
        if running {
            crate::reactor::timers().fire_due(now);
            // Likewise fd readiness: with every executor running a
            // coroutine that does not yield, nobody waits in epoll, and a
            // lone CPU hog per executor is never preempted (nothing waits
            // for it), so a coroutine parked on a socket that became
            // readable would wait until a hog ends (Go's sysmon polls the
            // network for the same reason). Woken coroutines land in their
            // executors' inboxes, which the wake-up preemption below sees.
            // One atomic load when no coroutine waits for an fd.
            crate::reactor::poll_nonblocking();
            if now >= next_blocked_check {
                crate::sched::check_blocked(rt, now);
                next_blocked_check = now + blocked_tick;
            }
        }
        // CPU time per coroutine, sampled: this tick's length goes to
        // whatever runs now (sched/executor.rs `run_ns`).
        let dt = now.saturating_duration_since(last_sample).as_nanos() as u64;
        last_sample = now;
        for e in execs.iter() {
            if !e.current.load(Ordering::Relaxed).is_null() {
                e.run_ns
                    .store(e.run_ns.load(Ordering::Relaxed) + dt, Ordering::Relaxed);
            }
        }
        // 2. Per executor: preempt, or learn when to look again.
        let mut next = now + long_tick;
        let mut short = false;
        let mut defers = 0;
        let new_waiting = rt.never_run_waiting();
        for (e, s) in execs.iter().zip(seen.iter_mut()) {
            if let Some(t) = check(rt, e, s, now, slice, tick, new_waiting) {
                next = next.min(t);
            }
            short |= needs_short_tick(rt, e, s, new_waiting);
            defers +=
                e.preempt.deferred[signal::Defer::NotOnAltstack as usize].load(Ordering::Relaxed);
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
                zones::refresh(&rt.config.preempt_c);
            }
        }
        // 3. Idle runtime: sleep until an executor wakes (no periodic
        //    wake-ups). Mirror of `executor_woke`: announce, fence, recheck.
        // Retired extra executors (not `alive`) count as asleep.
        let asleep =
            |e: &ExecutorShared| !e.alive.load(Ordering::Relaxed) || e.parker.is_sleeping();
        if !running && execs.iter().all(asleep) {
            STATE.store(SLEEPING, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if execs.iter().all(asleep) {
                crate::sys::futex_wait(&STATE, SLEEPING, None);
            }
            STATE.store(AWAKE, Ordering::SeqCst);
            last_sample = Instant::now(); // nothing ran while we slept
            continue;
        }
        // 4. Sleep until the earliest of: a timer deadline, a run reaching
        //    its slice (or MIN_GRANULARITY with a woken coroutine waiting),
        //    the end of a backoff, one tick.
        // The spare executor holding the timers' sleeper role wakes at the
        // deadline itself (sched/spare.rs): no need to wake for it too.
        // While no executor holds the role and every regular one is busy,
        // hand it the role.
        let timers = crate::reactor::timers();
        let spare_sleeps = rt.spare().is_some_and(|s| timers.sleeper_is(s.index));
        if let Some(d) = timers.next_deadline() {
            if !spare_sleeps {
                next = next.min(d);
                if running && !timers.has_sleeper() {
                    crate::sched::kick_spare(rt);
                }
            }
        }
        if running {
            next = next.min(next_blocked_check);
        }
        // The long tick, unless work that must not wait came meanwhile
        // (mirror of `prompt_work`: announce, fence, recheck).
        let mut long = false;
        if !short {
            LONG_SLEEP.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            long = !prompt_waiting(rt);
            if !long {
                LONG_SLEEP.store(false, Ordering::Relaxed);
            }
        }
        if !long {
            next = next.min(now + tick);
        }
        sleep_until(next);
        LONG_SLEEP.store(false, Ordering::Relaxed);
    }
}

/// Whether work waits anywhere that must not wait a whole slice behind a
/// CPU-bound run (see `check`), or a woken coroutine.
fn prompt_waiting(rt: &Runtime) -> bool {
    rt.never_run_waiting()
        || rt
            .live_executors()
            .iter()
            .any(|e| !e.inbox.is_empty() || prompt_queued(rt, e))
}

/// Work queued on executor `e` that must not wait a whole slice: a
/// coroutine in its `next` slot, one that yielded (`runq`), or without
/// migration anything in `ready`.
fn prompt_queued(rt: &Runtime, e: &ExecutorShared) -> bool {
    e.next_id.load(Ordering::Relaxed) != 0
        || !e.runq.is_empty()
        || (!rt.config.migrate && e.ready_len.load(Ordering::Relaxed) > 0)
}

/// Set (SeqCst) while the monitor sleeps its long tick; cleared by the
/// first `prompt_work` (or the monitor on waking).
static LONG_SLEEP: AtomicBool = AtomicBool::new(false);

/// Called after queueing work that should not wait a whole slice (a
/// spawn, a wake, a yield): if the monitor sleeps its long tick, wake it
/// so it times the running coroutines for that work. One Relaxed load
/// otherwise. The caller's queue push, then a SeqCst fence, precede this
/// (mirror of step 4 of `run`).
#[inline]
pub(crate) fn prompt_work() {
    if LONG_SLEEP.load(Ordering::Relaxed) {
        prompt_work_slow();
    }
}

#[cold]
#[inline(never)]
fn prompt_work_slow() {
    if LONG_SLEEP.swap(false, Ordering::AcqRel) {
        TICK.fetch_add(1, Ordering::SeqCst);
        crate::sys::futex_wake(&TICK, 1);
    }
}

/// Whether the monitor must keep its short tick for executor `e` after
/// `check` (a run it did not time from its own signal, a signal or
/// deferral in flight, or work waiting that must not wait a slice).
fn needs_short_tick(rt: &Runtime, e: &ExecutorShared, s: &Seen, new_waiting: bool) -> bool {
    s.current != 0
        && (!s.exact
            || s.sent_at.is_some()
            || s.failures > 0
            || !e.inbox.is_empty()
            || prompt_here(rt, e, new_waiting))
}

/// Work waiting for executor `e` that must not wait a whole slice behind
/// its run (see `check_run`).
fn prompt_here(rt: &Runtime, e: &ExecutorShared, new_waiting: bool) -> bool {
    new_waiting || prompt_queued(rt, e) || rt.is_spare(e.index)
}

/// One executor: ask for a preemption if it is due. Returns when this
/// executor next needs a look (None: one tick is fine).
fn check(
    rt: &Runtime,
    e: &ExecutorShared,
    s: &mut Seen,
    now: Instant,
    slice: Duration,
    tick: Duration,
    new_waiting: bool,
) -> Option<Instant> {
    let current = e.current.load(Ordering::Acquire) as usize;
    let switches = e.switches.load(Ordering::Relaxed);
    if current == 0 {
        s.current = 0;
        return None;
    }
    if switches != s.switches || current != s.current {
        // A new run. If exactly one switch happened since our signal, the
        // old run ended by that preemption (a few µs after the signal) and
        // this one started right away.
        let (since, exact) = match s.sent_at {
            Some(t) if switches == s.switches.wrapping_add(1) => (t, true),
            _ => (now, false),
        };
        s.exact = exact;
        s.switches = switches;
        s.current = current;
        s.since = since;
        s.sent_at = None;
        s.deferred_at_send = 0;
        s.foreign_at_send = 0;
        s.failures = 0;
        s.skip_until = None;
    } else if s.sent_at.take().is_some() {
        // Same run after our signal: if the handler declined, back off
        // exponentially (2, 4, 8, 16 ticks).
        if e.preempt.deferred_total() != s.deferred_at_send {
            s.failures = (s.failures + 1).min(MAX_BACKOFF_SHIFT);
            let foreign =
                e.preempt.deferred[signal::Defer::ForeignCode as usize].load(Ordering::Relaxed);
            // Landed in libc (or another shared object): Rust code that
            // calls libc often (malloc, memcpy) is there much of the time
            // but only briefly each time, so retry soon — from 100 µs,
            // doubling, at most one tick — rather than after 2-16 ticks
            // (a probe beside 4 allocation-heavy coroutines was 0.1-0.2 s
            // late). Other deferrals (C code of the executable, a zone)
            // can last long: back off in ticks.
            let wait = if foreign != s.foreign_at_send {
                (MIN_GRANULARITY * (1 << s.failures)).min(tick)
            } else {
                tick * (1 << s.failures)
            };
            s.skip_until = Some(now + wait);
            e.preempt.backoffs.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(t) = s.skip_until {
        if now < t {
            return Some(t);
        }
    }
    // Without the executable's symbol table C code linked into it cannot
    // be told from Rust code: no preemption at all (zones.rs warned once).
    if zones::table().is_some_and(|t| !t.have_symtab) {
        return None;
    }
    let ran = now.duration_since(s.since);
    let woken = !e.inbox.is_empty();
    if woken && ran < MIN_GRANULARITY {
        return Some(s.since + MIN_GRANULARITY);
    }
    let early = woken && ran < slice;
    // Work that should not wait a whole slice behind a CPU-bound run: a
    // coroutine that never ran (anywhere: a spawn from a plain thread
    // waits in the global queue), one in the `next` slot, one that
    // yielded, and anything on the spare executor (it hands a coroutine
    // that keeps computing to the others, sched/spare.rs). What else
    // waits is CPU-bound coroutines preempted before (global queue): they
    // take turns a slice each.
    let quick = new_work_slice(slice);
    let prompt = prompt_here(rt, e, new_waiting);
    let whole = ran >= slice && (woken || e.has_waiting_work() || !rt.injector.is_empty());
    let due = (ran >= quick && prompt) || whole;
    if !(early || due) {
        return if prompt && ran < quick {
            Some(s.since + quick)
        } else {
            (ran < slice).then(|| s.since + slice)
        };
    }
    // Never interrupt runtime or hook code (syscall hygiene: a hooked call
    // raises the level, so no EINTR from us there): ask the coroutine to
    // yield when it leaves that code instead (signal.rs `yield_wanted`). A
    // coroutine that spends its time in hooked calls that never wait (a
    // loop of small reads and writes that are always ready) is otherwise
    // almost never found at level 0.
    e.preempt
        .for_new_work
        .store(!early && !whole, Ordering::Relaxed);
    if e.no_preempt.load(Ordering::Relaxed) != 0 {
        e.preempt.yield_wanted.store(true, Ordering::Relaxed);
        return None;
    }
    // A coroutine that has "run" for a slice without a switch may in fact
    // be asleep in the kernel, in a call no hook covers (a raw `syscall`,
    // a C library's internal I/O): a signal would only make that call fail
    // with EINTR, and there is nothing to preempt — the blocked-executor
    // detector's business (sched/blocked.rs). Look at the thread's state
    // first; only a running thread ('R') is signalled.
    if !s.stat.is_running(e.tid.load(Ordering::Relaxed)) {
        e.preempt.in_kernel.fetch_add(1, Ordering::Relaxed);
        return Some(now + slice);
    }
    let deferred = e.preempt.deferred_total();
    if signal::request(e) {
        s.sent_at = Some(now);
        s.deferred_at_send = deferred;
        s.foreign_at_send =
            e.preempt.deferred[signal::Defer::ForeignCode as usize].load(Ordering::Relaxed);
        if early {
            e.preempt.wakeup_signals.fetch_add(1, Ordering::Relaxed);
        }
        // The next run starts a few µs from now (timed from `sent_at`);
        // a deferral is seen at that deadline too.
        return Some(now + slice);
    }
    None
}
