//! Generic fd I/O: the blocking-call emulation every socket/pipe hook uses,
//! lazy fd init, and the fd-table bookkeeping hooks (close, dup*, fcntl,
//! ioctl(FIONBIO), pipe), plus poll/ppoll/select/epoll_wait.
//!
//! Paths of a hooked call on fd `fd`:
//! - *thread path* (not user code on a coroutine): the plain syscall. Only
//!   if it fails with EAGAIN on an fd whose O_NONBLOCK the runtime set
//!   while the user's view is blocking, wait with poll(2) (honouring
//!   SO_RCVTIMEO/SO_SNDTIMEO) and retry — so plain threads still block.
//! - *coroutine path*: lazy init (`ensure`) then, for `POLL` fds: snapshot
//!   the edge counter, try the non-blocking syscall, on EAGAIN park on the
//!   registration (registration.rs) and retry; for `FILE` fds see fs.rs;
//!   `PASS` fds get the plain (blocking) call.

use std::time::{Duration, Instant};

use crate::reactor::registration::{
    self, Dir, Registration, WaitOutcome, FILE, INHERITED, INIT, PASS, POLL, SOCKET, STREAM,
    UNKNOWN, USER_NONBLOCK,
};
use crate::sched::{self, NoPreempt};
use crate::sys::{self, sc1, sc2, sc3, sc4, to_libc};

const EAGAIN: isize = -(libc::EAGAIN as isize);

/// Lazy init of `fd`'s registration from a coroutine: sockets and FIFOs
/// become non-blocking and join the epoll set (once per fd lifetime).
/// `None`: the fd is out of the table or fstat failed (bad fd) — the
/// caller makes the plain call and gets the kernel's error.
pub(crate) fn ensure(fd: i32) -> Option<&'static Registration> {
    let reg = registration::get_or_alloc(fd)?;
    loop {
        match reg.kind() {
            UNKNOWN => {
                if reg.begin_init() && !init(fd, reg) {
                    return None;
                }
            }
            INIT => std::hint::spin_loop(),
            _ => return Some(reg),
        }
    }
}

/// Runs the lazy init (we won `UNKNOWN -> INIT`). Returns false if the fd
/// is not open (the entry goes back to `UNKNOWN`).
fn init(fd: i32, reg: &Registration) -> bool {
    let gen = reg.gen();
    if fd <= 2 {
        // stdin/stdout/stderr are shared with other processes (a terminal
        // or the parent's pipe): never flip their O_NONBLOCK (Go #24164).
        reg.finish_init(PASS, 0);
        return true;
    }
    // SAFETY: an all-zero `stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat`.
    if unsafe { sc2(libc::SYS_fstat, fd as usize, &mut st as *mut _ as usize) } < 0 {
        reg.finish_init(UNKNOWN, 0);
        return false;
    }
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFSOCK | libc::S_IFIFO => {}
        libc::S_IFREG => {
            reg.finish_init(FILE, 0);
            return true;
        }
        _ => {
            reg.finish_init(PASS, 0);
            return true;
        }
    }
    let mut flags = reg.flags() & USER_NONBLOCK;
    let mut set_nb = false;
    if reg.flags() & INHERITED == 0 {
        // SAFETY: fcntl F_GETFL has no pointer arguments.
        let fl = unsafe { sc2(libc::SYS_fcntl, fd as usize, libc::F_GETFL as usize) };
        if fl < 0 {
            reg.finish_init(UNKNOWN, 0);
            return false;
        }
        if fl as i32 & libc::O_NONBLOCK != 0 {
            flags |= USER_NONBLOCK;
        } else {
            // SAFETY: as above.
            unsafe {
                sc3(
                    libc::SYS_fcntl,
                    fd as usize,
                    libc::F_SETFL as usize,
                    (fl as i32 | libc::O_NONBLOCK) as usize,
                )
            };
            set_nb = true;
        }
    }
    if fmt == libc::S_IFSOCK {
        flags |= SOCKET;
        let mut ty: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: getsockopt writes one int into `ty`.
        let r = unsafe {
            sys::syscall6(
                libc::SYS_getsockopt as usize,
                fd as usize,
                libc::SOL_SOCKET as usize,
                libc::SO_TYPE as usize,
                &mut ty as *mut i32 as usize,
                &mut len as *mut libc::socklen_t as usize,
                0,
            )
        };
        if r == 0 && ty == libc::SOCK_STREAM {
            flags |= STREAM;
        }
    } else {
        flags |= STREAM; // a pipe or FIFO
    }
    if crate::reactor::register(fd, gen) < 0 {
        if set_nb {
            // SAFETY: as above.
            let fl = unsafe { sc2(libc::SYS_fcntl, fd as usize, libc::F_GETFL as usize) };
            // SAFETY: as above.
            unsafe {
                sc3(
                    libc::SYS_fcntl,
                    fd as usize,
                    libc::F_SETFL as usize,
                    (fl as i32 & !libc::O_NONBLOCK) as usize,
                )
            };
        }
        reg.finish_init(PASS, 0);
        return true;
    }
    reg.finish_init(POLL, flags);
    true
}

