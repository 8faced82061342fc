//! loom models of the runtime's three store-buffering / hand-over
//! protocols, each next to a variant with the bug it was built to prevent
//! reintroduced, which the model must catch (`must_fail`).
//!
//! 1. **Idle/park handshake** (src/sched/idle.rs `Parker`, the idle path
//!    of the executor loop, `Runtime::notify_idle`): an executor that finds
//!    no work announces that it sleeps (`searching -= 1`, `state =
//!    SLEEPING`, `sleepers += 1`, `fence(SeqCst)`) and re-checks the queues;
//!    a producer publishes work, `fence(SeqCst)`, and unparks if it sees a
//!    sleeper and no searcher. No wake-up may be lost: an executor that
//!    blocks in the futex (state still SLEEPING when it waits) must have
//!    been notified. Bug: the producer's fence missing.
//! 2. **Join packet** (src/coroutine.rs `JoinHandle::join` and the end of
//!    a coroutine): the joiner writes its waiter, then publishes WAITING
//!    (CAS, AcqRel); the coroutine writes its result, then swaps FINISHED
//!    (AcqRel) and wakes the waiter if it saw WAITING. The joiner always
//!    gets the result and is never left parked. Bug: the waiter written
//!    after WAITING is published (a data race on the waiter slot).
//! 3. **Registration wait** (src/reactor/registration.rs `wait_many`,
//!    `rearm`, `notify`): a reader snapshots the edge counter, tries, on
//!    EAGAIN raises `nwaiters`, takes the lock, re-checks the counter and
//!    lists itself; the reactor counts an edge, reads `nwaiters` and, if
//!    not 0, drains the list under the lock and wakes it. Two items arrive
//!    one edge each; the reader must get both. Bugs: no `rearm` after a
//!    wake-up that shows no change (the reader is parked in no list: seen
//!    under load in the I/O stress test), and `nwaiters` raised after the
//!    re-check instead of before.
//!
//! What loom does not model: SeqCst *loads and stores* (it treats them as
//! Acquire/Release); it models SeqCst fences and read-modify-writes. The
//! handshake (1) uses fences on both sides in the runtime's code, so its
//! model is the code's. The registration wait (3) relied on a SeqCst RMW
//! followed by a SeqCst load on each side, whose guarantee comes from the
//! single total order of SeqCst operations; the runtime's code now has a
//! `fence(SeqCst)` between the RMW and the load on both sides (a no-op
//! cost on x86-64, where the locked RMW is already a full barrier;
//! BENCHMARKS.md shows W3 unchanged), so this model is the code's too.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Runs a model check (`check` calls loom) and expects it to find a
/// failure whose message contains `expect`.
fn must_fail(name: &str, expect: &str, check: impl FnOnce()) {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    std::panic::set_hook(prev);
    let Err(e) = r else {
        panic!("{name}: the model did not catch the reintroduced bug");
    };
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains(expect),
        "{name}: failed for another reason: {msg}"
    );
}

// ---------------------------------------------------------------------------
// 1. Idle/park handshake

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;
const NOTIFIED: u32 = 2;

struct Idle {
    state: AtomicU32,
    sleepers: AtomicUsize,
    searching: AtomicUsize,
    work: AtomicBool,
}

/// The executor's idle path; returns true when it would block in the
/// futex (`Parker::wait`: futex_wait(state, SLEEPING) blocks only while
/// the state is still SLEEPING).
fn executor_idles(s: &Idle) -> bool {
    s.searching.fetch_sub(1, SeqCst);
    s.state.store(SLEEPING, SeqCst); // Parker::prepare
    s.sleepers.fetch_add(1, SeqCst);
    fence(SeqCst);
    if s.work.load(Relaxed) {
        s.state.store(AWAKE, Release); // Parker::cancel
        return false;
    }
    s.state.load(SeqCst) == SLEEPING
}

/// A producer queues work and calls `notify_idle`; returns whether it
/// notified (swapped SLEEPING -> NOTIFIED and would FUTEX_WAKE).
fn producer_notifies(s: &Idle, with_fence: bool) -> bool {
    s.work.store(true, Relaxed);
    if with_fence {
        fence(SeqCst);
    }
    if s.sleepers.load(Relaxed) == 0 || s.searching.load(Relaxed) > 0 {
        return false;
    }
    // Parker::unpark
    s.state.load(SeqCst) == SLEEPING && s.state.swap(NOTIFIED, SeqCst) == SLEEPING
}

fn idle_model(with_fence: bool) {
    let s = Arc::new(Idle {
        state: AtomicU32::new(AWAKE),
        sleepers: AtomicUsize::new(0),
        searching: AtomicUsize::new(1),
        work: AtomicBool::new(false),
    });
    let s2 = s.clone();
    let p = thread::spawn(move || producer_notifies(&s2, with_fence));
    let blocked = executor_idles(&s);
    let notified = p.join().unwrap();
    // A blocked executor is woken by the producer's FUTEX_WAKE (after its
    // swap, whenever it comes); without one the work waits forever.
    assert!(
        !blocked || notified,
        "lost wake-up: executor sleeps with work queued"
    );
}

#[test]
fn idle_handshake_loses_no_wakeup() {
    loom::model(|| idle_model(true));
}

#[test]
fn idle_handshake_without_the_producer_fence_loses_a_wakeup() {
    must_fail("idle handshake without fence", "lost wake-up", || {
        loom::model(|| idle_model(false))
    });
}

// ---------------------------------------------------------------------------
// 2. Join packet

const EMPTY: u32 = 0;
const WAITING: u32 = 1;
const FINISHED: u32 = 2;

