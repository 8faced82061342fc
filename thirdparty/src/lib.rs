//! Test-only package: third-party C code linked into the executable,
//! exercised from coroutines. It is its own package so that the C
//! dependencies (mimalloc, jemalloc, zlib, bundled SQLite) build once,
//! only here. The tests are in `tests/`: global allocators, a C busy loop
//! and a Rust callback called from C under a short time slice (the
//! runtime never preempts inside C code), SQLite and C pthread users. This
//! library is the FFI surface of the small C helpers `build.rs` compiles
//! from `csrc/`.

extern "C" {
    /// Spins `iters` rounds inside per-OS-thread ownership `me` (non-zero);
    /// counts a violation if another caller owns the thread meanwhile.
    pub fn tp_spin(me: u64, iters: u64) -> u64;
    /// Calls `cb(arg)` while owning the OS thread as `me`.
    pub fn tp_with_callback(me: u64, cb: extern "C" fn(u64) -> u64, arg: u64) -> u64;
    /// Violations counted so far (re-entry on one thread while owned).
    pub fn tp_violations() -> u64;
}

/// Safe wrappers of `csrc/fortified.c`, C code built with
/// `_FORTIFY_SOURCE=2`: each reads or polls one fd through glibc's checked
/// entry point and returns the sum of the bytes read (or poll's count), or
/// `-errno`. Any fd number is safe to pass (a bad one gives `-EBADF`).
pub mod fortified {
    use std::ffi::{c_int, c_long, c_ulong};

    mod ffi {
        use std::ffi::{c_int, c_long, c_ulong};
        extern "C" {
            pub fn ftf_read(fd: c_int, n: c_ulong) -> c_long;
            pub fn ftf_recv(fd: c_int, n: c_ulong) -> c_long;
            pub fn ftf_pread(fd: c_int, n: c_ulong, off: c_long) -> c_long;
            pub fn ftf_poll_in(fd: c_int, nfds: c_ulong, timeout_ms: c_int) -> c_int;
        }
    }

    /// `read(fd, buf, min(n, 256))` in fortified C (`__read_chk`).
    pub fn read(fd: c_int, n: usize) -> i64 {
        // SAFETY: the C function reads at most `n` bytes into its own
        // 256-byte stack buffer, and `n` is clamped to 256 here; the fd is
        // only passed to the kernel.
        unsafe { ffi::ftf_read(fd, n.min(256) as c_ulong) as i64 }
    }

    /// `recv(fd, buf, min(n, 256), 0)` in fortified C (`__recv_chk`).
    pub fn recv(fd: c_int, n: usize) -> i64 {
        // SAFETY: as `read`.
        unsafe { ffi::ftf_recv(fd, n.min(256) as c_ulong) as i64 }
    }

    /// `pread(fd, buf, min(n, 256), off)` in fortified C (`__pread64_chk`).
    pub fn pread(fd: c_int, n: usize, off: i64) -> i64 {
        // SAFETY: as `read`.
        unsafe { ffi::ftf_pread(fd, n.min(256) as c_ulong, off as c_long) as i64 }
    }

    /// `poll` for input on `fd` (the first of `nfds` <= 4 entries, the
    /// others unused) in fortified C (`__poll_chk`).
    pub fn poll_in(fd: c_int, nfds: usize, timeout_ms: i32) -> i32 {
        // SAFETY: the C function polls its own 4-entry stack array, and
        // `nfds` is clamped to 4 here.
        unsafe { ffi::ftf_poll_in(fd, nfds.min(4) as c_ulong, timeout_ms) }
    }
}

/// Safe wrappers of the C helpers of `csrc/pthread_helpers.c`: each works
/// on static objects of the C file and has no preconditions, except that
/// `sem_*` need `sem_init` first, `barrier_wait` needs `barrier_init` and
/// `spin_critical` needs `spin_init`.
pub mod c {
    use std::ffi::{c_int, c_long, c_uint};

    mod ffi {
        use std::ffi::{c_int, c_long, c_uint, c_void};
        extern "C" {
            pub fn cpt_rec_critical(us: c_uint) -> c_int;
            pub fn cpt_rec_total() -> c_long;
            pub fn cpt_rec_max_inside() -> c_int;
            pub fn cpt_mutex(which: c_int) -> *mut c_void;
            pub fn cpt_lock(m: *mut c_void) -> c_int;
            pub fn cpt_trylock(m: *mut c_void) -> c_int;
            pub fn cpt_unlock(m: *mut c_void) -> c_int;
            pub fn cpt_timedlock_ms(m: *mut c_void, ms: c_long) -> c_int;
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
            pub fn cpt_barrier_init(n: c_uint);
            pub fn cpt_barrier_wait() -> c_int;
            pub fn cpt_barrier_serials() -> c_int;
            pub fn cpt_spin_init();
            pub fn cpt_spin_critical(us: c_uint) -> c_int;
            pub fn cpt_spin_total() -> c_long;
            pub fn cpt_spin_max_inside() -> c_int;
        }
    }

