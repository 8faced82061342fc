//! Interposed libc functions: blocking std (and C) I/O, sleeps and name
//! lookups yield inside coroutines instead of blocking the executor.
//!
//! Problem: user code calls `read`, `accept`, `connect`, `nanosleep`… and
//! expects to block. On a coroutine that would block the executor and
//! every coroutine queued on it. These `#[no_mangle] extern "C"`
//! definitions carry the libc names, so the static link binds std's (and
//! every statically linked crate's) calls to them instead of libc.so's.
//!
//! Each shim is three lines calling its family module: io.rs (generic fd
//! I/O, fd bookkeeping, the poll family: poll/ppoll/select/pselect/
//! epoll_wait/epoll_pwait/epoll_pwait2 park on the reactor), net.rs
//! (sockets), fs.rs (regular files), time.rs (sleeps), dns.rs
//! (getaddrinfo), signal.rs (sigwait & co), offload.rs (helper threads: a capped pool for file I/O,
//! an uncapped one for waits without a bound), pthread.rs (pthread
//! mutexes, condvars, rwlocks, semaphores, once), wait.rs (waiting for
//! children and OS threads). The kernel is reached by raw syscalls (sys.rs) or, for
//! getaddrinfo, libc's own function from `dlsym(RTLD_NEXT)`: never through
//! a libc symbol that is itself one of these hooks.
//!
//! Paths, decided once per call by `sched::in_coroutine_user_code()` (one
//! thread-local load):
//! 1. *not user code on a coroutine* (main thread, plain threads, helper
//!    threads, runtime code with a raised no-preempt level): the plain
//!    syscall. Only an EAGAIN on an fd the runtime made non-blocking
//!    behind a blocking user view costs more: a poll(2) wait, so plain
//!    threads keep blocking semantics.
//! 2. *user code on a coroutine*: the hook raises the no-preempt level
//!    (no preemption inside hook code), lazily registers the fd, and parks
//!    the coroutine when the call would block (io.rs).
//!
//! Exported symbols (keep in sync with `verify` and `EXPORTED`): socket
//! socketpair accept accept4 connect read readv write writev sendfile
//! sendfile64 splice tee recv recvfrom
//! recvmsg send sendto sendmsg setsockopt poll ppoll select pselect
//! epoll_wait epoll_pwait epoll_pwait2 close dup dup2
//! dup3 fcntl fcntl64 flock ioctl pipe pipe2 nanosleep clock_nanosleep usleep
//! sleep getaddrinfo pread pread64 preadv preadv64 pwrite pwrite64 pwritev
//! pwritev64, fork (tls/alias.rs: keeps a fork child off the executor's
//! shared TLS region), `syscall` (futex.rs: emulates FUTEX_WAIT/WAKE for
//! coroutines; every other system call number passes straight through),
//! and `sched_yield` (below: yields the coroutine in coroutine user code).
//! and pthread.rs's pthread_mutex_lock pthread_mutex_trylock
//! pthread_mutex_timedlock pthread_mutex_clocklock pthread_mutex_unlock
//! pthread_cond_wait pthread_cond_timedwait pthread_cond_clockwait
//! pthread_cond_signal pthread_cond_broadcast pthread_rwlock_rdlock
//! pthread_rwlock_wrlock pthread_rwlock_tryrdlock pthread_rwlock_trywrlock
//! pthread_rwlock_timedrdlock pthread_rwlock_timedwrlock
//! pthread_rwlock_clockrdlock pthread_rwlock_clockwrlock
//! pthread_rwlock_unlock sem_wait sem_timedwait sem_clockwait sem_post
//! pthread_once pthread_barrier_wait pthread_spin_lock (glibc's own
//! functions do the work; a coroutine that must wait parks, or yields
//! between tries of a spin lock), and wait.rs's waitpid wait wait4 waitid pthread_join (a
//! coroutine waiting for a child or an OS thread parks) posix_spawn
//! posix_spawnp (run on a helper thread from a coroutine), and fs.rs's
//! open open64 openat openat64 creat creat64 and the fortified __open_2
//! __open64_2 __openat_2 __openat64_2 (a FIFO's open, which waits for the other
//! end, runs on a helper thread from a coroutine), and signal.rs's
//! sigwait sigwaitinfo sigtimedwait sigsuspend pause (the wait runs on a
//! helper thread while the coroutine parks).
//!
//! What still blocks an executor: reads and writes on `PASS` fds
//! (terminals, /dev/*, eventfd, timerfd, fds 0-2; waiting for them with
//! poll/select/epoll parks), `stat` and other metadata calls, an `open`
//! that waits in a device driver, waits for a child's stop/continue, C code issuing
//! syscalls itself, and libc's internal calls (glibc calls its own `__read`
//! etc., e.g. inside stdio).
//! Shared libraries (.so) calling `read` through their PLT do reach the
//! hooks: the executable exports them in its dynamic symbol table (checked
//! by `verify` with `dlsym(RTLD_DEFAULT)`).
//!
//! Rejected: LD_PRELOAD or a separate C library (the seed crate's way:
//! something to install, and easy to forget); patching libc's PLT/GOT at
//! run time (fragile, and std's calls do not go through libc.so's own
//! tables).
//!
//! Invariants: no shim unwinds (every family function is panic-free or
//! catches — offload re-raises a helper's panic only inside the coroutine,
//! where the coroutine's catch_unwind takes it); errno is set exactly as
//! the kernel would, on the calling thread; `verify` runs at start-up.

