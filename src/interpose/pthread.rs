//! pthread synchronisation for C code linked into the executable: a
//! coroutine that must wait for a `pthread_mutex_t`, `pthread_cond_t`,
//! `pthread_rwlock_t`, `sem_t` or `pthread_once_t` parks instead of
//! blocking its executor.
//!
//! Problem: glibc's `pthread_mutex_lock` & co. wait with inline futex
//! system calls that no hook sees. Coroutines of one executor share its OS
//! thread, so a coroutine blocked there stops the executor, and the holder
//! — a sibling that was preempted or parked on that executor — can never
//! run to release it (bundled SQLite with 32 coroutines hung for good).
//!
//! ## What this file owns
//! The behaviour of the hooked pthread/semaphore entry points (their
//! `#[no_mangle]` shims in interpose/mod.rs call the functions here), a process-wide
//! *wait-queue table* (address -> FIFO of parked coroutines) and an
//! *owner table* (mutex or rwlock address -> owning coroutine).
//! Split by concern: this file holds the hooks' bodies for mutexes,
//! condvars, rwlocks, once, barriers and spin locks; the semaphore hooks
//! (`sem_wait`, `sem_clockwait`, `sem_post`) are in pthread/sem.rs; the
//! two tables and the parking loop (`park_until`) are in pthread/park.rs;
//! glibc's real functions and the object layouts read here are in
//! pthread/glibc.rs.
//!
//! ## Protocol: glibc's objects, glibc's own code, coroutines parked beside
//! The objects keep glibc 2.36's layout and protocol untouched: every
//! acquisition and release is done by glibc's real function, resolved once
//! with `dlsym(RTLD_NEXT, name)` (never the hooked name, which is this
//! file). So code that is not hooked (glibc-internal users, anything
//! calling libc's functions directly) and plain threads interoperate.
//!
//! Who takes which path (decided by `sched::in_coroutine_user_code()`):
//! - *Plain threads, runtime code, a panicking coroutine*: the real call,
//!   blocking in the kernel as usual; a release (unlock, post) then also
//!   wakes the coroutines queued on the object.
//! - *A coroutine in user code*, for an acquisition that may wait: the
//!   real non-blocking variant (`trylock`, `tryrdlock`, `sem_trywait`);
//!   when it fails with EBUSY/EAGAIN the coroutine (1) registers in the
//!   wait queue of the object's address, (2) retries the non-blocking call
//!   (a release between the first try and the registration is not lost),
//!   (3) parks until woken by a hooked release or until a short re-check
//!   timer (1 ms doubling to 32 ms) fires — the timer is what notices a
//!   release done by code that does not reach the hooks (it only wakes
//!   kernel waiters) — then loops. A coroutine that succeeds after having
//!   been woken passes the wake on, so no wake is swallowed.
//! - *Releases* (hooked unlock/post from anyone): the real release, then
//!   a SeqCst fence and a look at the queue's waiter count: one coroutine
//!   is woken for a mutex or semaphore, all for a rwlock.
//!   Registration is a SeqCst RMW followed by a SeqCst fence before the
//!   retry, so with the release's fence this is a store-buffering pair:
//!   either the retry sees the release or the releaser sees the waiter.
//!
//! ## Ownership is per coroutine
//! glibc records the *thread id* as the owner of recursive and
//! error-checking mutexes (and of a write-locked rwlock); coroutines of one
//! executor share it, and with migration a coroutine may unlock on another
//! thread than it locked on. So for those kinds, when a coroutine holds
//! the object the owner table maps its address to the coroutine id (and,
//! for recursive mutexes, the recursion count: glibc only ever sees one
//! level). A sibling coroutine finding the object owned by another
//! coroutine waits (it must not call the real `trylock`, which would see
//! "already owned by this tid"); it also waits when glibc's owner field is
//! the carrier's tid without a table entry (locked by non-hooked code that
//! ran on this thread). Unlocking by a coroutine that does not own it is
//! EPERM; relocking an error-checking mutex it owns is EDEADLK. Before the
//! final real unlock the owner field is set to the current carrier's tid
//! (we own the object, so the write is ours), so glibc's own owner check
//! passes after a migration.
//!
//! ## Condition variables
//! glibc's condvar protocol (`__g_signals`, groups, `__wrefs`) is not
//! shared with parked coroutines: a coroutine waiting in
//! `pthread_cond_(timed|clock)wait` registers in the wait queue of the
//! condvar's address, releases the mutex through the hooks, parks, and
//! re-acquires the mutex through the hooks. `pthread_cond_signal` wakes
//! one queued coroutine *and* calls the real signal (waking one thread
//! waiting in glibc, if any — POSIX allows waking more than one);
//! `broadcast` wakes all of both. Signals and broadcasts from plain
//! threads and coroutines reach both kinds of waiter. Limit: a signal
//! issued by code that does not reach the hooks (glibc-internal code, a
//! library calling libc's function directly) only reaches threads: a
//! coroutine waiting on such a condvar waits for the next hooked signal.
//! Process-shared condvars (`PTHREAD_PROCESS_SHARED`) and robust, PI and
//! priority-protected mutexes are not emulated: coroutines take the real
//! (blocking) call, and the blocked-executor detector copes.
//!
//! ## Limits
//! - Only callers that reach these symbols are covered: the executable's
//!   own code (Rust and statically linked C: `-sys` crates with bundled
//!   sources) and shared libraries whose PLT binds to the executable's
//!   exported definitions. glibc's internal locking never reaches them.
//! - A coroutine blocked on an object held by non-hooked code notices the
//!   release within the re-check interval (≤ 32 ms), not at once.
//! - `pthread_barrier_wait` parks the coroutine but runs glibc's wait on
//!   a helper thread (one per waiting coroutine); robust/PI/PP mutexes
//!   still block.
//! - `pthread_spin_lock` does not park (a spin lock has no waiters to
//!   wake): a coroutine that finds it held yields between tries (see
//!   `spin_lock`), so a holder parked on the same executor runs; the
//!   waiter keeps its executor busy while nothing else is ready.
//! - An owner-table entry lives from the hooked acquisition to the hooked
//!   release: a mutex locked by a coroutine through the hooks but unlocked
//!   by non-hooked code keeps its entry (siblings then wait for good), as
//!   does a coroutine that ends holding one (as a thread would).
//! - `pthread_once`: two coroutines that both find the routine not started
//!   race into glibc's function; the loser waits inside it, blocking its
//!   executor until the routine returns.
//! - Parks count as ordinary parks in `stats()` (`executors[i].parks`).

