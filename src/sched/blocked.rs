//! Blocked-executor detector: extra executors for executors stuck in calls
//! no hook covers, and their retirement.
//!
//! Problem: an executor inside a call nothing can turn into a park (a C
//! library's internal I/O, a pthread mutex, a raw `syscall` instruction, a
//! long computation preemption cannot interrupt) stops switching, and the
//! coroutines queued behind it wait. Go hands the P of a thread in a
//! syscall to another M (sysmon's retake); tokio's `block_in_place` hands
//! off its Core. Here the executor's *stealable* work is served by an extra
//! executor thread.
//!
//! ## What counts as blocked
//! Executor E is blocked at time `now` when all hold:
//! 1. E runs a coroutine (`current` non-null; an idle executor is never
//!    blocked),
//! 2. E's `switches` counter has not moved for at least
//!    `config.blocked_after` (`COROUTINES_BLOCKED_AFTER`, default 20 ms:
//!    above the preemption slice, so a CPU-bound coroutine is normally
//!    preempted before it looks blocked, and well below what a user
//!    notices), as seen by samples taken every `blocked_after / 4`,
//! 3. runnable work waits that E would otherwise serve: E's `ready`/`inbox`
//!    /`fresh` queues or the global injector.
//!
//! ## What happens then (per blocked *episode*: at most once until E's
//! counter moves again)
//! 1. Count it (`Stats::blocked_seen`; `blocked_time` accumulates while it
//!    lasts).
//! 2. If the waiting work can move (E's `fresh` deque or the global
//!    injector; with migration on, everything E queues is stealable):
//!    if an executor sleeps, wake it (`notify_idle`) — it steals the work;
//!    otherwise start an extra executor (`Runtime::start_executor`, up to
//!    `config.max_workers` slots). It runs the ordinary loop: global
//!    injector, then stealing never-run coroutines.
//! 3. The blocking report (observe/blocking.rs): read the executor's
//!    system call, stack and instruction pointer from
//!    `/proc/self/task/<tid>/syscall` and copy its stack, without
//!    signalling it (a signal would turn its wait into EINTR inside C
//!    code); a helper thread unwinds and symbolizes the copy and keeps the
//!    report (`blocking_reports()`, `COROUTINES_TRACE_BLOCKING=1`).
//! 4. Later ticks of the same episode: stealable work that reached E
//!    since (a wake into its inbox, a spawn into its `fresh`) is moved to
//!    the global injector (`move_to_global`). The executor started for E
//!    may be blocked as well, with none idle to steal: without this, work
//!    woken into E waited for E — a hang when E's call waited for it.
//! 5. Liveness: when every live executor is blocked in an episode that
//!    was helped already and the global injector holds work, an executor
//!    is started (or a sleeper woken) again — the executors started then
//!    may have retired, or be blocked too. At most one per tick, and none
//!    while any executor is not in such an episode.
//! 6. Work that cannot move — started coroutines pinned to E (`ready`,
//!    `inbox`) while migration is off — waits for E. That is the documented
//!    exception: moving a started coroutine to another thread is unsound
//!    with `thread_local!` (sched/mod.rs); it resumes when E's call returns.
//!
//! ## Retirement of surplus executors
//! An executor whose index is above the first `config.workers` slots and
//! the spare executor's (a *surplus* slot, from `Runtime::first_extra`) retires once it has found no work for `RETIRE_AFTER` (1 s), no
//! live coroutine has it as home (`homed == 0`; otherwise a later wake
//! would be pushed to its inbox and nobody would drain it) and its queues
//! are empty. Steps, in `thread.rs::Executor::try_retire`, under the
//! runtime's `pending_workers` lock:
//! 1. recheck `homed == 0` and empty `ready`/`inbox`/`fresh` (only the
//!    owner pushes to `fresh` and increments `homed`, and inbox pushes
//!    target homed coroutines only, so once the recheck passes nobody can
//!    add work for this slot);
//! 2. `alive = false`, put the `fresh` deque (whose `Stealer` lives on in
//!    `ExecutorShared`) back into `pending_workers[index]`;
//! 3. unlock, clear the thread-local executor pointer, free the
//!    `Executor`, and return from the thread's main function.
//!
//! `start_executor` reuses a slot below `started` whose deque is back in
//! `pending_workers` before growing `started`, so slots are recycled and
//! `started` stays a high-water mark (`live_executors()` may thus include
//! retired slots: their deques are empty and their parkers never sleep,
//! so stealing from them and unparking them are harmless no-ops).
//!
//! ## Who runs the check
//! For now a small dedicated thread (`coroutines-detector`, started with
//! the runtime) calls [`check_blocked`] every `blocked_after / 4`, and
//! sleeps on a futex word while no coroutine runs anywhere (an executor
//! that starts running a coroutine wakes it: `note_running`; the sleep is
//! capped at 100 ms because that wake-up check is fence-free). When the
//! monitor thread (preempt/monitor.rs) lands, its tick calls
//! `check_blocked(rt, now)` instead and this thread goes away; the
//! function keeps its own sampling state, so the caller only needs to call
//! it periodically from one thread.
//!
//! Rejected: handing the blocked executor's whole run queue to a new
//! thread (tokio's Core hand-off) — the queue holds started coroutines that
//! must stay on their thread; a fixed pool of spare executors spinning —
//! burns CPU on an idle runtime; starting one per tick while blocked —
//! one blocked call would create `max_workers` threads.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::runtime::Runtime;
use crate::coroutine::CoroutineId;
use crate::observe::blocking;