mod dns;
mod fs;
pub(crate) mod futex;
mod io;
mod net;
mod offload;
mod pthread;
mod signal;
mod time;
mod wait;

pub(crate) use offload::DEFAULT_FILE_HELPERS;

/// (alive now, most at once) helper threads of the regular-file pool and
/// of the unbounded pool (getaddrinfo, unwatchable polls), for `stats()`.
pub(crate) fn helper_counts() -> ((usize, usize), (usize, usize)) {
    (
        offload::helper_counts(offload::Class::File),
        offload::helper_counts(offload::Class::Unbounded),
    )
}

use libc::{c_char, c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::reactor::registration::Dir;

/// Names of every `#[no_mangle]` hook this module exports (the list in the
/// module doc). They are Rust code with C names; the preemption handler's
/// classification of the executable's symbols (preempt/zones.rs) must not
/// mistake them for C code. A unit test checks it against `verify`'s list.
pub(crate) const EXPORTED: &[&str] = &[
    "socket",
    "socketpair",
    "accept",
    "accept4",
    "connect",
    "read",
    "readv",
    "write",
    "writev",
    "sendfile",
    "sendfile64",
    "splice",
    "tee",
    "recv",
    "recvfrom",
    "recvmsg",
    "send",
    "sendto",
    "sendmsg",
    "setsockopt",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "close",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "fcntl64",
    "ioctl",
    "pipe",
    "pipe2",
    "nanosleep",
    "clock_nanosleep",
    "usleep",
    "sleep",
    "getaddrinfo",
    "pread",
    "pread64",
    "preadv",
    "preadv64",
    "pwrite",
    "pwrite64",
    "pwritev",
    "pwritev64",
    "fork",
    "syscall",
    "sched_yield",
    "flock",
    "pthread_mutex_lock",
    "pthread_mutex_trylock",
    "pthread_mutex_timedlock",
    "pthread_mutex_clocklock",
    "pthread_mutex_unlock",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "pthread_cond_clockwait",
    "pthread_cond_signal",
    "pthread_cond_broadcast",
    "pthread_rwlock_rdlock",
    "pthread_rwlock_wrlock",
    "pthread_rwlock_tryrdlock",
    "pthread_rwlock_trywrlock",
    "pthread_rwlock_timedrdlock",
    "pthread_rwlock_timedwrlock",
    "pthread_rwlock_clockrdlock",
    "pthread_rwlock_clockwrlock",
    "pthread_rwlock_unlock",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
    "sem_post",
    "pthread_once",
    "pthread_barrier_wait",
    "waitpid",
    "wait",
    "wait4",
    "waitid",
    "pthread_join",
    "posix_spawn",
    "posix_spawnp",
    "open",
    "open64",
    "openat",
    "openat64",
    "creat",
    "creat64",
    "__open_2",
    "__open64_2",
    "__openat_2",
    "__openat64_2",
    "sigwait",
    "sigwaitinfo",
    "sigtimedwait",
    "sigsuspend",
    "pause",
    "pthread_spin_lock",
];

/// Start-up check: every hook must be what the program's calls to the libc
/// name reach. Taking the addresses here also keeps the hooks linked in
/// every build (debug, release, LTO): runtime start-up references this.
pub(crate) fn verify() -> Result<(), String> {
    macro_rules! pairs {
        ($($name:ident),* $(,)?) => {
            [$((stringify!($name), $name as *const () as usize, libc::$name as *const () as usize)),*]
        };
    }
    let list = pairs![
        socket,
        accept,
        accept4,
        connect,
        read,
        readv,
        write,
        writev,
        sendfile,
        sendfile64,
        splice,
        tee,
        recv,
        recvfrom,
        recvmsg,
        send,
        sendto,
        sendmsg,
        setsockopt,
        poll,
        ppoll,
        select,
        pselect,
        epoll_wait,
        epoll_pwait,
        epoll_pwait2,
        close,
        dup,
        dup2,
        dup3,
        fcntl,
        ioctl,
        nanosleep,
        clock_nanosleep,
        usleep,
        sleep,
        getaddrinfo,
        pread64,
        preadv,
        pwrite64,
        pipe,
        pipe2,
        socketpair,
        fork,
        sched_yield,
        flock,
        pthread_mutex_lock,
        pthread_mutex_trylock,
        pthread_mutex_timedlock,
        pthread_mutex_unlock,
        pthread_cond_wait,
        pthread_cond_timedwait,
        pthread_cond_signal,
        pthread_cond_broadcast,
        pthread_rwlock_rdlock,
        pthread_rwlock_wrlock,
        pthread_rwlock_tryrdlock,
        pthread_rwlock_trywrlock,
        pthread_rwlock_unlock,
        sem_wait,
        sem_timedwait,
        sem_post,
        pthread_once,
        pthread_barrier_wait,
        waitpid,
        wait4,
        waitid,
        wait,
        pthread_join,
        posix_spawn,
        posix_spawnp,
        open,
        open64,
        openat,
        openat64,
        creat,
        creat64,
        sigwait,
        sigwaitinfo,
        sigtimedwait,
        sigsuspend,
        pause,
    ];
    extern "C" {
        // Not in the libc crate for this target: declared here, bound like
        // the program's own calls.
        #[link_name = "pthread_spin_lock"]
        fn libc_pthread_spin_lock(l: *mut c_int) -> c_int;
        #[link_name = "__open_2"]
        fn libc_open_2(path: *const c_char, flags: c_int) -> c_int;
        #[link_name = "__open64_2"]
        fn libc_open64_2(path: *const c_char, flags: c_int) -> c_int;
        #[link_name = "__openat_2"]
        fn libc_openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
        #[link_name = "__openat64_2"]
        fn libc_openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    }
    let extra = [
        (
            "pthread_spin_lock",
            pthread_spin_lock as *const () as usize,
            libc_pthread_spin_lock as *const () as usize,
        ),
        (
            "__open_2",
            __open_2 as *const () as usize,
            libc_open_2 as *const () as usize,
        ),
        (
            "__open64_2",
            __open64_2 as *const () as usize,
            libc_open64_2 as *const () as usize,
        ),
        (
            "__openat_2",
            __openat_2 as *const () as usize,
            libc_openat_2 as *const () as usize,
        ),
        (
            "__openat64_2",
            __openat64_2 as *const () as usize,
            libc_openat64_2 as *const () as usize,
        ),
    ];
    let mut bad = Vec::new();
    for (name, ours, seen) in list.into_iter().chain(extra) {
        // 1. Static binding: the program's (std's) calls to the libc name.
        // 2. Dynamic binding: what shared libraries calling the name get
        //    (the executable exports the hooks in .dynsym); null means not
        //    exported, which leaves only .so callers unhooked.
        let cname = std::ffi::CString::new(name).unwrap_or_default();
        // SAFETY: dlsym with a NUL-terminated name.
        let dynamic = unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) } as usize;
        if std::hint::black_box(ours) != std::hint::black_box(seen)
            || (dynamic != 0 && dynamic != ours)
        {
            bad.push(name);
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "calls to {} do not reach the coroutines hooks (they bind to libc directly); \
             the crate's hook object was not linked into this binary",
            bad.join(", ")
        ))
    }
}