struct Packet {
    state: AtomicU32,
    result: UnsafeCell<Option<u32>>,
    waiter: UnsafeCell<Option<thread::Thread>>,
}

fn join_model(waiter_first: bool) {
    let p = Arc::new(Packet {
        state: AtomicU32::new(EMPTY),
        result: UnsafeCell::new(None),
        waiter: UnsafeCell::new(None),
    });
    let p2 = p.clone();
    // The coroutine finishing.
    let co = thread::spawn(move || {
        p2.result.with_mut(|r| unsafe { *r = Some(42) });
        if p2.state.swap(FINISHED, AcqRel) == WAITING {
            let w = p2.waiter.with_mut(|w| unsafe { (*w).take() });
            w.expect("WAITING published without a waiter").unpark();
        }
    });
    // The joiner.
    if p.state.load(Acquire) != FINISHED {
        if waiter_first {
            p.waiter
                .with_mut(|w| unsafe { *w = Some(thread::current()) });
        }
        match p.state.compare_exchange(EMPTY, WAITING, AcqRel, Acquire) {
            Ok(_) => {
                if !waiter_first {
                    p.waiter
                        .with_mut(|w| unsafe { *w = Some(thread::current()) });
                }
                while p.state.load(Acquire) != FINISHED {
                    thread::park();
                }
            }
            Err(_) => {
                if waiter_first {
                    drop(p.waiter.with_mut(|w| unsafe { (*w).take() }));
                }
            }
        }
    }
    let r = p.result.with_mut(|r| unsafe { (*r).take() });
    assert_eq!(r, Some(42));
    co.join().unwrap();
}

#[test]
fn join_packet_hands_over_result_and_wakes() {
    loom::model(|| join_model(true));
}

#[test]
fn join_packet_with_waiter_written_after_publishing_fails() {
    must_fail(
        "join packet, waiter after WAITING",
        "Causality violation",
        || loom::model(|| join_model(false)),
    );
}

// ---------------------------------------------------------------------------
// 3. Registration wait

struct Reg {
    /// Edge counter (`rseq`).
    seq: AtomicU32,
    nwaiters: AtomicU32,
    waiters: Mutex<Vec<thread::Thread>>,
    /// Bytes in the kernel buffer (what the read system call sees).
    items: AtomicU32,
}

#[derive(Clone, Copy, PartialEq)]
enum RegBug {
    None,
    NoRearm,
    LateRaise,
}

fn listed(v: &[thread::Thread]) -> bool {
    let me = thread::current().id();
    v.iter().any(|t| t.id() == me)
}

/// One blocking read: returns once it took an item.
fn read_one(r: &Reg, bug: RegBug) {
    loop {
        let snap = r.seq.load(SeqCst);
        // The read system call.
        let n = r.items.load(SeqCst);
        if n > 0 && r.items.compare_exchange(n, n - 1, SeqCst, SeqCst).is_ok() {
            return;
        }
        // EAGAIN: register (wait_many).
        if bug != RegBug::LateRaise {
            r.nwaiters.fetch_add(1, SeqCst);
            fence(SeqCst); // as in reactor/registration.rs
        }
        let mut early = false;
        {
            let mut w = r.waiters.lock().unwrap();
            if r.seq.load(SeqCst) != snap {
                early = true;
            } else {
                w.push(thread::current());
            }
        }
        if bug == RegBug::LateRaise {
            r.nwaiters.fetch_add(1, SeqCst);
        }
        if !early {
            let mut woken = false;
            loop {
                if r.seq.load(SeqCst) != snap {
                    break;
                }
                if woken && bug != RegBug::NoRearm {
                    // rearm
                    let mut w = r.waiters.lock().unwrap();
                    if r.seq.load(SeqCst) != snap {
                        break;
                    }
                    if !listed(&w) {
                        w.push(thread::current());
                    }
                }
                thread::park();
                woken = true;
            }
        }
        {
            let mut w = r.waiters.lock().unwrap();
            let me = thread::current().id();
            w.retain(|t| t.id() != me);
        }
        r.nwaiters.fetch_sub(1, SeqCst);
    }
}

/// The reactor: an item arrives, its edge is counted and waiters woken.
fn edge(r: &Reg) {
    r.items.fetch_add(1, SeqCst);
    r.seq.fetch_add(1, SeqCst);
    fence(SeqCst); // as in reactor/registration.rs
    if r.nwaiters.load(SeqCst) == 0 {
        return;
    }
    let drained = std::mem::take(&mut *r.waiters.lock().unwrap());
    for t in drained {
        t.unpark();
    }
}

fn registration_model(bug: RegBug) {
    let r = Arc::new(Reg {
        seq: AtomicU32::new(0),
        nwaiters: AtomicU32::new(0),
        waiters: Mutex::new(Vec::new()),
        items: AtomicU32::new(0),
    });
    let r2 = r.clone();
    let reactor = thread::spawn(move || {
        edge(&r2);
        edge(&r2);
    });
    read_one(&r, bug);
    read_one(&r, bug);
    reactor.join().unwrap();
    assert_eq!(r.items.load(SeqCst), 0);
}

#[test]
fn registration_wait_gets_every_edge() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| registration_model(RegBug::None));
}

#[test]
fn registration_wait_without_rearm_parks_forever() {
    must_fail("registration wait without rearm", "deadlock", || {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| registration_model(RegBug::NoRearm));
    });
}

#[test]
fn registration_wait_raising_nwaiters_late_loses_an_edge() {
    must_fail(
        "registration wait, nwaiters raised late",
        "deadlock",
        || {
            let mut b = loom::model::Builder::new();
            b.preemption_bound = Some(3);
            b.check(|| registration_model(RegBug::LateRaise));
        },
    );
}
