//! The poll family: poll, ppoll, select, pselect, epoll_wait & co.
//!
//! In coroutine user code with a non-zero timeout each of these runs the
//! user's own call with a zero timeout and, while it reports nothing, parks
//! on the reactor: every fd it waits for is a `Poll` registration or gets a
//! readiness-only one (`WATCHED`: the user's epoll fd — an epoll fd is
//! pollable —, eventfd, timerfd, …), so an edge on any of them, the
//! deadline (a reactor timer) or a close wakes the coroutine, which re-runs
//! the zero-timeout call. No helper thread, and return values, errno and
//! the result sets come from the real call. A signal mask (ppoll, pselect,
//! epoll_pwait*) applies during each zero-timeout call, so a pending signal
//! it unblocks interrupts the call (EINTR) as the kernel would; a signal
//! arriving while the coroutine is parked runs its handler on whichever
//! thread takes it and does not end the wait. Only an fd the reactor's
//! epoll refuses (EINVAL/ELOOP: e.g. epoll fds nested too deep) or beyond
//! the fd table sends the whole call to an (unbounded) helper thread.

use std::time::{Duration, Instant};

use super::io::ensure;
use crate::reactor::registration::{self, Dir, Flags, Kind, Registration, WaitOutcome};
use crate::sched::{self, NoPreempt};
use crate::sys::{self, to_libc};

/// What the poll family can wait on for one fd.
enum Watch {
    /// Wake on this registration's edges.
    Reg(&'static Registration),
    /// Needs no wake-up: a regular file or another fd without poll support
    /// (the zero-timeout call reports it ready, or it never is).
    Skip,
    /// Not open (or closed meanwhile): re-run the call now.
    Gone,
    /// The reactor cannot watch it: run the call on a helper thread.
    No,
}

fn watch(fd: i32) -> Watch {
    if registration::get_or_alloc(fd).is_none() || crate::reactor::own_fd(fd) {
        return Watch::No;
    }
    let Some(reg) = ensure(fd) else {
        return Watch::Gone;
    };
    match reg.kind() {
        Kind::Poll => Watch::Reg(reg),
        Kind::File => Watch::Skip,
        _ if reg.flags().contains(Flags::WATCHED) => Watch::Reg(reg),
        _ => {
            let gen = reg.gen();
            match crate::reactor::register(fd, gen) {
                0 => {
                    reg.set_flag(Flags::WATCHED, true);
                    if reg.gen() != gen {
                        return Watch::Gone;
                    }
                    Watch::Reg(reg)
                }
                e if e == -(libc::EPERM as isize) => Watch::Skip,
                e if e == -(libc::EBADF as isize) => Watch::Gone,
                _ => Watch::No,
            }
        }
    }
}

/// `now + d`, or `None` (no deadline) if that is not representable.
fn deadline_after(d: Option<Duration>) -> Option<Instant> {
    d.and_then(|d| Instant::now().checked_add(d))
}

/// Time left until `deadline` (`None`: none).
fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// The coroutine side of the poll family (module doc). `targets`:
/// the (fd, direction) pairs the call waits for; `try_now`: the user's
/// call with a zero timeout, libc convention. `None`: some fd cannot be
/// watched (the caller offloads the call).
fn park_poll(
    targets: &[(i32, Dir)],
    deadline: Option<Instant>,
    np: &NoPreempt,
    mut try_now: impl FnMut() -> i32,
) -> Option<i32> {
    let mut list = Vec::with_capacity(targets.len());
    loop {
        list.clear();
        let mut gone = false;
        for &(fd, dir) in targets {
            match watch(fd) {
                Watch::Reg(reg) => {
                    let gen = reg.gen();
                    list.push((reg, dir, gen, reg.seq(dir)));
                }
                Watch::Skip => {}
                Watch::Gone => gone = true,
                Watch::No => return None,
            }
        }
        // Snapshots taken: an edge from here on is seen by `wait_many`.
        let r = try_now();
        if r != 0 {
            return Some(r);
        }
        if gone {
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(0);
        }
        if Registration::wait_many(&list, deadline, np) == WaitOutcome::TimedOut {
            return Some(try_now());
        }
    }
}

/// The plain ppoll(2) system call on the caller's `n` pollfds at `fds`
/// (libc convention); `t` None waits forever; `sigmask` 0 for none.
fn raw_ppoll(fds: usize, n: u64, t: Option<Duration>, sigmask: usize) -> i32 {
    let ts = t.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as i64,
    });
    let tsp = ts
        .as_ref()
        .map_or(0, |t| t as *const libc::timespec as usize);
    // SAFETY: the caller's pollfd array and signal mask (valid for the
    // call, by ppoll's contract; the offload path keeps the caller
    // parked); our own timespec copy (glibc's ppoll does not write it back).
    to_libc(unsafe {
        sys::syscall6(
            libc::SYS_ppoll as usize,
            fds,
            n as usize,
            tsp,
            sigmask,
            8,
            0,
        )
    }) as i32
}