// ---- sockets (net.rs) ----

#[no_mangle]
pub extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    net::socket(domain, ty, proto)
}

#[no_mangle]
pub extern "C" fn socketpair(domain: c_int, ty: c_int, proto: c_int, sv: *mut c_int) -> c_int {
    net::socketpair(domain, ty, proto, sv)
}

#[no_mangle]
pub extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    net::accept4(fd, addr, len, 0)
}

#[no_mangle]
pub extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    net::accept4(fd, addr, len, flags)
}

#[no_mangle]
pub extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    net::connect(fd, addr, len)
}

#[no_mangle]
pub extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    net::recvfrom(
        fd,
        buf.cast(),
        n,
        flags,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
}

#[no_mangle]
pub extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    net::recvfrom(fd, buf.cast(), n, flags, addr, alen)
}

#[no_mangle]
pub extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    net::recvmsg(fd, msg, flags)
}

#[no_mangle]
pub extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    net::sendto(fd, buf.cast(), n, flags, std::ptr::null(), 0)
}

#[no_mangle]
pub extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    net::sendto(fd, buf.cast(), n, flags, addr, alen)
}

#[no_mangle]
pub extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    net::sendmsg(fd, msg, flags)
}

#[no_mangle]
pub extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    net::setsockopt(fd, level, name, val, len)
}

