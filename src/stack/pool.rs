//! The stack pool: `Stack` (an owned slot) and `alloc`.
//!
//! Allocation order, cheapest first:
//! 1. the calling thread's cache (`THREAD_CACHE`, up to 16 stacks of one
//!    size, no lock, no syscall) — a spawn+join round trip stays here;
//! 2. the size class's hot list (pages kept, LIFO so the most recently used,
//!    cache-warm stack goes out first), under the `POOL` mutex; when the thread
//!    cache was empty, up to 8 more hot stacks move into it in the same
//!    critical section;
//! 3. the cold list (pages were returned with `MADV_DONTNEED`);
//! 4. a fresh slot from the class's current reservation; its guard page is
//!    installed here, once, outside the lock;
//! 5. a new reservation (mmap under the lock: it is rare — ~log2 + N/4000
//!    times for N stacks — and keeping it there keeps the bump region simple).
//!
//! Release mirrors it: push on the thread cache; when full, its 8 oldest
//! entries go to the hot list (up to `HOT_STACKS_PER_SIZE` = 64 per size) and
//! the rest have their usable pages dropped (outside the lock) and go cold.
//! So RSS held by idle stacks is bounded by (64 + 16 × threads) stacks per size.
//!
//! All lists hold slot *bottoms* (`usize`). A bottom is owned by exactly one
//! of: a live `Stack`, one thread cache, one pool list.

use std::cell::RefCell;
use std::io;
use std::sync::{Mutex, MutexGuard};

use super::mmap::{
    self, FIRST_RESERVATION_SLOTS, MAX_RESERVATION_BYTES, MIN_STACK_SIZE, PAGE_SIZE,
};

/// Stacks per size kept with their pages in the global hot list.
const HOT_STACKS_PER_SIZE: usize = 64;
/// Thread cache capacity (stacks) and the batch moved to/from the pool.
const THREAD_CACHE_CAP: usize = 16;
const THREAD_CACHE_BATCH: usize = 8;

/// A coroutine stack: `[bottom, top)` read/write, with a guard page just
/// below `bottom`. Owned; dropping it returns the slot to the pool.
#[derive(Debug)]
pub(crate) struct Stack {
    bottom: usize,
    usable_bytes: usize,
}

// `Stack` holds only addresses (no raw pointers), so it is Send and Sync
// automatically; that is sound because the pool is thread-safe and the memory
// is process-wide.

impl Stack {
    /// Highest address of the usable region (exclusive), 16-byte aligned
    /// (page aligned in fact): the initial RSP goes just below it.
    #[inline]
    pub(crate) fn top(&self) -> usize {
        self.bottom + self.usable_bytes
    }

    /// Lowest usable address (just above the guard page).
    #[inline]
    pub(crate) fn bottom(&self) -> usize {
        self.bottom
    }

    /// Usable size in bytes (excluding the guard page).
    #[inline]
    #[allow(dead_code)] // used by tests and kept for the Stack contract
    pub(crate) fn size_bytes(&self) -> usize {
        self.usable_bytes
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        release(self.bottom, self.usable_bytes);
    }
}

/// Get a stack of at least `size_bytes` usable bytes: rounded up to
/// [`MIN_STACK_SIZE`] and then to whole pages. Reuses a pooled stack when one
/// of that size is free; the contents of a reused stack are unspecified.
///
/// Errors name the operation and sizes, e.g. "mmap stack reservation
/// (16908288 B = 64 stacks of 262144 B + 1 guard page): ENOMEM (...)"; a
/// vm.max_map_count exhaustion says so and how to raise the limit.
///
/// Not async-signal-safe; call with preemption disabled (see `stack/mod.rs`).
pub(crate) fn alloc(size_bytes: usize) -> io::Result<Stack> {
    let usable_bytes = round_size(size_bytes)?;
    let cached = THREAD_CACHE
        .try_with(|c| {
            c.try_borrow_mut()
                .ok()
                .and_then(|mut c| c.pop(usable_bytes))
        })
        .ok()
        .flatten();
    let bottom = match cached {
        Some(bottom) => bottom,
        None => alloc_slow(usable_bytes)?,
    };
    Ok(Stack {
        bottom,
        usable_bytes,
    })
}

/// `size_bytes` → usable bytes: at least MIN_STACK_SIZE, whole pages.
fn round_size(size_bytes: usize) -> io::Result<usize> {
    let s = size_bytes.max(MIN_STACK_SIZE);
    match s.checked_add(PAGE_SIZE - 1 + PAGE_SIZE) {
        Some(_) => Ok((s + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("stack size {size_bytes} B is too large"),
        )),
    }
}

// ---------------------------------------------------------------------------
// Thread cache