mod glibc;
mod park;
mod sem;

/// The coroutine id owning the mutex or rwlock at `addr` (owner table).
pub(crate) fn lock_owner(addr: usize) -> Option<u64> {
    park::owner_of(addr).map(|(id, _)| id)
}

use std::ffi::c_int;
use std::sync::atomic::Ordering;
use std::time::Instant;

use libc::{pthread_cond_t, pthread_mutex_t, pthread_once_t, pthread_rwlock_t, timespec};

use super::futex::deadline_of;
use crate::observe::wait::PthreadKind;
use crate::reactor::{timers, Waker};
use crate::sched::{self, NoPreempt, WaitReason};
use glibc::{
    carrier_tid, field, mutex_kind, real_barrier_wait, real_cond_broadcast, real_cond_clockwait,
    real_cond_signal, real_cond_timedwait, real_cond_wait, real_mutex_clocklock, real_mutex_lock,
    real_mutex_trylock, real_mutex_unlock, real_once, real_rw_clockrdlock, real_rw_clockwrlock,
    real_rw_rdlock, real_rw_tryrdlock, real_rw_trywrlock, real_rw_unlock, real_rw_wrlock,
    real_spin_lock, real_spin_trylock, Kind, COND_MONOTONIC, COND_SHARED, COND_WREFS, MUTEX_OWNER,
    ONCE_DONE, ONCE_IN_PROGRESS, RWLOCK_CUR_WRITER,
};
use park::{inside_allocator, owner_of, park_until, register, set_owner, unregister, wake};
pub(crate) use sem::{sem_clockwait, sem_post, sem_wait};

// ---- mutexes ----