// ---- generic fd I/O and bookkeeping (io.rs) ----

#[no_mangle]
pub extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    io::read(fd, buf.cast(), n)
}

/// sendfile(2): std's `io::copy` from a file to a socket or pipe.
#[no_mangle]
pub extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off_t,
    count: size_t,
) -> ssize_t {
    io::sendfile(out_fd, in_fd, offset, count)
}

/// sendfile64(2): the same function (off_t is 64-bit on x86-64).
#[no_mangle]
pub extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut libc::off64_t,
    count: size_t,
) -> ssize_t {
    io::sendfile(out_fd, in_fd, offset.cast(), count)
}

/// splice(2): std's `io::copy` when either side is a pipe.
#[no_mangle]
pub extern "C" fn splice(
    fd_in: c_int,
    off_in: *mut libc::loff_t,
    fd_out: c_int,
    off_out: *mut libc::loff_t,
    len: size_t,
    flags: libc::c_uint,
) -> ssize_t {
    io::splice(fd_in, off_in, fd_out, off_out, len, flags)
}

#[no_mangle]
pub extern "C" fn tee(fd_in: c_int, fd_out: c_int, len: size_t, flags: libc::c_uint) -> ssize_t {
    io::tee(fd_in, fd_out, len, flags)
}

#[no_mangle]
pub extern "C" fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    io::readv(fd, iov, cnt)
}

#[no_mangle]
pub extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    io::write(fd, buf.cast(), n)
}

#[no_mangle]
pub extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    io::writev(fd, iov, cnt)
}

#[no_mangle]
pub extern "C" fn close(fd: c_int) -> c_int {
    io::close(fd)
}

#[no_mangle]
pub extern "C" fn dup(fd: c_int) -> c_int {
    io::dup(fd)
}

#[no_mangle]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    io::dup3(old, new, 0, true)
}

#[no_mangle]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    io::dup3(old, new, flags, false)
}

/// Variadic in C; x86-64 passes the optional third argument in RDX, which
/// this fixed-arity definition reads (garbage when absent, and unused).
#[no_mangle]
pub extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    io::fcntl(fd, cmd, arg)
}

/// Blocking `flock` parks the coroutine (io.rs).
#[no_mangle]
pub extern "C" fn flock(fd: c_int, op: c_int) -> c_int {
    io::flock(fd, op)
}

/// glibc's LFS name for `fcntl` (C code built with _FILE_OFFSET_BITS=64).
#[no_mangle]
pub extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    io::fcntl(fd, cmd, arg)
}

/// Variadic in C, like `fcntl`.
#[no_mangle]
pub extern "C" fn ioctl(fd: c_int, req: libc::c_ulong, arg: usize) -> c_int {
    io::ioctl(fd, req, arg)
}

#[no_mangle]
pub extern "C" fn pipe(fds: *mut c_int) -> c_int {
    io::pipe2(fds, 0)
}

#[no_mangle]
pub extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    io::pipe2(fds, flags)
}

