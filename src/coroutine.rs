//! Coroutines: the shared state of one coroutine, its public handle
//! ([`Coroutine`]), [`JoinHandle`] and the spawning [`Builder`].
//!
//! A coroutine is an `Arc<Inner>`. Exactly one party *owns the right to run
//! it* at any time: a run queue, the executor running it, or (while parked)
//! whoever wakes it. The `state` word arbitrates that right:
//!
//! | state      | runs user code | on a run queue | who may resume it          |
//! |------------|----------------|----------------|----------------------------|
//! | `ACTIVE`   | yes, or queued after a yield/preemption/spawn | maybe | its executor  |
//! | `PARKED`   | no             | no             | the waker that wins `PARKED -> RUNNABLE` |
//! | `RUNNABLE` | no             | yes            | the executor that pops it  |
//! | `DONE`     | no (finished)  | no             | nobody                     |
//!
//! plus a `NOTIFIED` bit that a waker sets when the coroutine is not parked:
//! the next park then returns at once (a wake is never lost, but a wait may
//! return spuriously, so every wait loop rechecks its condition), and a
//! `CLAIMED` bit that `dump()` holds on a `PARKED` coroutine while it reads
//! its wait and stack (CAS `PARKED -> PARKED|CLAIMED`, cleared with a
//! Release `fetch_and`); the waker that sets NOTIFIED on `PARKED|CLAIMED`
//! waits for the bit to clear, then wakes as from `PARKED`.
//!
//! Protocol (wake side and park side):
//! 1. A waker makes its condition true, then `fetch_or(NOTIFIED)` (AcqRel).
//!    If the previous state was exactly `PARKED`, it swaps in `RUNNABLE`
//!    (an RMW, so the release sequence of every other waker is continued)
//!    and pushes the coroutine on a run queue.
//! 2. A coroutine that waits registers itself somewhere, then switches to
//!    its executor with `Action::Park`. Only once it is off its stack does
//!    the executor try `ACTIVE -> PARKED`; if that CAS fails, a wake came
//!    in between and the coroutine goes straight back on the ready queue.
//! 3. An executor resuming a `RUNNABLE` coroutine swaps in `ACTIVE`
//!    (Acquire), so the coroutine sees every condition its wakers set.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::sched;
use crate::stack::Stack;

pub(crate) const ACTIVE: u8 = 0;
pub(crate) const PARKED: u8 = 1;
pub(crate) const RUNNABLE: u8 = 2;
pub(crate) const DONE: u8 = 3;
pub(crate) const STATE_MASK: u8 = 0b11;
pub(crate) const NOTIFIED: u8 = 0b100;
/// Set on a `PARKED` coroutine by `dump()` while it reads the coroutine's
/// wait record and stack (observe/dump.rs): the coroutine cannot be
/// resumed meanwhile. A waker that finds `PARKED | CLAIMED` waits for the
/// claim to end, then wakes as usual (`Inner::wake_claimed`).
pub(crate) const CLAIMED: u8 = 0b1000;

/// `home` value of a coroutine that never ran (any executor may take it).
pub(crate) const NO_HOME: u32 = u32::MAX;

