//! Test-only package: coroutines with C code linked into the executable.
//!
//! Its tests (tests/) put mimalloc and jemalloc in as global allocators,
//! run a C busy loop (csrc/spin.c, compiled by build.rs) and a Rust
//! callback called from C inside coroutines under a short time slice, and
//! check that the runtime never preempts inside C code (safe points,
//! `src/preempt/zones.rs` of the main crate) while it still preempts Rust
//! code. It is its own package so that the C dependencies build once, only
//! here. The library part is the FFI surface of csrc/spin.c.

extern "C" {
    /// Spins `iters` rounds inside per-OS-thread ownership `me` (non-zero);
    /// counts a violation if another caller owns the thread meanwhile.
    pub fn tp_spin(me: u64, iters: u64) -> u64;
    /// Calls `cb(arg)` while owning the OS thread as `me`.
    pub fn tp_with_callback(me: u64, cb: extern "C" fn(u64) -> u64, arg: u64) -> u64;
    /// Violations counted so far (re-entry on one thread while owned).
    pub fn tp_violations() -> u64;
}