#[no_mangle]
pub extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
    io::poll(
        fds,
        n,
        (timeout_ms >= 0).then(|| std::time::Duration::from_millis(timeout_ms as u64)),
    )
}

#[no_mangle]
pub extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    io::ppoll(fds, n, ts, sigmask)
}

#[no_mangle]
pub extern "C" fn select(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    io::select(n, r, w, e, tv)
}

#[no_mangle]
pub extern "C" fn pselect(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    io::pselect(n, r, w, e, ts, sigmask)
}

#[no_mangle]
pub extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    io::epoll_pwait(epfd, events, max, timeout, 0)
}

#[no_mangle]
pub extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    io::epoll_pwait(epfd, events, max, timeout, sigmask as usize)
}

#[no_mangle]
pub extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    ts: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    io::epoll_pwait2(epfd, events, max, ts, sigmask as usize)
}

// ---- regular files (fs.rs) ----

#[no_mangle]
pub extern "C" fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off64_t) -> ssize_t {
    fs::positioned_one(fd, Dir::Read, buf, n, off)
}

#[no_mangle]
pub extern "C" fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off_t) -> ssize_t {
    fs::positioned_one(fd, Dir::Read, buf, n, off)
}

#[no_mangle]
pub extern "C" fn preadv(fd: c_int, iov: *const iovec, cnt: c_int, off: libc::off_t) -> ssize_t {
    fs::positioned(fd, Dir::Read, iov, cnt, off)
}

#[no_mangle]
pub extern "C" fn preadv64(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: libc::off64_t,
) -> ssize_t {
    fs::positioned(fd, Dir::Read, iov, cnt, off)
}

#[no_mangle]
pub extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    off: libc::off64_t,
) -> ssize_t {
    fs::positioned_one(fd, Dir::Write, buf as *mut c_void, n, off)
}

#[no_mangle]
pub extern "C" fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: libc::off_t) -> ssize_t {
    fs::positioned_one(fd, Dir::Write, buf as *mut c_void, n, off)
}

#[no_mangle]
pub extern "C" fn pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: libc::off_t) -> ssize_t {
    fs::positioned(fd, Dir::Write, iov, cnt, off)
}

#[no_mangle]
pub extern "C" fn pwritev64(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: libc::off64_t,
) -> ssize_t {
    fs::positioned(fd, Dir::Write, iov, cnt, off)
}

/// open(2): variadic in C; x86-64 passes the optional mode in RDX, which
/// this fixed-arity definition reads (garbage when absent; the kernel
/// reads it only with O_CREAT/O_TMPFILE). A FIFO's open parks (fs.rs).
#[no_mangle]
pub extern "C" fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    fs::openat(libc::AT_FDCWD, path, flags, mode)
}

/// glibc's LFS name for `open` (what std's `File::open` calls).
#[no_mangle]
pub extern "C" fn open64(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    fs::openat(libc::AT_FDCWD, path, flags, mode)
}

/// openat(2): variadic like `open` (the mode in RCX).
#[no_mangle]
pub extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    fs::openat(dirfd, path, flags, mode)
}

#[no_mangle]
pub extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    fs::openat(dirfd, path, flags, mode)
}

/// creat(2) = open(O_CREAT|O_WRONLY|O_TRUNC): an existing FIFO waits.
#[no_mangle]
pub extern "C" fn creat(path: *const c_char, mode: libc::mode_t) -> c_int {
    fs::openat(
        libc::AT_FDCWD,
        path,
        libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
        mode,
    )
}

#[no_mangle]
pub extern "C" fn creat64(path: *const c_char, mode: libc::mode_t) -> c_int {
    creat(path, mode)
}

/// The fortified forms C code built with `_FORTIFY_SOURCE` calls for an
/// `open` without a mode argument whose flags are not a constant: glibc
/// aborts when the flags need a mode (fs.rs passes those to glibc's own).
#[no_mangle]
pub extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    fs::open_2(libc::AT_FDCWD, path, flags, c"__open_2")
}

#[no_mangle]
pub extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    fs::open_2(libc::AT_FDCWD, path, flags, c"__open64_2")
}

#[no_mangle]
pub extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    fs::open_2(dirfd, path, flags, c"__openat_2")
}

#[no_mangle]
pub extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    fs::open_2(dirfd, path, flags, c"__openat64_2")
}