/// The shared state of one coroutine.
pub(crate) struct Inner {
    pub(crate) id: CoroutineId,
    pub(crate) name: Option<Box<str>>,
    /// Saved stack pointer while suspended. Written and read only by the
    /// executor that owns the right to run the coroutine (see module doc).
    pub(crate) sp: UnsafeCell<usize>,
    /// The stack; taken back by the executor after the coroutine finished.
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    /// Lowest and highest address of the usable stack, 0 until the stack
    /// is allocated at first run. Written by the executor before it first
    /// switches in (Relaxed: the preemption handler that checks RSP lies
    /// inside runs on that same thread).
    pub(crate) stack_lo: AtomicUsize,
    pub(crate) stack_hi: AtomicUsize,
    /// Usable stack size to allocate at first run.
    pub(crate) stack_size: usize,
    /// The body (the result packet holding the closure), taken on first
    /// run: `run(None)` on the coroutine's stack; `run(Some(message))` (on
    /// the executor's stack) when no stack could be allocated: it then only
    /// reports the error to the joiner.
    pub(crate) entry: UnsafeCell<Option<Body>>,
    pub(crate) state: AtomicU8,
    /// std-like park token for [`park`]/[`Coroutine::unpark`].
    pub(crate) token: AtomicBool,
    /// Executor index once started ([`NO_HOME`] before).
    pub(crate) home: AtomicU32,
    /// Set by the executor when the coroutine was preempted (it resumes
    /// through the full-restore path); cleared when resumed. Owner only.
    pub(crate) preempted: AtomicBool,
    /// The coroutine's std thread identity while it is switched out
    /// (tls/identity.rs). Owner only, like `sp`.
    pub(crate) ident: UnsafeCell<crate::tls::identity::Ident>,
    /// Thread-pointer value of the coroutine's TLS alias window, 0 for
    /// none (tls/alias.rs). Owner only.
    pub(crate) window: UnsafeCell<usize>,
    /// Counted in its executor's `risky` (sched/executor.rs). Owner only.
    pub(crate) risky: AtomicBool,
    /// The coroutine allocates with glibc malloc state of its own (its
    /// block's tcache and arena words are its own, not copied from the
    /// carrier at switches; tls/block.rs "malloc state"). Set once, by the
    /// executor owning the right to run it, at a preemption; cleared by
    /// the coroutine itself when it parks (tls/block.rs
    /// `demote_own_malloc`).
    pub(crate) own_malloc: AtomicBool,
    /// Its own glibc arena while it parks without malloc state of its own
    /// (0: none yet). Owner only.
    pub(crate) own_arena: std::sync::atomic::AtomicUsize,
    /// Thread pointer of the coroutine's TLS block (tls/block.rs), 0 while
    /// it has none (never ran, or thread-locals are shared). Written at
    /// first run and read at switches by the executor owning the right to
    /// run it.
    pub(crate) tls: UnsafeCell<usize>,
    /// Pooled thread-locals (tls/pool.rs) this coroutine lent at its
    /// last switch-out, one bit each. Owner only, like `sp`.
    pub(crate) pooled: std::cell::Cell<u32>,
    /// What the coroutine waits for while parked (observe/wait.rs).
    pub(crate) wait: crate::observe::wait::WaitRecord,
    /// Index in the registry of live coroutines (observe/registry.rs).
    pub(crate) reg_slot: AtomicU64,
    /// CPU time in nanoseconds, sampled by the monitor (observe/mod.rs):
    /// written by the executor that switches the coroutine out.
    pub(crate) cpu_ns: AtomicU64,
    /// Times the coroutine was preempted (written by its executor).
    pub(crate) preemptions: AtomicU64,
    /// Wake-to-run latency (observe/trace.rs, only while recorded): the
    /// clock at the wake that made it runnable; 0 when none pending.
    /// Written by that waker before queueing, read and cleared by the
    /// executor switching it in (ordered by the queue).
    pub(crate) woke_at: AtomicU64,
    /// Execution trace: the flow (id << 1 | spawn) to end at the next
    /// switch-in; 0: none. Same protocol as `woke_at`.
    pub(crate) wake_flow: AtomicU64,
    /// Dedicated coroutine (`Builder::dedicated`): runs on its own thread.
    pub(crate) dedicated: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.reg_slot.load(Ordering::Relaxed) != crate::observe::registry::UNREGISTERED {
            let np = sched::NoPreempt::new();
            crate::observe::registry::unregister(self, &np);
        }
    }
}

// SAFETY: the UnsafeCell fields are only touched by the single party that
// owns the right to run the coroutine (module doc); handing that right over
// goes through the `state` RMWs or a run-queue push/pop, both of which
// synchronise (Release/Acquire).
unsafe impl Sync for Inner {}
// SAFETY: as above; the body (`Arc<dyn Entry>`) is Send + Sync.
unsafe impl Send for Inner {}