/// Per-thread LIFO of stacks of a single size (`usable_bytes`; meaningless
/// while `len == 0`). Only its own thread touches it (thread_local).
struct ThreadCache {
    usable_bytes: usize,
    len: usize,
    bottoms: [usize; THREAD_CACHE_CAP],
}

thread_local! {
    static THREAD_CACHE: RefCell<ThreadCache> = const {
        RefCell::new(ThreadCache { usable_bytes: 0, len: 0, bottoms: [0; THREAD_CACHE_CAP] })
    };
}

impl ThreadCache {
    fn pop(&mut self, usable_bytes: usize) -> Option<usize> {
        if self.len == 0 || self.usable_bytes != usable_bytes {
            return None;
        }
        self.len -= 1;
        Some(self.bottoms[self.len])
    }

    /// Push `bottom`; if the cache is for another size, or full, returns the
    /// stacks the caller must hand to the pool (`bottom` itself, or the
    /// oldest batch).
    fn push(&mut self, usable_bytes: usize, bottom: usize) -> Option<Spill> {
        if self.len == 0 {
            self.usable_bytes = usable_bytes;
        } else if self.usable_bytes != usable_bytes {
            let mut spill = Spill {
                usable_bytes,
                len: 1,
                bottoms: [0; THREAD_CACHE_BATCH],
            };
            spill.bottoms[0] = bottom;
            return Some(spill);
        }
        let mut spill = None;
        if self.len == THREAD_CACHE_CAP {
            // Evict the oldest (coldest) batch from the bottom of the LIFO.
            let mut s = Spill {
                usable_bytes,
                len: THREAD_CACHE_BATCH,
                bottoms: [0; THREAD_CACHE_BATCH],
            };
            s.bottoms
                .copy_from_slice(&self.bottoms[..THREAD_CACHE_BATCH]);
            self.bottoms.copy_within(THREAD_CACHE_BATCH.., 0);
            self.len -= THREAD_CACHE_BATCH;
            spill = Some(s);
        }
        self.bottoms[self.len] = bottom;
        self.len += 1;
        spill
    }
}

impl Drop for ThreadCache {
    /// Thread exit: hand every cached stack back to the pool.
    fn drop(&mut self) {
        for chunk in self.bottoms[..self.len].chunks(THREAD_CACHE_BATCH) {
            release_to_pool(self.usable_bytes, chunk);
        }
        self.len = 0;
    }
}

/// Stacks leaving a thread cache (fixed size: no allocation).
struct Spill {
    usable_bytes: usize,
    len: usize,
    bottoms: [usize; THREAD_CACHE_BATCH],
}

fn release(bottom: usize, usable_bytes: usize) {
    // Thread cache unavailable (thread exiting, or re-entered) → pool directly.
    let spill = THREAD_CACHE
        .try_with(|c| match c.try_borrow_mut() {
            Ok(mut c) => c.push(usable_bytes, bottom),
            Err(_) => Some(Spill::one(usable_bytes, bottom)),
        })
        .unwrap_or_else(|_| Some(Spill::one(usable_bytes, bottom)));
    if let Some(s) = spill {
        release_to_pool(s.usable_bytes, &s.bottoms[..s.len]);
    }
}

impl Spill {
    fn one(usable_bytes: usize, bottom: usize) -> Spill {
        let mut s = Spill {
            usable_bytes,
            len: 1,
            bottoms: [0; THREAD_CACHE_BATCH],
        };
        s.bottoms[0] = bottom;
        s
    }
}

// ---------------------------------------------------------------------------
// Global pool

/// All size classes. Protected by `POOL`; every field of every class is
/// touched only with the lock held, for a few instructions (plus Vec growth
/// and, rarely, a reservation mmap).
struct Pool {
    classes: Vec<SizeClass>,
}

struct SizeClass {
    usable_bytes: usize,
    /// Free, guarded, pages kept. LIFO (last = hottest).
    hot: Vec<usize>,
    /// Free, guarded, pages dropped. LIFO.
    cold: Vec<usize>,
    /// Carved slot *starts* whose guard install failed; retried first.
    unguarded: Vec<usize>,
    /// Uncarved part of the current reservation: slot starts in [next, end).
    next: usize,
    end: usize,
    /// Slots in the next reservation of this class (doubles, capped).
    next_reservation_slots: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    classes: Vec::new(),
});

