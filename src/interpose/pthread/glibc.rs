//! glibc's side of the pthread hooks (interpose/pthread.rs): the real
//! functions, resolved once with `dlsym(RTLD_NEXT, name)` (never the
//! hooked name), and the few fields of glibc 2.36's x86-64 object layouts
//! the hooks read (mutex owner and kind, condvar flags, rwlock writer,
//! once state), plus the tid glibc believes the caller runs as. Split from
//! interpose/pthread.rs, which holds the hooks' bodies and the design
//! comment; the wait-queue and owner tables and the parking loop are in
//! pthread/park.rs.

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::{pthread_cond_t, pthread_mutex_t, pthread_once_t, pthread_rwlock_t, sem_t, timespec};

// ---- real functions ----

/// Resolves libc's definition of `name` once (sys.rs).
fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    crate::sys::resolve_next(slot, name)
}

macro_rules! real {
    ($name:literal : fn($($a:ty),*) -> $r:ty) => {{
        static SLOT: AtomicUsize = AtomicUsize::new(0);
        let p = resolve(&SLOT, $name);
        // SAFETY: `p` is libc's function of that name, whose C signature
        // is the one spelled here.
        unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($a),*) -> $r>(p) }
    }};
}

pub(super) fn real_mutex_lock() -> unsafe extern "C" fn(*mut pthread_mutex_t) -> c_int {
    real!(c"pthread_mutex_lock": fn(*mut pthread_mutex_t) -> c_int)
}
pub(super) fn real_mutex_trylock() -> unsafe extern "C" fn(*mut pthread_mutex_t) -> c_int {
    real!(c"pthread_mutex_trylock": fn(*mut pthread_mutex_t) -> c_int)
}
pub(super) fn real_mutex_unlock() -> unsafe extern "C" fn(*mut pthread_mutex_t) -> c_int {
    real!(c"pthread_mutex_unlock": fn(*mut pthread_mutex_t) -> c_int)
}
pub(super) type ClockLockFn =
    unsafe extern "C" fn(*mut pthread_mutex_t, libc::clockid_t, *const timespec) -> c_int;
pub(super) fn real_mutex_clocklock() -> ClockLockFn {
    real!(c"pthread_mutex_clocklock": fn(*mut pthread_mutex_t, libc::clockid_t, *const timespec) -> c_int)
}

pub(super) fn real_cond_wait(
) -> unsafe extern "C" fn(*mut pthread_cond_t, *mut pthread_mutex_t) -> c_int {
    real!(c"pthread_cond_wait": fn(*mut pthread_cond_t, *mut pthread_mutex_t) -> c_int)
}
pub(super) type CondClockWaitFn = unsafe extern "C" fn(
    *mut pthread_cond_t,
    *mut pthread_mutex_t,
    libc::clockid_t,
    *const timespec,
) -> c_int;
pub(super) fn real_cond_clockwait() -> CondClockWaitFn {
    real!(c"pthread_cond_clockwait": fn(*mut pthread_cond_t, *mut pthread_mutex_t, libc::clockid_t, *const timespec) -> c_int)
}
pub(super) fn real_cond_timedwait(
) -> unsafe extern "C" fn(*mut pthread_cond_t, *mut pthread_mutex_t, *const timespec) -> c_int {
    real!(c"pthread_cond_timedwait": fn(*mut pthread_cond_t, *mut pthread_mutex_t, *const timespec) -> c_int)
}
pub(super) fn real_cond_signal() -> unsafe extern "C" fn(*mut pthread_cond_t) -> c_int {
    real!(c"pthread_cond_signal": fn(*mut pthread_cond_t) -> c_int)
}
pub(super) fn real_cond_broadcast() -> unsafe extern "C" fn(*mut pthread_cond_t) -> c_int {
    real!(c"pthread_cond_broadcast": fn(*mut pthread_cond_t) -> c_int)
}

pub(super) type RwFn = unsafe extern "C" fn(*mut pthread_rwlock_t) -> c_int;
pub(super) fn real_rw_tryrdlock() -> RwFn {
    real!(c"pthread_rwlock_tryrdlock": fn(*mut pthread_rwlock_t) -> c_int)
}
pub(super) fn real_rw_trywrlock() -> RwFn {
    real!(c"pthread_rwlock_trywrlock": fn(*mut pthread_rwlock_t) -> c_int)
}
pub(super) fn real_rw_rdlock() -> RwFn {
    real!(c"pthread_rwlock_rdlock": fn(*mut pthread_rwlock_t) -> c_int)
}
pub(super) fn real_rw_wrlock() -> RwFn {
    real!(c"pthread_rwlock_wrlock": fn(*mut pthread_rwlock_t) -> c_int)
}
pub(super) fn real_rw_unlock() -> RwFn {
    real!(c"pthread_rwlock_unlock": fn(*mut pthread_rwlock_t) -> c_int)
}
pub(super) type RwClockFn =
    unsafe extern "C" fn(*mut pthread_rwlock_t, libc::clockid_t, *const timespec) -> c_int;