/// A counted reference to a coroutine's shared state: what run queues,
/// wait lists and wakers hold (the glossary's *coroutine*, as a value).
pub(crate) type CoroutineRef = Arc<Inner>;

/// A coroutine's body (see `Inner::entry`): its result packet, which also
/// holds the user's closure until the first run (one allocation for both;
/// `Packet`).
pub(crate) type Body = Arc<dyn Entry>;

/// Runs a coroutine's body: `run(None)` on the coroutine's stack at its
/// first run; `run(Some(message))` on the executor's stack when it could
/// not start (no stack or TLS block), which only reports `message` to the
/// joiner and leaves the closure to be dropped with the packet.
pub(crate) trait Entry: Send + Sync {
    fn run(self: Arc<Self>, no_stack: Option<String>);
}

impl Inner {
    /// Wakes the coroutine if it is parked, or makes its next park return at
    /// once. See the module doc for the protocol.
    pub(crate) fn wake(self: &Arc<Self>) {
        let prev = self.state.fetch_or(NOTIFIED, Ordering::AcqRel);
        if prev == PARKED || (prev == PARKED | CLAIMED && self.wake_claimed()) {
            // We won the right to run it. The swap (an RMW) keeps the
            // release sequence of any waker that set NOTIFIED meanwhile.
            self.state.swap(RUNNABLE, Ordering::AcqRel);
            if crate::observe::trace::flags() != 0 {
                crate::observe::trace::woke(self);
            }
            sched::schedule(self.clone(), true);
        }
    }

    /// The wake that found the coroutine parked and claimed by `dump()`
    /// (it set NOTIFIED on `PARKED | CLAIMED`, so it is the one waker that
    /// must make it runnable): waits until the dump releases it (a claim
    /// lasts one stack walk, microseconds; the dump never parks while
    /// holding one). Returns true.
    #[cold]
    #[inline(never)]
    fn wake_claimed(&self) -> bool {
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) & CLAIMED != 0 {
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                // SAFETY: sched_yield takes no arguments and touches no
                // memory (the raw call: the hook would park).
                unsafe { crate::sys::syscall6(libc::SYS_sched_yield as usize, 0, 0, 0, 0, 0, 0) };
            }
        }
        true
    }

    /// `wake` from a coroutine about to finish (its joiner): the executor
    /// runs the woken coroutine next, so no idle executor is woken to
    /// steal it (a spawn-join loop would otherwise bounce between them).
    pub(crate) fn wake_by_finishing(self: &Arc<Self>) {
        let prev = self.state.fetch_or(NOTIFIED, Ordering::AcqRel);
        if prev == PARKED || (prev == PARKED | CLAIMED && self.wake_claimed()) {
            self.state.swap(RUNNABLE, Ordering::AcqRel);
            if crate::observe::trace::flags() != 0 {
                crate::observe::trace::woke(self);
            }
            sched::schedule(self.clone(), false);
        }
    }
}

/// A unique identifier of a coroutine, like [`std::thread::ThreadId`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CoroutineId(NonZeroU64);

impl CoroutineId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        CoroutineId(NonZeroU64::new(id).expect("coroutine id counter wrapped"))
    }

    pub(crate) fn from_raw(n: NonZeroU64) -> Self {
        CoroutineId(n)
    }

    /// The id with number `n` (as published in `ExecutorShared::current_id`).
    pub(crate) fn from_u64(n: u64) -> Option<Self> {
        NonZeroU64::new(n).map(CoroutineId)
    }

    /// The id as a number (unique for the process lifetime).
    pub fn as_u64(&self) -> NonZeroU64 {
        self.0
    }
}

/// A handle to a coroutine, like [`std::thread::Thread`]: cheap to clone,
/// usable from any thread or coroutine.
#[derive(Clone)]
pub struct Coroutine {
    pub(crate) inner: CoroutineRef,
}

