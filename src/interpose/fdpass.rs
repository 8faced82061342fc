//! fds passed over Unix sockets (`SCM_RIGHTS`).
//!
//! A passed fd is a new number for the sender's open file description,
//! like a `dup`, and it carries the kernel's O_NONBLOCK with it. When the
//! runtime made that description non-blocking behind a blocking user view
//! (a socket a coroutine used), the receiver must know it:
//! - received in this process (the peer of the sending socket is this
//!   process: `SO_PEERCRED`), the new number inherits the bookkeeping as a
//!   `dup` does — the sender records each such fd (its inode, number and
//!   flags) in a small table before `sendmsg`, and `recvmsg` matches the fds it
//!   receives by inode. Without this the receiver's blocking reads failed
//!   with `WouldBlock` (20 of 20 in the battery's hand-off scenario);
//! - sent to another process, the description gets its blocking mode
//!   back first (handoff.rs `restore_blocking`, as for an fd handed to a
//!   child as its stdio): that process has no runtime that would know.
//!
//! Not covered: an fd passed in-process while more than `SLOTS` others are
//! in flight (the oldest entry is dropped: that receiver sees the runtime's
//! O_NONBLOCK), and fds passed over datagram sockets to an address
//! (`msg_name`; treated as another process).

use std::sync::Mutex;

use crate::reactor::registration::{self, Flags};

/// In-process hand-offs remembered at once.
const SLOTS: usize = 64;

/// One fd sent in-process: its inode, its number at send time and the
/// flags to inherit.
#[derive(Clone, Copy)]
struct InFlight {
    dev: u64,
    ino: u64,
    fd: i32,
    flags: Flags,
}

static IN_FLIGHT: Mutex<Vec<InFlight>> = Mutex::new(Vec::new());

/// The fds of the `SCM_RIGHTS` messages in `msg`'s control data.
///
/// # Safety
/// `msg` is a valid msghdr whose control buffer holds `msg_controllen`
/// initialised bytes (as after a successful sendmsg/recvmsg).
unsafe fn passed_fds(msg: *const libc::msghdr) -> Vec<i32> {
    let mut out = Vec::new();
    // SAFETY: caller contract; the CMSG macros stay within the control
    // buffer and each SCM_RIGHTS payload holds `(len - header) / 4` ints.
    unsafe {
        if msg.is_null() || (*msg).msg_control.is_null() {
            return out;
        }
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const i32;
                let head = data as usize - c as usize;
                let n = ((*c).cmsg_len as usize).saturating_sub(head) / 4;
                for i in 0..n {
                    out.push(data.add(i).read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    out
}

/// `(st_dev, st_ino)` of `fd`, by a raw fstat (errno untouched).
fn inode(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: all-zero bytes are a valid `struct stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: our own stat buffer.
    let r = unsafe {
        crate::sys::sc2(
            libc::SYS_fstat,
            fd as usize,
            &mut st as *mut libc::stat as usize,
        )
    };
    (r == 0).then_some((st.st_dev, st.st_ino))
}

/// Whether the peer of socket `fd` is this process.
fn peer_is_us(fd: i32) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: our own buffer and its length.
    let r = unsafe {
        crate::sys::syscall6(
            libc::SYS_getsockopt as usize,
            fd as usize,
            libc::SOL_SOCKET as usize,
            libc::SO_PEERCRED as usize,
            &mut cred as *mut libc::ucred as usize,
            &mut len as *mut libc::socklen_t as usize,
            0,
        )
    };
    // SAFETY: getpid has no arguments.
    r == 0 && cred.pid == unsafe { libc::getpid() }
}

/// Before a `sendmsg` on `fd`: notes the managed fds it passes when the
/// peer is this process (before the call: the receiver may take them the
/// moment the kernel queues them), or gives them their blocking mode back
/// when it is another process. Returns the inodes noted, for `unsent`.
///
/// # Safety
/// `msg` is null or a valid msghdr whose control buffer holds
/// `msg_controllen` initialised bytes (sendmsg's contract).
pub(crate) unsafe fn sending(fd: i32, msg: *const libc::msghdr) -> Vec<(u64, u64)> {
    let mut noted = Vec::new();
    // SAFETY: caller contract.
    let fds = unsafe { passed_fds(msg) };
    if fds.is_empty() {
        return noted;
    }
    // SAFETY: caller contract (`msg` valid: `passed_fds` found fds in it).
    let to_address = unsafe { !(*msg).msg_name.is_null() };
    let local = !to_address && peer_is_us(fd);
    for p in fds {
        let Some(reg) = registration::get(p) else {
            continue;
        };
        if !reg.managed() {
            continue; // the kernel flag is the user's: nothing to tell
        }
        if !local {
            super::handoff::restore_blocking(p);
            continue;
        }
        let Some((dev, ino)) = inode(p) else {
            continue;
        };
        let flags = reg.flags().and(Flags::USER_NONBLOCK | Flags::SOCKET);
        let mut t = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|e| (e.dev, e.ino) != (dev, ino));
        if t.len() == SLOTS {
            t.remove(0);
        }
        t.push(InFlight {
            dev,
            ino,
            fd: p,
            flags,
        });
        noted.push((dev, ino));
    }
    noted
}

/// After a `sendmsg` that failed: forgets what `sending` noted.
pub(crate) fn unsent(noted: &[(u64, u64)]) {
    if noted.is_empty() {
        return;
    }
    let mut t = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    t.retain(|e| !noted.contains(&(e.dev, e.ino)));
}

/// After a successful `recvmsg`: fds sent in-process inherit the sender's
/// bookkeeping.
///
/// # Safety
/// As `passed_fds`.
pub(crate) unsafe fn received(msg: *const libc::msghdr) {
    // SAFETY: caller contract.
    let fds = unsafe { passed_fds(msg) };
    if fds.is_empty() {
        return;
    }
    for n in fds {
        registration::fresh(n);
        let Some((dev, ino)) = inode(n) else {
            continue;
        };
        let hit = {
            let mut t = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
            let i = t.iter().position(|e| (e.dev, e.ino) == (dev, ino));
            i.map(|i| t.remove(i))
        };
        let Some(e) = hit else {
            continue;
        };
        // The flags noted at send time, never the sender's entry now: the
        // sender may close its number at any moment (an acceptor that hands
        // a connection off closes it right after `sendmsg`), and `close`
        // clears the entry before the kernel drops the number, so an
        // inode check followed by a look at the entry could find it
        // already unmanaged (seen once in CI: a worker's blocking read
        // failed with WouldBlock).
        let Some(r) = registration::get_or_alloc(n) else {
            continue;
        };
        r.set_flag(Flags::INHERITED | e.flags, true);
        if e.fd != n && inode(e.fd) == Some((dev, ino)) {
            if let Some(o) = registration::get(e.fd) {
                if o.managed() {
                    // The sender's number still names the description: one
                    // group, as after a dup.
                    registration::share_desc(o, r);
                }
            }
        }
    }
}
