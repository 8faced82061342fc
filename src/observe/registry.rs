//! The registry of live coroutines, for `dump()`: every coroutine is in it
//! from `spawn` until its shared state is dropped.
//!
//! Layout: `SHARDS` shards, a coroutine in shard `id % SHARDS`, each a
//! vector of `*const Inner` behind a spin lock; a coroutine stores its
//! index (`Inner::reg_slot`) so removal is a `swap_remove`. Cost per
//! coroutine: one uncontended lock round trip at spawn and one at drop (a
//! CAS and a Release store each) and a vector push/swap. Rejected: an
//! `Arc`/`Weak` per entry (two more locked RMWs per coroutine; the dump
//! needs no reference, see below) and an executor-owned list (coroutines
//! spawned from plain threads and migrating coroutines have no single
//! owner).
//!
//! Liveness: an entry is removed in `Inner`'s `Drop`, which takes the
//! shard lock first, so while the dump holds a shard's lock every pointer
//! in it is a live `Inner` (its fields not yet dropped). The dump visits a
//! shard in chunks ([`CHUNK`] entries per lock hold, from the end backwards:
//! a `swap_remove` meanwhile only moves an already visited entry into an
//! unvisited slot, so a coroutine alive throughout is visited at least
//! once; duplicates are filtered by id), so spawns and drops on that shard
//! wait at most one chunk.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::coroutine::Inner;
use crate::sched::NoPreempt;

const SHARDS: usize = 64;
/// `reg_slot` of a coroutine not in the registry.
pub(crate) const UNREGISTERED: u32 = u32::MAX;

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
    /// caller spins, then yields the CPU.
    fn with<R>(&self, f: impl FnOnce(&mut Vec<*const Inner>) -> R) -> R {
        // A holder preempted here would leave its executor's other
        // coroutines spinning on the lock with nobody to release it.
        let _np = NoPreempt::new();
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

fn shard_of(co: &Inner) -> &'static Shard {
    &REGISTRY[co.id.as_u64().get() as usize % SHARDS]
}

/// Adds a new coroutine (at spawn, before anyone else can see it).
pub(crate) fn register(co: &Inner) {
    shard_of(co).with(|list| {
        co.reg_slot.store(list.len() as u32, Ordering::Relaxed);
        list.push(co as *const Inner);
    });
}

/// Removes a coroutine (from `Inner`'s `Drop`).
pub(crate) fn unregister(co: &Inner) {
    if co.reg_slot.load(Ordering::Relaxed) == UNREGISTERED {
        return;
    }
    shard_of(co).with(|list| {
        let i = co.reg_slot.load(Ordering::Relaxed) as usize;
        debug_assert_eq!(list[i], co as *const Inner);
        list.swap_remove(i);
        if let Some(&moved) = list.get(i) {
            // SAFETY: every pointer in the list is live while we hold the
            // lock (module doc).
            unsafe { (*moved).reg_slot.store(i as u32, Ordering::Relaxed) };
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
            let more = shard.with(|list| {
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
pub(crate) const fn unregistered() -> AtomicU32 {
    AtomicU32::new(UNREGISTERED)
}