// ---- signal waits (signal.rs) ----

#[no_mangle]
pub extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut c_int) -> c_int {
    signal::sigwait(set, sig)
}

#[no_mangle]
pub extern "C" fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
    signal::sigtimedwait(set, info, std::ptr::null())
}

#[no_mangle]
pub extern "C" fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> c_int {
    signal::sigtimedwait(set, info, timeout)
}

#[no_mangle]
pub extern "C" fn sigsuspend(mask: *const libc::sigset_t) -> c_int {
    signal::sigsuspend(mask)
}

#[no_mangle]
pub extern "C" fn pause() -> c_int {
    signal::pause()
}

// ---- sleeps (time.rs) ----

#[no_mangle]
pub extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    time::nanosleep(req, rem)
}

#[no_mangle]
pub extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    time::clock_nanosleep(clock, flags, req, rem)
}

#[no_mangle]
pub extern "C" fn usleep(us: libc::useconds_t) -> c_int {
    time::usleep(us)
}

#[no_mangle]
pub extern "C" fn sleep(secs: libc::c_uint) -> libc::c_uint {
    time::sleep(secs)
}

// ---- names (dns.rs) ----

#[no_mangle]
pub extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    dns::getaddrinfo(node, service, hints, res)
}

// ---- scheduling ----

/// sched_yield(2). Spin-then-yield loops call it — std's
/// `thread::yield_now`, crossbeam's `Backoff::snooze`, std mpmc's wait for
/// a slot another sender is still writing — because what they wait for is
/// another thread's progress. In coroutine user code that other party is
/// often a sibling coroutine queued on this very executor (preempted in the
/// middle of the write): the syscall would only return at once and the
/// loop would spin until the end of its time slice. So there it yields the
/// coroutine (to the back of its executor's ready queue); everywhere else
/// (plain threads, runtime code, a panicking coroutine) it is the system
/// call.
#[no_mangle]
pub extern "C" fn sched_yield() -> c_int {
    if crate::sched::in_coroutine_user_code() && crate::sched::yield_now_fast() {
        return 0;
    }
    // SAFETY: sched_yield takes no arguments and cannot fail.
    unsafe { crate::sys::syscall6(libc::SYS_sched_yield as usize, 0, 0, 0, 0, 0, 0) as c_int }
}

// ---- processes (tls/alias.rs) ----

/// fork(2): on an executor thread the shared TLS region is made private
/// for the duration of the fork (see tls/alias.rs); elsewhere libc's.
#[no_mangle]
pub extern "C" fn fork() -> libc::pid_t {
    static REAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut p = REAL.load(std::sync::atomic::Ordering::Relaxed);
    if p == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds libc's.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"fork".as_ptr()) } as usize;
        if p == 0 {
            crate::sys::fatal("dlsym(RTLD_NEXT, fork) failed");
        }
        // Relaxed: every thread computes the same value.
        REAL.store(p, std::sync::atomic::Ordering::Relaxed);
    }
    // SAFETY: `p` is libc's fork, which has this signature.
    let real = unsafe { std::mem::transmute::<usize, unsafe extern "C" fn() -> libc::pid_t>(p) };
    // The fd bookkeeping's group lock is held across the fork and released
    // on both sides (an atfork handler's way): the child's `dup2` hooks
    // take it.
    let held = crate::reactor::registration::fork_guard();
    let pid = crate::sched::fork_on_executor(real);
    drop(held);
    pid
}

// ---- pthread synchronisation (pthread.rs) ----

#[no_mangle]
pub extern "C" fn pthread_mutex_lock(m: *mut libc::pthread_mutex_t) -> c_int {
    pthread::mutex_lock(m)
}

#[no_mangle]
pub extern "C" fn pthread_mutex_trylock(m: *mut libc::pthread_mutex_t) -> c_int {
    pthread::mutex_trylock(m)
}

