//! The fd-table bookkeeping hooks: close, dup/dup2/dup3, fcntl (the
//! O_NONBLOCK view, F_DUPFD, blocking record locks), flock, ioctl(FIONBIO)
//! and pipe2. Every caller goes through them (plain threads too): a
//! closed or re-used fd number must forget what the table knew (reset,
//! waiters woken with EBADF), a duplicate joins its original's
//! description group (reactor/desc.rs), and the user's O_NONBLOCK view of
//! an fd the runtime made non-blocking is recorded, not applied
//! (reactor/fd_state.rs, `USER_NONBLOCK`).

use super::handoff::restore_blocking;
use crate::reactor::registration::{self, Flags};
use crate::sys::{sc1, sc2, sc3, to_libc};

/// Forgets `fd` (closed, or about to be replaced by dup2): deregisters it
/// and wakes its waiters with EBADF.
#[inline]
fn forget(fd: i32) {
    if let Some(reg) = registration::get(fd) {
        if reg.dirty() && reg.reset() {
            crate::reactor::deregister(fd);
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
/// runtime's O_NONBLOCK bookkeeping, and join one description group
/// (registration.rs) so that a later lazy init through either number is
/// seen by plain threads using the other.
pub(crate) fn inherit(old: i32, new: i32) {
    registration::fresh(new);
    let (Some(o), Some(n)) = (
        registration::get_or_alloc(old),
        registration::get_or_alloc(new),
    ) else {
        return;
    };
    if o.managed() {
        n.set_flag(
            Flags::INHERITED | o.flags().and(Flags::USER_NONBLOCK | Flags::SOCKET),
            true,
        );
    }
    registration::share_desc(o, n);
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
        if (0..=2).contains(&new) {
            // Standard I/O (of this process or of a child about to exec,
            // std's fork path) is never non-blocking by the runtime's doing.
            restore_blocking(old);
        }
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
            let user = match registration::get(fd) {
                Some(reg) if r >= 0 && reg.managed() => {
                    Some(reg.flags().contains(Flags::USER_NONBLOCK))
                }
                Some(reg) if r >= 0 => registration::desc_view(reg),
                _ => None,
            };
            match user {
                Some(true) => r | libc::O_NONBLOCK,
                Some(false) => r & !libc::O_NONBLOCK,
                None => r,
            }
        }
        libc::F_SETFL => match registration::get(fd) {
            Some(reg) if reg.managed() || registration::desc_view(reg).is_some() => {
                let on = arg & libc::O_NONBLOCK as usize != 0;
                let r = raw(arg | libc::O_NONBLOCK as usize);
                if r >= 0 {
                    if reg.managed() {
                        reg.set_flag(Flags::USER_NONBLOCK, on);
                    }
                    registration::set_desc_view(reg, on);
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
        // A blocking record lock in a coroutine: try without waiting; if
        // the lock is held, wait for it on a helper thread (uncapped pool:
        // a lock wait has no bound) while the coroutine parks. Record locks
        // belong to the process (F_SETLKW) or the open file description
        // (F_OFD_SETLKW), not the thread, so the helper's lock is ours.
        libc::F_SETLKW | libc::F_OFD_SETLKW if crate::sched::in_coroutine_user_code() => {
            let nb = if cmd == libc::F_SETLKW {
                libc::F_SETLK
            } else {
                libc::F_OFD_SETLK
            };
            // SAFETY: the same argument (a struct flock) for the
            // non-blocking twin of `cmd`.
            let r = unsafe { sc3(libc::SYS_fcntl, fd as usize, nb as usize, arg) };
            if r >= 0 || !(r == -(libc::EAGAIN as isize) || r == -(libc::EACCES as isize)) {
                return to_libc(r) as i32;
            }
            super::offload::offload(
                super::offload::Class::Unbounded,
                crate::observe::wait::Job::FileLock { fd },
                move || raw(arg),
            )
        }
        _ => raw(arg),
    }
}

/// flock(2): in a coroutine a blocking `LOCK_SH`/`LOCK_EX` that would wait
/// waits on a helper thread (uncapped pool) while the coroutine parks (a
/// flock belongs to the open file description, not the thread).
pub(crate) fn flock(fd: i32, op: i32) -> i32 {
    let raw = move |op: i32| {
        // SAFETY: flock takes two integers.
        to_libc(unsafe { sc3(libc::SYS_flock, fd as usize, op as usize, 0) }) as i32
    };
    if op & libc::LOCK_NB != 0 || op & libc::LOCK_UN != 0 || !crate::sched::in_coroutine_user_code()
    {
        return raw(op);
    }
    // SAFETY: as above.
    let r = unsafe {
        sc3(
            libc::SYS_flock,
            fd as usize,
            (op | libc::LOCK_NB) as usize,
            0,
        )
    };
    if r != -(libc::EWOULDBLOCK as isize) {
        return to_libc(r) as i32;
    }
    super::offload::offload(
        super::offload::Class::Unbounded,
        crate::observe::wait::Job::FileLock { fd },
        move || raw(op),
    )
}

/// ioctl(2): FIONBIO on an fd the runtime made non-blocking only records
/// the user's view (the kernel flag stays set).
pub(crate) fn ioctl(fd: i32, req: u64, arg: usize) -> i32 {
    if req == libc::FIONBIO {
        if let Some(reg) = registration::get(fd) {
            if arg != 0 && (reg.managed() || registration::desc_view(reg).is_some()) {
                // SAFETY: FIONBIO's argument is a pointer to an int.
                let on = unsafe { *(arg as *const libc::c_int) } != 0;
                if reg.managed() {
                    reg.set_flag(Flags::USER_NONBLOCK, on);
                }
                registration::set_desc_view(reg, on);
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