/// Idle time after which a surplus executor retires.
pub(crate) const RETIRE_AFTER: Duration = Duration::from_secs(1);

/// Counters for `stats()` (Relaxed: monotonic counts, read approximately).
pub(crate) static BLOCKED_SEEN: AtomicU64 = AtomicU64::new(0);
pub(crate) static BLOCKED_NS: AtomicU64 = AtomicU64::new(0);
pub(crate) static EXTRA_STARTED: AtomicU64 = AtomicU64::new(0);
pub(crate) static EXTRA_RETIRED: AtomicU64 = AtomicU64::new(0);

/// Per-executor sampling state, touched only by the thread calling
/// `check_blocked` (the mutex just makes that safe to rely on).
#[derive(Clone, Copy)]
struct Sample {
    switches: u64,
    /// When `switches` was last seen moving (or the executor idle).
    since: Instant,
    /// Last time blocked time was accounted.
    accounted: Instant,
    /// This blocked episode was handled already.
    helped: bool,
    /// Thread CPU time (ns, /proc schedstat) and when it was read, taken
    /// once the executor made no progress for `blocked_after`.
    cpu: Option<(u64, Instant)>,
}

static SAMPLES: Mutex<Vec<Sample>> = Mutex::new(Vec::new());

/// Executors counted blocked at the last `check_blocked` (for the
/// schedule trace, observe/trace.rs).
pub(crate) fn blocked_now() -> usize {
    let samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    samples.iter().filter(|s| s.helped).count()
}