fn lock_pool() -> MutexGuard<'static, Pool> {
    // Poisoning is impossible in practice (no user code runs under the lock)
    // and the lists stay consistent between statements; ignore it.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn class(&mut self, usable_bytes: usize) -> &mut SizeClass {
        let i = match self
            .classes
            .iter()
            .position(|c| c.usable_bytes == usable_bytes)
        {
            Some(i) => i,
            None => {
                self.classes.push(SizeClass {
                    usable_bytes,
                    hot: Vec::new(),
                    cold: Vec::new(),
                    unguarded: Vec::new(),
                    next: 0,
                    end: 0,
                    next_reservation_slots: FIRST_RESERVATION_SLOTS,
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[i]
    }
}

/// Steps 2–5 of the allocation order (module comment).
fn alloc_slow(usable_bytes: usize) -> io::Result<usize> {
    let slot_bytes = usable_bytes + PAGE_SIZE;
    let slot_start = {
        let mut pool = lock_pool();
        let class = pool.class(usable_bytes);
        if let Some(bottom) = class.hot.pop() {
            refill_thread_cache(class);
            return Ok(bottom);
        }
        if let Some(bottom) = class.cold.pop() {
            return Ok(bottom);
        }
        if let Some(start) = class.unguarded.pop() {
            start
        } else {
            if class.next >= class.end {
                let max_slots = (MAX_RESERVATION_BYTES / slot_bytes).max(1);
                let slots = class.next_reservation_slots.min(max_slots);
                let r = mmap::reserve(slot_bytes, slots)?;
                class.next = r.base;
                class.end = r.base + r.len;
                class.next_reservation_slots = slots.saturating_mul(2).min(max_slots);
            }
            let start = class.next;
            class.next += slot_bytes;
            start
        }
    };
    // A fresh slot: install its guard once, outside the lock.
    if let Err(e) = mmap::install_guard(slot_start) {
        lock_pool().class(usable_bytes).unguarded.push(slot_start);
        return Err(e);
    }
    Ok(slot_start + PAGE_SIZE)
}

/// Move up to a batch of hot stacks into this thread's cache if it is empty.
/// Called with the pool lock held; the thread cache is a different object.
fn refill_thread_cache(class: &mut SizeClass) {
    if class.hot.is_empty() {
        return;
    }
    let _ = THREAD_CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if c.len != 0 {
                return;
            }
            c.usable_bytes = class.usable_bytes;
            let n = class.hot.len().min(THREAD_CACHE_BATCH);
            let from = class.hot.len() - n;
            // Keep LIFO order: the hottest ends up on top of the cache.
            c.bottoms[..n].copy_from_slice(&class.hot[from..]);
            c.len = n;
            class.hot.truncate(from);
        }
    });
}

