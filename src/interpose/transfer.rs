//! Two-fd transfers: sendfile, splice, tee.
//!
//! std's `io::copy` moves bytes in the kernel when it can: `sendfile` from a
//! regular file to a socket or pipe, `splice` when either side is a pipe. A
//! socket or pipe the runtime made non-blocking behind a blocking user view
//! then gets EAGAIN from the kernel where the blocking call would wait, and
//! std reports `WouldBlock` (an HTTP server sending a file failed half-way).
//! These hooks give the blocking semantics back. On EAGAIN a zero-timeout
//! poll(2) tells which side is not ready: if that side's blocking is ours to
//! emulate the caller waits for it (a coroutine parks on the registrations'
//! edges, snapshotted before the try; a plain thread polls) and retries;
//! otherwise (the user's own O_NONBLOCK, an fd the runtime does not manage)
//! EAGAIN is the kernel's answer and is returned as is.

use std::time::{Duration, Instant};

use super::io::{ensure, thread_wait, EAGAIN};
use crate::reactor::registration::{self, Dir, Flags, Kind, Registration, WaitOutcome};
use crate::sched::{self, NoPreempt};
use crate::sys::{self, sc3, sc4, to_libc};

/// One side of a two-fd transfer: the fd and the direction it is used in.
#[derive(Clone, Copy)]
struct Side {
    fd: i32,
    dir: Dir,
}

/// The two sides of a transfer: read from `fd_in`, write to `fd_out`.
fn in_out(fd_in: i32, fd_out: i32) -> [Side; 2] {
    [
        Side {
            fd: fd_in,
            dir: Dir::Read,
        },
        Side {
            fd: fd_out,
            dir: Dir::Write,
        },
    ]
}

fn poll_events(dir: Dir) -> i16 {
    if dir == Dir::Read {
        libc::POLLIN
    } else {
        libc::POLLOUT
    }
}

/// Which of `sides` are not ready now (zero-timeout poll(2); an error or
/// hang-up counts as ready: the retry reports it).
fn not_ready(sides: &[Side; 2]) -> [bool; 2] {
    let mut p = sides.map(|s| libc::pollfd {
        fd: s.fd,
        events: poll_events(s.dir),
        revents: 0,
    });
    // SAFETY: two live pollfds.
    let r = unsafe { sc3(libc::SYS_poll, p.as_mut_ptr() as usize, 2, 0) };
    if r < 0 {
        return [false, false];
    }
    [p[0].revents == 0, p[1].revents == 0]
}

/// A transfer between `sides[0]` (read from) and `sides[1]` (written to)
/// in libc convention; `op` makes the raw syscall. `dontwait`: the call is
/// non-blocking by itself (SPLICE_F_NONBLOCK).
fn transfer<F: FnMut() -> isize>(sides: [Side; 2], dontwait: bool, mut op: F) -> isize {
    if !sched::in_coroutine_user_code() {
        let r = op();
        if r != EAGAIN || dontwait {
            return to_libc(r);
        }
        return to_libc(thread_transfer(sides, op));
    }
    let np = NoPreempt::new();
    to_libc(co_transfer(sides, dontwait, op, &np))
}

