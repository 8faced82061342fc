//! The futex waiter table of the `syscall` hook (interpose/futex.rs):
//! the coroutines parked in an emulated FUTEX_WAIT(_BITSET) (`Node`),
//! the sharded map they wait in (`Shard`, `TABLE`), and both sides of the
//! emulation: `wait` (enqueue, park, time out) and `wake` (dequeue, wake
//! the coroutines). interpose/futex.rs decodes the futex commands, checks
//! the arguments as the kernel does and asks the kernel for the rest.
//!
//! ## Waiter table
//! 64 shards, each a futex-free lock (`RawLock`, raw syscalls, so locking
//! it never re-enters this hook) around a map from *key* (address, plus bit
//! 0 set for a non-private futex, like the kernel which keeps private and
//! shared futexes apart) to a FIFO of waiting coroutines. Each shard also
//! counts its waiters so a wake of a word nobody waits on in the table
//! costs one fence and one load.
//!
//! ## Protocol (no lost wake-ups), mirror sides
//! Wait (coroutine):
//! 1. lock the shard; `waiters += 1` (SeqCst RMW); SeqCst fence;
//! 2. read the word: if it differs from the expected value, undo and
//!    return EAGAIN; if the deadline passed, undo and return ETIMEDOUT;
//! 3. append the node to the key's queue; unlock;
//! 4. loop: `node.woken` set (Acquire) -> return 0; timer fired -> lock,
//!    remove the node if still queued and return ETIMEDOUT (if a waker
//!    removed it first, the wake wins: return 0); else park
//!    (`WaitReason::Futex`; spurious returns just loop).
//!
//! Wake (anyone, after changing the word as the futex contract requires):
//! 1. SeqCst fence; read the shard's `waiters`; 0 -> nothing in the table;
//! 2. else lock the shard, remove up to n nodes whose bitset matches, set
//!    each one's `woken` (Release) and wake its coroutine (the coroutine
//!    park/wake protocol in coroutine.rs never loses that wake); unlock;
//! 3. if fewer than n were woken, issue the real FUTEX_WAKE for the rest so
//!    plain threads sleeping in the kernel on the same word are reached.
//!    Return the sum, which is what callers of FUTEX_WAKE expect. With n = 1
//!    exactly one waiter is woken (a coroutine if one waits in the table),
//!    as the kernel picks one of several waiters.
//!
//! The fences make step 1/2 of the two sides a store-buffering pair: either
//! the waker sees `waiters > 0` and takes the lock (then the value check
//! and enqueue, done atomically under that lock, are ordered against it),
//! or the waiter's value check sees the waker's new value and returns
//! EAGAIN.
//!
//! Non-private (process-shared) futexes: a wake from *another process*
//! goes to the kernel, never through this table. So a coroutine waiting on
//! a shared futex also rechecks the word on a backing-off poll timer
//! (1 ms doubling to 64 ms) and returns 0 once it changed: a spurious-looking
//! but correct return, since every futex waiter rechecks its condition.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_int;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{WAITS_PARKED, WAIT_TIMEOUTS, WAKES};
use crate::coroutine::CoroutineRef;
use crate::reactor::{timers, Waker};
use crate::sched::{self, NoPreempt, WaitReason};
use crate::sys::lock::RawLock;

/// One waiting coroutine.
pub(super) struct Node {
    co: CoroutineRef,
    bitset: u32,
    /// Set (Release) by the waker that removed the node from its queue,
    /// under the shard lock; read (Acquire) by the waiting coroutine.
    woken: AtomicBool,
}

/// Identity hasher for keys that are already mixed.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("KeyHasher hashes usize keys only")
    }
    fn write_usize(&mut self, k: usize) {
        self.0 = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(super) type Queues = HashMap<usize, VecDeque<Arc<Node>>, BuildHasherDefault<KeyHasher>>;

const SHARDS: usize = 64;

#[repr(align(64))]
pub(super) struct Shard {
    /// Coroutine waiters queued in this shard. Changed under `lock`; read
    /// without it by wakers after a SeqCst fence (module doc protocol).
    waiters: AtomicUsize,
    lock: RawLock,
    /// Guarded by `lock`.
    queues: std::cell::UnsafeCell<Option<Queues>>,
}

// SAFETY: `queues` is only touched with `lock` held (see `Shard::with`);
// Node is Send + Sync (Arc<Inner> and atomics).
unsafe impl Sync for Shard {}

#[allow(clippy::declare_interior_mutable_const)]
const SHARD_INIT: Shard = Shard {
    waiters: AtomicUsize::new(0),
    lock: RawLock::new(),
    queues: std::cell::UnsafeCell::new(None),
};
static TABLE: [Shard; SHARDS] = [SHARD_INIT; SHARDS];

impl Shard {
    /// Runs `f` on the queues with the lock held. The caller holds a
    /// `NoPreempt` guard (a coroutine preempted while holding the lock
    /// would make its executor's next spinner wait forever).
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Queues) -> R) -> R {
        self.lock.lock();
        // SAFETY: we hold `lock`, the only way to reach `queues`.
        let q = unsafe { &mut *self.queues.get() }.get_or_insert_with(Queues::default);
        let r = f(q);
        self.lock.unlock();
        r
    }
}

