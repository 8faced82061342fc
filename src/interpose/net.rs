//! Sockets: creation (made non-blocking and registered at once when a
//! coroutine creates them), accept, connect (EINPROGRESS + SO_ERROR),
//! send/recv families, and setsockopt (keeps the SO_RCVTIMEO/SO_SNDTIMEO
//! cache right). The blocking emulation itself is io.rs.

use std::time::Instant;

use super::io::{ensure, init_new_socket, io, io_read, thread_wait, write_all_like};
use crate::reactor::registration::{self, Dir, Flags, Kind, WaitOutcome};
use crate::sched::{self, NoPreempt};
use crate::sys::{sc3, sc4, syscall6, to_libc};

/// socket(2): from a coroutine, inet/unix sockets are created with
/// SOCK_NONBLOCK and registered right away (the user's view is whatever
/// `type_` asked for).
pub(crate) fn socket(domain: i32, type_: i32, proto: i32) -> i32 {
    let managed = sched::in_coroutine_user_code()
        && matches!(domain, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX);
    let t = if managed {
        type_ | libc::SOCK_NONBLOCK
    } else {
        type_
    };
    // SAFETY: no pointers.
    let r = to_libc(unsafe {
        sc3(
            libc::SYS_socket,
            domain as usize,
            t as usize,
            proto as usize,
        )
    }) as i32;
    if r >= 0 {
        if managed {
            let _np = NoPreempt::new();
            let stream = type_ & 0xf == libc::SOCK_STREAM;
            init_new_socket(r, type_ & libc::SOCK_NONBLOCK != 0, true, stream);
        } else {
            registration::fresh(r);
        }
    }
    r
}

/// socketpair(2): forget stale entries for the new numbers.
pub(crate) fn socketpair(domain: i32, type_: i32, proto: i32, sv: *mut i32) -> i32 {
    // SAFETY: the caller provides room for two ints.
    let r = to_libc(unsafe {
        sc4(
            libc::SYS_socketpair,
            domain as usize,
            type_ as usize,
            proto as usize,
            sv as usize,
        )
    }) as i32;
    if r == 0 {
        // SAFETY: filled by the kernel.
        unsafe {
            registration::fresh(*sv);
            registration::fresh(*sv.add(1));
        }
    }
    r
}

/// accept4(2): from a coroutine the new socket is accepted non-blocking
/// and registered at once (its timeouts are inherited from the listener,
/// so they stay "unknown" until needed).
pub(crate) fn accept4(
    fd: i32,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: i32,
) -> i32 {
    let co = sched::in_coroutine_user_code();
    let f = if co {
        flags | libc::SOCK_NONBLOCK
    } else {
        flags
    };
    let r = io(fd, Dir::Read, false, || {
        // SAFETY: the caller's address buffer contract.
        unsafe {
            sc4(
                libc::SYS_accept4,
                fd as usize,
                addr as usize,
                len as usize,
                f as usize,
            )
        }
    }) as i32;
    if r >= 0 {
        if co {
            let _np = NoPreempt::new();
            // Same type as the listener.
            let stream = ensure(fd).is_some_and(|l| l.flags().contains(Flags::STREAM));
            init_new_socket(r, flags & libc::SOCK_NONBLOCK != 0, false, stream);
        } else {
            registration::fresh(r);
        }
    }
    r
}

/// connect(2): on a socket whose blocking we emulate, EINPROGRESS means
/// wait for writability, then report SO_ERROR (ECONNREFUSED…) like the
/// blocking call; on SO_SNDTIMEO expiry the kernel answers EINPROGRESS,
/// and so do we.
pub(crate) fn connect(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t) -> i32 {
    let raw = || {
        // SAFETY: the caller's address contract.
        unsafe { sc3(libc::SYS_connect, fd as usize, addr as usize, len as usize) }
    };
    const EINPROGRESS: isize = -(libc::EINPROGRESS as isize);
    if !sched::in_coroutine_user_code() {
        let r = raw();
        if r != EINPROGRESS {
            return to_libc(r) as i32;
        }
        let Some(reg) = registration::get(fd) else {
            return to_libc(r) as i32;
        };
        if !reg.thread_blocking() {
            return to_libc(r) as i32;
        }
        let deadline = reg.timeout(fd, Dir::Write).map(|d| Instant::now() + d);
        if !thread_wait(fd, Dir::Write, deadline) {
            return to_libc(EINPROGRESS) as i32;
        }
        return to_libc(connect_result(fd, reg)) as i32;
    }
    let np = NoPreempt::new();
    let reg = match ensure(fd) {
        Some(reg) if reg.kind() == Kind::Poll => reg,
        _ => return to_libc(raw()) as i32,
    };
    let gen = reg.gen();
    let mut snap = reg.seq(Dir::Write);
    let r = raw();
    if r != EINPROGRESS || !reg.emulates_blocking() {
        return to_libc(r) as i32;
    }
    let deadline = reg.timeout(fd, Dir::Write).map(|d| Instant::now() + d);
    loop {
        match reg.wait(Dir::Write, gen, snap, deadline, &np) {
            WaitOutcome::TimedOut => return to_libc(EINPROGRESS) as i32,
            WaitOutcome::Closed => return to_libc(-(libc::EBADF as isize)) as i32,
            WaitOutcome::Ready => {}
        }
        snap = reg.seq(Dir::Write);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one live pollfd, zero timeout.
        let n = unsafe { sc3(libc::SYS_poll, &mut p as *mut _ as usize, 1, 0) };
        if n > 0 {
            return to_libc(connect_result(fd, reg)) as i32;
        }
    }
}