/// poll(2) and ppoll(2) (`sigmask` 0: none). In a coroutine with a
/// non-zero timeout: park on the reactor (module doc).
pub(crate) fn poll_impl(
    fds: *mut libc::pollfd,
    n: u64,
    timeout: Option<Duration>,
    sigmask: usize,
) -> i32 {
    if timeout == Some(Duration::ZERO) || !sched::in_coroutine_user_code() {
        return raw_ppoll(fds as usize, n, timeout, sigmask);
    }
    let np = NoPreempt::new();
    let deadline = deadline_after(timeout);
    let targets: Vec<(i32, Dir)> = if fds.is_null() || n == 0 {
        Vec::new()
    } else {
        // SAFETY: the caller passes `n` valid pollfds.
        let pfds = unsafe { std::slice::from_raw_parts(fds, n as usize) };
        let mut t = Vec::with_capacity(pfds.len());
        for p in pfds.iter().filter(|p| p.fd >= 0) {
            // Errors and hang-ups are read-side edges (epoll.rs).
            t.push((p.fd, Dir::Read));
            if p.events & libc::POLLOUT != 0 {
                t.push((p.fd, Dir::Write));
            }
        }
        t
    };
    let fdsu = fds as usize;
    match park_poll(&targets, deadline, &np, || {
        raw_ppoll(fdsu, n, Some(Duration::ZERO), sigmask)
    }) {
        Some(r) => r,
        None => {
            drop(np);
            super::offload::offload(
                super::offload::Class::Unbounded,
                crate::observe::wait::Job::ForeignPoll { nfds: n as u32 },
                move || raw_ppoll(fdsu, n, left(deadline), sigmask),
            )
        }
    }
}

pub(crate) fn poll(fds: *mut libc::pollfd, n: u64, timeout: Option<Duration>) -> i32 {
    poll_impl(fds, n, timeout, 0)
}

/// A timespec the kernel accepts as a timeout: `Ok(None)` for null,
/// `Err(())` for an invalid one (the real call reports EINVAL).
fn timespec_timeout(ts: *const libc::timespec) -> Result<Option<Duration>, ()> {
    if ts.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null timespec from the caller.
    let t = unsafe { *ts };
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(());
    }
    Ok(Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
}

