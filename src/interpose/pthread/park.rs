//! The tables behind the pthread hooks (interpose/pthread.rs) and the
//! parking loop of an acquisition that would block: the process-wide
//! *wait-queue table* (object address -> FIFO of parked coroutines:
//! `register`, `unregister`, `wake`), the *owner table* (mutex or rwlock
//! address -> owning coroutine and recursion count), both sharded behind
//! raw futex-free locks, and `park_until` (register, retry, park until
//! woken or the re-check timer fires). The protocol they serve (the
//! store-buffering pair of registration and release, ownership per
//! coroutine) is described at the top of interpose/pthread.rs; glibc's
//! real functions and object layouts are in pthread/glibc.rs.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_int;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coroutine::CoroutineRef;
use crate::observe::wait::PthreadKind;
use crate::reactor::{timers, Waker};
use crate::sched::{self, NoPreempt, WaitReason};
use crate::sys::lock::RawLock;

// ---- sharded tables behind raw futex-free locks ----

const SHARDS: usize = 32;

#[repr(align(64))]
struct Shard<T> {
    /// Entries (wait queues: queued coroutines) in this shard; changed
    /// under `lock`, read by releasers after a SeqCst fence.
    count: AtomicUsize,
    lock: RawLock,
    map: std::cell::UnsafeCell<Option<HashMap<usize, T>>>,
}

// SAFETY: `map` is only reached with `lock` held (`with`); T is Send.
unsafe impl<T: Send> Sync for Shard<T> {}

impl<T> Shard<T> {
    const fn new() -> Self {
        Shard {
            count: AtomicUsize::new(0),
            lock: RawLock::new(),
            map: std::cell::UnsafeCell::new(None),
        }
    }

    /// Runs `f` with the lock held. The caller holds a `NoPreempt` (a
    /// coroutine preempted while holding the lock would make the next
    /// locker on its executor wait forever).
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<usize, T>) -> R) -> R {
        self.lock.lock();
        // SAFETY: we hold `lock`, the only way to reach `map`.
        let m = unsafe { &mut *self.map.get() }.get_or_insert_with(HashMap::new);
        let r = f(m);
        self.lock.unlock();
        r
    }
}