impl Coroutine {
    /// The coroutine's unique id.
    pub fn id(&self) -> CoroutineId {
        self.inner.id
    }

    /// The name given with [`Builder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Time the coroutine has spent running on an executor, up to its last
    /// switch-out (wall time while it ran: it includes time the OS gave
    /// the executor's thread to another process). Sampled by the
    /// preemption monitor (each tick of about half a time slice goes to
    /// the coroutine running then), so coarse for short runs and right on
    /// average; zero with preemption off (no monitor).
    pub fn cpu_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.inner.cpu_ns.load(Ordering::Relaxed))
    }

    /// Times the coroutine was preempted at the end of its time slice:
    /// by the signal, or at a safe point the preemption waited for (a
    /// hook's exit, the return from libc or C code).
    pub fn preemptions(&self) -> u64 {
        self.inner.preemptions.load(Ordering::Relaxed)
    }

    /// Makes the park token available, like [`std::thread::Thread::unpark`]:
    /// if the coroutine is blocked in [`park`] it resumes; otherwise its
    /// next `park` returns at once.
    ///
    /// ```
    /// let h = coroutines::spawn(|| {
    ///     coroutines::park();
    ///     "woken"
    /// });
    /// h.coroutine().unpark();
    /// assert_eq!(h.join().unwrap(), "woken");
    /// ```
    pub fn unpark(&self) {
        let _np = sched::NoPreempt::new();
        self.inner.token.store(true, Ordering::Release);
        self.inner.wake();
    }
}

impl fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coroutine")
            .field("id", &self.id())
            .field("name", &self.name())
            .finish()
    }
}

/// Blocks the current coroutine until its park token is available, like
/// [`std::thread::park`], then consumes the token. Outside a coroutine it
/// is `std::thread::park`. May return spuriously, as std's does not, but
/// only rarely: loop on your condition.
pub fn park() {
    if !sched::in_coroutine() {
        return std::thread::park();
    }
    let co = sched::current_coroutine();
    let np = sched::NoPreempt::new();
    while !co.token.swap(false, Ordering::Acquire) {
        sched::park_current(&np, sched::WaitReason::Park);
    }
}

/// Like [`park`] with a time limit, as [`std::thread::park_timeout`].
pub fn park_timeout(dur: std::time::Duration) {
    if !sched::in_coroutine() {
        return std::thread::park_timeout(dur);
    }
    let co = sched::current_coroutine();
    let deadline = std::time::Instant::now() + dur;
    let np = sched::NoPreempt::new();
    if co.token.swap(false, Ordering::Acquire) {
        return;
    }
    let timer =
        crate::reactor::timers().add(deadline, crate::reactor::Waker::Coroutine(co.clone()));
    while !co.token.swap(false, Ordering::Acquire) && !timer.fired() {
        sched::park_current(&np, sched::WaitReason::ParkTimeout);
    }
    crate::reactor::timers().cancel(&timer);
}

/// Puts the current coroutine to sleep for at least `dur`. Outside a
/// coroutine it is `std::thread::sleep`.
///
/// ```
/// use std::time::{Duration, Instant};
/// let t = Instant::now();
/// coroutines::spawn(|| coroutines::sleep(Duration::from_millis(20))).join().unwrap();
/// assert!(t.elapsed() >= Duration::from_millis(20));
/// ```
pub fn sleep(dur: std::time::Duration) {
    if !sched::in_coroutine() {
        return std::thread::sleep(dur);
    }
    let deadline = std::time::Instant::now() + dur;
    sleep_until(deadline)
}

pub(crate) fn sleep_until(deadline: std::time::Instant) {
    let co = sched::current_coroutine();
    let np = sched::NoPreempt::new();
    let timer = crate::reactor::timers().add_sleep(deadline, crate::reactor::Waker::Coroutine(co));
    while !timer.fired() {
        sched::park_current(&np, sched::WaitReason::Sleep { deadline });
    }
}

