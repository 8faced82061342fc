//! Regular files: epoll cannot watch them, so a coroutine first tries the
//! call with `RWF_NOWAIT` (preadv2/pwritev2: served from the page cache or
//! EAGAIN), and only when it would block hands the plain call to a helper
//! thread (offload.rs: the capped `File` pool, at most
//! `COROUTINES_FILE_HELPERS` threads, further calls queued) while it parks.
//! procfs/sysfs/cgroupfs files never get here (io.rs makes them `Pass`:
//! read inline). Filesystems without RWF_NOWAIT
//! support (EOPNOTSUPP) are remembered per fd (`NO_NOWAIT`): reads then
//! always go to a helper, writes are made in place (buffered writes land
//! in the page cache).
//!
//! A RWF_NOWAIT read may return fewer bytes than asked (part was cached),
//! which read(2) allows for regular files too; std's `read_exact`/
//! `read_to_end` loop.

use crate::reactor::registration::{Dir, Flags, Kind, Registration};
use crate::sys::{self, to_libc};

const RWF_NOWAIT: usize = 0x8;

/// preadv2/pwritev2 on a `File` fd from a coroutine. `offset` -1 means the
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
    if !reg.flags().contains(Flags::NO_NOWAIT) {
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
            reg.set_flag(Flags::NO_NOWAIT, true);
        }
    }
    if dir == Dir::Write && reg.flags().contains(Flags::NO_NOWAIT) {
        return to_libc(plain());
    }
    to_libc(super::offload::offload(
        super::offload::Class::File,
        crate::observe::wait::Job::File { fd },
        plain,
    ))
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
            if reg.kind() == Kind::File {
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

// ---- open: a FIFO's open waits for the other end ----
//
// `open`/`openat` (and `creat`, and the fortified `__open_2` forms C code
// built with _FORTIFY_SOURCE calls) of a FIFO without O_NONBLOCK waits in
// the kernel until
// the other end is opened (a reader waits for a writer and vice versa). In
// coroutine user code that would block the executor, and the other end is
// often a sibling coroutine queued on it. So there the hook first asks the
// path's type (`newfstatat`, following symlinks unless O_NOFOLLOW) and,
// for a FIFO, runs the real open on a helper of the uncapped pool (the
// wait has no bound) while the coroutine parks; the fd table is the
// process's, so the helper's fd is the caller's. Everything else opens
// inline.
//
// Cost: the type check is one path walk (about 400 ns on a 750 ns
// open+close of a cached file, measured on a 2-core VM). To keep the
// common open of the same regular files (a server serving static files,
// SQLite reopening its journal) as fast as without the hook, a path found
// not to be a FIFO is remembered in `NOT_FIFO` (a 64-bit hash of dirfd and
// path in a direct-mapped table) and later opens of it skip the check.
// The table can only be stale in one direction: a path that was a regular
// file and is a FIFO now opens inline, i.e. blocks the executor as an
// unhooked open does (the blocked-executor detector copes); the call made
// is always the caller's own `openat`, so results and errno never differ.
//
// Skipped without any check (cannot wait for a FIFO's other end):
// O_NONBLOCK, O_PATH, O_DIRECTORY (and O_TMPFILE, which contains it),
// O_CREAT|O_EXCL (creates a new regular file or fails), and every open
// outside coroutine user code.
//
// `fopen`/`fopen64` (C stdio; glibc opens with its internal `__open`,
// which no hook sees) get the same treatment: with a FIFO path, glibc's
// own `fopen` runs on the helper (the FILE it returns is an ordinary
// heap object, usable from any thread).
//
// `freopen`/`freopen64` likewise (the stream's old fd, closed by glibc's
// internal `__close`, and its new one start clean).
//
// Not covered: a path swapped for a FIFO between the check and the open
// (blocks the executor, as before), other opens inside glibc (`popen`
// does not open paths), and devices whose open waits (a serial line
// waiting for carrier): they block the executor.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const NOT_FIFO_SLOTS: usize = 1024;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicU64 = AtomicU64::new(0);
/// Hashes of (dirfd, path) last seen not to be a FIFO (comment above).
static NOT_FIFO: [AtomicU64; NOT_FIFO_SLOTS] = [EMPTY; NOT_FIFO_SLOTS];

/// FNV-1a over `dirfd` and the NUL-terminated `path`; never 0 (0 marks an
/// empty slot).
///
/// # Safety
/// `path` points to a NUL-terminated string.
unsafe fn path_key(dirfd: i32, path: *const libc::c_char) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (dirfd as u32 as u64);
    let mut p = path as *const u8;
    loop {
        // SAFETY: within the string, up to and including its NUL (the
        // caller's contract).
        let b = unsafe { *p };
        if b == 0 {
            break;
        }
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        // SAFETY: `b` was not the NUL, so the next byte is in the string.
        p = unsafe { p.add(1) };
    }
    h | 1
}