/// One non-blocking acquisition attempt by coroutine `me`. None: busy.
/// `try_only`: for `trylock` (an error-checking mutex we own is EBUSY
/// there, EDEADLK for a lock, as in glibc).
fn mutex_attempt(m: *mut pthread_mutex_t, kind: Kind, me: u64, try_only: bool) -> Option<c_int> {
    let addr = m as usize;
    if kind != Kind::Normal {
        match owner_of(addr) {
            Some((id, n)) if id == me => {
                return Some(if kind == Kind::ErrorCheck {
                    if try_only {
                        libc::EBUSY
                    } else {
                        libc::EDEADLK
                    }
                } else if n == u32::MAX {
                    libc::EAGAIN
                } else {
                    set_owner(addr, Some((me, n + 1)));
                    0
                });
            }
            Some(_) => return None, // a sibling coroutine owns it
            None => {
                // SAFETY: live mutex (caller's contract).
                let owner = unsafe { field(m.cast(), MUTEX_OWNER) }.load(Ordering::Relaxed);
                if owner == carrier_tid() {
                    // Held by non-hooked code that ran on this thread: the
                    // real trylock would take it as a re-entry.
                    return None;
                }
            }
        }
    }
    // SAFETY: libc's trylock on the caller's mutex.
    match unsafe { real_mutex_trylock()(m) } {
        0 => {
            if kind != Kind::Normal {
                set_owner(addr, Some((me, 1)));
            }
            Some(0)
        }
        libc::EBUSY => None,
        e => Some(e),
    }
}

/// Lock (`try_only`: trylock) for a coroutine in user code.
fn mutex_lock_co(m: *mut pthread_mutex_t, deadline: Option<Instant>, try_only: bool) -> c_int {
    let np = NoPreempt::new();
    let kind = mutex_kind(m);
    let me = sched::current_id();
    if try_only {
        return mutex_attempt(m, kind, me, true).unwrap_or(libc::EBUSY);
    }
    park_until(&np, m as usize, PthreadKind::Mutex, deadline, || {
        mutex_attempt(m, kind, me, false)
    })
}

/// Unlock for a coroutine in user code.
fn mutex_unlock_co(m: *mut pthread_mutex_t) -> c_int {
    let _np = NoPreempt::new();
    let kind = mutex_kind(m);
    let addr = m as usize;
    if kind != Kind::Normal {
        let me = sched::current_id();
        match owner_of(addr) {
            Some((id, n)) if id == me => {
                if n > 1 {
                    set_owner(addr, Some((me, n - 1)));
                    return 0;
                }
                // Make glibc's owner check pass on whatever thread we run
                // on now; we own the mutex, so the field is ours to write.
                // SAFETY: live mutex (caller's contract).
                unsafe { field(m.cast(), MUTEX_OWNER) }.store(carrier_tid(), Ordering::Relaxed);
                set_owner(addr, None);
            }
            Some(_) => return libc::EPERM,
            None => {}
        }
    }
    // SAFETY: libc's unlock on the caller's mutex.
    let r = unsafe { real_mutex_unlock()(m) };
    if r == 0 {
        wake(addr, 1);
    }
    r
}

pub(crate) fn mutex_lock(m: *mut pthread_mutex_t) -> c_int {
    if sched::in_coroutine_user_code() && mutex_kind(m) != Kind::Unsupported {
        return mutex_lock_co(m, None, false);
    }
    // SAFETY: libc's function on the caller's mutex.
    unsafe { real_mutex_lock()(m) }
}

pub(crate) fn mutex_trylock(m: *mut pthread_mutex_t) -> c_int {
    if sched::in_coroutine_user_code() && mutex_kind(m) != Kind::Unsupported {
        return mutex_lock_co(m, None, true);
    }
    // SAFETY: libc's function on the caller's mutex.
    unsafe { real_mutex_trylock()(m) }
}

/// `pthread_mutex_timedlock` (CLOCK_REALTIME) and `pthread_mutex_clocklock`.
pub(crate) fn mutex_clocklock(
    m: *mut pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const timespec,
) -> c_int {
    if sched::in_coroutine_user_code() && mutex_kind(m) != Kind::Unsupported {
        if clock != libc::CLOCK_REALTIME && clock != libc::CLOCK_MONOTONIC {
            return libc::EINVAL;
        }
        // Like glibc, the time is only checked when the call must wait.
        let r = mutex_lock_co(m, None, true);
        if r != libc::EBUSY {
            return r;
        }
        // SAFETY: the caller passes a readable timespec (libc's contract).
        let Some(d) = deadline_of(unsafe { *abstime }, false, clock == libc::CLOCK_REALTIME) else {
            return libc::EINVAL;
        };
        return mutex_lock_co(m, Some(d), false);
    }
    // SAFETY: libc's function with the caller's arguments.
    unsafe { real_mutex_clocklock()(m, clock, abstime) }
}

pub(crate) fn mutex_unlock(m: *mut pthread_mutex_t) -> c_int {
    if sched::in_coroutine_user_code() && mutex_kind(m) != Kind::Unsupported {
        return mutex_unlock_co(m);
    }
    // SAFETY: libc's function on the caller's mutex.
    let r = unsafe { real_mutex_unlock()(m) };
    if r == 0 {
        wake(m as usize, 1);
    }
    r
}