/// The handle of the coroutine that calls it.
///
/// # Panics
/// Outside a coroutine; see [`try_current`].
pub fn current() -> Coroutine {
    try_current().expect("coroutines::current() called outside a coroutine")
}

/// The handle of the calling coroutine, or `None` on a plain thread.
pub fn try_current() -> Option<Coroutine> {
    if sched::in_coroutine() {
        Some(Coroutine {
            inner: sched::current_coroutine(),
        })
    } else {
        None
    }
}

/// Gives the executor to other coroutines waiting for it; outside a
/// coroutine it is `std::thread::yield_now`.
pub fn yield_now() {
    if !sched::yield_now_fast() {
        std::thread::yield_now();
    }
}

/// Where a join waits: a coroutine or a plain thread.
pub(crate) enum Waiter {
    Coroutine(CoroutineRef),
    Thread(std::thread::Thread),
}

impl Waiter {
    pub(crate) fn current() -> Waiter {
        if sched::in_coroutine() {
            Waiter::Coroutine(sched::current_coroutine())
        } else {
            Waiter::Thread(std::thread::current())
        }
    }

    pub(crate) fn wake(self) {
        match self {
            Waiter::Coroutine(t) => t.wake(),
            Waiter::Thread(t) => t.unpark(),
        }
    }

    /// `wake` by a coroutine that finishes right after (see
    /// `Inner::wake_by_finishing`).
    pub(crate) fn wake_by_finishing(self) {
        match self {
            Waiter::Coroutine(t) => t.wake_by_finishing(),
            Waiter::Thread(t) => t.unpark(),
        }
    }
}

/// Result slot shared between a coroutine and its [`JoinHandle`].
///
/// `state` protocol (two RMWs per join, no lock):
/// - joiner: if `state` is `DONE`, take the result. Else write `waiter`
///   (nobody reads it before `WAITING` is published), then CAS `EMPTY ->
///   WAITING` (Release): on success park until `DONE`; on failure the
///   coroutine finished meanwhile: drop the waiter, take the result.
/// - coroutine: write `result`, then swap in `DONE` (AcqRel); if the old
///   state was `WAITING`, take `waiter` (Acquire made its write visible)
///   and wake it.
struct Packet<T, C: ?Sized> {
    state: AtomicU8,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
    waiter: UnsafeCell<Option<Waiter>>,
    /// The user's closure until the first run takes it (`BodyCell<F>`;
    /// erased to `dyn Closure` in the `JoinHandle`). A coroutine that could
    /// not start leaves it here, so that whatever it captured is dropped
    /// with the packet — by the joiner, in user context — not in the
    /// scheduler, where a `Drop` that blocks would block the executor (a
    /// detached coroutine's packet still goes with the scheduler's
    /// reference).
    body: C,
}

/// The closure slot of a `Packet`: `Some` until the first run takes it.
struct BodyCell<F>(UnsafeCell<Option<F>>);

/// What a `JoinHandle` sees of the closure slot: nothing (the packet's
/// last owner drops it, whoever that is).
trait Closure {}
impl<F> Closure for BodyCell<F> {}

/// The packet as the `JoinHandle` holds it: closure type erased.
type JoinPacket<T> = Packet<T, dyn Closure>;

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const FINISHED: u8 = 2;

// SAFETY: `result` is written once by the coroutine before `state` becomes
// FINISHED (Release) and read by the single JoinHandle after it sees
// FINISHED (Acquire); `waiter` is written by the joiner before it publishes
// WAITING (Release) and read by the coroutine only after its swap saw
// WAITING (Acquire). T: Send moves the result between threads. `body` is
// taken only by the party that owns the right to run the coroutine, once
// (first run); otherwise only dropped with the packet, by its last owner;
// the JoinHandle's erased view (`dyn Closure`) has no method to reach it.
// F: Send moves the closure to the coroutine's thread. (The JoinHandle's
// erased view needs no impl: the handle's own Send/Sync impls cover it.)
unsafe impl<T: Send, F: Send> Sync for Packet<T, BodyCell<F>> {}