pub(super) fn real_rw_clockrdlock() -> RwClockFn {
    real!(c"pthread_rwlock_clockrdlock": fn(*mut pthread_rwlock_t, libc::clockid_t, *const timespec) -> c_int)
}
pub(super) fn real_rw_clockwrlock() -> RwClockFn {
    real!(c"pthread_rwlock_clockwrlock": fn(*mut pthread_rwlock_t, libc::clockid_t, *const timespec) -> c_int)
}
pub(super) type SemFn = unsafe extern "C" fn(*mut sem_t) -> c_int;
pub(super) fn real_sem_wait() -> SemFn {
    real!(c"sem_wait": fn(*mut sem_t) -> c_int)
}
pub(super) fn real_sem_trywait() -> SemFn {
    real!(c"sem_trywait": fn(*mut sem_t) -> c_int)
}
pub(super) fn real_sem_post() -> SemFn {
    real!(c"sem_post": fn(*mut sem_t) -> c_int)
}
pub(super) fn real_sem_clockwait(
) -> unsafe extern "C" fn(*mut sem_t, libc::clockid_t, *const timespec) -> c_int {
    real!(c"sem_clockwait": fn(*mut sem_t, libc::clockid_t, *const timespec) -> c_int)
}
pub(super) fn real_once(
) -> unsafe extern "C" fn(*mut pthread_once_t, Option<unsafe extern "C" fn()>) -> c_int {
    real!(c"pthread_once": fn(*mut pthread_once_t, Option<unsafe extern "C" fn()>) -> c_int)
}

// ---- glibc 2.36 x86-64 layouts (only the fields read here) ----

/// `pthread_mutex_t`: `__lock` at 0, `__owner` at 8, `__kind` at 16.
pub(super) const MUTEX_OWNER: usize = 8;
const MUTEX_KIND: usize = 16;
const KIND_ROBUST_PI_PP: i32 = 16 | 32 | 64;
/// `pthread_cond_t`: `__wrefs` at 36; bit 0 process-shared, bit 1 the
/// clock is CLOCK_MONOTONIC.
pub(super) const COND_WREFS: usize = 36;
pub(super) const COND_SHARED: i32 = 1;
pub(super) const COND_MONOTONIC: i32 = 2;
/// `pthread_rwlock_t`: `__cur_writer` (tid of the write holder) at 24.
pub(super) const RWLOCK_CUR_WRITER: usize = 24;
/// `pthread_once_t` (an int): bit 0 in progress, bit 1 done (bits above:
/// the fork generation).
pub(super) const ONCE_IN_PROGRESS: i32 = 1;
pub(super) const ONCE_DONE: i32 = 2;

/// # Safety
/// `p + off` must be a live, 4-aligned i32 field of a glibc object.
pub(super) unsafe fn field(p: *const u8, off: usize) -> &'static AtomicI32 {
    // SAFETY: caller's contract; glibc reads these fields atomically too.
    unsafe { &*(p.add(off) as *const AtomicI32) }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Normal,
    Recursive,
    ErrorCheck,
    /// Robust, priority-inheritance or priority-protected: not emulated.
    Unsupported,
}

pub(super) fn mutex_kind(m: *mut pthread_mutex_t) -> Kind {
    // SAFETY: `m` is a live mutex (the caller's contract with libc).
    let k = unsafe { field(m.cast(), MUTEX_KIND) }.load(Ordering::Relaxed);
    if k & KIND_ROBUST_PI_PP != 0 {
        return Kind::Unsupported;
    }
    match k & 3 {
        1 => Kind::Recursive,
        2 => Kind::ErrorCheck,
        _ => Kind::Normal, // timed (default) and adaptive
    }
}

/// The kernel tid glibc believes the caller runs as: the `tid` field of
/// the calling thread's glibc descriptor (what glibc itself compares with
/// a mutex's owner), at the offset wait.rs finds once; `gettid()` if that
/// offset is unknown. Read every time, not cached: a forked child has a
/// new tid.
pub(super) fn carrier_tid() -> i32 {
    match super::super::wait::tid_offset() {
        // SAFETY: pthread_self() is the caller's live descriptor and `off`
        // a 4-aligned offset inside it (wait.rs); glibc and the kernel
        // write the field, hence the atomic read.
        Some(off) => unsafe {
            (*((libc::pthread_self() as *const u8).add(off) as *const AtomicI32))
                .load(Ordering::Relaxed)
        },
        // SAFETY: gettid has no preconditions.
        None => unsafe { libc::gettid() },
    }
}

// ---- barriers ----

pub(super) fn real_barrier_wait() -> unsafe extern "C" fn(*mut libc::pthread_barrier_t) -> c_int {
    real!(c"pthread_barrier_wait": fn(*mut libc::pthread_barrier_t) -> c_int)
}

// ---- spin locks ----

pub(super) fn real_spin_lock() -> unsafe extern "C" fn(*mut c_int) -> c_int {
    real!(c"pthread_spin_lock": fn(*mut c_int) -> c_int)
}
pub(super) fn real_spin_trylock() -> unsafe extern "C" fn(*mut c_int) -> c_int {
    real!(c"pthread_spin_trylock": fn(*mut c_int) -> c_int)
}