/// Initialises the entry of a socket the runtime just created or accepted
/// non-blocking from a coroutine (kind known: no fstat/fcntl needed).
pub(crate) fn init_new_socket(fd: i32, user_nonblock: bool, no_timeouts: bool, stream: bool) {
    registration::fresh(fd);
    let Some(reg) = registration::get_or_alloc(fd) else {
        return;
    };
    if !reg.begin_init() {
        return;
    }
    if no_timeouts {
        reg.set_no_timeouts();
    }
    let flags =
        SOCKET | if user_nonblock { USER_NONBLOCK } else { 0 } | if stream { STREAM } else { 0 };
    if crate::reactor::register(fd, reg.gen()) < 0 {
        reg.finish_init(UNKNOWN, 0);
        return;
    }
    reg.finish_init(POLL, flags);
}

/// A hooked call on a pollable fd, in libc convention (errno set on -1).
/// `op` makes the raw syscall and returns the kernel result (-errno).
/// `dontwait`: this call is non-blocking by itself (MSG_DONTWAIT).
#[inline]
pub(crate) fn io<F: FnMut() -> isize>(fd: i32, dir: Dir, dontwait: bool, op: F) -> isize {
    if !sched::in_coroutine_user_code() {
        return thread_io(fd, dir, dontwait, op);
    }
    let np = NoPreempt::new();
    to_libc(co_io(fd, dir, dontwait, 0, op, &np))
}

/// `io` for a plain read of `want` bytes (read, recv/recvfrom without
/// flags): on a byte stream, a short read lets the next blocking read park
/// without a system call that would say EAGAIN (`Registration::drained`).
#[inline]
pub(crate) fn io_read<F: FnMut() -> isize>(fd: i32, dontwait: bool, want: usize, op: F) -> isize {
    if !sched::in_coroutine_user_code() {
        return thread_io(fd, Dir::Read, dontwait, op);
    }
    let np = NoPreempt::new();
    to_libc(co_io(fd, Dir::Read, dontwait, want, op, &np))
}

/// Thread path (module doc). Pass-through unless EAGAIN was caused by the
/// runtime's O_NONBLOCK.
#[inline]
pub(crate) fn thread_io<F: FnMut() -> isize>(
    fd: i32,
    dir: Dir,
    dontwait: bool,
    mut op: F,
) -> isize {
    let r = op();
    if r == 0 || r == -(libc::EPIPE as isize) {
        return to_libc(pending_or(fd, r));
    }
    if r != EAGAIN || dontwait {
        return to_libc(r);
    }
    thread_retry(fd, dir, op)
}

/// `r` (an EOF or EPIPE from the kernel), unless `connect` consumed a reset
/// error of this socket on the user's behalf: then that error, once.
#[cold]
pub(crate) fn pending_or(fd: i32, r: isize) -> isize {
    registration::get(fd)
        .and_then(|reg| reg.take_pending_error())
        .unwrap_or(r)
}