/// Runs the user's closure, catching its panic. Kept out of `run`, so the
/// closure's code (a yield loop, say) lives in a small function of its
/// own, as it did when the body was a boxed closure: inlined into `run`,
/// bench W1 (two coroutines yielding to each other) measured 58 ns per
/// yield instead of 43, with the same instructions in the loop (a code
/// placement effect; no hardware counters on the machine to say more).
#[inline(never)]
fn call_body<T, F: FnOnce() -> T>(f: F) -> std::thread::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

impl<T, F> Entry for Packet<T, BodyCell<F>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Arc<Self>, no_stack: Option<String>) {
        let started = no_stack.is_none();
        let result = match no_stack {
            None => {
                // SAFETY: the executor running the coroutine's first run owns
                // the right to run it: the one party that takes the closure,
                // once (Inner::entry was taken before this call).
                let f = unsafe { (*self.body.0.get()).take() };
                call_body(f.expect("coroutine body run twice"))
            }
            // The stack is allocated when the coroutine first runs (a
            // coroutine that never ran costs no stack, and stacks freed by
            // finished coroutines serve new ones while they are hot);
            // failing then, the error reaches `join` as the payload. The
            // closure stays in the packet (see `Packet::body`).
            Some(msg) => Err(Box::new(msg) as Box<dyn Any + Send>),
        };
        // As for a thread: the coroutine's thread-local destructors run
        // before `join` can return (its own block: tls/block.rs), and after
        // a result nobody will join is dropped (std drops a detached
        // thread's result before its thread-locals), so the result's `Drop`
        // may still use thread-locals.
        let result = if Arc::strong_count(&self) == 1 {
            drop(result); // detached: the JoinHandle is gone
            None
        } else {
            Some(result)
        };
        // (A dedicated thread's thread-locals are its OS thread's: glibc
        // destroys them when that thread exits, right after this.)
        if started && crate::tls::enabled() && sched::in_coroutine() {
            crate::tls::run_exit_destructors();
            // Last: the destructors may allocate and free.
            if crate::tls::own_malloc() && sched::current_has_own_malloc() {
                crate::tls::release_own_malloc();
            }
        }
        let p = &*self;
        // SAFETY: only this coroutine writes the result, before FINISHED.
        unsafe { *p.result.get() = result };
        let _np = sched::NoPreempt::new();
        if p.state.swap(FINISHED, Ordering::AcqRel) == WAITING {
            // SAFETY: the joiner wrote `waiter` before publishing WAITING
            // and never touches it again (protocol above).
            if let Some(w) = unsafe { (*p.waiter.get()).take() } {
                if started {
                    w.wake_by_finishing();
                } else {
                    w.wake(); // from the scheduler (no stack): it goes on
                }
            }
        }
    }
}

/// An owned permission to join a coroutine, like
/// [`std::thread::JoinHandle`]. Dropping it detaches the coroutine.
pub struct JoinHandle<T> {
    coroutine: Coroutine,
    packet: Arc<JoinPacket<T>>,
    _not_sync_by_accident: PhantomData<*const ()>,
}

