//! Test-only package: third-party C code linked into the executable,
//! exercised from coroutines. The tests are in `tests/`; this library only
//! declares the small C helpers that `build.rs` compiles from `csrc/`
//! (glibc pthread users, as a `-sys` crate's bundled sources would be).

/// The C helpers of `csrc/pthread_helpers.c`.
pub mod c {
    use std::ffi::{c_int, c_long, c_uint};

    /// Opaque: only ever handled by pointer.
    #[repr(C)]
    pub struct PthreadMutex {
        _opaque: [u8; 0],
    }

    extern "C" {
        pub fn cpt_rec_critical(us: c_uint) -> c_int;
        pub fn cpt_rec_total() -> c_long;
        pub fn cpt_rec_max_inside() -> c_int;
        /// 0: normal, 1: recursive, 2: error-checking (static initialisers).
        pub fn cpt_mutex(which: c_int) -> *mut PthreadMutex;
        pub fn cpt_lock(m: *mut PthreadMutex) -> c_int;
        pub fn cpt_trylock(m: *mut PthreadMutex) -> c_int;
        pub fn cpt_unlock(m: *mut PthreadMutex) -> c_int;
        pub fn cpt_timedlock_ms(m: *mut PthreadMutex, ms: c_long) -> c_int;
        pub fn cpt_chan_put(v: c_long);
        pub fn cpt_chan_get() -> c_long;
        pub fn cpt_gate_wait();
        pub fn cpt_gate_waiting() -> c_int;
        pub fn cpt_gate_open();
        pub fn cpt_cond_timeout_ms(ms: c_long, monotonic: c_int) -> c_int;
        pub fn cpt_rw_read(us: c_uint);
        pub fn cpt_rw_write(us: c_uint);
        pub fn cpt_rw_writes() -> c_long;
        pub fn cpt_rw_bad() -> c_int;
        pub fn cpt_rw_max_readers() -> c_int;
        pub fn cpt_sem_init(v: c_uint);
        pub fn cpt_sem_wait() -> c_int;
        pub fn cpt_sem_post() -> c_int;
        pub fn cpt_sem_timedwait_ms(ms: c_long) -> c_int;
        pub fn cpt_once() -> c_int;
        pub fn cpt_once_runs() -> c_int;
    }
}
