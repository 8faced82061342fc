//! A small mutex on a futex word, driven by raw system calls.
//!
//! For tables the libc hooks consult from inside a hook (the futex waiter
//! table's shards, interpose/futex.rs; the pthread hooks' wait queues,
//! interpose/pthread.rs): std's `Mutex` would not do there, because its
//! contended path calls libc's `syscall`, i.e. the runtime's own hook,
//! from inside the table. This lock reaches the kernel only through
//! `sys::futex_wait`/`futex_wake` (the `syscall` instruction).
//!
//! States of `state`: 0 unlocked, 1 locked, 2 locked with (possible)
//! sleepers. `lock`: CAS 0 -> 1 (Acquire); contended: spin up to 100
//! rounds on a plain load, then swap in 2 and futex-wait while the old
//! value was not 0. `unlock`: swap 0 (Release); if it was 2, wake one.
//! A waiter that swapped in 2 keeps the lock marked contended, so the
//! unlock that follows wakes the next sleeper (no lost wake-up). Not fair,
//! not reentrant, no poisoning.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// A mutex on a futex word driven by raw syscalls (never this hook).
/// States: 0 unlocked, 1 locked, 2 locked with (possible) sleepers.
pub(crate) struct RawLock {
    state: AtomicU32,
}

impl RawLock {
    pub(crate) const fn new() -> Self {
        RawLock {
            state: AtomicU32::new(0),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) {
        // Acquire: pairs with the Release in `unlock`.
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.lock_contended();
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..100 {
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            std::hint::spin_loop();
        }
        while self.state.swap(2, Ordering::Acquire) != 0 {
            sys::futex_wait(&self.state, 2, None);
        }
    }

    #[inline]
    pub(crate) fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            sys::futex_wake(&self.state, 1);
        }
    }
}
