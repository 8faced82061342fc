//! The registry of live coroutines, for `dump()`: every coroutine is in it
//! from `spawn` until its shared state is dropped.
//!
//! Layout: `SHARDS` shards, each a vector of `*const Inner` behind a spin
//! lock. A coroutine spawned on executor E goes to shard E (its lock's
//! cache line stays with E), one spawned from a plain thread to shard
//! `id % SHARDS`; it stores its shard and index (`Inner::reg_slot`) so
//! removal is a `swap_remove`. Cost per coroutine: one uncontended lock
//! round trip at spawn and one at exit (a CAS and a Release store each)
//! and a vector push/swap, under the no-preempt level the caller already
//! holds (spawn) or in the scheduler context (exit). Rejected: an
//! `Arc`/`Weak` per entry (two more locked RMWs per coroutine; the dump
//! needs no reference, see below) and an executor-owned list without a
//! lock (a coroutine may finish on another executor, and the dump must
//! read it while the owner runs).
//!
//! Liveness: an entry is removed when the coroutine finishes (the
//! executor's exit path) or, for one that never finished, in `Inner`'s
//! `Drop`; both take the shard lock first, so while the dump holds a shard's lock every pointer
//! in it is a live `Inner` (its fields not yet dropped). The dump visits a
//! shard in chunks ([`CHUNK`] entries per lock hold, from the end backwards:
//! a `swap_remove` meanwhile only moves an already visited entry into an
//! unvisited slot, so a coroutine alive throughout is visited at least
//! once; duplicates are filtered by id), so spawns and drops on that shard
//! wait at most one chunk.

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
    /// caller spins, then yields the CPU. The caller holds a no-preempt
    /// level (`_np`) or runs where preemption cannot land: a holder
    /// preempted here would leave its executor's other coroutines
    /// spinning on the lock with nobody to release it.
    fn with<R>(&self, _np: Held<'_>, f: impl FnOnce(&mut Vec<*const Inner>) -> R) -> R {
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

/// Proof that preemption cannot land while a shard lock is held: a
/// `NoPreempt` guard, or `Raised`: the caller runs in the executor's
/// scheduler context or with its no-preempt level already raised.
#[derive(Clone, Copy)]
pub(crate) enum Held<'a> {
    Guard(#[allow(dead_code)] &'a NoPreempt),
    Raised,
}

/// Adds a coroutine to the shard of `executor` (the executor doing it)
/// or of its id. When: at spawn from a plain thread (or a dedicated
/// coroutine), when a spawned coroutine leaves its executor's `next` slot
/// for a stealable queue, or at a coroutine's first switch-out — so a
/// coroutine spawned into the `next` slot that runs to completion without
/// ever suspending (a spawn-and-join of a short function) never pays for
/// the registry. Until then `dump()` sees it through its executor's
/// `next_id` and `current_id`. The caller owns the right to run `co` (or
/// created it), so two registrations of one coroutine cannot race.
#[inline]
pub(crate) fn register(co: &Inner, executor: Option<usize>, held: Held<'_>) {
    if co.reg_slot.load(Ordering::Relaxed) != UNREGISTERED {
        return;
    }
    let shard = executor.unwrap_or(co.id.as_u64().get() as usize) % SHARDS;
    REGISTRY[shard].with(held, |list| {
        co.reg_slot
            .store((shard as u64) << 32 | list.len() as u64, Ordering::Relaxed);
        list.push(co as *const Inner);
    });
}

/// [`register`] out of line, for the switch-out path.
#[cold]
#[inline(never)]
pub(crate) fn register_cold(co: &Inner, executor: usize, held: Held<'_>) {
    register(co, Some(executor), held)
}

/// Removes a coroutine (when it finishes, or from `Inner`'s `Drop`); a
/// no-op if it is not registered.
#[inline]
pub(crate) fn unregister(co: &Inner, held: Held<'_>) {
    let reg = co.reg_slot.load(Ordering::Relaxed);
    if reg == UNREGISTERED {
        return;
    }
    // Only the coroutine's last owner removes it (its executor at exit,
    // else its drop), so `reg`'s shard cannot change under us; the index
    // can (another removal's swap), hence re-read under the lock.
    REGISTRY[(reg >> 32) as usize].with(held, |list| {
        let i = co.reg_slot.load(Ordering::Relaxed) as u32 as usize;
        debug_assert_eq!(list[i], co as *const Inner);
        list.swap_remove(i);
        if let Some(&moved) = list.get(i) {
            // SAFETY: every pointer in the list is live while we hold the
            // lock (module doc).
            let m = unsafe { &*moved };
            let r = m.reg_slot.load(Ordering::Relaxed);
            m.reg_slot.store(r & !0xFFFF_FFFF | i as u64, Ordering::Relaxed);
        }
        co.reg_slot.store(UNREGISTERED, Ordering::Relaxed);
    });
}

/// Entries the dump visits per lock hold.
pub(crate) const CHUNK: usize = 256;

/// Calls `f` on every registered coroutine, at most `chunk` per lock
/// hold (module doc). `f` runs with the shard locked: it must not park,
/// allocate from a path that could reach a coroutine's spawn or drop, or
/// take long. A coroutine may be visited twice (`f` filters by id).
pub(crate) fn for_each(chunk: usize, mut f: impl FnMut(&Inner)) {
    for shard in REGISTRY.iter() {
        let mut end = usize::MAX;
        loop {
            let np = NoPreempt::new();
            let more = shard.with(Held::Guard(&np), |list| {
                let hi = end.min(list.len());
                let lo = hi.saturating_sub(chunk.max(1));
                for &p in &list[lo..hi] {
                    // SAFETY: live while the lock is held (module doc).
                    f(unsafe { &*p });
                }
                end = lo;
                lo > 0
            });
            if !more {
                break;
            }
        }
    }
}

/// Marks a coroutine as not registered (initial value of `reg_slot`).
pub(crate) const fn unregistered() -> AtomicU64 {
    AtomicU64::new(UNREGISTERED)
}