/// Thread path after an EAGAIN: wait with poll(2) for the side whose
/// blocking the runtime took away, retry.
#[cold]
fn thread_transfer<F: FnMut() -> isize>(sides: [Side; 2], mut op: F) -> isize {
    let emulated = sides.map(|s| registration::get(s.fd).is_some_and(|reg| reg.thread_blocking()));
    if !emulated.contains(&true) {
        return EAGAIN;
    }
    let mut spins = 0u32;
    loop {
        let nr = not_ready(&sides);
        if (0..2).any(|i| nr[i] && !emulated[i]) {
            return EAGAIN; // the user's own non-blocking fd is not ready
        }
        match (0..2).find(|&i| nr[i]) {
            Some(i) => {
                if !thread_wait(sides[i].fd, sides[i].dir, None) {
                    return EAGAIN;
                }
            }
            None => {
                // Both ready as polled, yet EAGAIN: a race with another
                // user of the fd; back off a little rather than spin.
                spins += 1;
                if spins > 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let r = op();
        if r != EAGAIN {
            return r;
        }
    }
}

/// Coroutine path; returns the kernel convention (-errno).
fn co_transfer<F: FnMut() -> isize>(
    sides: [Side; 2],
    dontwait: bool,
    mut op: F,
    np: &NoPreempt,
) -> isize {
    let regs = sides.map(|s| ensure(s.fd).filter(|reg| reg.kind() == Kind::Poll));
    if dontwait || regs.iter().all(|r| r.is_none()) {
        return op();
    }
    let gens = regs.map(|r| r.map_or(0, |reg| reg.gen()));
    let mut deadline: Option<Option<Instant>> = None;
    loop {
        let snaps = [0, 1].map(|i| regs[i].map_or(0, |reg| reg.seq(sides[i].dir)));
        let r = op();
        if r != EAGAIN {
            return r;
        }
        let nr = not_ready(&sides);
        let emulated = regs.map(|r| r.is_some_and(|reg| reg.emulates_blocking()));
        if (0..2).any(|i| nr[i] && !emulated[i]) || !emulated.contains(&true) {
            return EAGAIN; // the kernel's answer for a user non-blocking fd
        }
        let dl = *deadline.get_or_insert_with(|| {
            (0..2)
                .filter_map(|i| regs[i].and_then(|reg| reg.timeout(sides[i].fd, sides[i].dir)))
                .min()
                .map(|d| Instant::now() + d)
        });
        // Wait for an edge on the emulated sides (on the not-ready ones if
        // poll found any): an edge since the snapshot returns at once.
        let only_not_ready = nr.contains(&true);
        let mut list: Vec<(&Registration, Dir, u32, u32)> = Vec::with_capacity(2);
        for i in 0..2 {
            if let Some(reg) = regs[i] {
                if emulated[i] && (!only_not_ready || nr[i]) {
                    list.push((reg, sides[i].dir, gens[i], snaps[i]));
                }
            }
        }
        match Registration::wait_many(&list, dl, np) {
            WaitOutcome::Ready => continue,
            WaitOutcome::TimedOut => return EAGAIN,
            WaitOutcome::Closed => return -(libc::EBADF as isize),
        }
    }
}

/// sendfile(2) (and sendfile64): blocking semantics send `count` bytes
/// unless the file ends first (the blocking call to a stream socket or a
/// pipe does), so a partial transfer to an fd whose blocking is emulated
/// continues; the kernel advances `*offset` (or the file position).
pub(crate) fn sendfile(out_fd: i32, in_fd: i32, offset: *mut libc::off_t, count: usize) -> isize {
    let sides = in_out(in_fd, out_fd);
    let once = |n: usize| {
        // SAFETY: the caller's `offset` contract is the syscall's.
        transfer(sides, false, || unsafe {
            sc4(
                libc::SYS_sendfile,
                out_fd as usize,
                in_fd as usize,
                offset as usize,
                n,
            )
        })
    };
    let r = once(count);
    if r <= 0 || r as usize >= count {
        return r;
    }
    match registration::get(out_fd) {
        Some(reg) if reg.thread_blocking() && reg.flags().contains(Flags::STREAM) => {}
        _ => return r,
    }
    let mut done = r as usize;
    while done < count {
        let e = sys::errno();
        let r = once(count - done);
        if r <= 0 {
            // The bytes already sent are the result (errno unchanged).
            sys::set_errno(e);
            break;
        }
        done += r as usize;
    }
    done as isize
}

/// splice(2): returns after moving what is available, as the blocking call
/// does; waits where it would block.
pub(crate) fn splice(
    fd_in: i32,
    off_in: *mut libc::loff_t,
    fd_out: i32,
    off_out: *mut libc::loff_t,
    len: usize,
    flags: u32,
) -> isize {
    let sides = in_out(fd_in, fd_out);
    let dontwait = flags & libc::SPLICE_F_NONBLOCK != 0;
    // SAFETY: the caller's offset pointers contract is the syscall's.
    transfer(sides, dontwait, || unsafe {
        sys::syscall6(
            libc::SYS_splice as usize,
            fd_in as usize,
            off_in as usize,
            fd_out as usize,
            off_out as usize,
            len,
            flags as usize,
        )
    })
}

/// tee(2) between two pipes: waits where the blocking call would.
pub(crate) fn tee(fd_in: i32, fd_out: i32, len: usize, flags: u32) -> isize {
    let sides = in_out(fd_in, fd_out);
    let dontwait = flags & libc::SPLICE_F_NONBLOCK != 0;
    // SAFETY: tee takes no pointers.
    transfer(sides, dontwait, || unsafe {
        sc4(
            libc::SYS_tee,
            fd_in as usize,
            fd_out as usize,
            len,
            flags as usize,
        )
    })
}
