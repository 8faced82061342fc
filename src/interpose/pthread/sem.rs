//! The hooked semaphore entry points (`sem_wait`, `sem_timedwait` /
//! `sem_clockwait`, `sem_post`): split out of pthread.rs, whose top-of-file
//! comment describes the protocol (real non-blocking try, register, retry,
//! park; a release wakes one queued coroutine). Results are 0 / -1 with
//! errno, as libc's.

use std::ffi::c_int;

use libc::{sem_t, timespec};

use super::abs_deadline;
use super::glibc::{real_sem_clockwait, real_sem_post, real_sem_trywait, real_sem_wait};
use super::park::{park_until, wake};
use crate::sched::{self, NoPreempt};

fn sem_ret(r: c_int) -> c_int {
    if r == 0 {
        0
    } else {
        crate::sys::set_errno(r);
        -1
    }
}

fn sem_wait_co(s: *mut sem_t, abs: Option<(libc::clockid_t, *const timespec)>) -> c_int {
    let np = NoPreempt::new();
    let attempt = || {
        // SAFETY: libc's sem_trywait on the caller's semaphore.
        if unsafe { real_sem_trywait()(s) } == 0 {
            return Some(0);
        }
        match crate::sys::errno() {
            libc::EAGAIN => None,
            e => Some(e),
        }
    };
    let deadline = match abs {
        None => None,
        Some((clock, ts)) => {
            if let Some(r) = attempt() {
                return sem_ret(r);
            }
            match abs_deadline(clock, ts) {
                Ok(d) => Some(d),
                Err(e) => return sem_ret(e),
            }
        }
    };
    sem_ret(park_until(
        &np,
        s as usize,
        crate::observe::wait::PthreadKind::Semaphore,
        deadline,
        attempt,
    ))
}

pub(crate) fn sem_wait(s: *mut sem_t) -> c_int {
    if sched::in_coroutine_user_code() {
        return sem_wait_co(s, None);
    }
    // SAFETY: libc's function on the caller's semaphore.
    unsafe { real_sem_wait()(s) }
}

/// `sem_timedwait` (CLOCK_REALTIME) and `sem_clockwait`.
pub(crate) fn sem_clockwait(
    s: *mut sem_t,
    clock: libc::clockid_t,
    abstime: *const timespec,
) -> c_int {
    if sched::in_coroutine_user_code() {
        return sem_wait_co(s, Some((clock, abstime)));
    }
    // SAFETY: libc's function with the caller's arguments.
    unsafe { real_sem_clockwait()(s, clock, abstime) }
}

pub(crate) fn sem_post(s: *mut sem_t) -> c_int {
    // SAFETY: libc's function on the caller's semaphore.
    let r = unsafe { real_sem_post()(s) };
    if r == 0 {
        let e = crate::sys::errno();
        wake(s as usize, 1);
        crate::sys::set_errno(e);
    }
    r
}