// ---- condition variables ----

fn cond_flags(c: *mut pthread_cond_t) -> i32 {
    // SAFETY: `c` is a live condvar (the caller's contract with libc).
    unsafe { field(c.cast(), COND_WREFS) }.load(Ordering::Relaxed)
}

/// Whether a coroutine waiting on `c` with `m` parks here (else: the real,
/// blocking call).
fn cond_parks(c: *mut pthread_cond_t, m: *mut pthread_mutex_t) -> bool {
    sched::in_coroutine_user_code()
        && cond_flags(c) & COND_SHARED == 0
        && mutex_kind(m) != Kind::Unsupported
}

/// The coroutine's wait (module doc, "Condition variables"): queue on the
/// condvar, release the mutex through the hooks, park until signalled or
/// `deadline`, re-acquire the mutex through the hooks.
fn cond_wait_co(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    deadline: Option<Instant>,
) -> c_int {
    let np = NoPreempt::new();
    let addr = c as usize;
    let w = register(addr);
    let r = mutex_unlock_co(m);
    if r != 0 {
        if !unregister(addr, &w) {
            wake(addr, 1);
        }
        return r;
    }
    let timer = deadline.map(|d| timers().add(d, Waker::Coroutine(w.co.clone())));
    let mut result = 0;
    loop {
        if w.woken.load(Ordering::Acquire) {
            break;
        }
        if timer.as_ref().is_some_and(|t| t.fired()) {
            if unregister(addr, &w) {
                result = libc::ETIMEDOUT;
            } // else a signal took us first: the signal wins
            break;
        }
        sched::park_current(
            &np,
            WaitReason::Pthread {
                addr: c as usize,
                kind: PthreadKind::Cond,
            },
        );
    }
    if let Some(t) = timer {
        timers().cancel(&t);
    }
    match mutex_lock_co(m, None, false) {
        0 => result,
        e => e,
    }
}

pub(crate) fn cond_wait(c: *mut pthread_cond_t, m: *mut pthread_mutex_t) -> c_int {
    if cond_parks(c, m) {
        return cond_wait_co(c, m, None);
    }
    // SAFETY: libc's function with the caller's arguments.
    unsafe { real_cond_wait()(c, m) }
}

/// `pthread_cond_timedwait`: `abstime` on the condvar's clock.
pub(crate) fn cond_timedwait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    if cond_parks(c, m) {
        let realtime = cond_flags(c) & COND_MONOTONIC == 0;
        // SAFETY: the caller passes a readable timespec (libc's contract).
        return match deadline_of(unsafe { *abstime }, false, realtime) {
            Some(d) => cond_wait_co(c, m, Some(d)),
            None => libc::EINVAL,
        };
    }
    // SAFETY: libc's function with the caller's arguments.
    unsafe { real_cond_timedwait()(c, m, abstime) }
}

pub(crate) fn cond_clockwait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const timespec,
) -> c_int {
    if cond_parks(c, m) {
        if clock != libc::CLOCK_REALTIME && clock != libc::CLOCK_MONOTONIC {
            return libc::EINVAL;
        }
        // SAFETY: the caller passes a readable timespec (libc's contract).
        return match deadline_of(unsafe { *abstime }, false, clock == libc::CLOCK_REALTIME) {
            Some(d) => cond_wait_co(c, m, Some(d)),
            None => libc::EINVAL,
        };
    }
    // SAFETY: libc's function with the caller's arguments.
    unsafe { real_cond_clockwait()(c, m, clock, abstime) }
}

/// Wakes one parked coroutine and (glibc) one waiting thread, if any.
pub(crate) fn cond_signal(c: *mut pthread_cond_t) -> c_int {
    wake(c as usize, 1);
    // SAFETY: libc's function on the caller's condvar.
    unsafe { real_cond_signal()(c) }
}

pub(crate) fn cond_broadcast(c: *mut pthread_cond_t) -> c_int {
    wake(c as usize, usize::MAX);
    // SAFETY: libc's function on the caller's condvar.
    unsafe { real_cond_broadcast()(c) }
}

// ---- rwlocks ----