#[cold]
fn thread_retry<F: FnMut() -> isize>(fd: i32, dir: Dir, mut op: F) -> isize {
    let Some(reg) = registration::get(fd) else {
        return to_libc(EAGAIN);
    };
    if !reg.emulates_blocking() {
        return to_libc(EAGAIN);
    }
    let deadline = reg.timeout(fd, dir).map(|d| Instant::now() + d);
    loop {
        if !thread_wait(fd, dir, deadline) {
            return to_libc(EAGAIN);
        }
        let r = op();
        if r == 0 || r == -(libc::EPIPE as isize) {
            return to_libc(reg.take_pending_error().unwrap_or(r));
        }
        if r != EAGAIN {
            return to_libc(r);
        }
    }
}

/// Waits with poll(2) until `fd` is ready for `dir` or `deadline`; false on
/// timeout.
pub(crate) fn thread_wait(fd: i32, dir: Dir, deadline: Option<Instant>) -> bool {
    let events = if dir == Dir::Read {
        libc::POLLIN
    } else {
        libc::POLLOUT
    };
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe {
            sc3(
                libc::SYS_poll,
                &mut p as *mut _ as usize,
                1,
                ms as isize as usize,
            )
        };
        if r > 0 {
            return true;
        }
    }
}

/// Coroutine path; returns the kernel convention (-errno).
pub(crate) fn co_io<F: FnMut() -> isize>(
    fd: i32,
    dir: Dir,
    dontwait: bool,
    want: usize,
    mut op: F,
    np: &NoPreempt,
) -> isize {
    let Some(reg) = ensure(fd) else { return op() };
    if reg.kind() != POLL {
        return op();
    }
    let gen = reg.gen();
    // A plain read of a byte stream that would park on EAGAIN anyway.
    let stream_read = want > 0 && !dontwait && reg.flags() & STREAM != 0;
    let mut deadline: Option<Option<Instant>> = None;
    loop {
        let snap = reg.seq(dir);
        let r = if stream_read && reg.drained_at(snap) && reg.emulates_blocking() {
            EAGAIN // empty as of the last (short) read, no edge since
        } else {
            let r = op();
            if stream_read && r > 0 && (r as usize) < want {
                reg.set_drained(snap);
            }
            r
        };
        if r == 0 || r == -(libc::EPIPE as isize) {
            return reg.take_pending_error().unwrap_or(r);
        }
        if r != EAGAIN || dontwait || !reg.emulates_blocking() {
            return r;
        }
        let dl = *deadline.get_or_insert_with(|| reg.timeout(fd, dir).map(|d| Instant::now() + d));
        match reg.wait(dir, gen, snap, dl, np) {
            WaitOutcome::Ready => continue,
            WaitOutcome::TimedOut => return EAGAIN,
            WaitOutcome::Closed => return -(libc::EBADF as isize),
        }
    }
}

/// A write-like call: blocking semantics write everything (the kernel's
/// blocking send/write on a stream socket or pipe does), so on a partial
/// write to an fd whose blocking we emulate, continue with the rest.
/// `op(done)` writes from offset `done`.
#[inline]
pub(crate) fn write_all_like<F: FnMut(usize) -> isize>(
    fd: i32,
    len: usize,
    dontwait: bool,
    mut op: F,
) -> isize {
    let r = io(fd, Dir::Write, dontwait, || op(0));
    if r < 0 || r as usize >= len || r == 0 || dontwait {
        return r;
    }
    match registration::get(fd) {
        Some(reg) if reg.emulates_blocking() => {}
        _ => return r,
    }
    let mut done = r as usize;
    while done < len {
        let e = sys::errno();
        let r = io(fd, Dir::Write, false, || op(done));
        if r <= 0 {
            // The bytes already written are the result (errno unchanged).
            sys::set_errno(e);
            break;
        }
        done += r as usize;
    }
    done as isize
}

/// The registration of `fd` if the caller is user code on a coroutine and
/// `fd` is a regular file (fs.rs handles it), else None.
#[inline]
fn coroutine_file(fd: i32) -> Option<&'static Registration> {
    if !sched::in_coroutine_user_code() {
        return None;
    }
    ensure(fd).filter(|reg| reg.kind() == FILE)
}