    macro_rules! wrap {
        ($($name:ident => $ffi:ident ($($a:ident: $t:ty),*) $(-> $r:ty)?;)*) => {$(
            pub fn $name($($a: $t),*) $(-> $r)? {
                // SAFETY: the C helper only touches its own static objects
                // (pthread objects with static initialisers; the semaphore,
                // the barrier and the spin lock are initialised by
                // `sem_init`, `barrier_init` and `spin_init`, which the
                // tests call first).
                unsafe { ffi::$ffi($($a),*) }
            }
        )*};
    }

    wrap! {
        rec_critical => cpt_rec_critical(us: c_uint) -> c_int;
        rec_total => cpt_rec_total() -> c_long;
        rec_max_inside => cpt_rec_max_inside() -> c_int;
        chan_put => cpt_chan_put(v: c_long);
        chan_get => cpt_chan_get() -> c_long;
        gate_wait => cpt_gate_wait();
        gate_waiting => cpt_gate_waiting() -> c_int;
        gate_open => cpt_gate_open();
        cond_timeout_ms => cpt_cond_timeout_ms(ms: c_long, monotonic: c_int) -> c_int;
        rw_read => cpt_rw_read(us: c_uint);
        rw_write => cpt_rw_write(us: c_uint);
        rw_writes => cpt_rw_writes() -> c_long;
        rw_bad => cpt_rw_bad() -> c_int;
        rw_max_readers => cpt_rw_max_readers() -> c_int;
        sem_init => cpt_sem_init(v: c_uint);
        sem_wait => cpt_sem_wait() -> c_int;
        sem_post => cpt_sem_post() -> c_int;
        sem_timedwait_ms => cpt_sem_timedwait_ms(ms: c_long) -> c_int;
        once => cpt_once() -> c_int;
        once_runs => cpt_once_runs() -> c_int;
        barrier_init => cpt_barrier_init(n: c_uint);
        barrier_wait => cpt_barrier_wait() -> c_int;
        barrier_serials => cpt_barrier_serials() -> c_int;
        spin_init => cpt_spin_init();
        spin_critical => cpt_spin_critical(us: c_uint) -> c_int;
        spin_total => cpt_spin_total() -> c_long;
        spin_max_inside => cpt_spin_max_inside() -> c_int;
    }

    /// The C file's static mutexes, by their static initialiser.
    #[derive(Clone, Copy, Debug)]
    pub enum Mutex {
        /// `PTHREAD_MUTEX_INITIALIZER`
        Normal = 0,
        /// `PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP`
        Recursive = 1,
        /// `PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP`
        ErrorCheck = 2,
    }

    impl Mutex {
        fn ptr(self) -> *mut std::ffi::c_void {
            // SAFETY: returns the address of a static mutex.
            unsafe { ffi::cpt_mutex(self as c_int) }
        }
        /// `pthread_mutex_lock` called from C.
        pub fn lock(self) -> c_int {
            // SAFETY: a static, initialised mutex.
            unsafe { ffi::cpt_lock(self.ptr()) }
        }
        /// `pthread_mutex_trylock` called from C.
        pub fn trylock(self) -> c_int {
            // SAFETY: a static, initialised mutex.
            unsafe { ffi::cpt_trylock(self.ptr()) }
        }
        /// `pthread_mutex_unlock` called from C (errors are returned, as
        /// glibc reports them: unlocking is safe whoever calls it for the
        /// error-checking and recursive kinds; the tests unlock the
        /// normal one only while holding it).
        pub fn unlock(self) -> c_int {
            // SAFETY: a static, initialised mutex.
            unsafe { ffi::cpt_unlock(self.ptr()) }
        }
        /// `pthread_mutex_timedlock` with a deadline `ms` from now.
        pub fn timedlock_ms(self, ms: c_long) -> c_int {
            // SAFETY: a static, initialised mutex.
            unsafe { ffi::cpt_timedlock_ms(self.ptr(), ms) }
        }
    }
}