/// Maps an absolute timeout on `clock` to a deadline; Err(EINVAL) for a
/// clock other than REALTIME/MONOTONIC or an invalid timespec.
fn abs_deadline(clock: libc::clockid_t, abstime: *const timespec) -> Result<Instant, c_int> {
    if clock != libc::CLOCK_REALTIME && clock != libc::CLOCK_MONOTONIC {
        return Err(libc::EINVAL);
    }
    // SAFETY: the caller passes a readable timespec (libc's contract).
    deadline_of(unsafe { *abstime }, false, clock == libc::CLOCK_REALTIME).ok_or(libc::EINVAL)
}

/// Read (`write == false`) or write lock for a coroutine in user code.
/// `abs`: the timed variants' clock and absolute time.
fn rw_lock_co(
    rw: *mut pthread_rwlock_t,
    write: bool,
    abs: Option<(libc::clockid_t, *const timespec)>,
) -> c_int {
    let np = NoPreempt::new();
    let addr = rw as usize;
    let me = sched::current_id();
    if owner_of(addr).is_some_and(|(id, _)| id == me) {
        return libc::EDEADLK; // we hold the write lock (glibc: EDEADLK)
    }
    let attempt = || {
        let r = if write {
            // SAFETY: libc's trylock on the caller's rwlock.
            unsafe { real_rw_trywrlock()(rw) }
        } else {
            // SAFETY: as above.
            unsafe { real_rw_tryrdlock()(rw) }
        };
        match r {
            0 => {
                if write {
                    set_owner(addr, Some((me, 1)));
                }
                Some(0)
            }
            libc::EBUSY => None,
            e => Some(e),
        }
    };
    let deadline = match abs {
        None => None,
        Some((clock, ts)) => {
            // As glibc: the time is only checked when the call must wait.
            if let Some(r) = attempt() {
                return r;
            }
            match abs_deadline(clock, ts) {
                Ok(d) => Some(d),
                Err(e) => return e,
            }
        }
    };
    park_until(&np, addr, PthreadKind::RwLock, deadline, attempt)
}

pub(crate) fn rwlock_lock(rw: *mut pthread_rwlock_t, write: bool) -> c_int {
    if sched::in_coroutine_user_code() {
        return rw_lock_co(rw, write, None);
    }
    // SAFETY: libc's function on the caller's rwlock.
    unsafe {
        (if write {
            real_rw_wrlock()
        } else {
            real_rw_rdlock()
        })(rw)
    }
}

pub(crate) fn rwlock_trylock(rw: *mut pthread_rwlock_t, write: bool) -> c_int {
    if sched::in_coroutine_user_code() {
        let _np = NoPreempt::new();
        let me = sched::current_id();
        if owner_of(rw as usize).is_some_and(|(id, _)| id == me) {
            return libc::EBUSY;
        }
        // SAFETY: libc's function on the caller's rwlock.
        let r = unsafe {
            (if write {
                real_rw_trywrlock()
            } else {
                real_rw_tryrdlock()
            })(rw)
        };
        if r == 0 && write {
            set_owner(rw as usize, Some((me, 1)));
        }
        return r;
    }
    // SAFETY: libc's function on the caller's rwlock.
    unsafe {
        (if write {
            real_rw_trywrlock()
        } else {
            real_rw_tryrdlock()
        })(rw)
    }
}

/// The timed variants (`timed*lock`: CLOCK_REALTIME; `clock*lock`).
pub(crate) fn rwlock_clocklock(
    rw: *mut pthread_rwlock_t,
    write: bool,
    clock: libc::clockid_t,
    abstime: *const timespec,
) -> c_int {
    if sched::in_coroutine_user_code() {
        return rw_lock_co(rw, write, Some((clock, abstime)));
    }
    let f = if write {
        real_rw_clockwrlock()
    } else {
        real_rw_clockrdlock()
    };
    // SAFETY: libc's function with the caller's arguments.
    unsafe { f(rw, clock, abstime) }
}

pub(crate) fn rwlock_unlock(rw: *mut pthread_rwlock_t) -> c_int {
    let addr = rw as usize;
    if sched::in_coroutine_user_code() {
        let _np = NoPreempt::new();
        let me = sched::current_id();
        match owner_of(addr) {
            Some((id, _)) if id == me => {
                // glibc tells a write unlock from a read unlock by
                // comparing __cur_writer with the caller's tid: make it
                // the current carrier's (we hold the write lock).
                // SAFETY: live rwlock (caller's contract).
                unsafe { field(rw.cast(), RWLOCK_CUR_WRITER) }
                    .store(carrier_tid(), Ordering::Relaxed);
                set_owner(addr, None);
            }
            // Write-locked by a sibling: glibc would take this for a read
            // unlock and corrupt the lock.
            Some(_) => return libc::EPERM,
            None => {}
        }
        // SAFETY: libc's function on the caller's rwlock.
        let r = unsafe { real_rw_unlock()(rw) };
        wake(addr, usize::MAX);
        return r;
    }
    // SAFETY: libc's function on the caller's rwlock.
    let r = unsafe { real_rw_unlock()(rw) };
    wake(addr, usize::MAX);
    r
}