// SAFETY: the handle only moves the packet's header (Sync for T: Send; the
// erased closure is Send and never touched through the handle) and a
// Coroutine (Send + Sync); the PhantomData only opts out of auto traits.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only exposes `coroutine()` and `is_finished()`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// Waits for the coroutine to finish and returns its result, or the
    /// payload of its panic as `Err`. From a coroutine this parks the
    /// coroutine; from a plain thread it blocks the thread.
    ///
    /// ```
    /// let h = coroutines::spawn(|| panic!("boom"));
    /// let err = h.join().unwrap_err();
    /// assert_eq!(err.downcast_ref::<&str>(), Some(&"boom"));
    /// ```
    pub fn join(self) -> std::thread::Result<T> {
        let p = &*self.packet;
        if p.state.load(Ordering::Acquire) != FINISHED {
            let np = sched::NoPreempt::new();
            // SAFETY: only this (single) joiner writes `waiter`, and the
            // coroutine reads it only after seeing WAITING, published below.
            unsafe { *p.waiter.get() = Some(Waiter::current()) };
            if p.state
                .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                while p.state.load(Ordering::Acquire) != FINISHED {
                    if sched::in_coroutine() {
                        sched::park_current(
                            &np,
                            sched::WaitReason::Join {
                                id: self.coroutine.inner.id.as_u64().get(),
                            },
                        );
                    } else {
                        std::thread::park();
                    }
                }
            } else {
                // Finished meanwhile: the coroutine never saw WAITING, so
                // the waiter is still ours.
                // SAFETY: as above.
                drop(unsafe { (*p.waiter.get()).take() });
            }
        }
        // SAFETY: `done` was observed with Acquire after the coroutine wrote
        // the result; we are the only reader (join takes self).
        unsafe { (*p.result.get()).take() }.expect("coroutine result taken twice")
    }

    /// Whether the coroutine has finished running (its result is ready).
    pub fn is_finished(&self) -> bool {
        self.packet.state.load(Ordering::Acquire) == FINISHED
    }

    /// The handle of the coroutine.
    pub fn coroutine(&self) -> &Coroutine {
        &self.coroutine
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("coroutine", &self.coroutine)
            .finish_non_exhaustive()
    }
}

/// Coroutine factory, like [`std::thread::Builder`].
///
/// ```
/// let h = coroutines::Builder::new()
///     .name("worker-1".into())
///     .stack_size(64 * 1024)
///     .spawn(|| coroutines::current().name().map(String::from))
///     .unwrap();
/// assert_eq!(h.join().unwrap().as_deref(), Some("worker-1"));
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    dedicated: bool,
}

impl Builder {
    /// A builder with the runtime's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the coroutine (shown in panics, stack-overflow messages and
    /// [`Coroutine::name`]).
    pub fn name(mut self, name: String) -> Self {
        self.name = Some(name);
        self
    }

    /// Usable stack size in bytes (16 KiB to 1 GiB, rounded up to pages);
    /// overrides `COROUTINES_STACK_SIZE` for this coroutine.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Gives the coroutine an OS thread of its own, exclusively, for its
    /// whole life (Go's `LockOSThread`): for code that needs one thread —
    /// a signal mask, `setns`, GUI or interpreter thread state. It keeps
    /// everything else: a [`JoinHandle`] to join from threads and
    /// coroutines, its name, its panics reported at `join`; its
    /// thread-locals are its thread's own (destroyed when that thread
    /// exits, right after the coroutine finishes — possibly just after
    /// `join` returned). Its blocking calls block only its own thread.
    ///
    /// ```
    /// // SAFETY (both calls): gettid has no preconditions.
    /// let h = coroutines::Builder::new()
    ///     .dedicated_thread()
    ///     .spawn(|| unsafe { libc::gettid() })
    ///     .unwrap();
    /// let tid = h.join().unwrap();
    /// assert_ne!(tid, unsafe { libc::gettid() });
    /// ```
    pub fn dedicated_thread(mut self) -> Self {
        self.dedicated = true;
        self
    }