/// Samples every live executor and helps the blocked ones (module doc).
/// Call periodically (about every `blocked_after / 4`) from one thread.
pub(crate) fn check_blocked(rt: &'static Runtime, now: Instant) {
    let mut samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let live = rt.live_executors();
    if samples.len() < live.len() {
        samples.resize(
            live.len(),
            Sample {
                switches: 0,
                since: now,
                accounted: now,
                helped: false,
                cpu: None,
            },
        );
    }
    let after = rt.config.blocked_after;
    // Whether some live executor may still serve the global queue: all
    // but those in a blocked episode that was helped already (stuck in the
    // kernel, not computing: the CPU check below passed). An executor
    // stuck without help yet gets its own help below if work waits, or is
    // computing (no help by design). Read before this tick updates them.
    // (`live` may include retired slots: they serve nothing.)
    // The spare executor never serves the global queue (spare.rs).
    let progress = live.iter().zip(samples.iter()).any(|(e, s)| {
        e.alive.load(Ordering::Acquire)
            && !rt.is_spare(e.index)
            && !(s.helped
                && !e.current.load(Ordering::Acquire).is_null()
                && e.switches.load(Ordering::Relaxed) == s.switches)
    });
    let mut helped_now = false;
    for (e, s) in live.iter().zip(samples.iter_mut()) {
        let switches = e.switches.load(Ordering::Relaxed);
        // Acquire pairs with the Release store in run_coroutine; we only need
        // "is something running", so a stale value costs one tick.
        let running = !e.current.load(Ordering::Acquire).is_null();
        if switches != s.switches || !running || !e.alive.load(Ordering::Acquire) {
            *s = Sample {
                switches,
                since: now,
                accounted: now,
                helped: false,
                cpu: None,
            };
            continue;
        }
        let stuck_for = now.saturating_duration_since(s.since);
        if stuck_for < after {
            continue;
        }
        let own_movable = !e.stealer.is_empty() || (rt.config.migrate && e.has_waiting_work());
        let global = !rt.injector.is_empty();
        if !(own_movable || global || e.has_waiting_work()) {
            continue;
        }
        // A thread that keeps using CPU is computing, not stuck in a call:
        // a CPU-bound coroutine is the preemption monitor's business, and an
        // extra executor would only oversubscribe the CPUs (measured: W2a's
        // spawning coroutine, busy in runtime code for > 20 ms, made the
        // detector start one). So the first tick past `blocked_after` reads
        // the thread's CPU time; a later tick counts it blocked only if it
        // got less than a quarter of the wall time since (asleep in the
        // kernel). Costs one /proc read per tick while stalled, and up to
        // one tick (`blocked_after / 4`) of reaction time.
        if !s.helped {
            let Some(cpu_now) = crate::sys::thread_cpu_ns(e.tid.load(Ordering::Relaxed)) else {
                continue;
            };
            match s.cpu {
                None => {
                    s.cpu = Some((cpu_now, now));
                    continue;
                }
                Some((cpu0, t0)) => {
                    let wall = now.saturating_duration_since(t0).as_nanos() as u64;
                    if wall == 0 || cpu_now.saturating_sub(cpu0) * 4 > wall {
                        s.cpu = Some((cpu_now, now));
                        continue;
                    }
                }
            }
        }
        // Blocked while work waits.
        BLOCKED_NS.fetch_add(
            now.saturating_duration_since(s.accounted).as_nanos() as u64,
            Ordering::Relaxed,
        );
        s.accounted = now;
        if s.helped {
            // Work that reached this executor after its episode was
            // helped (a wake into its inbox, a yield into its `runq`, a
            // spawn into its `fresh`) would wait for it if the executor
            // started then blocked too and no other is idle: all stuck, a
            // hang when the blocked calls wait for that very work. Move it
            // to the global queue: an executor that is not stuck takes it
            // from there; if every one is stuck, the liveness rule below
            // starts one.
            if own_movable {
                move_to_global(rt, e);
            }
            continue;
        }
        s.helped = true;
        BLOCKED_SEEN.fetch_add(1, Ordering::Relaxed);
        // The blocking report: capture now (no signal, bounded time), the
        // helper thread of observe/blocking.rs completes it.
        let coroutine = CoroutineId::from_u64(e.current_id.load(Ordering::Relaxed));
        let mut report = blocking::capture(
            e.index,
            e.tid.load(Ordering::Relaxed),
            coroutine,
            stuck_for,
            rt.config.trace_blocking,
        );
        if own_movable || global {
            helped_now = true;
            if rt.sleepers.load(Ordering::SeqCst) > 0 {
                rt.notify_idle();
            } else if let Ok(index) = rt.start_executor() {
                EXTRA_STARTED.fetch_add(1, Ordering::Relaxed);
                report.started_executor = Some(index);
            }
        } // else pinned work only: it waits for this executor
        blocking::submit(report);
    }
    // Liveness: runnable work in the global queue while every live
    // executor is blocked in an episode that was helped already (say the
    // extra executors started then retired after idling, and a coroutine
    // was spawned or woken since): nobody would take it, a hang if the
    // blocked calls wait for it. Start one (or wake a sleeper). A fresh
    // executor counts as progressing until it is blocked and helped
    // itself, so this starts at most one per `blocked_after`.
    if !progress && !helped_now && !rt.injector.is_empty() {
        if rt.sleepers.load(Ordering::SeqCst) > 0 {
            rt.notify_idle();
        } else if rt.start_executor().is_ok() {
            EXTRA_STARTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Moves the stealable work queued on executor `e` (blocked) to the
/// global queue: never-run coroutines from its `fresh`, and with
/// migration the woken ones in its inbox and the yielded or preempted ones
/// in its `runq` (without migration those are pinned to `e`). Any
/// executor may run them, as it could have stolen them.
fn move_to_global(rt: &'static Runtime, e: &super::executor::ExecutorShared) {
    while let Some(t) = super::executor::steal_from(&e.stealer) {
        rt.injector.push(t);
    }
    if rt.config.migrate {
        while let Some(t) = super::executor::steal_one(&e.inbox) {
            rt.injector.push(t);
        }
        while let Some(t) = super::executor::steal_from(&e.runq) {
            rt.injector.push(t);
        }
    }
    rt.notify_idle();
}

/// Longest sleep of the idle detector thread (see `start_detector`).
const IDLE_RECHECK: Duration = Duration::from_millis(100);

/// 1 while the detector thread sleeps because no coroutine runs.
static DETECTOR_IDLE: AtomicU32 = AtomicU32::new(0);

/// Called by an executor before it resumes a coroutine: wakes the
/// detector thread if it sleeps (one Relaxed load otherwise).
#[inline]
pub(crate) fn note_running() {
    if DETECTOR_IDLE.load(Ordering::Relaxed) != 0 && DETECTOR_IDLE.swap(0, Ordering::SeqCst) != 0 {
        crate::sys::futex_wake(&DETECTOR_IDLE, 1);
    }
}

/// Starts the detector thread (temporary home of `check_blocked`, see the
/// module doc).
pub(crate) fn start_detector(rt: &'static Runtime) -> std::io::Result<()> {
    let tick = (rt.config.blocked_after / 4).max(Duration::from_micros(250));
    std::thread::Builder::new()
        .name("coroutines-detector".into())
        .stack_size(128 * 1024)
        .spawn(move || loop {
            // The code-range table (allocator ranges for the pthread hooks)
            // is built by the preemption monitor; without one, here.
            if crate::preempt::zones::table().is_none() || crate::preempt::zones::stale() {
                crate::preempt::zones::refresh(&rt.config.preempt_c);
            }
            let now = Instant::now();
            crate::observe::wait::tick(now);
            check_blocked(rt, now);
            let any_running = rt
                .live_executors()
                .iter()
                .any(|e| !e.current.load(Ordering::Acquire).is_null());
            if any_running {
                std::thread::sleep(tick);
                continue;
            }
            // Announce, then recheck (SeqCst on both sides: an executor either
            // sees the flag in note_running, or we see its `current`).
            DETECTOR_IDLE.store(1, Ordering::SeqCst);
            if rt
                .live_executors()
                .iter()
                .any(|e| !e.current.load(Ordering::SeqCst).is_null())
            {
                DETECTOR_IDLE.store(0, Ordering::SeqCst);
                continue;
            }
            // The executor side reads the flag with a plain load after its
            // Release store of `current` (no fence on the switch path), so on
            // x86 the two can pass each other in a window of nanoseconds; the
            // timeout bounds what that rare miss costs.
            crate::sys::futex_wait(&DETECTOR_IDLE, 1, Some(IDLE_RECHECK));
            DETECTOR_IDLE.store(0, Ordering::SeqCst);
        })?;
    Ok(())
}