/// openat(2) (and open = openat(AT_FDCWD, …)), libc convention. `mode` is
/// read only by the kernel with O_CREAT/O_TMPFILE, as in glibc.
pub(crate) fn openat(dirfd: i32, path: *const libc::c_char, flags: i32, mode: u32) -> i32 {
    let p = path as usize;
    let raw = move || {
        // SAFETY: the caller's path (openat's contract; on a helper the
        // caller is parked until it returns); the kernel validates it and
        // ignores `mode` unless it creates.
        to_libc(unsafe {
            sys::sc4(
                libc::SYS_openat,
                dirfd as isize as usize,
                p,
                flags as usize,
                mode as usize,
            )
        }) as i32
    };
    let r = if flags & (libc::O_NONBLOCK | libc::O_PATH | libc::O_DIRECTORY) != 0
        || flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL
        || path.is_null()
        || !crate::sched::in_coroutine_user_code()
    {
        raw()
    } else if is_fifo(dirfd, path, flags) {
        super::offload::offload(
            super::offload::Class::Unbounded,
            crate::observe::wait::Job::Open(path),
            raw,
        )
    } else {
        raw()
    };
    if r >= 0 {
        crate::reactor::registration::fresh(r);
    }
    r
}

/// Runs `call` (glibc's own `fopen` or `freopen` of `path` with `mode`)
/// on a helper of the uncapped pool while the coroutine parks if `path`
/// names a FIFO and the mode can wait for the other end (not "x": that
/// fails on an existing file), inline otherwise; returns its result.
fn stdio_open(
    path: *const libc::c_char,
    mode: *const libc::c_char,
    call: impl FnOnce() -> usize + Send,
) -> usize {
    let waits = !path.is_null()
        && !mode.is_null()
        // SAFETY: a non-null mode from the caller of fopen/freopen is
        // NUL-terminated (their contract).
        && !unsafe { std::ffi::CStr::from_ptr(mode) }
            .to_bytes()
            .contains(&b'x')
        && crate::sched::in_coroutine_user_code()
        && is_fifo(libc::AT_FDCWD, path, 0);
    if waits {
        super::offload::offload(
            super::offload::Class::Unbounded,
            crate::observe::wait::Job::Open(path),
            call,
        )
    } else {
        call()
    }
}

/// glibc's `fopen` and `fopen64` (one function with two names).
static REAL_FOPEN: AtomicUsize = AtomicUsize::new(0);

/// fopen(3)/fopen64(3), libc convention: glibc's own, on a helper of the
/// uncapped pool while the coroutine parks if `path` names a FIFO and the
/// mode can wait for the other end (not "x": that fails on an existing
/// file), inline otherwise.
pub(crate) fn fopen(path: *const libc::c_char, mode: *const libc::c_char) -> *mut libc::FILE {
    type Fopen = unsafe extern "C" fn(*const libc::c_char, *const libc::c_char) -> *mut libc::FILE;
    let real = sys::resolve_next(&REAL_FOPEN, c"fopen");
    let (p, m) = (path as usize, mode as usize);
    let call = move || {
        // SAFETY: glibc's fopen, of this signature, with the caller's
        // arguments (on a helper the caller is parked until it returns).
        (unsafe { std::mem::transmute::<usize, Fopen>(real)(p as _, m as _) }) as usize
    };
    let f = stdio_open(path, mode, call) as *mut libc::FILE;
    if !f.is_null() {
        // SAFETY: a FILE glibc just opened; `fileno` reads its fd.
        crate::reactor::registration::fresh(unsafe { libc::fileno(f) });
    }
    f
}

/// glibc's `freopen` and `freopen64` (one function with two names).
static REAL_FREOPEN: AtomicUsize = AtomicUsize::new(0);