/// read(2): sockets/pipes park; regular files try RWF_NOWAIT first.
pub(crate) fn read(fd: i32, buf: *mut u8, count: usize) -> isize {
    if let Some(reg) = coroutine_file(fd) {
        let iov = libc::iovec {
            iov_base: buf.cast(),
            iov_len: count,
        };
        return super::fs::file_rw(fd, reg, Dir::Read, &iov, 1, -1);
    }
    // SAFETY: the caller's buffer contract is the syscall's.
    io_read(fd, false, count, || unsafe {
        sc3(libc::SYS_read, fd as usize, buf as usize, count)
    })
}

/// readv(2).
pub(crate) fn readv(fd: i32, iov: *const libc::iovec, cnt: i32) -> isize {
    if let Some(reg) = coroutine_file(fd) {
        return super::fs::file_rw(fd, reg, Dir::Read, iov, cnt, -1);
    }
    // SAFETY: the caller's iovec contract is the syscall's.
    io(fd, Dir::Read, false, || unsafe {
        sc3(libc::SYS_readv, fd as usize, iov as usize, cnt as usize)
    })
}

/// write(2): sockets/pipes park and write everything; files see fs.rs.
pub(crate) fn write(fd: i32, buf: *const u8, count: usize) -> isize {
    if let Some(reg) = coroutine_file(fd) {
        let iov = libc::iovec {
            iov_base: buf as *mut _,
            iov_len: count,
        };
        return super::fs::file_rw(fd, reg, Dir::Write, &iov, 1, -1);
    }
    write_all_like(fd, count, false, |done| {
        // SAFETY: `done <= count`; the caller's buffer contract.
        unsafe {
            sc3(
                libc::SYS_write,
                fd as usize,
                buf as usize + done,
                count - done,
            )
        }
    })
}

/// writev(2) (a partial write is returned as is).
pub(crate) fn writev(fd: i32, iov: *const libc::iovec, cnt: i32) -> isize {
    if let Some(reg) = coroutine_file(fd) {
        return super::fs::file_rw(fd, reg, Dir::Write, iov, cnt, -1);
    }
    // SAFETY: the caller's iovec contract is the syscall's.
    io(fd, Dir::Write, false, || unsafe {
        sc3(libc::SYS_writev, fd as usize, iov as usize, cnt as usize)
    })
}

/// Forgets `fd` (closed, or about to be replaced by dup2): deregisters it
/// and wakes its waiters with EBADF.
#[inline]
fn forget(fd: i32) {
    if let Some(reg) = registration::get(fd) {
        if reg.kind() != UNKNOWN || reg.flags() != 0 {
            if reg.reset() == POLL {
                crate::reactor::deregister(fd);
            }
        }
    }
}

/// close(2): forget the fd first (so a reused number starts clean), then
/// close. Coroutines parked on it return EBADF.
pub(crate) fn close(fd: i32) -> i32 {
    forget(fd);
    // SAFETY: close takes no pointers.
    to_libc(unsafe { sc1(libc::SYS_close, fd as usize) }) as i32
}

/// The new fd `new` shares `old`'s file description: inherit the
/// runtime's O_NONBLOCK bookkeeping.
fn inherit(old: i32, new: i32) {
    registration::fresh(new);
    if let Some(o) = registration::get(old) {
        if o.managed() {
            if let Some(n) = registration::get_or_alloc(new) {
                n.set_flag(INHERITED | (o.flags() & (USER_NONBLOCK | SOCKET)), true);
            }
        }
    }
}

pub(crate) fn dup(old: i32) -> i32 {
    // SAFETY: no pointers.
    let r = to_libc(unsafe { sc1(libc::SYS_dup, old as usize) }) as i32;
    if r >= 0 {
        inherit(old, r);
    }
    r
}

pub(crate) fn dup3(old: i32, new: i32, flags: i32, two: bool) -> i32 {
    if old != new {
        forget(new);
    }
    let r = if two {
        // SAFETY: no pointers.
        to_libc(unsafe { sc2(libc::SYS_dup2, old as usize, new as usize) }) as i32
    } else {
        // SAFETY: no pointers.
        to_libc(unsafe { sc3(libc::SYS_dup3, old as usize, new as usize, flags as usize) }) as i32
    };
    if r >= 0 && old != new {
        inherit(old, r);
    }
    r
}