#[inline]
pub(super) fn key_of(uaddr: usize, private: bool) -> usize {
    uaddr | (!private) as usize
}

#[inline]
pub(super) fn shard_of(key: usize) -> &'static Shard {
    &TABLE[((key as u64 >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
}

/// The emulated FUTEX_WAIT(_BITSET) of a coroutine: Ok(()) when woken (or
/// spuriously, for shared futexes whose word changed), Err(errno) else.
pub(super) fn wait(
    uaddr: usize,
    val: u32,
    deadline: Option<Instant>,
    bitset: u32,
    private: bool,
) -> Result<(), c_int> {
    let np = NoPreempt::new();
    let key = key_of(uaddr, private);
    let shard = shard_of(key);
    // SAFETY: `uaddr` is non-null and 4-aligned (checked by the caller);
    // the futex contract makes it a live u32 the caller may read.
    let word = unsafe { &*(uaddr as *const AtomicU32) };
    let node = Arc::new(Node {
        co: sched::current_coroutine(),
        bitset,
        woken: AtomicBool::new(false),
    });
    let reason = if sched::is_own_std_parker(uaddr) {
        WaitReason::StdParker { addr: uaddr }
    } else {
        WaitReason::Futex { addr: uaddr }
    };
    let queued = shard.with(|q| {
        shard.waiters.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `wake` (store-buffering, module doc).
        fence(Ordering::SeqCst);
        if word.load(Ordering::Relaxed) != val {
            shard.waiters.fetch_sub(1, Ordering::Relaxed);
            return Err(libc::EAGAIN);
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            shard.waiters.fetch_sub(1, Ordering::Relaxed);
            return Err(libc::ETIMEDOUT);
        }
        q.entry(key).or_default().push_back(node.clone());
        Ok(())
    });
    queued?;
    WAITS_PARKED.fetch_add(1, Ordering::Relaxed);
    let timer = deadline.map(|d| timers().add(d, Waker::Coroutine(node.co.clone())));
    let mut poll_every = Duration::from_millis(1);
    let mut poll = (!private).then(|| {
        timers().add(
            Instant::now() + poll_every,
            Waker::Coroutine(node.co.clone()),
        )
    });
    let result = loop {
        if node.woken.load(Ordering::Acquire) {
            break Ok(());
        }
        let timed_out = timer.as_ref().is_some_and(|t| t.fired());
        let changed =
            poll.as_ref().is_some_and(|p| p.fired()) && word.load(Ordering::Relaxed) != val;
        if timed_out || changed {
            let removed = shard.with(|q| remove(q, shard, key, &node));
            if !removed {
                break Ok(()); // a waker took it first: the wake wins
            }
            if changed {
                break Ok(());
            }
            WAIT_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            break Err(libc::ETIMEDOUT);
        }
        if poll.as_ref().is_some_and(|p| p.fired()) {
            poll_every = (poll_every * 2).min(Duration::from_millis(64));
            poll = Some(timers().add(
                Instant::now() + poll_every,
                Waker::Coroutine(node.co.clone()),
            ));
        }
        sched::park_current(&np, reason);
    };
    if let Some(t) = timer {
        timers().cancel(&t);
    }
    if let Some(p) = poll {
        timers().cancel(&p);
    }
    result
}

/// Removes `node` from its queue if still there (lock held by caller).
fn remove(q: &mut Queues, shard: &Shard, key: usize, node: &Arc<Node>) -> bool {
    let Some(list) = q.get_mut(&key) else {
        return false;
    };
    let Some(pos) = list.iter().position(|n| Arc::ptr_eq(n, node)) else {
        return false;
    };
    list.remove(pos);
    if list.is_empty() {
        q.remove(&key);
    }
    shard.waiters.fetch_sub(1, Ordering::Relaxed);
    true
}

/// Wakes up to `n` coroutines waiting on `key` whose bitset intersects
/// `bitset`. Returns how many were woken.
pub(super) fn wake(key: usize, n: usize, bitset: u32) -> usize {
    let shard = shard_of(key);
    // Pairs with the fence in `wait`: the caller's change of the futex
    // word is ordered before this load (module doc protocol).
    fence(Ordering::SeqCst);
    if shard.waiters.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let _np = NoPreempt::new();
    let woken = shard.with(|q| {
        let Some(list) = q.get_mut(&key) else {
            return 0;
        };
        let mut woken = 0;
        let mut i = 0;
        while woken < n && i < list.len() {
            if list[i].bitset & bitset == 0 {
                i += 1;
                continue;
            }
            let node = list.remove(i).expect("index checked");
            node.woken.store(true, Ordering::Release);
            // Waking under the shard lock is fine: `wake` only pushes on a
            // run queue and may FUTEX_WAKE an executor with a raw syscall;
            // it never takes a shard lock.
            node.co.wake();
            woken += 1;
        }
        if list.is_empty() {
            q.remove(&key);
        }
        shard.waiters.fetch_sub(woken, Ordering::Relaxed);
        woken
    });
    WAKES.fetch_add(woken as u64, Ordering::Relaxed);
    woken
}
