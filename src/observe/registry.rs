//! The registry of live coroutines, for `dump()`.
//!
//! Who is in it: a coroutine enters when it first suspends (park, yield,
//! preemption), when it leaves its executor's `next` slot for a stealable
//! queue, or at spawn from a plain thread (and a dedicated one); it leaves
//! when it finishes or, if it never did, when its shared state is dropped.
//! So a coroutine spawned into the `next` slot that runs to completion
//! without suspending — a spawn-and-join of a short function — never pays
//! for the registry; until it enters, `dump()` sees it through its
//! executor's `next_id` (never run) and `current_id` (running).
//!
//! Layout: `SHARDS` shards, each a vector of `*const Inner` behind a spin
//! lock; a coroutine goes to shard `id % SHARDS` and stores its shard and
//! index (`Inner::reg_slot`) so removal is a `swap_remove`. Cost: one
//! uncontended CAS and Release store at entry and at exit. Not a shard
//! per executor: a coroutine is often registered by one executor and
//! removed by another (spawned here, stolen and finished there), and then
//! both executors hammered the spawner's shard — its lock and the end of
//! its vector — and deferred operations on contention (spawn-all-then-
//! join, bench W2a: 507 ns per coroutine against 354 with shards by id).
//! Executors never wait for a shard: they `try_with`, and on contention
//! (a dump holding that shard, or descheduled by the OS while holding it)
//! keep the operation, with a reference that keeps the coroutine alive,
//! on their own pending list and retry it from the scheduler loop
//! (sched/executor.rs `registry_op`). Plain threads and `Drop` wait
//! (spin, then yield the CPU), under a no-preempt level. Rejected: an
//! `Arc`/`Weak` per entry (two more locked RMWs per coroutine; the dump
//! needs no reference, see below); an executor-owned list without a lock
//! (a coroutine may finish on another executor, and the dump must read it
//! while the owner runs); crossbeam-epoch (pinning at every switch costs
//! more than a lock taken twice per coroutine lifetime).
//!
//! Liveness: every removal takes the shard lock, and the last reference
//! to a registered coroutine cannot go before its removal (the exit path
//! removes it, or keeps it alive on the pending list; `Drop` removes it
//! first thing), so while the dump holds a shard's lock every pointer in
//! it is a live `Inner` (its fields not yet dropped). The dump visits a
//! shard in chunks ([`CHUNK`] entries per lock hold, from the end
//! backwards: a `swap_remove` meanwhile only moves an already visited
//! entry into an unvisited slot, so a coroutine alive throughout is
//! visited at least once; duplicates are filtered by id).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::coroutine::Inner;
use crate::sched::NoPreempt;

const SHARDS: usize = 64;
/// `reg_slot` of a coroutine not in the registry (else shard << 32 |
/// index).
pub(crate) const UNREGISTERED: u64 = u64::MAX;

#[repr(align(128))]
struct Shard {
    locked: AtomicBool,
    list: UnsafeCell<Vec<*const Inner>>,
}

// SAFETY: `list` is only touched with `locked` held (`with`); the pointers
// are only dereferenced under that lock, while they are live (module doc).
unsafe impl Sync for Shard {}

static REGISTRY: [Shard; SHARDS] = [const {
    Shard {
        locked: AtomicBool::new(false),
        list: UnsafeCell::new(Vec::new()),
    }
}; SHARDS];

impl Shard {
    /// Runs `f` with the shard locked. Never parks or switches: holders
    /// are short (a push, a swap_remove, one dump chunk), so a contended
    /// caller spins, then yields the CPU. Executors never call it (they
    /// use `try_with` and retry later). The caller holds a no-preempt
    /// level (`_np`): a holder preempted here would leave its executor's
    /// other coroutines spinning on the lock with nobody to release it.
    fn with<R>(&self, _np: &NoPreempt, f: impl FnOnce(&mut Vec<*const Inner>) -> R) -> R {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 200 {
                std::hint::spin_loop();
            } else {
                // The raw system call: the `sched_yield` hook would park.
                // SAFETY: sched_yield takes no arguments and touches no
                // memory.
                unsafe { crate::sys::syscall6(libc::SYS_sched_yield as usize, 0, 0, 0, 0, 0, 0) };
            }
        }
        // SAFETY: we hold the lock, the only way to reach `list`.
        let r = f(unsafe { &mut *self.list.get() });
        self.locked.store(false, Ordering::Release);
        r
    }
}

impl Shard {
    /// `with` if the lock is free right now, else None (never waits).
    fn try_with<R>(&self, f: impl FnOnce(&mut Vec<*const Inner>) -> R) -> Option<R> {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: we hold the lock, the only way to reach `list`.
        let r = f(unsafe { &mut *self.list.get() });
        self.locked.store(false, Ordering::Release);
        Some(r)
    }
}

/// The shard of a coroutine (module doc, "Layout").
#[inline]
fn shard_of(co: &Inner) -> usize {
    co.id.as_u64().get() as usize % SHARDS
}

/// Adds a coroutine to its shard. When: at spawn from a plain thread (or a dedicated
/// coroutine), when a spawned coroutine leaves its executor's `next` slot
/// for a stealable queue, or at a coroutine's first switch-out — so a
/// coroutine spawned into the `next` slot that runs to completion without
/// ever suspending (a spawn-and-join of a short function) never pays for
/// the registry. Until then `dump()` sees it through its executor's
/// `next_id` and `current_id`. Two registrations of one coroutine may
/// race (an executor retrying a deferred one while the coroutine, now
/// elsewhere, registers at its next suspension): the `reg_slot` CAS lets
/// exactly one insert it. A registration retried after the coroutine
/// finished is removed by its `Drop` (the exit path saw no entry).
#[inline]
pub(crate) fn register(co: &Inner, np: &NoPreempt) {
    if co.reg_slot.load(Ordering::Relaxed) != UNREGISTERED {
        return;
    }
    let shard = shard_of(co);
    REGISTRY[shard].with(np, |list| insert(co, shard, list));
}