/// ppoll(2).
pub(crate) fn ppoll(
    fds: *mut libc::pollfd,
    n: u64,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> i32 {
    match timespec_timeout(ts) {
        Ok(t) => poll_impl(fds, n, t, sigmask as usize),
        Err(()) => {
            // SAFETY: the caller's pointers; the kernel rejects the timeout.
            to_libc(unsafe {
                sys::syscall6(
                    libc::SYS_ppoll as usize,
                    fds as usize,
                    n as usize,
                    ts as usize,
                    sigmask as usize,
                    8,
                    0,
                )
            }) as i32
        }
    }
}

/// select(2) and pselect(2) in a coroutine with a non-zero timeout:
/// `call(tsp)` makes the real call with the (zero) timeout at `tsp`
/// (a timeval for select, a timespec for pselect). The sets are restored
/// before every try (a call that reports nothing clears them).
fn select_park(
    n: i32,
    sets: [*mut libc::fd_set; 3],
    deadline: Option<Instant>,
    call: impl Fn(bool, Option<Duration>) -> i32 + Send + Copy,
) -> i32 {
    let np = NoPreempt::new();
    // SAFETY: non-null fd_sets from the caller.
    let saved = sets.map(|p| (!p.is_null()).then(|| unsafe { *p }));
    let restore = || {
        for (p, v) in sets.iter().zip(saved.iter()) {
            if let Some(v) = v {
                // SAFETY: the caller's fd_set, non-null when saved.
                unsafe { **p = *v };
            }
        }
    };
    let mut targets = Vec::new();
    for fd in 0..n.clamp(0, libc::FD_SETSIZE as i32) {
        let isset = |i: usize| {
            saved[i].as_ref().is_some_and(|s| {
                // SAFETY: 0 <= `fd` < FD_SETSIZE: a bit inside the set.
                unsafe { libc::FD_ISSET(fd, s) }
            })
        };
        if isset(0) || isset(2) {
            targets.push((fd, Dir::Read));
        }
        if isset(1) {
            targets.push((fd, Dir::Write));
        }
    }
    let r = if n > libc::FD_SETSIZE as i32 {
        None // sets larger than fd_set: not ours to parse
    } else {
        park_poll(&targets, deadline, &np, || {
            restore();
            call(true, None)
        })
    };
    match r {
        Some(r) => r,
        None => {
            restore();
            drop(np);
            super::offload::offload(
                super::offload::Class::Unbounded,
                crate::observe::wait::Job::ForeignPoll {
                    nfds: targets.len() as u32,
                },
                move || call(false, left(deadline)),
            )
        }
    }
}

/// select(2): parks on the reactor in a coroutine (unless the timeout is
/// zero); the remaining time is written back to `tv`, as Linux does.
pub(crate) fn select(
    n: i32,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> i32 {
    let (ru, wu, eu) = (r as usize, w as usize, e as usize);
    let raw = move |tvp: usize| {
        // SAFETY: the caller's fd_sets, and a timeval (theirs or ours).
        to_libc(unsafe { sys::syscall6(libc::SYS_select as usize, n as usize, ru, wu, eu, tvp, 0) })
            as i32
    };
    if !sched::in_coroutine_user_code() {
        return raw(tv as usize);
    }
    let timeout = if tv.is_null() {
        None
    } else {
        // SAFETY: non-null timeval from the caller.
        let t = unsafe { *tv };
        if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
            return raw(tv as usize); // EINVAL from the kernel
        }
        Some(Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000))
    };
    if timeout == Some(Duration::ZERO) {
        return raw(tv as usize);
    }
    let deadline = deadline_after(timeout);
    let res = select_park(n, [r, w, e], deadline, move |zero, t| {
        let d = t.unwrap_or(Duration::ZERO);
        let mut local = libc::timeval {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_usec: d.subsec_micros() as i64,
        };
        let p = if zero || t.is_some() {
            &mut local as *mut libc::timeval as usize
        } else {
            0 // helper path, no deadline: wait forever
        };
        raw(p)
    });
    if !tv.is_null() {
        let d = left(deadline).unwrap_or(Duration::ZERO);
        // SAFETY: non-null timeval from the caller.
        unsafe {
            *tv = libc::timeval {
                tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
                tv_usec: d.subsec_micros() as i64,
            }
        };
    }
    res
}