/// Result of a connect that was in progress, as a blocking connect would
/// give it: SO_ERROR, except that ECONNRESET/EPIPE mean the connection was
/// established and then reset by the peer before we looked (a refused one
/// gives ECONNREFUSED) — a blocking connect returned 0 then and the next
/// read/write reported the reset, so keep the error for that call.
fn connect_result(fd: i32, reg: &registration::Registration) -> isize {
    let r = so_error(fd);
    if r == -(libc::ECONNRESET as isize) || r == -(libc::EPIPE as isize) {
        reg.set_pending_error((-r) as i32);
        return 0;
    }
    r
}

/// The pending socket error as a kernel result (0 or -errno).
fn so_error(fd: i32) -> isize {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int.
    let r = unsafe {
        syscall6(
            libc::SYS_getsockopt as usize,
            fd as usize,
            libc::SOL_SOCKET as usize,
            libc::SO_ERROR as usize,
            &mut err as *mut _ as usize,
            &mut len as *mut _ as usize,
            0,
        )
    };
    if r < 0 {
        r
    } else {
        -(err as isize)
    }
}

pub(crate) fn recvfrom(
    fd: i32,
    buf: *mut u8,
    n: usize,
    flags: i32,
    addr: *mut libc::sockaddr,
    alen: *mut libc::socklen_t,
) -> isize {
    // Only plain receives count toward `drained` (not MSG_PEEK, WAITALL…).
    let want = if flags & !(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) == 0 {
        n
    } else {
        0
    };
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    let once = |done: usize| {
        io_read(fd, dontwait, if done == 0 { want } else { 0 }, || {
            // SAFETY: the caller's buffer/address contract; `done <= n`.
            unsafe {
                syscall6(
                    libc::SYS_recvfrom as usize,
                    fd as usize,
                    buf as usize + done,
                    n - done,
                    flags as usize,
                    addr as usize,
                    alen as usize,
                )
            }
        })
    };
    let r = once(0);
    if flags & libc::MSG_WAITALL == 0
        || flags & (libc::MSG_DONTWAIT | libc::MSG_PEEK) != 0
        || r <= 0
        || r as usize >= n
    {
        return r;
    }
    // MSG_WAITALL on a stream whose blocking we emulate: the blocking call
    // waits for all `n` bytes (or EOF, an error, a timeout); over the
    // non-blocking fd the kernel returned what it had. Continue.
    match registration::get(fd) {
        Some(reg) if reg.thread_blocking() && reg.flags().contains(Flags::STREAM) => {}
        _ => return r,
    }
    let mut done = r as usize;
    while done < n {
        let e = crate::sys::errno();
        let r = once(done);
        if r <= 0 {
            // The bytes already received are the result (errno unchanged).
            crate::sys::set_errno(e);
            break;
        }
        done += r as usize;
    }
    done as isize
}

pub(crate) fn recvmsg(fd: i32, msg: *mut libc::msghdr, flags: i32) -> isize {
    // SAFETY: the caller's msghdr contract.
    let r = io(fd, Dir::Read, flags & libc::MSG_DONTWAIT != 0, || unsafe {
        sc3(libc::SYS_recvmsg, fd as usize, msg as usize, flags as usize)
    });
    if r >= 0 {
        // SAFETY: a successful recvmsg filled `msg`'s control data.
        unsafe { super::fdpass::received(msg) };
    }
    r
}

pub(crate) fn sendto(
    fd: i32,
    buf: *const u8,
    n: usize,
    flags: i32,
    addr: *const libc::sockaddr,
    alen: libc::socklen_t,
) -> isize {
    write_all_like(fd, n, flags & libc::MSG_DONTWAIT != 0, |done| {
        // SAFETY: `done <= n`; the caller's buffer/address contract.
        unsafe {
            syscall6(
                libc::SYS_sendto as usize,
                fd as usize,
                buf as usize + done,
                n - done,
                flags as usize,
                addr as usize,
                alen as usize,
            )
        }
    })
}

pub(crate) fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32) -> isize {
    // SAFETY: the caller's msghdr contract.
    let noted = unsafe { super::fdpass::sending(fd, msg) };
    // SAFETY: the caller's msghdr contract.
    let r = io(fd, Dir::Write, flags & libc::MSG_DONTWAIT != 0, || unsafe {
        sc3(libc::SYS_sendmsg, fd as usize, msg as usize, flags as usize)
    });
    if r < 0 {
        super::fdpass::unsent(&noted);
    }
    r
}

/// setsockopt(2): keeps the cached SO_RCVTIMEO/SO_SNDTIMEO current.
pub(crate) fn setsockopt(
    fd: i32,
    level: i32,
    name: i32,
    val: *const libc::c_void,
    len: libc::socklen_t,
) -> i32 {
    // SAFETY: the caller's option buffer contract.
    let r = to_libc(unsafe {
        syscall6(
            libc::SYS_setsockopt as usize,
            fd as usize,
            level as usize,
            name as usize,
            val as usize,
            len as usize,
            0,
        )
    }) as i32;
    // SO_RCVTIMEO_NEW (66) / SO_SNDTIMEO_NEW (67) use the same 16-byte
    // layout as timeval on x86-64.
    if r == 0
        && level == libc::SOL_SOCKET
        && matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | 66 | 67)
    {
        if let Some(reg) = registration::get_or_alloc(fd) {
            let dir = if matches!(name, libc::SO_RCVTIMEO | 66) {
                Dir::Read
            } else {
                Dir::Write
            };
            // SAFETY: the kernel accepted it as a timeval.
            let tv = unsafe { &*(val as *const libc::timeval) };
            let ns = tv.tv_sec as u128 * 1_000_000_000 + tv.tv_usec as u128 * 1000;
            reg.set_timeout(
                dir,
                (ns != 0)
                    .then(|| std::time::Duration::from_nanos(ns.min(u64::MAX as u128 - 1) as u64)),
            );
        }
    }
    r
}