#[no_mangle]
pub extern "C" fn pthread_mutex_timedlock(
    m: *mut libc::pthread_mutex_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::mutex_clocklock(m, libc::CLOCK_REALTIME, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_mutex_clocklock(
    m: *mut libc::pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::mutex_clocklock(m, clock, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_mutex_unlock(m: *mut libc::pthread_mutex_t) -> c_int {
    pthread::mutex_unlock(m)
}

#[no_mangle]
pub extern "C" fn pthread_cond_wait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
) -> c_int {
    pthread::cond_wait(c, m)
}

#[no_mangle]
pub extern "C" fn pthread_cond_timedwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::cond_timedwait(c, m, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_cond_clockwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::cond_clockwait(c, m, clock, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_cond_signal(c: *mut libc::pthread_cond_t) -> c_int {
    pthread::cond_signal(c)
}

#[no_mangle]
pub extern "C" fn pthread_cond_broadcast(c: *mut libc::pthread_cond_t) -> c_int {
    pthread::cond_broadcast(c)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_rdlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
    pthread::rwlock_lock(rw, false)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_wrlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
    pthread::rwlock_lock(rw, true)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_tryrdlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
    pthread::rwlock_trylock(rw, false)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_trywrlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
    pthread::rwlock_trylock(rw, true)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_timedrdlock(
    rw: *mut libc::pthread_rwlock_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::rwlock_clocklock(rw, false, libc::CLOCK_REALTIME, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_timedwrlock(
    rw: *mut libc::pthread_rwlock_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::rwlock_clocklock(rw, true, libc::CLOCK_REALTIME, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_clockrdlock(
    rw: *mut libc::pthread_rwlock_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::rwlock_clocklock(rw, false, clock, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_clockwrlock(
    rw: *mut libc::pthread_rwlock_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::rwlock_clocklock(rw, true, clock, abstime)
}

#[no_mangle]
pub extern "C" fn pthread_rwlock_unlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
    pthread::rwlock_unlock(rw)
}

#[no_mangle]
pub extern "C" fn sem_wait(s: *mut libc::sem_t) -> c_int {
    pthread::sem_wait(s)
}

#[no_mangle]
pub extern "C" fn sem_timedwait(s: *mut libc::sem_t, abstime: *const libc::timespec) -> c_int {
    pthread::sem_clockwait(s, libc::CLOCK_REALTIME, abstime)
}

#[no_mangle]
pub extern "C" fn sem_clockwait(
    s: *mut libc::sem_t,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    pthread::sem_clockwait(s, clock, abstime)
}

#[no_mangle]
pub extern "C" fn sem_post(s: *mut libc::sem_t) -> c_int {
    pthread::sem_post(s)
}

#[no_mangle]
pub extern "C" fn pthread_once(
    o: *mut libc::pthread_once_t,
    init: Option<unsafe extern "C" fn()>,
) -> c_int {
    pthread::once(o, init)
}

/// A contended spin lock yields the coroutine between tries (pthread.rs).
#[no_mangle]
pub extern "C" fn pthread_spin_lock(l: *mut c_int) -> c_int {
    pthread::spin_lock(l)
}

#[no_mangle]
pub extern "C" fn pthread_barrier_wait(b: *mut libc::pthread_barrier_t) -> c_int {
    pthread::barrier_wait(b)
}

// ---- children and threads (wait.rs) ----

#[no_mangle]
pub extern "C" fn waitpid(pid: libc::pid_t, status: *mut c_int, options: c_int) -> libc::pid_t {
    wait::waitpid(pid, status, options)
}

#[no_mangle]
pub extern "C" fn wait(status: *mut c_int) -> libc::pid_t {
    wait::waitpid(-1, status, 0)
}

#[no_mangle]
pub extern "C" fn wait4(
    pid: libc::pid_t,
    status: *mut c_int,
    options: c_int,
    ru: *mut libc::rusage,
) -> libc::pid_t {
    wait::wait4(pid, status, options, ru)
}

#[no_mangle]
pub extern "C" fn waitid(
    idtype: libc::idtype_t,
    id: libc::id_t,
    info: *mut libc::siginfo_t,
    options: c_int,
) -> c_int {
    wait::waitid(idtype, id, info, options)
}

#[no_mangle]
pub extern "C" fn pthread_join(th: libc::pthread_t, ret: *mut *mut c_void) -> c_int {
    wait::pthread_join(th, ret)
}

#[no_mangle]
pub extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    wait::posix_spawn(false, pid, path, fa, attr, argv, envp)
}

#[no_mangle]
pub extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    wait::posix_spawn(true, pid, file, fa, attr, argv, envp)
}