/// freopen(3)/freopen64(3), libc convention: as [`fopen`] — glibc's own,
/// on a helper while the coroutine parks, if `path` names a FIFO and the
/// mode can wait. A null `path` (a mode change of the same file) opens
/// nothing and runs inline. glibc closes the stream's old fd with its
/// internal `__close`, which no hook sees: that number, and the new one
/// (often the same), start clean afterwards.
pub(crate) fn freopen(
    path: *const libc::c_char,
    mode: *const libc::c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    type Freopen = unsafe extern "C" fn(
        *const libc::c_char,
        *const libc::c_char,
        *mut libc::FILE,
    ) -> *mut libc::FILE;
    let real = sys::resolve_next(&REAL_FREOPEN, c"freopen");
    let (p, m, st) = (path as usize, mode as usize, stream as usize);
    let call = move || {
        // SAFETY: glibc's freopen, of this signature, with the caller's
        // arguments (on a helper the caller is parked until it returns;
        // the stream's lock is taken by whichever thread runs the call).
        (unsafe { std::mem::transmute::<usize, Freopen>(real)(p as _, m as _, st as _) }) as usize
    };
    let old_fd = if stream.is_null() {
        -1
    } else {
        // SAFETY: a stream from freopen's caller is an open FILE (its
        // contract).
        unsafe { libc::fileno(stream) }
    };
    let r = stdio_open(path, mode, call);
    if !path.is_null() && old_fd >= 0 {
        crate::reactor::registration::fresh(old_fd);
    }
    let f = r as *mut libc::FILE;
    if !f.is_null() {
        // SAFETY: the FILE glibc just reopened; `fileno` reads its fd.
        crate::reactor::registration::fresh(unsafe { libc::fileno(f) });
    }
    f
}

/// The fortified `__open_2` family (`name`): without a mode argument,
/// flags that create (O_CREAT, O_TMPFILE) are a programming error glibc
/// reports by aborting, so those go to glibc's own function; the rest is
/// `openat` with mode 0.
pub(crate) fn open_2(
    dirfd: i32,
    path: *const libc::c_char,
    flags: i32,
    name: &std::ffi::CStr,
) -> i32 {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds libc's.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if f == 0 {
            sys::fatal("coroutines: dlsym(RTLD_NEXT) failed for __open_2");
        }
        return if name.to_bytes().starts_with(b"__openat") {
            // SAFETY: glibc's __openat_2/__openat64_2, of this signature,
            // with the caller's arguments (it aborts the process).
            unsafe {
                std::mem::transmute::<
                    usize,
                    unsafe extern "C" fn(i32, *const libc::c_char, i32) -> i32,
                >(f)(dirfd, path, flags)
            }
        } else {
            // SAFETY: glibc's __open_2/__open64_2, of this signature, with
            // the caller's arguments (it aborts the process).
            unsafe {
                std::mem::transmute::<usize, unsafe extern "C" fn(*const libc::c_char, i32) -> i32>(
                    f,
                )(path, flags)
            }
        };
    }
    openat(dirfd, path, flags, 0)
}

/// Whether `path` (relative to `dirfd`) names a FIFO now; remembers the
/// paths that do not (comment above). A raw system call: errno untouched.
fn is_fifo(dirfd: i32, path: *const libc::c_char, flags: i32) -> bool {
    let nofollow = flags & libc::O_NOFOLLOW != 0;
    // SAFETY: a non-null path from open's caller is NUL-terminated.
    let key = unsafe { path_key(dirfd, path) };
    // A symlink to a FIFO is "not a FIFO" only for O_NOFOLLOW opens.
    let key = if nofollow { key ^ 2 } else { key };
    let slot = &NOT_FIFO[(key as usize) % NOT_FIFO_SLOTS];
    // Relaxed: a hint only; a stale or torn view costs a check or, at
    // worst, an inline open (comment above).
    if slot.load(Ordering::Relaxed) == key {
        return false;
    }
    // SAFETY: all-zero bytes are a valid `struct stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let at = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: the caller's NUL-terminated path and our own stat buffer.
    let r = unsafe {
        sys::sc4(
            libc::SYS_newfstatat,
            dirfd as isize as usize,
            path as usize,
            &mut st as *mut libc::stat as usize,
            at as usize,
        )
    };
    if r < 0 {
        // Not there (or not reachable): the open fails or creates a
        // regular file; do not remember (it may become anything).
        return false;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFIFO {
        return true;
    }
    slot.store(key, Ordering::Relaxed);
    false
}
