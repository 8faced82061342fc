//! Waiting for signals from a coroutine: `sigwait`, `sigwaitinfo`,
//! `sigtimedwait`, `sigsuspend` and `pause` park the coroutine instead of
//! blocking its executor.
//!
//! ## Signal masks in this runtime
//! A signal mask belongs to an OS thread. Executors, the monitor and helper
//! threads inherit the mask of the thread that started them: the thread
//! that started the runtime (its first `spawn`), or the executor that
//! submitted a helper's first job. A coroutine shares its executor's mask
//! (`pthread_sigmask` in a coroutine changes the executor's; give such a
//! coroutine `Builder::dedicated_thread`). So the usual pattern — block
//! the signals in `main` before starting any thread or coroutine, then
//! wait for them in one place — leaves every thread of the process
//! blocking them, and a *process-directed* signal (`kill`, `sigqueue` to
//! the pid, a terminal's signal) stays pending for the process until some
//! thread waits for it.
//!
//! ## Protocol
//! In coroutine user code:
//! 1. *Inline try*: glibc's `sigtimedwait` with a zero timeout on the
//!    executor thread takes a signal of the set already pending for the
//!    process or for this executor thread (a `raise` just before the
//!    wait). SIGURG — the runtime's preemption signal, sent to executor
//!    threads — is left out of this try.
//! 2. *Helper*: otherwise glibc's own function runs on a helper thread of
//!    the uncapped pool (a signal wait has no bound) while the coroutine
//!    parks. For the call the helper takes the executor's signal mask plus
//!    the waited set (so outside the kernel's wait window it behaves like
//!    the caller's thread and never runs a handler of a waited signal),
//!    and restores its own afterwards. A process-directed signal of the
//!    set that arrives meanwhile is delivered to the waiting helper (the
//!    kernel picks a thread that does not block it, and inside
//!    `sigtimedwait` the waited set is unblocked for that thread only).
//!    `sigwait`'s EINTR retry, `sigtimedwait`'s result (the signal number,
//!    the siginfo with glibc's SI_TKILL folding, EAGAIN after the timeout)
//!    are glibc's. The timeout counts from when the helper starts the call
//!    (a few microseconds late at most).
//! 3. `sigsuspend(mask)`: if a signal that `mask` leaves unblocked is
//!    already pending on the executor thread, the real call runs inline
//!    (it returns at once after the handler); otherwise, and always for
//!    `pause()`, glibc's call runs on a helper whose mask is the
//!    executor's for the call (`sigsuspend` then swaps in `mask`). The handler then runs on the helper
//!    thread (it must be async-signal-safe anyway; thread-locals it touches
//!    are the helper's) and the call returns -1/EINTR to the coroutine.
//!
//! Plain threads, runtime code and a panicking coroutine make the real
//! call.
//!
//! ## Thread-directed signals
//! A signal sent to one thread (`pthread_kill` or `pthread_sigqueue` of a
//! coroutine's `pthread_t`, `tgkill`, `raise` in a coroutine) goes to the
//! executor thread that ran that coroutine last (a coroutine's descriptor
//! carries its carrier's tid), not to the helper that waits: a coroutine
//! parked in `sigwait` does not see it. Such a signal stays pending on the
//! executor thread (if blocked there) and is taken by the next inline try
//! of any coroutine that waits for it on that executor, or delivered when
//! the executor unblocks it. Use process-directed signals (`kill` to the
//! pid) to reach a coroutine waiting in `sigwait`; a coroutine that must
//! receive thread-directed signals needs `Builder::dedicated_thread`.
//!
//! Other differences from a thread: EINTR from `sigtimedwait` (a handled
//! signal outside the set interrupting the wait) is seen only when that
//! signal was delivered to the helper; a coroutine waiting in `sigsuspend`
//! is woken only by a signal delivered to its helper (the kernel may pick
//! any thread that does not block it — as for a thread of a multi-threaded
//! program).

use std::ffi::CStr;
use std::sync::atomic::AtomicUsize;

use libc::{c_int, siginfo_t, sigset_t, timespec};

use crate::sched;
use crate::sys::{self, sc4};

/// The kernel's sigset size (64 signals).
const KSIGSET: usize = 8;

fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    sys::resolve_next(slot, name)
}