fn shard_index(addr: usize) -> usize {
    ((addr as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % SHARDS
}

pub(super) struct Waiter {
    pub(super) co: CoroutineRef,
    /// Set (Release) by the waker that removed the node, under the lock.
    pub(super) woken: AtomicBool,
}

type Queue = VecDeque<Arc<Waiter>>;

#[allow(clippy::declare_interior_mutable_const)]
const QSHARD: Shard<Queue> = Shard::new();
static QUEUES: [Shard<Queue>; SHARDS] = [QSHARD; SHARDS];

/// (owning coroutine id, recursion count).
#[allow(clippy::declare_interior_mutable_const)]
const OSHARD: Shard<(u64, u32)> = Shard::new();
static OWNERS: [Shard<(u64, u32)>; SHARDS] = [OSHARD; SHARDS];

/// Queues the running coroutine on `addr`. SeqCst RMW + fence: pairs with
/// the fence in `wake` (interpose/pthread.rs module doc).
pub(super) fn register(addr: usize) -> Arc<Waiter> {
    let w = Arc::new(Waiter {
        co: sched::current_coroutine(),
        woken: AtomicBool::new(false),
    });
    let s = &QUEUES[shard_index(addr)];
    s.with(|m| {
        s.count.fetch_add(1, Ordering::SeqCst);
        m.entry(addr).or_default().push_back(w.clone());
    });
    fence(Ordering::SeqCst);
    w
}

/// Removes `w` if still queued. False: a waker removed it (and woke it).
pub(super) fn unregister(addr: usize, w: &Arc<Waiter>) -> bool {
    let s = &QUEUES[shard_index(addr)];
    s.with(|m| {
        let Some(q) = m.get_mut(&addr) else {
            return false;
        };
        let Some(i) = q.iter().position(|x| Arc::ptr_eq(x, w)) else {
            return false;
        };
        q.remove(i);
        if q.is_empty() {
            m.remove(&addr);
        }
        s.count.fetch_sub(1, Ordering::Relaxed);
        true
    })
}

/// Wakes up to `n` coroutines queued on `addr` (after the caller changed
/// the object's state). Costs a fence and a load when nobody waits.
pub(super) fn wake(addr: usize, n: usize) -> usize {
    let s = &QUEUES[shard_index(addr)];
    fence(Ordering::SeqCst);
    if s.count.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let _np = NoPreempt::new();
    s.with(|m| {
        let Some(q) = m.get_mut(&addr) else {
            return 0;
        };
        let mut woken = 0;
        while woken < n {
            let Some(w) = q.pop_front() else { break };
            w.woken.store(true, Ordering::Release);
            // Never takes a shard lock of ours: safe under the lock.
            w.co.clone().wake();
            woken += 1;
        }
        if q.is_empty() {
            m.remove(&addr);
        }
        s.count.fetch_sub(woken, Ordering::Relaxed);
        woken
    })
}

/// Whether a frame of a memory allocator linked into the executable is on
/// the running coroutine's stack (preempt/zones.rs `alloc` ranges; the
/// table is built at runtime start, before any coroutine runs).
pub(super) fn inside_allocator() -> bool {
    let Some(t) = crate::preempt::zones::table() else {
        return false;
    };
    let hi = sched::current_stack_hi();
    let lo: usize;
    // SAFETY: reads RSP; no memory access.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) lo, options(nomem, nostack, preserves_flags))
    };
    hi > lo && t.stack_in_allocator(lo, hi)
}

const RECHECK_MIN: Duration = Duration::from_millis(1);
const RECHECK_MAX: Duration = Duration::from_millis(32);

/// Parks the running coroutine (user code; the caller holds `np`) until
/// `attempt` returns Some(result), or ETIMEDOUT once `deadline` passed.
/// `attempt` is the non-blocking acquisition; None means "would block".
pub(super) fn park_until(
    np: &NoPreempt,
    addr: usize,
    kind: PthreadKind,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Option<c_int>,
) -> c_int {
    if let Some(r) = attempt() {
        return r;
    }
    if inside_allocator() {
        // Called by a memory allocator linked into the executable (e.g.
        // jemalloc taking its arena lock): parking allocates, which would
        // re-enter the allocator in the middle of its operation. The
        // holder cannot be parked or preempted inside the allocator (C
        // code; it parks nowhere there), so it runs on another executor:
        // wait for it without allocating.
        loop {
            if let Some(r) = attempt() {
                return r;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return libc::ETIMEDOUT;
            }
            // SAFETY: the raw system call (not the `sched_yield` hook).
            unsafe { libc::syscall(libc::SYS_sched_yield) };
        }
    }
    let mut recheck = RECHECK_MIN;
    loop {
        let w = register(addr);
        if let Some(r) = attempt() {
            if !unregister(addr, &w) {
                wake(addr, 1); // we consumed a wake meant for a waiter
            }
            return r;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            if !unregister(addr, &w) {
                wake(addr, 1);
            }
            return libc::ETIMEDOUT;
        }
        let until = deadline.map_or(now + recheck, |d| d.min(now + recheck));
        let timer = timers().add(until, Waker::Coroutine(w.co.clone()));
        while !w.woken.load(Ordering::Acquire) && !timer.fired() {
            sched::park_current(np, WaitReason::Pthread { addr, kind });
        }
        timers().cancel(&timer);
        if !w.woken.load(Ordering::Acquire) {
            unregister(addr, &w);
            recheck = (recheck * 2).min(RECHECK_MAX);
        }
    }
}

// ---- owner table ----

pub(super) fn owner_of(addr: usize) -> Option<(u64, u32)> {
    OWNERS[shard_index(addr)].with(|m| m.get(&addr).copied())
}

pub(super) fn set_owner(addr: usize, v: Option<(u64, u32)>) {
    let s = &OWNERS[shard_index(addr)];
    s.with(|m| match v {
        Some(v) => {
            if m.insert(addr, v).is_none() {
                s.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            if m.remove(&addr).is_some() {
                s.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    })
}