/// fcntl(2): F_GETFL/F_SETFL report and record the user's O_NONBLOCK view
/// on fds the runtime made non-blocking; F_DUPFD* inherit bookkeeping.
pub(crate) fn fcntl(fd: i32, cmd: i32, arg: usize) -> i32 {
    let raw = |arg: usize| {
        // SAFETY: the caller's argument contract for `cmd` is the syscall's.
        to_libc(unsafe { sc3(libc::SYS_fcntl, fd as usize, cmd as usize, arg) }) as i32
    };
    match cmd {
        libc::F_GETFL => {
            let r = raw(arg);
            match registration::get(fd) {
                Some(reg) if r >= 0 && reg.managed() => {
                    let user = if reg.flags() & USER_NONBLOCK != 0 {
                        libc::O_NONBLOCK
                    } else {
                        0
                    };
                    (r & !libc::O_NONBLOCK) | user
                }
                _ => r,
            }
        }
        libc::F_SETFL => match registration::get(fd) {
            Some(reg) if reg.managed() => {
                let r = raw(arg | libc::O_NONBLOCK as usize);
                if r >= 0 {
                    reg.set_flag(USER_NONBLOCK, arg & libc::O_NONBLOCK as usize != 0);
                }
                r
            }
            _ => raw(arg),
        },
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let r = raw(arg);
            if r >= 0 {
                inherit(fd, r);
            }
            r
        }
        _ => raw(arg),
    }
}

/// ioctl(2): FIONBIO on an fd the runtime made non-blocking only records
/// the user's view (the kernel flag stays set).
pub(crate) fn ioctl(fd: i32, req: u64, arg: usize) -> i32 {
    if req == libc::FIONBIO {
        if let Some(reg) = registration::get(fd) {
            if reg.managed() && arg != 0 {
                // SAFETY: FIONBIO's argument is a pointer to an int.
                let on = unsafe { *(arg as *const libc::c_int) } != 0;
                reg.set_flag(USER_NONBLOCK, on);
                return 0;
            }
        }
    }
    // SAFETY: the caller's argument contract for `req` is the syscall's.
    to_libc(unsafe { sc3(libc::SYS_ioctl, fd as usize, req as usize, arg) }) as i32
}

/// pipe2(2): a new fd pair; forget stale entries for their numbers.
pub(crate) fn pipe2(fds: *mut i32, flags: i32) -> i32 {
    // SAFETY: the caller provides room for two ints.
    let r = to_libc(unsafe { sc2(libc::SYS_pipe2, fds as usize, flags as usize) }) as i32;
    if r == 0 {
        // SAFETY: the kernel filled both.
        unsafe {
            registration::fresh(*fds);
            registration::fresh(*fds.add(1));
        }
    }
    r
}

/// The plain ppoll(2) system call on the caller's `n` pollfds at `fds`
/// (libc convention); `t` None waits forever.
fn raw_ppoll(fds: usize, n: u64, t: Option<Duration>) -> i32 {
    let ts = t.map(|d| libc::timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    });
    let tsp = ts
        .as_ref()
        .map_or(0, |t| t as *const libc::timespec as usize);
    // SAFETY: the caller's pollfd array (valid for the call, by poll's
    // contract; the offload path keeps the caller parked); our own
    // timespec copy.
    to_libc(unsafe { sys::syscall6(libc::SYS_ppoll as usize, fds, n as usize, tsp, 0, 8, 0) })
        as i32
}