/// Inserts `co` into its shard's `list` (lock held) unless it is in the
/// registry already. A CAS, not a store: an executor retrying a deferred
/// registration does not own the coroutine, which may be registering
/// itself at the same moment; exactly one of them inserts it.
fn insert(co: &Inner, shard: usize, list: &mut Vec<*const Inner>) {
    let slot = (shard as u64) << 32 | list.len() as u64;
    if co
        .reg_slot
        .compare_exchange(UNREGISTERED, slot, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        list.push(co as *const Inner);
    }
}

/// Executors' side: [`register`] or [`unregister`] without ever waiting
/// for a shard lock (the dump may hold one for a chunk, or be descheduled
/// by the OS while holding it). False: the lock was busy, nothing done;
/// the executor keeps the coroutine (alive, by its reference) on its own
/// pending list and retries from its scheduler loop
/// (sched/executor.rs `registry_pending`). The caller runs with
/// preemption impossible (scheduler context or a raised level).
#[inline(never)]
pub(crate) fn try_register(co: &Inner) -> bool {
    if co.reg_slot.load(Ordering::Relaxed) != UNREGISTERED {
        return true;
    }
    let shard = shard_of(co);
    REGISTRY[shard]
        .try_with(|list| insert(co, shard, list))
        .is_some()
}

/// See [`try_register`].
#[inline]
pub(crate) fn try_unregister(co: &Inner) -> bool {
    let reg = co.reg_slot.load(Ordering::Relaxed);
    if reg == UNREGISTERED {
        return true;
    }
    REGISTRY[(reg >> 32) as usize]
        .try_with(|list| remove(co, list))
        .is_some()
}

/// Removes a coroutine (when it finishes, or from `Inner`'s `Drop`); a
/// no-op if it is not registered.
#[inline]
pub(crate) fn unregister(co: &Inner, np: &NoPreempt) {
    let reg = co.reg_slot.load(Ordering::Relaxed);
    if reg == UNREGISTERED {
        return;
    }
    // Only the coroutine's last owner removes it (its executor at exit,
    // else its drop), so `reg`'s shard cannot change under us; the index
    // can (another removal's swap), hence re-read under the lock.
    REGISTRY[(reg >> 32) as usize].with(np, |list| remove(co, list));
}

/// Removes `co` from its shard's `list` (lock held).
fn remove(co: &Inner, list: &mut Vec<*const Inner>) {
    let i = co.reg_slot.load(Ordering::Relaxed) as u32 as usize;
    debug_assert_eq!(list[i], co as *const Inner);
    list.swap_remove(i);
    if let Some(&moved) = list.get(i) {
        // SAFETY: every pointer in the list is live while we hold the
        // lock (module doc).
        let m = unsafe { &*moved };
        let r = m.reg_slot.load(Ordering::Relaxed);
        m.reg_slot
            .store(r & !0xFFFF_FFFF | i as u64, Ordering::Relaxed);
    }
    co.reg_slot.store(UNREGISTERED, Ordering::Relaxed);
}

/// Entries the dump visits per lock hold.
pub(crate) const CHUNK: usize = 256;

/// Calls `f` on every registered coroutine, at most `chunk` per lock
/// hold (module doc). `f` runs with the shard locked: it must not park,
/// allocate from a path that could reach a coroutine's spawn or drop, or
/// take long. A coroutine may be visited twice (`f` filters by id).
/// Returns the longest time one lock was held (wall clock, and CPU time
/// of the calling thread: the difference is time the OS had the thread
/// descheduled while it held the lock). `before_chunk(n)` runs before each lock
/// hold of at most `n` entries, outside the lock: the place to reserve
/// room, so that `f` never grows a collection under the lock.
pub(crate) fn for_each<S>(
    chunk: usize,
    state: &mut S,
    mut before_chunk: impl FnMut(&mut S, usize),
    mut f: impl FnMut(&mut S, &Inner),
) -> (std::time::Duration, std::time::Duration) {
    let mut longest = std::time::Duration::ZERO;
    let mut longest_cpu = std::time::Duration::ZERO;
    for shard in REGISTRY.iter() {
        let mut end = usize::MAX;
        loop {
            before_chunk(state, chunk.max(1));
            let np = NoPreempt::new();
            let more = shard.with(&np, |list| {
                let t = std::time::Instant::now();
                let c = thread_cpu();
                let hi = end.min(list.len());
                let lo = hi.saturating_sub(chunk.max(1));
                for &p in &list[lo..hi] {
                    // SAFETY: live while the lock is held (module doc).
                    f(state, unsafe { &*p });
                }
                end = lo;
                longest = longest.max(t.elapsed());
                longest_cpu = longest_cpu.max(thread_cpu().saturating_sub(c));
                lo > 0
            });
            if !more {
                break;
            }
        }
    }
    (longest, longest_cpu)
}

/// The name of registered coroutine `id` (a linear walk: for rare
/// reports only).
pub(crate) fn name_of(id: u64) -> Option<String> {
    let mut found = None;
    for_each(
        CHUNK,
        &mut found,
        |_, _| {},
        |found: &mut Option<String>, co| {
            if found.is_none() && co.id.as_u64().get() == id {
                *found = Some(co.name.as_deref().unwrap_or("").to_owned());
            }
        },
    );
    found.filter(|n| !n.is_empty())
}

/// CPU time of the calling thread.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Marks a coroutine as not registered (initial value of `reg_slot`).
pub(crate) const fn unregistered() -> AtomicU64 {
    AtomicU64::new(UNREGISTERED)
}
