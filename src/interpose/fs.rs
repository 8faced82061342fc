//! Regular files: epoll cannot watch them, so a coroutine first tries the
//! call with `RWF_NOWAIT` (preadv2/pwritev2: served from the page cache or
//! EAGAIN), and only when it would block hands the plain call to a helper
//! thread (offload.rs: the capped `File` pool, at most
//! `COROUTINES_FILE_HELPERS` threads, further calls queued) while it parks.
//! procfs/sysfs/cgroupfs files never get here (io.rs makes them `PASS`:
//! read inline). Filesystems without RWF_NOWAIT
//! support (EOPNOTSUPP) are remembered per fd (`NO_NOWAIT`): reads then
//! always go to a helper, writes are made in place (buffered writes land
//! in the page cache).
//!
//! A RWF_NOWAIT read may return fewer bytes than asked (part was cached),
//! which read(2) allows for regular files too; std's `read_exact`/
//! `read_to_end` loop.

use crate::reactor::registration::{Dir, Registration, NO_NOWAIT};
use crate::sys::{self, to_libc};

const RWF_NOWAIT: usize = 0x8;

/// preadv2/pwritev2 on a `FILE` fd from a coroutine. `offset` -1 means the
/// current file position (read/write/readv/writev). libc convention.
pub(crate) fn file_rw(
    fd: i32,
    reg: &Registration,
    dir: Dir,
    iov: *const libc::iovec,
    cnt: i32,
    offset: i64,
) -> isize {
    let nr = if dir == Dir::Read {
        libc::SYS_preadv2
    } else {
        libc::SYS_pwritev2
    };
    let (iu, off) = (iov as usize, offset as usize);
    let plain = move || {
        // SAFETY: the caller's iovec array; offset -1 = current position.
        unsafe { sys::syscall6(nr as usize, fd as usize, iu, cnt as usize, off, 0, 0) }
    };
    if reg.flags() & NO_NOWAIT == 0 {
        // SAFETY: as above, with RWF_NOWAIT.
        let r = unsafe {
            sys::syscall6(
                nr as usize,
                fd as usize,
                iu,
                cnt as usize,
                off,
                0,
                RWF_NOWAIT,
            )
        };
        if r != -(libc::EAGAIN as isize) && r != -(libc::EOPNOTSUPP as isize) {
            return to_libc(r);
        }
        if r == -(libc::EOPNOTSUPP as isize) {
            reg.set_flag(NO_NOWAIT, true);
        }
    }
    if dir == Dir::Write && reg.flags() & NO_NOWAIT != 0 {
        return to_libc(plain());
    }
    to_libc(super::offload::offload(super::offload::Class::File, plain))
}

/// pread64/pwrite64/preadv/pwritev: on regular files from a coroutine via
/// `file_rw`; otherwise the plain call (pipes/sockets get ESPIPE anyway).
/// `positioned` for one buffer (pread/pwrite and their 64 names).
pub(crate) fn positioned_one(
    fd: i32,
    dir: Dir,
    buf: *mut libc::c_void,
    n: usize,
    offset: i64,
) -> isize {
    let iov = libc::iovec {
        iov_base: buf,
        iov_len: n,
    };
    positioned(fd, dir, &iov, 1, offset)
}

pub(crate) fn positioned(
    fd: i32,
    dir: Dir,
    iov: *const libc::iovec,
    cnt: i32,
    offset: i64,
) -> isize {
    if offset < 0 {
        // As the kernel says for pread/pwrite; -1 would mean "current
        // position" to preadv2 below.
        return to_libc(-(libc::EINVAL as isize));
    }
    if crate::sched::in_coroutine_user_code() {
        if let Some(reg) = super::io::ensure(fd) {
            if reg.kind() == crate::reactor::registration::FILE {
                return file_rw(fd, reg, dir, iov, cnt, offset);
            }
        }
    }
    let nr = if dir == Dir::Read {
        libc::SYS_preadv
    } else {
        libc::SYS_pwritev
    };
    // SAFETY: the caller's iovec array.
    to_libc(unsafe {
        sys::syscall6(
            nr as usize,
            fd as usize,
            iov as usize,
            cnt as usize,
            offset as usize,
            0,
            0,
        )
    })
}