/// poll(2). In a coroutine with a non-zero timeout: when every fd is a
/// socket/pipe the reactor manages, park on their registrations; else run
/// the poll on a helper thread.
pub(crate) fn poll(fds: *mut libc::pollfd, n: u64, timeout: Option<Duration>) -> i32 {
    if timeout == Some(Duration::ZERO) || !sched::in_coroutine_user_code() {
        return raw_ppoll(fds as usize, n, timeout);
    }
    let np = NoPreempt::new();
    // SAFETY: the caller passes `n` valid pollfds.
    let pfds = unsafe { std::slice::from_raw_parts(fds, n as usize) };
    let mut regs = Vec::with_capacity(pfds.len());
    for p in pfds {
        if p.fd < 0 {
            continue;
        }
        match ensure(p.fd) {
            Some(reg) if reg.kind() == POLL => regs.push((reg, p.events, reg.gen())),
            _ => {
                drop(np);
                let (fdsu, nn) = (fds as usize, n);
                // The coroutine (and its pollfd array) is parked meanwhile.
                return super::offload::offload(move || raw_ppoll(fdsu, nn, timeout));
            }
        }
    }
    let deadline = timeout.map(|d| Instant::now() + d);
    loop {
        let mut list = Vec::with_capacity(regs.len() * 2);
        for &(reg, ev, gen) in &regs {
            list.push((reg, Dir::Read, gen, reg.seq(Dir::Read)));
            if ev & libc::POLLOUT != 0 {
                list.push((reg, Dir::Write, gen, reg.seq(Dir::Write)));
            }
        }
        let r = raw_ppoll(fds as usize, n, Some(Duration::ZERO));
        if r != 0 {
            return r;
        }
        if Registration::wait_many(&list, deadline, &np) == WaitOutcome::TimedOut {
            return 0;
        }
    }
}

/// select(2): parks on a helper thread in a coroutine (unless the timeout
/// is zero).
pub(crate) fn select(
    n: i32,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> i32 {
    let zero = !tv.is_null() && {
        // SAFETY: non-null timeval from the caller.
        let t = unsafe { &*tv };
        t.tv_sec == 0 && t.tv_usec == 0
    };
    let (ru, wu, eu, tu) = (r as usize, w as usize, e as usize, tv as usize);
    let raw = move || {
        // SAFETY: the caller's fd_sets and timeval.
        to_libc(unsafe { sys::syscall6(libc::SYS_select as usize, n as usize, ru, wu, eu, tu, 0) })
            as i32
    };
    if zero || !sched::in_coroutine_user_code() {
        return raw();
    }
    super::offload::offload(raw)
}

/// epoll_wait(2) on the user's own epoll fd: parks on a helper thread in a
/// coroutine (unless the timeout is zero).
pub(crate) fn epoll_wait(epfd: i32, events: *mut libc::epoll_event, max: i32, timeout: i32) -> i32 {
    let eu = events as usize;
    let raw = move || {
        // SAFETY: the caller's events buffer.
        to_libc(unsafe {
            sc4(
                libc::SYS_epoll_wait,
                epfd as usize,
                eu,
                max as usize,
                timeout as isize as usize,
            )
        }) as i32
    };
    if timeout == 0 || !sched::in_coroutine_user_code() {
        return raw();
    }
    super::offload::offload(raw)
}

/// ppoll(2): without a signal mask it is `poll` with a finer timeout; with
/// one, the plain call (on a helper thread from a coroutine).
pub(crate) fn ppoll(
    fds: *mut libc::pollfd,
    n: u64,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> i32 {
    // SAFETY: the caller's timespec, if any.
    let timeout = (!ts.is_null()).then(|| unsafe {
        Duration::new(
            (*ts).tv_sec.max(0) as u64,
            (*ts).tv_nsec.clamp(0, 999_999_999) as u32,
        )
    });
    if sigmask.is_null() {
        return poll(fds, n, timeout);
    }
    let (fu, tu, su) = (fds as usize, ts as usize, sigmask as usize);
    let raw = move || {
        // Copy the timespec: glibc's ppoll does not write it back.
        // SAFETY: the caller's pointers.
        let copy = (tu != 0).then(|| unsafe { *(tu as *const libc::timespec) });
        let tp = copy
            .as_ref()
            .map_or(0, |t| t as *const libc::timespec as usize);
        // SAFETY: as above; sigsetsize is the kernel's (8 bytes).
        to_libc(unsafe { sys::syscall6(libc::SYS_ppoll as usize, fu, n as usize, tp, su, 8, 0) })
            as i32
    };
    if timeout == Some(Duration::ZERO) || !sched::in_coroutine_user_code() {
        return raw();
    }
    super::offload::offload(raw)
}