type TimedWaitFn = unsafe extern "C" fn(*const sigset_t, *mut siginfo_t, *const timespec) -> c_int;
type SigwaitFn = unsafe extern "C" fn(*const sigset_t, *mut c_int) -> c_int;
type SuspendFn = unsafe extern "C" fn(*const sigset_t) -> c_int;
type PauseFn = unsafe extern "C" fn() -> c_int;

fn real_timedwait() -> TimedWaitFn {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    let p = resolve(&SLOT, c"sigtimedwait");
    // SAFETY: `p` is glibc's sigtimedwait, of this signature.
    unsafe { std::mem::transmute::<usize, TimedWaitFn>(p) }
}

fn real_sigwait() -> SigwaitFn {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    let p = resolve(&SLOT, c"sigwait");
    // SAFETY: `p` is glibc's sigwait, of this signature.
    unsafe { std::mem::transmute::<usize, SigwaitFn>(p) }
}

fn real_sigsuspend() -> SuspendFn {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    let p = resolve(&SLOT, c"sigsuspend");
    // SAFETY: `p` is glibc's sigsuspend, of this signature.
    unsafe { std::mem::transmute::<usize, SuspendFn>(p) }
}

fn real_pause() -> PauseFn {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    let p = resolve(&SLOT, c"pause");
    // SAFETY: `p` is glibc's pause, of this signature.
    unsafe { std::mem::transmute::<usize, PauseFn>(p) }
}

/// An empty signal set.
fn empty_set() -> sigset_t {
    // SAFETY: all-zero bytes are a valid (empty) sigset_t.
    unsafe { std::mem::zeroed() }
}

/// The calling thread's signal mask (kernel view).
fn thread_mask() -> sigset_t {
    let mut old = empty_set();
    // SAFETY: a null new set only reads the mask into our own buffer.
    unsafe {
        sc4(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK as usize,
            0,
            &mut old as *mut sigset_t as usize,
            KSIGSET,
        )
    };
    old
}

/// Sets the calling thread's mask to `new` (never blocking glibc's
/// internal signals 32 and 33, as `pthread_sigmask` guarantees); returns
/// the old one.
fn set_thread_mask(new: &sigset_t) -> sigset_t {
    let mut new = *new;
    let mut old = empty_set();
    // SAFETY: our own sigset buffers; sigdelset of valid signal numbers.
    unsafe {
        libc::sigdelset(&mut new, 32);
        libc::sigdelset(&mut new, 33);
        sc4(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            &new as *const sigset_t as usize,
            &mut old as *mut sigset_t as usize,
            KSIGSET,
        )
    };
    old
}

/// `a ∪ b`.
fn union(a: &sigset_t, b: &sigset_t) -> sigset_t {
    let mut r = *a;
    for n in 1..=64 {
        // SAFETY: valid signal numbers on our own sets.
        unsafe {
            if libc::sigismember(b, n) == 1 {
                libc::sigaddset(&mut r, n);
            }
        }
    }
    r
}

/// Runs `f` on a helper of the uncapped pool with the calling executor's
/// mask plus `extra` blocked; the helper's own mask is restored after.
fn on_helper<R: Send>(extra: &sigset_t, f: impl FnOnce() -> R + Send) -> R {
    let mask = union(&thread_mask(), extra);
    super::offload::offload(
        super::offload::Class::Unbounded,
        crate::observe::wait::Job::Signal,
        move || {
            let own = set_thread_mask(&mask);
            let r = f();
            let e = sys::errno();
            set_thread_mask(&own);
            sys::set_errno(e);
            r
        },
    )
}

/// The inline try (module doc, step 1): a signal of `set` (minus SIGURG)
/// pending now, or None (EAGAIN). Some(-1) with errno for other errors.
fn try_now(set: *const sigset_t, info: *mut siginfo_t) -> Option<c_int> {
    // SAFETY: the caller's set (sigtimedwait's contract), copied.
    let mut s = unsafe { *set };
    // SAFETY: our own copy; SIGURG is a valid signal number.
    unsafe { libc::sigdelset(&mut s, libc::SIGURG) };
    let zero = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let e = sys::errno();
    // SAFETY: glibc's function with valid set and timeout and the caller's
    // info pointer (null or writable).
    let r = unsafe { real_timedwait()(&s, info, &zero) };
    if r < 0 && matches!(sys::errno(), libc::EAGAIN | libc::EINTR) {
        sys::set_errno(e);
        return None;
    }
    Some(r)
}

