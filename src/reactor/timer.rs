//! Timers for sleeping and timed waits, without a file descriptor each.
//!
//! States of an entry: *armed* (in the map), *fired* (removed by
//! `fire_due`, `fired` flag set with Release before the waker is woken),
//! *cancelled* (removed by its owner). An entry is removed exactly once,
//! under the lock; the waker of a fired entry is woken outside the lock.
//! The earliest deadline is mirrored in `next_ns` (nanoseconds since
//! `base`, `u64::MAX` if none) so "anything due?" costs one atomic load.
//!
//! ## Herds of sleepers
//! Code that polls a shared resource by sleeping between attempts (SQLite's
//! busy handler sleeps 1, 2, 5 … 100 ms between tries of a locked
//! database; retry loops with backoff) falls into lockstep on coroutines:
//! sleepers that failed together are fired together (one `fire_due` takes
//! every due timer), run back to back within microseconds, all find the
//! resource taken again by the first of them, and all sleep the same
//! step again; one waiter wins per period. OS threads do not stay in step,
//! because each wake-up reaches its CPU after its own scheduling delay.
//! Measured (bench C1, 32 writers on one SQLite database): 4-6x slower
//! than threads, every remaining waiter sleeping 100 ms steps together.
//! So a *sleep* (`add_sleep`: the sleep hooks, `coroutines::sleep`; not
//! timed waits, whose waker ends them early) whose deadline lands within
//! `HERD_WINDOW` of `HERD` other armed timers is moved later by a
//! pseudo-random delay below min(length / 10, 10 ms) — the jitter that
//! backoff schemes add on purpose. A sleep is "at least" its length, so
//! this is within its contract; a lone sleeper (a periodic tick, a
//! latency probe) is never moved. Counted in `Stats::sleeps_spread`;
//! `COROUTINES_SPREAD_SLEEPS=0` turns it off.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What a timer wakes: a coroutine or a plain thread, the type a join
/// waits with (coroutine.rs), so there is one "who to wake".
pub(crate) use crate::coroutine::Waiter as Waker;

/// Handle of an armed timer, kept by its owner to check or cancel it.
pub(crate) struct TimerHandle {
    key: (Instant, u64),
    fired: Arc<AtomicBool>,
}

impl TimerHandle {
    /// Whether the deadline passed and the waker was (or is being) woken.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// The armed timers in deadline order: (deadline, arming sequence number)
/// to the timer's `fired` flag and whom to wake.
type Armed = BTreeMap<(Instant, u64), (Arc<AtomicBool>, Waker)>;

pub(crate) struct Timers {
    base: Instant,
    map: Mutex<Armed>,
    seq: AtomicU64,
    next_ns: AtomicU64,
    /// 1 + index of the idle executor sleeping until the earliest deadline,
    /// or 0 if none.
    sleeper: AtomicUsize,
    /// Deadline (ns since base) that sleeper sleeps until.
    sleeper_ns: AtomicU64,
    pub(crate) fired_total: AtomicU64,
    /// Sleeps moved later because they landed in a herd.
    pub(crate) spread_total: AtomicU64,
}

/// A herd: at least `HERD` other armed timers due within `HERD_WINDOW` of
/// a new sleep's deadline (either side).
const HERD: usize = 2;
const HERD_WINDOW: Duration = Duration::from_micros(500);
/// The delay added to a sleep in a herd is uniform below
/// min(length / HERD_SPREAD_DIV, HERD_SPREAD_MAX).
const HERD_SPREAD_DIV: u32 = 10;
const HERD_SPREAD_MAX: Duration = Duration::from_millis(10);

/// Whether `deadline` lands in a herd of armed timers.
fn in_herd(map: &Armed, deadline: Instant) -> bool {
    let lo = deadline.checked_sub(HERD_WINDOW).unwrap_or(deadline);
    map.range((lo, 0)..=(deadline + HERD_WINDOW, u64::MAX))
        .take(HERD)
        .count()
        >= HERD
}

/// A pseudo-random delay below min(`len` / HERD_SPREAD_DIV,
/// HERD_SPREAD_MAX), from the arming sequence number and the deadline
/// (splitmix64: any spread will do, it need not be unpredictable).
fn herd_delay(len: Duration, seq: u64) -> Duration {
    let max = (len / HERD_SPREAD_DIV).min(HERD_SPREAD_MAX).as_nanos() as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Duration::from_nanos(z % max)
}

static TIMERS: OnceLock<Timers> = OnceLock::new();

/// Told when a timer becomes the earliest, with its deadline (ns since
/// `base`), once the runtime runs. Registered by the composition root
/// (start.rs): the preemption monitor's `timer_armed`, which wakes the
/// monitor if it planned to sleep past that deadline (the monitor fires
/// timers while executors are busy). The reactor does not know the monitor.
static ARMED_HOOK: OnceLock<fn(u64)> = OnceLock::new();

/// Whether sleeps in a herd are spread (`Config::spread_sleeps`; set once
/// at start, before any coroutine runs).
static SPREAD: AtomicBool = AtomicBool::new(true);

/// Sets whether sleeps in a herd are spread (start.rs).
pub(crate) fn set_spread_sleeps(on: bool) {
    SPREAD.store(on, Ordering::Relaxed);
}

/// Registers the `ARMED_HOOK` (once; later calls are ignored).
pub(crate) fn set_armed_hook(f: fn(u64)) {
    let _ = ARMED_HOOK.set(f);
}

/// The process-wide timers.
pub(crate) fn timers() -> &'static Timers {
    TIMERS.get_or_init(|| Timers {
        base: Instant::now(),
        map: Mutex::new(BTreeMap::new()),
        seq: AtomicU64::new(0),
        next_ns: AtomicU64::new(u64::MAX),
        sleeper: AtomicUsize::new(0),
        sleeper_ns: AtomicU64::new(u64::MAX),
        fired_total: AtomicU64::new(0),
        spread_total: AtomicU64::new(0),
    })
}

