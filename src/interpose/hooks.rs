//! The table of libc hooks: every `#[no_mangle] extern "C"` function this
//! crate exports under a libc name, each defined once here through the
//! `hooks!` macro (interpose/mod.rs). The same invocation generates
//! `EXPORTED` (the names the preemption classifier must treat as Rust)
//! and the start-up link check's table (`LINKS`, used by `verify`), so
//! the three cannot drift apart. Each shim is a few lines calling its
//! family module (module doc of interpose/mod.rs); the body and the C ABI
//! of each are exactly what the program's calls to the libc name get.
//!
//! Adding a hook: write it here (doc, signature, body); nothing else to
//! register. A hook that is `unsafe` to call is written `[unsafe] fn`.

use libc::{c_char, c_int, c_long, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::{dns, fdops, fortify, fs, futex, io, net, poll, pthread, signal, time, transfer, wait};
use crate::reactor::registration::Dir;

hooks! {
    // ---- sockets (net.rs) ----

    fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
        net::socket(domain, ty, proto)
    }

    fn socketpair(domain: c_int, ty: c_int, proto: c_int, sv: *mut c_int) -> c_int {
        net::socketpair(domain, ty, proto, sv)
    }

    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
        net::accept4(fd, addr, len, 0)
    }

    fn accept4(
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
        flags: c_int,
    ) -> c_int {
        net::accept4(fd, addr, len, flags)
    }

    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
        net::connect(fd, addr, len)
    }

    fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
        net::recvfrom(
            fd,
            buf.cast(),
            n,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }

    fn recvfrom(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        alen: *mut socklen_t,
    ) -> ssize_t {
        net::recvfrom(fd, buf.cast(), n, flags, addr, alen)
    }

    /// glibc's `_FORTIFY_SOURCE` form of `recv` (C code compiled with it
    /// calls this where the buffer's size is known): the size check, then
    /// the plain hook. Without it glibc's own `recv` runs inside libc,
    /// unhooked.
    fn __recv_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        buflen: size_t,
        flags: c_int,
    ) -> ssize_t {
        fortify::check(n <= buflen);
        recv(fd, buf, n, flags)
    }

    /// `_FORTIFY_SOURCE` form of `recvfrom` (see `__recv_chk`).
    fn __recvfrom_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        buflen: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        alen: *mut socklen_t,
    ) -> ssize_t {
        fortify::check(n <= buflen);
        recvfrom(fd, buf, n, flags, addr, alen)
    }

    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
        net::recvmsg(fd, msg, flags)
    }

    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
        net::sendto(fd, buf.cast(), n, flags, std::ptr::null(), 0)
    }

    fn sendto(
        fd: c_int,
        buf: *const c_void,
        n: size_t,
        flags: c_int,
        addr: *const sockaddr,
        alen: socklen_t,
    ) -> ssize_t {
        net::sendto(fd, buf.cast(), n, flags, addr, alen)
    }

    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
        net::sendmsg(fd, msg, flags)
    }

    fn setsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        val: *const c_void,
        len: socklen_t,
    ) -> c_int {
        net::setsockopt(fd, level, name, val, len)
    }

    // ---- generic fd I/O and bookkeeping (io.rs) ----

    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
        io::read(fd, buf.cast(), n)
    }

    /// sendfile(2): std's `io::copy` from a file to a socket or pipe.
    fn sendfile(
        out_fd: c_int,
        in_fd: c_int,
        offset: *mut libc::off_t,
        count: size_t,
    ) -> ssize_t {
        transfer::sendfile(out_fd, in_fd, offset, count)
    }

    /// sendfile64(2): the same function (off_t is 64-bit on x86-64).
    fn sendfile64(
        out_fd: c_int,
        in_fd: c_int,
        offset: *mut libc::off64_t,
        count: size_t,
    ) -> ssize_t {
        transfer::sendfile(out_fd, in_fd, offset.cast(), count)
    }

    /// splice(2): std's `io::copy` when either side is a pipe.
    fn splice(
        fd_in: c_int,
        off_in: *mut libc::loff_t,
        fd_out: c_int,
        off_out: *mut libc::loff_t,
        len: size_t,
        flags: libc::c_uint,
    ) -> ssize_t {
        transfer::splice(fd_in, off_in, fd_out, off_out, len, flags)
    }

    fn tee(fd_in: c_int, fd_out: c_int, len: size_t, flags: libc::c_uint) -> ssize_t {
        transfer::tee(fd_in, fd_out, len, flags)
    }

    /// `_FORTIFY_SOURCE` form of `read` (see `__recv_chk`).
    fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t {
        fortify::check(n <= buflen);
        read(fd, buf, n)
    }

    fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
        io::readv(fd, iov, cnt)
    }

    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
        io::write(fd, buf.cast(), n)
    }

    fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
        io::writev(fd, iov, cnt)
    }

    fn close(fd: c_int) -> c_int {
        fdops::close(fd)
    }

    fn dup(fd: c_int) -> c_int {
        fdops::dup(fd)
    }

    fn dup2(old: c_int, new: c_int) -> c_int {
        fdops::dup3(old, new, 0, true)
    }

    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
        fdops::dup3(old, new, flags, false)
    }

    /// Variadic in C; x86-64 passes the optional third argument in RDX, which
    /// this fixed-arity definition reads (garbage when absent, and unused).
    fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
        fdops::fcntl(fd, cmd, arg)
    }

    /// Blocking `flock` parks the coroutine (io.rs).
    fn flock(fd: c_int, op: c_int) -> c_int {
        fdops::flock(fd, op)
    }

    /// glibc's LFS name for `fcntl` (C code built with _FILE_OFFSET_BITS=64).
    fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
        fdops::fcntl(fd, cmd, arg)
    }

    /// Variadic in C, like `fcntl`.
    fn ioctl(fd: c_int, req: libc::c_ulong, arg: usize) -> c_int {
        fdops::ioctl(fd, req, arg)
    }

    fn pipe(fds: *mut c_int) -> c_int {
        fdops::pipe2(fds, 0)
    }

    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
        fdops::pipe2(fds, flags)
    }

    fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
        poll::poll(
            fds,
            n,
            (timeout_ms >= 0).then(|| std::time::Duration::from_millis(timeout_ms as u64)),
        )
    }

    fn ppoll(
        fds: *mut libc::pollfd,
        n: libc::nfds_t,
        ts: *const libc::timespec,
        sigmask: *const libc::sigset_t,
    ) -> c_int {
        poll::ppoll(fds, n, ts, sigmask)
    }

    /// `_FORTIFY_SOURCE` form of `poll`: `fdslen` is the array's size in
    /// bytes (see `__recv_chk`).
    fn __poll_chk(
        fds: *mut libc::pollfd,
        n: libc::nfds_t,
        timeout_ms: c_int,
        fdslen: size_t,
    ) -> c_int {
        fortify::check(fdslen / std::mem::size_of::<libc::pollfd>() >= n as usize);
        poll(fds, n, timeout_ms)
    }

    /// `_FORTIFY_SOURCE` form of `ppoll` (see `__poll_chk`).
    fn __ppoll_chk(
        fds: *mut libc::pollfd,
        n: libc::nfds_t,
        ts: *const libc::timespec,
        sigmask: *const libc::sigset_t,
        fdslen: size_t,
    ) -> c_int {
        fortify::check(fdslen / std::mem::size_of::<libc::pollfd>() >= n as usize);
        ppoll(fds, n, ts, sigmask)
    }

    fn select(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        tv: *mut libc::timeval,
    ) -> c_int {
        poll::select(n, r, w, e, tv)
    }

    fn pselect(
        n: c_int,
        r: *mut libc::fd_set,
        w: *mut libc::fd_set,
        e: *mut libc::fd_set,
        ts: *const libc::timespec,
        sigmask: *const libc::sigset_t,
    ) -> c_int {
        poll::pselect(n, r, w, e, ts, sigmask)
    }

    fn epoll_wait(
        epfd: c_int,
        events: *mut libc::epoll_event,
        max: c_int,
        timeout: c_int,
    ) -> c_int {
        poll::epoll_pwait(epfd, events, max, timeout, 0)
    }

    fn epoll_pwait(
        epfd: c_int,
        events: *mut libc::epoll_event,
        max: c_int,
        timeout: c_int,
        sigmask: *const libc::sigset_t,
    ) -> c_int {
        poll::epoll_pwait(epfd, events, max, timeout, sigmask as usize)
    }

    fn epoll_pwait2(
        epfd: c_int,
        events: *mut libc::epoll_event,
        max: c_int,
        ts: *const libc::timespec,
        sigmask: *const libc::sigset_t,
    ) -> c_int {
        poll::epoll_pwait2(epfd, events, max, ts, sigmask as usize)
    }

    // ---- regular files (fs.rs) ----

    fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off64_t) -> ssize_t {
        fs::positioned_one(fd, Dir::Read, buf, n, off)
    }

    fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off_t) -> ssize_t {
        fs::positioned_one(fd, Dir::Read, buf, n, off)
    }

    /// `_FORTIFY_SOURCE` forms of `pread`/`pread64` (see `__recv_chk`).
    fn __pread_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        off: libc::off_t,
        buflen: size_t,
    ) -> ssize_t {
        fortify::check(n <= buflen);
        pread(fd, buf, n, off)
    }

    fn __pread64_chk(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        off: libc::off64_t,
        buflen: size_t,
    ) -> ssize_t {
        fortify::check(n <= buflen);
        pread64(fd, buf, n, off)
    }

    fn preadv(fd: c_int, iov: *const iovec, cnt: c_int, off: libc::off_t) -> ssize_t {
        fs::positioned(fd, Dir::Read, iov, cnt, off)
    }

    fn preadv64(
        fd: c_int,
        iov: *const iovec,
        cnt: c_int,
        off: libc::off64_t,
    ) -> ssize_t {
        fs::positioned(fd, Dir::Read, iov, cnt, off)
    }

    fn pwrite64(
        fd: c_int,
        buf: *const c_void,
        n: size_t,
        off: libc::off64_t,
    ) -> ssize_t {
        fs::positioned_one(fd, Dir::Write, buf as *mut c_void, n, off)
    }

    fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: libc::off_t) -> ssize_t {
        fs::positioned_one(fd, Dir::Write, buf as *mut c_void, n, off)
    }

    fn pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: libc::off_t) -> ssize_t {
        fs::positioned(fd, Dir::Write, iov, cnt, off)
    }

    fn pwritev64(
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
    fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
        fs::openat(libc::AT_FDCWD, path, flags, mode)
    }

    /// glibc's LFS name for `open` (what std's `File::open` calls).
    fn open64(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
        fs::openat(libc::AT_FDCWD, path, flags, mode)
    }

    /// openat(2): variadic like `open` (the mode in RCX).
    fn openat(
        dirfd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: libc::mode_t,
    ) -> c_int {
        fs::openat(dirfd, path, flags, mode)
    }

    fn openat64(
        dirfd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: libc::mode_t,
    ) -> c_int {
        fs::openat(dirfd, path, flags, mode)
    }

    /// creat(2) = open(O_CREAT|O_WRONLY|O_TRUNC): an existing FIFO waits.
    fn creat(path: *const c_char, mode: libc::mode_t) -> c_int {
        fs::openat(
            libc::AT_FDCWD,
            path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )
    }

    /// fopen(3): glibc opens with its internal `__open`, which no hook
    /// sees; a FIFO's open waits for the other end: in a coroutine, glibc's
    /// `fopen` of a FIFO runs on a helper (fs.rs).
    fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
        fs::fopen(path, mode)
    }

    /// glibc's LFS name for `fopen` (the same function).
    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
        fs::fopen(path, mode)
    }

    /// freopen(3): as `fopen` (fs.rs); a null path opens nothing.
    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut libc::FILE) -> *mut libc::FILE {
        fs::freopen(path, mode, stream)
    }

    /// glibc's LFS name for `freopen` (the same function).
    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut libc::FILE) -> *mut libc::FILE {
        fs::freopen(path, mode, stream)
    }

    fn creat64(path: *const c_char, mode: libc::mode_t) -> c_int {
        creat(path, mode)
    }

    /// The fortified forms C code built with `_FORTIFY_SOURCE` calls for an
    /// `open` without a mode argument whose flags are not a constant: glibc
    /// aborts when the flags need a mode (fs.rs passes those to glibc's own).
    fn __open_2(path: *const c_char, flags: c_int) -> c_int {
        fs::open_2(libc::AT_FDCWD, path, flags, c"__open_2")
    }

    fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
        fs::open_2(libc::AT_FDCWD, path, flags, c"__open64_2")
    }

    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        fs::open_2(dirfd, path, flags, c"__openat_2")
    }

    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        fs::open_2(dirfd, path, flags, c"__openat64_2")
    }

    // ---- signal waits (signal.rs) ----

    fn sigwait(set: *const libc::sigset_t, sig: *mut c_int) -> c_int {
        signal::sigwait(set, sig)
    }

    fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
        signal::sigtimedwait(set, info, std::ptr::null())
    }

    fn sigtimedwait(
        set: *const libc::sigset_t,
        info: *mut libc::siginfo_t,
        timeout: *const libc::timespec,
    ) -> c_int {
        signal::sigtimedwait(set, info, timeout)
    }

    fn sigsuspend(mask: *const libc::sigset_t) -> c_int {
        signal::sigsuspend(mask)
    }

    fn pause() -> c_int {
        signal::pause()
    }

    // ---- sleeps (time.rs) ----

    fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
        time::nanosleep(req, rem)
    }

    fn clock_nanosleep(
        clock: libc::clockid_t,
        flags: c_int,
        req: *const libc::timespec,
        rem: *mut libc::timespec,
    ) -> c_int {
        time::clock_nanosleep(clock, flags, req, rem)
    }

    fn usleep(us: libc::useconds_t) -> c_int {
        time::usleep(us)
    }

    fn sleep(secs: libc::c_uint) -> libc::c_uint {
        time::sleep(secs)
    }

    // ---- names (dns.rs) ----

    fn getaddrinfo(
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
    fn sched_yield() -> c_int {
        if crate::sched::in_coroutine_user_code() && crate::sched::yield_now_fast() {
            return 0;
        }
        // SAFETY: sched_yield takes no arguments and cannot fail.
        unsafe { crate::sys::syscall6(libc::SYS_sched_yield as usize, 0, 0, 0, 0, 0, 0) as c_int }
    }

    // ---- futexes (futex.rs) ----

    /// libc's `syscall`, interposed. Shim only: see futex.rs's module doc.
    ///
    /// # Safety
    /// The caller's contract is libc's: the arguments must be valid for the
    /// system call `n` (x86-64 passes variadic integer arguments in the same
    /// registers as fixed ones, so a fixed arity of six reads them correctly;
    /// unused ones are ignored by the kernel).
    [unsafe] fn syscall(
        n: c_long,
        a1: c_long,
        a2: c_long,
        a3: c_long,
        a4: c_long,
        a5: c_long,
        a6: c_long,
    ) -> c_long {
        // SAFETY: forwarded contract, see above.
        unsafe { futex::syscall_entry(n, [a1, a2, a3, a4, a5, a6]) }
    }

    // ---- processes (tls/alias.rs) ----

    /// fork(2): on an executor thread the shared TLS region is made private
    /// for the duration of the fork (see tls/alias.rs); elsewhere libc's.
    fn fork() -> libc::pid_t {
        static REAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = crate::sys::resolve_next(&REAL, c"fork");
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

    fn pthread_mutex_lock(m: *mut libc::pthread_mutex_t) -> c_int {
        pthread::mutex_lock(m)
    }

    fn pthread_mutex_trylock(m: *mut libc::pthread_mutex_t) -> c_int {
        pthread::mutex_trylock(m)
    }

    fn pthread_mutex_timedlock(
        m: *mut libc::pthread_mutex_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::mutex_clocklock(m, libc::CLOCK_REALTIME, abstime)
    }

    fn pthread_mutex_clocklock(
        m: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::mutex_clocklock(m, clock, abstime)
    }

    fn pthread_mutex_unlock(m: *mut libc::pthread_mutex_t) -> c_int {
        pthread::mutex_unlock(m)
    }

    fn pthread_cond_wait(
        c: *mut libc::pthread_cond_t,
        m: *mut libc::pthread_mutex_t,
    ) -> c_int {
        pthread::cond_wait(c, m)
    }

    fn pthread_cond_timedwait(
        c: *mut libc::pthread_cond_t,
        m: *mut libc::pthread_mutex_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::cond_timedwait(c, m, abstime)
    }

    fn pthread_cond_clockwait(
        c: *mut libc::pthread_cond_t,
        m: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::cond_clockwait(c, m, clock, abstime)
    }

    fn pthread_cond_signal(c: *mut libc::pthread_cond_t) -> c_int {
        pthread::cond_signal(c)
    }

    fn pthread_cond_broadcast(c: *mut libc::pthread_cond_t) -> c_int {
        pthread::cond_broadcast(c)
    }

    fn pthread_rwlock_rdlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
        pthread::rwlock_lock(rw, false)
    }

    fn pthread_rwlock_wrlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
        pthread::rwlock_lock(rw, true)
    }

    fn pthread_rwlock_tryrdlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
        pthread::rwlock_trylock(rw, false)
    }

    fn pthread_rwlock_trywrlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
        pthread::rwlock_trylock(rw, true)
    }

    fn pthread_rwlock_timedrdlock(
        rw: *mut libc::pthread_rwlock_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::rwlock_clocklock(rw, false, libc::CLOCK_REALTIME, abstime)
    }

    fn pthread_rwlock_timedwrlock(
        rw: *mut libc::pthread_rwlock_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::rwlock_clocklock(rw, true, libc::CLOCK_REALTIME, abstime)
    }

    fn pthread_rwlock_clockrdlock(
        rw: *mut libc::pthread_rwlock_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::rwlock_clocklock(rw, false, clock, abstime)
    }

    fn pthread_rwlock_clockwrlock(
        rw: *mut libc::pthread_rwlock_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::rwlock_clocklock(rw, true, clock, abstime)
    }

    fn pthread_rwlock_unlock(rw: *mut libc::pthread_rwlock_t) -> c_int {
        pthread::rwlock_unlock(rw)
    }

    fn sem_wait(s: *mut libc::sem_t) -> c_int {
        pthread::sem_wait(s)
    }

    fn sem_timedwait(s: *mut libc::sem_t, abstime: *const libc::timespec) -> c_int {
        pthread::sem_clockwait(s, libc::CLOCK_REALTIME, abstime)
    }

    fn sem_clockwait(
        s: *mut libc::sem_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int {
        pthread::sem_clockwait(s, clock, abstime)
    }

    fn sem_post(s: *mut libc::sem_t) -> c_int {
        pthread::sem_post(s)
    }

    fn pthread_once(
        o: *mut libc::pthread_once_t,
        init: Option<unsafe extern "C" fn()>,
    ) -> c_int {
        pthread::once(o, init)
    }

    /// A contended spin lock yields the coroutine between tries (pthread.rs).
    fn pthread_spin_lock(l: *mut c_int) -> c_int {
        pthread::spin_lock(l)
    }

    fn pthread_barrier_wait(b: *mut libc::pthread_barrier_t) -> c_int {
        pthread::barrier_wait(b)
    }

    // ---- children and threads (wait.rs) ----

    fn waitpid(pid: libc::pid_t, status: *mut c_int, options: c_int) -> libc::pid_t {
        wait::waitpid(pid, status, options)
    }

    fn wait(status: *mut c_int) -> libc::pid_t {
        wait::waitpid(-1, status, 0)
    }

    fn wait4(
        pid: libc::pid_t,
        status: *mut c_int,
        options: c_int,
        ru: *mut libc::rusage,
    ) -> libc::pid_t {
        wait::wait4(pid, status, options, ru)
    }

    fn waitid(
        idtype: libc::idtype_t,
        id: libc::id_t,
        info: *mut libc::siginfo_t,
        options: c_int,
    ) -> c_int {
        wait::waitid(idtype, id, info, options)
    }

    fn pthread_join(th: libc::pthread_t, ret: *mut *mut c_void) -> c_int {
        wait::pthread_join(th, ret)
    }

    fn posix_spawn(
        pid: *mut libc::pid_t,
        path: *const c_char,
        fa: *const libc::posix_spawn_file_actions_t,
        attr: *const libc::posix_spawnattr_t,
        argv: *const *mut c_char,
        envp: *const *mut c_char,
    ) -> c_int {
        wait::posix_spawn(false, pid, path, fa, attr, argv, envp)
    }

    fn posix_spawnp(
        pid: *mut libc::pid_t,
        file: *const c_char,
        fa: *const libc::posix_spawn_file_actions_t,
        attr: *const libc::posix_spawnattr_t,
        argv: *const *mut c_char,
        envp: *const *mut c_char,
    ) -> c_int {
        wait::posix_spawn(true, pid, file, fa, attr, argv, envp)
    }
}