/// Return `bottoms` (all of `usable_bytes`) to the pool: hot while the hot
/// list has room, otherwise drop their pages (outside the lock) and go cold.
fn release_to_pool(usable_bytes: usize, bottoms: &[usize]) {
    let mut to_cold = [0usize; THREAD_CACHE_BATCH];
    let mut n_cold = 0;
    for chunk in bottoms.chunks(THREAD_CACHE_BATCH) {
        {
            let mut pool = lock_pool();
            let class = pool.class(usable_bytes);
            for &b in chunk {
                if class.hot.len() < HOT_STACKS_PER_SIZE {
                    class.hot.push(b);
                } else {
                    to_cold[n_cold] = b;
                    n_cold += 1;
                }
            }
        }
        if n_cold == 0 {
            continue;
        }
        for &b in &to_cold[..n_cold] {
            mmap::release_pages(b, usable_bytes);
        }
        lock_pool()
            .class(usable_bytes)
            .cold
            .extend_from_slice(&to_cold[..n_cold]);
        n_cold = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::mmap::count_mappings;
    use super::super::mmap::tests::is_guarded;
    use super::*;

    fn fill(s: &Stack, byte: u8) {
        // SAFETY: [bottom, top) is the stack's read/write usable region,
        // owned by `s`.
        unsafe { std::ptr::write_bytes(s.bottom() as *mut u8, byte, s.size_bytes()) };
    }

    #[test]
    fn smoke() {
        let s = alloc(256 * 1024).unwrap();
        assert_eq!(s.size_bytes(), 256 * 1024);
        assert_eq!(s.top() % 16, 0);
        assert_eq!(s.bottom() % PAGE_SIZE, 0);
        assert_eq!(s.top() - s.bottom(), s.size_bytes());
        fill(&s, 0xA5);
        // SAFETY: inside the usable region.
        assert_eq!(unsafe { *((s.top() - 1) as *const u8) }, 0xA5);
        assert!(is_guarded(s.bottom() - 1));
        assert!(is_guarded(s.bottom() - PAGE_SIZE));
        assert!(!is_guarded(s.bottom()));
    }

    #[test]
    fn reuse_returns_same_slot() {
        let size = 48 * 1024;
        let a = alloc(size).unwrap();
        let bottom = a.bottom();
        drop(a);
        let b = alloc(size).unwrap();
        assert_eq!(b.bottom(), bottom);
        // LIFO: with two released, the last one released comes back first.
        let c = alloc(size).unwrap();
        let (bb, cb) = (b.bottom(), c.bottom());
        drop(b);
        drop(c);
        assert_eq!(alloc(size).unwrap().bottom(), cb);
        assert_ne!(bb, cb);
    }

    #[test]
    fn sizes_are_rounded() {
        assert_eq!(alloc(0).unwrap().size_bytes(), MIN_STACK_SIZE);
        assert_eq!(alloc(1).unwrap().size_bytes(), MIN_STACK_SIZE);
        assert_eq!(alloc(MIN_STACK_SIZE).unwrap().size_bytes(), MIN_STACK_SIZE);
        assert_eq!(
            alloc(MIN_STACK_SIZE + 1).unwrap().size_bytes(),
            MIN_STACK_SIZE + PAGE_SIZE
        );
        assert_eq!(alloc(100_000).unwrap().size_bytes(), 25 * PAGE_SIZE);
        assert!(alloc(usize::MAX - 10).is_err());
    }

    #[test]
    fn many_stacks_few_mappings() {
        let before = count_mappings().unwrap();
        let stacks: Vec<Stack> = (0..20_000).map(|_| alloc(64 * 1024).unwrap()).collect();
        let after = count_mappings().unwrap();
        assert!(
            after < before + 200,
            "maps: {before} before, {after} after 20,000 stacks"
        );
        // Every stack is usable and guarded (touch one byte at each end).
        for s in stacks.iter().step_by(97) {
            // SAFETY: inside the stack's usable region.
            unsafe {
                *(s.bottom() as *mut u8) = 1;
                *((s.top() - 1) as *mut u8) = 1;
            }
            assert!(is_guarded(s.bottom() - 1));
        }
        let mut bottoms: Vec<usize> = stacks.iter().map(|s| s.bottom()).collect();
        bottoms.sort_unstable();
        assert!(bottoms
            .windows(2)
            .all(|w| w[1] - w[0] >= 64 * 1024 + PAGE_SIZE));
    }

    /// The design target: a million default-size guarded stacks within the
    /// default vm.max_map_count. Slow-ish (1M guard installs); run with
    /// `cargo test --release --lib million_stacks -- --ignored`.
    #[test]
    #[ignore]
    fn million_stacks() {
        let before = count_mappings().unwrap();
        let stacks: Vec<Stack> = (0..1_000_000).map(|_| alloc(256 * 1024).unwrap()).collect();
        let after = count_mappings().unwrap();
        eprintln!("1,000,000 stacks: {before} -> {after} mappings");
        assert!(after < before + 1000);
        assert!(is_guarded(stacks[999_999].bottom() - 1));
    }

    #[test]
    fn cold_reuse_keeps_guard() {
        let size = 72 * 1024;
        let stacks: Vec<Stack> = (0..300).map(|_| alloc(size).unwrap()).collect();
        for s in &stacks {
            fill(s, 0x5A);
        }
        drop(stacks); // > hot + thread cache: most go cold (MADV_DONTNEED)
        let stacks: Vec<Stack> = (0..300).map(|_| alloc(size).unwrap()).collect();
        let mut zeroed = 0;
        for s in &stacks {
            assert!(is_guarded(s.bottom() - 1));
            // SAFETY: inside the usable region.
            if unsafe { *(s.bottom() as *const u8) } == 0 {
                zeroed += 1;
            }
            fill(s, 1);
        }
        assert!(
            zeroed >= 300 - HOT_STACKS_PER_SIZE - THREAD_CACHE_CAP,
            "{zeroed} cold stacks zeroed"
        );
    }

    #[test]
    fn stress() {
        // Threads allocate, stamp, check and release concurrently: no slot is
        // ever handed to two owners.
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut live: Vec<Stack> = Vec::new();
                    for i in 0..5_000usize {
                        if i % 3 != 2 || live.is_empty() {
                            let s = alloc(20 * 1024).unwrap();
                            // SAFETY: usable region of a stack we own.
                            unsafe {
                                *(s.bottom() as *mut u8) = t;
                                *((s.top() - 1) as *mut u8) = t;
                            }
                            live.push(s);
                        } else {
                            let s = live.swap_remove(i % live.len());
                            // SAFETY: as above.
                            unsafe {
                                assert_eq!(*(s.bottom() as *const u8), t);
                                assert_eq!(*((s.top() - 1) as *const u8), t);
                            }
                        }
                    }
                    for s in &live {
                        // SAFETY: as above.
                        unsafe { assert_eq!(*(s.bottom() as *const u8), t) };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn round_trip_reuses_one_hot_slot() {
        // Speed is measured by the benches; here we check the property that
        // makes the round trip cheap: a hot slot is reused, with no new
        // reservation and no page release in between.
        let size = 256 * 1024;
        let first = alloc(size).unwrap().bottom();
        for _ in 0..10_000 {
            let s = alloc(std::hint::black_box(size)).unwrap();
            assert_eq!(s.bottom(), first);
        }
    }
}