impl Timers {
    pub(crate) fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Arms a timer that wakes `waker` at `deadline`.
    pub(crate) fn add(&self, deadline: Instant, waker: Waker) -> TimerHandle {
        self.arm(deadline, waker, false)
    }

    /// Arms a sleep's timer: as `add`, except that a sleep landing in a
    /// herd is spread (module doc, "Herds of sleepers").
    pub(crate) fn add_sleep(&self, deadline: Instant, waker: Waker) -> TimerHandle {
        self.arm(deadline, waker, true)
    }

    fn arm(&self, deadline: Instant, waker: Waker, spread: bool) -> TimerHandle {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let fired = Arc::new(AtomicBool::new(false));
        let (key, earliest) = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let mut deadline = deadline;
            if spread && SPREAD.load(Ordering::Relaxed) && in_herd(&map, deadline) {
                deadline += herd_delay(deadline.saturating_duration_since(Instant::now()), seq);
                self.spread_total.fetch_add(1, Ordering::Relaxed);
            }
            let key = (deadline, seq);
            map.insert(key, (fired.clone(), waker));
            let first = map.keys().next().map(|k| k.0).unwrap_or(deadline);
            let ns = self.ns(first);
            self.next_ns.store(ns, Ordering::SeqCst);
            (key, first == deadline)
        };
        if earliest {
            self.kick(self.ns(key.0));
        }
        TimerHandle { key, fired }
    }

    /// Makes sure someone will fire a timer due at `ns`.
    fn kick(&self, ns: u64) {
        let Some(rt) = crate::sched::try_runtime_pub() else {
            return;
        };
        // Whoever else fires timers (the monitor) may be sleeping past this
        // deadline: `ARMED_HOOK`.
        if let Some(hook) = ARMED_HOOK.get() {
            hook(ns);
        }
        let s = self.sleeper.load(Ordering::SeqCst);
        if s != 0 {
            if self.sleeper_ns.load(Ordering::SeqCst) > ns {
                rt.executors[s - 1].parker.unpark();
            }
        } else {
            rt.notify_idle();
            // With every executor busy nobody sleeps until the deadline: the
            // spare executor takes the role (sched/spare.rs).
            crate::sched::kick_spare(rt);
        }
    }

    /// Whether some executor holds the sleeper role now.
    pub(crate) fn has_sleeper(&self) -> bool {
        self.sleeper.load(Ordering::Relaxed) != 0
    }

    /// Whether executor `index` holds the sleeper role now.
    pub(crate) fn sleeper_is(&self, index: usize) -> bool {
        self.sleeper.load(Ordering::Relaxed) == index + 1
    }

    /// Disarms a timer (no effect if it fired already).
    pub(crate) fn cancel(&self, h: &TimerHandle) {
        if h.fired() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&h.key);
        let ns = map.keys().next().map(|k| self.ns(k.0)).unwrap_or(u64::MAX);
        self.next_ns.store(ns, Ordering::SeqCst);
    }

    /// Whether some timer is due at `now` (one atomic load).
    pub(crate) fn any_due(&self, now: Instant) -> bool {
        self.next_ns.load(Ordering::SeqCst) <= self.ns(now)
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.next_ns.load(Ordering::SeqCst) {
            u64::MAX => None,
            ns => Some(self.base + Duration::from_nanos(ns)),
        }
    }

    /// How long from now until the earliest deadline (zero if it passed),
    /// if any: the sleep of the executor holding the sleeper role.
    pub(crate) fn until_next(&self) -> Option<Duration> {
        self.next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Fires every timer due at `now`. Returns how many fired.
    pub(crate) fn fire_due(&self, now: Instant) -> usize {
        if !self.any_due(now) {
            return 0;
        }
        let _np = crate::sched::NoPreempt::new();
        let due = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let later = map.split_off(&(now, u64::MAX));
            let due = std::mem::replace(&mut *map, later);
            let ns = map.keys().next().map(|k| self.ns(k.0)).unwrap_or(u64::MAX);
            self.next_ns.store(ns, Ordering::SeqCst);
            due
        };
        let n = due.len();
        for (_, (fired, waker)) in due {
            fired.store(true, Ordering::Release);
            waker.wake();
        }
        self.fired_total.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// An idle executor asks to sleep until the earliest deadline. Returns
    /// whether it got the role (then it must call `release_sleeper`).
    pub(crate) fn claim_sleeper(&self, index: usize) -> bool {
        if self.next_ns.load(Ordering::SeqCst) == u64::MAX {
            return false;
        }
        if self
            .sleeper
            .compare_exchange(0, index + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.sleeper_ns
                .store(self.next_ns.load(Ordering::SeqCst), Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    pub(crate) fn release_sleeper(&self, index: usize) {
        self.sleeper_ns.store(u64::MAX, Ordering::SeqCst);
        let _ = self
            .sleeper
            .compare_exchange(index + 1, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}
