//! Coroutine stacks: guard-page stacks carved from large reservations, a reuse
//! pool, and the guard-page overflow report.
//!
//! # Problem
//! A million coroutines need a million stacks, each with a guard page so that
//! an overflow is a clean crash with a clear message instead of silent
//! corruption of a neighbour. One `mmap` + `mprotect` per stack costs two
//! syscalls and two VMAs per stack, and `vm.max_map_count` (65530 by default)
//! then caps the process at ~32,000 stacks.
//!
//! # What this module owns
//! - `mmap.rs`: *reservations* — big `MAP_PRIVATE | MAP_ANONYMOUS |
//!   MAP_NORESERVE` read/write mappings, each carved into equal *slots*
//!   (one size class per reservation). A slot is `[guard page][usable pages]`,
//!   guard lowest because stacks grow down. Guards are installed with
//!   `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which does not split the
//!   VMA; on older kernels (EINVAL) we fall back to `mprotect(PROT_NONE)` for
//!   good. Also the lock-free registry of reservation ranges that the fault
//!   handler reads.
//! - `pool.rs`: [`Stack`] (an owned slot; dropping it returns it) and
//!   [`alloc`]. Per-thread cache → per-size hot list (pages kept) → per-size
//!   cold list (pages given back with `MADV_DONTNEED`) → fresh slot from the
//!   current reservation → new reservation (geometric growth, 64 slots
//!   doubling up to 1 GiB).
//! - `overflow.rs`: the process-wide SIGSEGV/SIGBUS handler that recognises
//!   guard-page hits, prints one line and aborts, and chains every other fault
//!   to the handler installed before it; per-thread `sigaltstack`s.
//!
//! # States of a slot
//! | state       | pages          | guard     | owner                          |
//! |-------------|----------------|-----------|--------------------------------|
//! | untouched   | none (NORESERVE) | none    | reservation bump region        |
//! | live        | as used        | installed | one `Stack` value              |
//! | thread-hot  | kept           | installed | one thread's cache             |
//! | hot         | kept           | installed | size class, `POOL` lock        |
//! | cold        | dropped        | installed | size class, `POOL` lock        |
//! | unguarded   | none           | failed    | size class, retried on carve   |
//!
//! # Invariants (and where they are checked)
//! 1. Reservations are never unmapped, so a registry entry stays valid for the
//!    life of the process and the signal handler needs no lock (mmap.rs
//!    `register`).
//! 2. A slot belongs to exactly one size class (its reservation's), so a guard
//!    installed once stays correct for every reuse; `MADV_DONTNEED` is applied
//!    only to the usable region (and does not remove guard markers anyway;
//!    tested in pool.rs `cold_reuse_keeps_guard`).
//! 3. Exactly one owner per slot at a time: `Stack` is not `Clone`, and every
//!    list move happens under `POOL` or inside the owning thread's cache
//!    (pool.rs `stress`).
//! 4. Nothing reachable from the fault handler allocates, locks or panics
//!    (functions documented "Signal context:").
//!
//! # Rejected alternatives
//! - One `mmap` per stack: one syscall + 2 VMAs per stack, max_map_count.
//! - One fixed giant reservation: needs the maximum stack count up front;
//!   geometric reservations give the same VMA economy without a limit.
//! - Freeing cold stacks with `munmap`: would split the reservation VMA and
//!   make the registry mutable from under the signal handler.
//! - `MADV_FREE` for cold pages: RSS does not drop until memory pressure,
//!   which makes "RSS follows the live set" unobservable; DONTNEED is exact.
//!
//! # Caller contract
//! [`alloc`] and dropping a [`Stack`] touch a thread-local cache and take the
//! `POOL` mutex: call them with preemption disabled (scheduler / runtime
//! code), never from a signal handler, and never drop a `Stack` while running
//! on it.

mod mmap;
mod overflow;
mod pool;

#[allow(unused_imports)]
pub(crate) use mmap::{MIN_STACK_SIZE, PAGE_SIZE};
pub(crate) use overflow::{
    ensure_sigaltstack, install_overflow_handler, set_current_name_fn, set_reserved_top,
};
pub(crate) use pool::{alloc, Stack};