/// `sigtimedwait` (and `sigwaitinfo` with a null timeout), libc convention.
pub(crate) fn sigtimedwait(
    set: *const sigset_t,
    info: *mut siginfo_t,
    timeout: *const timespec,
) -> c_int {
    if set.is_null()
        || !sched::in_coroutine_user_code()
        || (!timeout.is_null()
            // SAFETY: non-null here, and a non-null timeout is the caller's
            // timespec (libc contract of sigtimedwait).
            && unsafe { (*timeout).tv_sec == 0 && (*timeout).tv_nsec == 0 })
    {
        // SAFETY: glibc's function with the caller's arguments.
        return unsafe { real_timedwait()(set, info, timeout) };
    }
    if let Some(r) = try_now(set, info) {
        return r;
    }
    // SAFETY: the caller's set, copied.
    let waited = unsafe { *set };
    let (s, i, t) = (set as usize, info as usize, timeout as usize);
    on_helper(&waited, move || {
        // SAFETY: the caller's arguments, valid while it is parked (until
        // this returns).
        unsafe {
            real_timedwait()(
                s as *const sigset_t,
                i as *mut siginfo_t,
                t as *const timespec,
            )
        }
    })
}

/// `sigwait`: 0 and the signal in `*sig`, or an error number.
pub(crate) fn sigwait(set: *const sigset_t, sig: *mut c_int) -> c_int {
    if set.is_null() || sig.is_null() || !sched::in_coroutine_user_code() {
        // SAFETY: glibc's function with the caller's arguments.
        return unsafe { real_sigwait()(set, sig) };
    }
    let e = sys::errno();
    match try_now(set, std::ptr::null_mut()) {
        Some(r) if r > 0 => {
            // SAFETY: the caller's writable int (sigwait's contract).
            unsafe { *sig = r };
            return 0;
        }
        Some(_) => {
            let err = sys::errno();
            sys::set_errno(e);
            return err;
        }
        None => {}
    }
    // SAFETY: the caller's set, copied.
    let waited = unsafe { *set };
    let (s, g) = (set as usize, sig as usize);
    on_helper(&waited, move || {
        // SAFETY: the caller's arguments, valid while it is parked.
        unsafe { real_sigwait()(s as *const sigset_t, g as *mut c_int) }
    })
}

/// Whether a signal that `mask` leaves unblocked is pending on this thread
/// (its own or the process's pending set).
fn deliverable_pending(mask: &sigset_t) -> bool {
    let mut pending = empty_set();
    // SAFETY: our own buffer.
    unsafe {
        sc4(
            libc::SYS_rt_sigpending,
            &mut pending as *mut sigset_t as usize,
            KSIGSET,
            0,
            0,
        )
    };
    (1..=64).any(|n| {
        // SAFETY: valid signal numbers on our own sets.
        unsafe { libc::sigismember(&pending, n) == 1 && libc::sigismember(mask, n) != 1 }
    })
}

/// `sigsuspend`, libc convention (always -1/EINTR once a handler ran).
pub(crate) fn sigsuspend(mask: *const sigset_t) -> c_int {
    if mask.is_null() || !sched::in_coroutine_user_code() {
        // SAFETY: glibc's function with the caller's argument.
        return unsafe { real_sigsuspend()(mask) };
    }
    // SAFETY: the caller's set, copied.
    let m = unsafe { *mask };
    if deliverable_pending(&m) {
        // SAFETY: as above; returns as soon as the pending signal's
        // handler ran.
        return unsafe { real_sigsuspend()(mask) };
    }
    let p = mask as usize;
    on_helper(&empty_set(), move || {
        // SAFETY: the caller's set, valid while it is parked.
        unsafe { real_sigsuspend()(p as *const sigset_t) }
    })
}

/// `pause`, libc convention.
pub(crate) fn pause() -> c_int {
    if !sched::in_coroutine_user_code() {
        // SAFETY: no arguments.
        return unsafe { real_pause()() };
    }
    // SAFETY: no arguments.
    on_helper(&empty_set(), || unsafe { real_pause()() })
}
