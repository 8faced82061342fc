//! fds handed to other programs.
//!
//! A socket or pipe the runtime made non-blocking shares that flag with
//! every process holding its open file description. Handed to a child as
//! its standard input or output (inetd/CGI style, `Stdio::from(stream)`),
//! or made this process's own stdin/stdout/stderr, it would make the other
//! side's blocking reads fail with EAGAIN (`cat: -: Resource temporarily
//! unavailable`). So such an fd gets its blocking mode back first: the
//! kernel flag is cleared and its description group marked as not
//! non-blocking by the runtime. Coroutines that keep using the fd still get
//! blocking semantics, from the kernel now (a call that waits blocks the
//! executor, as for `Pass` fds).

use crate::reactor::registration;
use crate::sys::{sc2, sc3};

/// Gives `fd`'s open file description its blocking mode back if the
/// runtime made it non-blocking behind a blocking user view.
pub(crate) fn restore_blocking(fd: i32) {
    let Some(reg) = registration::get(fd) else {
        return;
    };
    if !reg.thread_blocking() {
        return; // not the runtime's doing, or the user wants it non-blocking
    }
    registration::note_runtime_nonblock(reg, false);
    // SAFETY: fcntl F_GETFL has no pointer arguments.
    let fl = unsafe { sc2(libc::SYS_fcntl, fd as usize, libc::F_GETFL as usize) };
    if fl >= 0 && fl as i32 & libc::O_NONBLOCK != 0 {
        // SAFETY: F_SETFL takes an integer.
        unsafe {
            sc3(
                libc::SYS_fcntl,
                fd as usize,
                libc::F_SETFL as usize,
                (fl as i32 & !libc::O_NONBLOCK) as usize,
            )
        };
    }
}

/// glibc 2.36's `struct __spawn_action` (spawn_int.h): a tag, then a union
/// whose dup2 member is `{ int fd; int newfd; }` at offset 8; 32 bytes.
#[repr(C)]
struct SpawnAction {
    tag: i32,
    _pad: i32,
    fd: i32,
    newfd: i32,
    _rest: [usize; 2],
}
const SPAWN_DO_DUP2: i32 = 1;
/// The highest tag glibc 2.36 knows (`spawn_do_tcsetpgrp`).
const SPAWN_TAG_MAX: i32 = 6;

/// The `(fd, newfd)` pairs of a file-actions object's dup2 actions; None if
/// the object does not look like glibc's (then nothing is changed).
///
/// # Safety
/// `fa` is null or a file-actions object initialised by glibc.
unsafe fn spawn_dup2s(fa: *const libc::posix_spawn_file_actions_t) -> Option<Vec<(i32, i32)>> {
    if fa.is_null() || !spawn_layout_ok() {
        return None;
    }
    // SAFETY: caller: a glibc object; its public fields (libc's layout).
    let (allocated, used, actions) = unsafe {
        let raw = fa as *const i32;
        (
            *raw,
            *raw.add(1),
            *((raw as *const u8).add(8) as *const *const SpawnAction),
        )
    };
    if used < 0 || used > allocated || (used > 0 && actions.is_null()) {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..used as usize {
        // SAFETY: `used` initialised actions (checked against `allocated`).
        let a = unsafe { &*actions.add(i) };
        if !(0..=SPAWN_TAG_MAX).contains(&a.tag) {
            return None;
        }
        if a.tag == SPAWN_DO_DUP2 {
            out.push((a.fd, a.newfd));
        }
    }
    Some(out)
}

/// Whether glibc's file-actions layout is the one `spawn_dup2s` reads
/// (checked once on an object of our own).
fn spawn_layout_ok() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: an object of our own, initialised, one action added,
        // read through the layout under test, destroyed.
        unsafe {
            let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            if libc::posix_spawn_file_actions_init(&mut fa) != 0 {
                return false;
            }
            let ok = libc::posix_spawn_file_actions_addclose(&mut fa, 5) == 0
                && libc::posix_spawn_file_actions_adddup2(&mut fa, 7, 9) == 0
                && {
                    let raw = &fa as *const _ as *const i32;
                    let actions = *((raw as *const u8).add(8) as *const *const SpawnAction);
                    *raw.add(1) == 2
                        && !actions.is_null()
                        && (*actions).tag == 0
                        && (*actions).fd == 5
                        && (*actions.add(1)).tag == SPAWN_DO_DUP2
                        && (*actions.add(1)).fd == 7
                        && (*actions.add(1)).newfd == 9
                };
            libc::posix_spawn_file_actions_destroy(&mut fa);
            ok
        }
    })
}

/// Before `posix_spawn`: every fd the child receives through a dup2 action
/// gets its blocking mode back (module doc).
///
/// # Safety
/// `fa` is null or a file-actions object initialised by glibc.
pub(crate) unsafe fn hand_to_child(fa: *const libc::posix_spawn_file_actions_t) {
    // SAFETY: caller contract: `fa` is null or initialised by glibc, which
    // is what `spawn_dup2s` requires.
    if let Some(list) = unsafe { spawn_dup2s(fa) } {
        for (fd, _) in list {
            restore_blocking(fd);
        }
    }
}