// ---- once ----

/// `pthread_once`: a coroutine finding the initialisation in progress
/// (another coroutine or thread runs it) parks until it is done; otherwise
/// glibc's `pthread_once` runs it (on this coroutine, which may park
/// inside), then the parked coroutines are woken. Two callers that both
/// find it not started race into glibc's function; the loser waits there
/// (blocking its executor until the winner's routine returns).
pub(crate) fn once(o: *mut pthread_once_t, init: Option<unsafe extern "C" fn()>) -> c_int {
    if sched::in_coroutine_user_code() {
        // SAFETY: a pthread_once_t is a live int (the caller's contract).
        let word = unsafe { field(o.cast(), 0) };
        let v = word.load(Ordering::Acquire);
        if v & ONCE_DONE != 0 {
            return 0;
        }
        if v & ONCE_IN_PROGRESS != 0 {
            let np = NoPreempt::new();
            let r = park_until(&np, o as usize, PthreadKind::Once, None, || {
                let v = word.load(Ordering::Acquire);
                (v & ONCE_IN_PROGRESS == 0).then_some(0)
            });
            drop(np);
            if word.load(Ordering::Acquire) & ONCE_DONE != 0 {
                return r;
            }
            // The routine was cancelled (the word went back to 0): retry.
        }
    }
    // SAFETY: libc's function with the caller's arguments.
    let r = unsafe { real_once()(o, init) };
    wake(o as usize, usize::MAX);
    r
}

// ---- barriers ----

/// `pthread_barrier_wait`: glibc's barrier has no non-blocking variant to
/// retry, and no owner, so a coroutine runs glibc's wait on a helper
/// thread (offload.rs: one per waiting coroutine, from an uncapped pool)
/// while it parks; threads and coroutines share the barrier's protocol.
pub(crate) fn barrier_wait(b: *mut libc::pthread_barrier_t) -> c_int {
    if !sched::in_coroutine_user_code() {
        // SAFETY: libc's function on the caller's barrier.
        return unsafe { real_barrier_wait()(b) };
    }
    let addr = b as usize;
    super::offload::offload(
        super::offload::Class::Unbounded,
        crate::observe::wait::Job::Barrier { addr: b as usize },
        move || {
            // SAFETY: the caller's barrier, alive while the caller (parked
            // until this returns) waits on it.
            unsafe { real_barrier_wait()(addr as *mut libc::pthread_barrier_t) }
        },
    )
}

// ---- spin locks ----

/// Short spins between two tries before giving the executor away.
const SPIN_TRIES: u32 = 64;

/// `pthread_spin_lock`: a spin lock has no waiters to wake, so a coroutine
/// that finds it held yields between tries (glibc's `trylock`) instead of
/// spinning: the holder may be a sibling queued on this executor (parked
/// or preempted while holding it), which only runs if we let it. A short
/// spin first keeps the usual case — a holder on another executor leaving
/// its critical section within nanoseconds — as fast as glibc's loop.
/// Called inside a memory allocator, it yields with the raw system call
/// (the scheduler's queues allocate; see `park_until`). Plain threads,
/// runtime code and a panicking coroutine: glibc's function. The lock word
/// keeps glibc's protocol (acquired only by glibc's own functions), so
/// threads and coroutines share a lock.
pub(crate) fn spin_lock(l: *mut c_int) -> c_int {
    if !sched::in_coroutine_user_code() {
        // SAFETY: glibc's function with the caller's argument.
        return unsafe { real_spin_lock()(l) };
    }
    let attempt = || {
        // SAFETY: glibc's function with the caller's lock
        // (pthread_spin_lock's contract: an initialised spin lock).
        unsafe { real_spin_trylock()(l) }
    };
    loop {
        for _ in 0..SPIN_TRIES {
            match attempt() {
                libc::EBUSY => std::hint::spin_loop(),
                r => return r,
            }
        }
        if inside_allocator() || !sched::yield_now_fast() {
            // SAFETY: the raw system call (not the `sched_yield` hook).
            unsafe { libc::syscall(libc::SYS_sched_yield) };
        }
    }
}