/// pselect(2): like select with a timespec (not written back, as glibc's)
/// and a signal mask applied during each try (module doc).
pub(crate) fn pselect(
    n: i32,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> i32 {
    let (ru, wu, eu, su) = (r as usize, w as usize, e as usize, sigmask as usize);
    // pselect6's sixth argument: { const sigset_t *ss; size_t ss_len }.
    let raw = move |t: Option<Duration>| {
        let mut ts = t.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos() as i64,
        });
        let tsp = ts.as_mut().map_or(0, |t| t as *mut libc::timespec as usize);
        let data: [usize; 2] = [su, 8];
        let dp = if su == 0 { 0 } else { data.as_ptr() as usize };
        // SAFETY: the caller's fd_sets and signal mask; our timespec copy.
        to_libc(unsafe {
            sys::syscall6(libc::SYS_pselect6 as usize, n as usize, ru, wu, eu, tsp, dp)
        }) as i32
    };
    let timeout = match timespec_timeout(ts) {
        Ok(t) => t,
        Err(()) => {
            let data: [usize; 2] = [su, 8];
            let dp = if su == 0 { 0 } else { data.as_ptr() as usize };
            // SAFETY: the caller's pointers; the kernel rejects the timeout.
            return to_libc(unsafe {
                sys::syscall6(
                    libc::SYS_pselect6 as usize,
                    n as usize,
                    ru,
                    wu,
                    eu,
                    ts as usize,
                    dp,
                )
            }) as i32;
        }
    };
    if timeout == Some(Duration::ZERO) || !sched::in_coroutine_user_code() {
        return raw(timeout);
    }
    let deadline = deadline_after(timeout);
    select_park(n, [r, w, e], deadline, move |zero, t| {
        raw(if zero { Some(Duration::ZERO) } else { t })
    })
}

/// epoll_wait(2) and epoll_pwait(2) (`sigmask` 0: none) on the user's own
/// epoll fd: parks on the reactor in a coroutine (unless the timeout is
/// zero), the epoll fd being watched like any pollable fd.
pub(crate) fn epoll_pwait(
    epfd: i32,
    events: *mut libc::epoll_event,
    max: i32,
    timeout_ms: i32,
    sigmask: usize,
) -> i32 {
    let eu = events as usize;
    let raw = move |ms: i32| {
        // SAFETY: the caller's events buffer and signal mask.
        to_libc(unsafe {
            sys::syscall6(
                libc::SYS_epoll_pwait as usize,
                epfd as usize,
                eu,
                max as usize,
                ms as isize as usize,
                sigmask,
                8,
            )
        }) as i32
    };
    if timeout_ms == 0 || !sched::in_coroutine_user_code() {
        return raw(timeout_ms);
    }
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
    epoll_park(epfd, deadline_after(timeout), move |t| match t {
        None => raw(-1),
        Some(d) => raw(d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32),
    })
}

/// epoll_pwait2(2): a timespec timeout (null: forever).
pub(crate) fn epoll_pwait2(
    epfd: i32,
    events: *mut libc::epoll_event,
    max: i32,
    ts: *const libc::timespec,
    sigmask: usize,
) -> i32 {
    let eu = events as usize;
    let raw_ptr = move |tsp: usize| {
        // SAFETY: the caller's events buffer and signal mask; a timespec
        // (theirs or ours) or null.
        to_libc(unsafe {
            sys::syscall6(
                libc::SYS_epoll_pwait2 as usize,
                epfd as usize,
                eu,
                max as usize,
                tsp,
                sigmask,
                8,
            )
        }) as i32
    };
    let timeout = match timespec_timeout(ts) {
        Ok(t) if t != Some(Duration::ZERO) && sched::in_coroutine_user_code() => t,
        _ => return raw_ptr(ts as usize),
    };
    epoll_park(epfd, deadline_after(timeout), move |t| {
        let ts = t.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos() as i64,
        });
        raw_ptr(
            ts.as_ref()
                .map_or(0, |t| t as *const libc::timespec as usize),
        )
    })
}

/// The coroutine side of the epoll waits: `call(t)` is the real call with
/// timeout `t` (`None`: forever).
fn epoll_park(
    epfd: i32,
    deadline: Option<Instant>,
    call: impl Fn(Option<Duration>) -> i32 + Send + Copy,
) -> i32 {
    let np = NoPreempt::new();
    match park_poll(&[(epfd, Dir::Read)], deadline, &np, || {
        call(Some(Duration::ZERO))
    }) {
        Some(r) => r,
        None => {
            drop(np);
            super::offload::offload(
                super::offload::Class::Unbounded,
                crate::observe::wait::Job::ForeignPoll { nfds: 0 },
                move || call(left(deadline)),
            )
        }
    }
}