    /// Spawns the coroutine. Errors: an invalid stack size or name (a NUL
    /// byte), or a runtime that cannot start (bad `COROUTINES_*` value).
    /// The stack is allocated when the coroutine first runs; if that fails
    /// (no memory or address space), `join` returns `Err` with a message
    /// naming the coroutine, the operation and the sizes, and the runtime
    /// keeps serving the other coroutines.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let rt = crate::start::runtime()?;
        let stack_size = match self.stack_size {
            Some(n) => crate::config::check_coroutine_stack(n)?,
            None => rt.config.stack_size_bytes,
        };
        if let Some(name) = &self.name {
            if name.contains('\0') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "coroutine name may not contain interior null bytes",
                ));
            }
        }
        let packet = Arc::new(Packet {
            state: AtomicU8::new(EMPTY),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
            body: BodyCell(UnsafeCell::new(Some(f))),
        });
        let body: Body = packet.clone();
        let packet: Arc<JoinPacket<T>> = packet;
        let inner = Arc::new(Inner {
            id: CoroutineId::next(),
            name: self.name.map(String::into_boxed_str),
            sp: UnsafeCell::new(0),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            stack_size,
            stack: UnsafeCell::new(None),
            entry: UnsafeCell::new(Some(body)),
            state: AtomicU8::new(ACTIVE),
            token: AtomicBool::new(false),
            home: AtomicU32::new(NO_HOME),
            preempted: AtomicBool::new(false),
            ident: UnsafeCell::new([0; 4]),
            window: UnsafeCell::new(0),
            risky: AtomicBool::new(false),
            own_malloc: AtomicBool::new(false),
            own_arena: std::sync::atomic::AtomicUsize::new(0),
            tls: UnsafeCell::new(0),
            pooled: std::cell::Cell::new(0),
            wait: Default::default(),
            reg_slot: crate::observe::registry::unregistered(),
            cpu_ns: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            woke_at: AtomicU64::new(0),
            wake_flow: AtomicU64::new(0),
            dedicated: self.dedicated,
        });

        let coroutine = Coroutine {
            inner: inner.clone(),
        };
        // In a fork child no executor runs (sched/thread.rs `FORK_CHILD`):
        // every coroutine gets an OS thread of its own there.
        let fork_child = sched::fork_child();
        if self.dedicated || fork_child {
            if !fork_child {
                // (Not in a fork child: a registry lock held by a thread of
                // the parent at the fork stays held in the child.)
                let np = sched::NoPreempt::new();
                crate::observe::registry::register(&inner, &np);
                drop(np);
            }
            // Its own OS thread: the body runs there, never on an executor
            // (hooks see a plain thread and block it, as they should).
            let co = inner.clone();
            let mut b = std::thread::Builder::new().stack_size(stack_size);
            if let Some(n) = co.name.as_deref() {
                b = b.name(n.to_string());
            }
            b.spawn(move || {
                // SAFETY: this thread is the only party that ever runs the
                // coroutine: the body is ours to take, once.
                if let Some(body) = unsafe { (*co.entry.get()).take() } {
                    body.run(None);
                }
                co.state.store(DONE, Ordering::Release);
            })?;
        } else {
            if crate::observe::trace::flags() != 0 {
                crate::observe::trace::spawned(&inner);
            }
            sched::spawn_coroutine(rt, inner);
        }
        Ok(JoinHandle {
            coroutine,
            packet,
            _not_sync_by_accident: PhantomData,
        })
    }
}

/// Spawns a coroutine, like [`std::thread::spawn`].
///
/// # Panics
/// If the coroutine cannot be created (bad runtime configuration in the
/// environment, no memory for its stack); use [`Builder::spawn`] to get
/// the error instead.
///
/// ```
/// let handles: Vec<_> = (0..10).map(|i| coroutines::spawn(move || i * 2)).collect();
/// let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, 90);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(h) => h,
        Err(e) => panic!("coroutines::spawn failed: {e}"),
    }
}

/// Runs `f` in a coroutine and waits for it on the calling thread;
/// a panic in `f` is resumed on the caller. Inside a coroutine it simply
/// calls `f`. Handy for a whole `main`:
///
/// ```
/// fn main() {
///     let answer = coroutines::run(|| {
///         let h = coroutines::spawn(|| 40);
///         h.join().unwrap() + 2
///     });
///     assert_eq!(answer, 42);
/// }
/// ```
#[track_caller]
#[allow(clippy::needless_doctest_main)] // the example is about wrapping a whole `main`
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if sched::in_coroutine() {
        return f();
    }
    match spawn(f).join() {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload as Box<dyn Any + Send>),
    }
}
