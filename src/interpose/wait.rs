//! Waiting for child processes and OS threads from a coroutine:
//! `waitpid`, `wait4`, `waitid` and `pthread_join` park the coroutine
//! instead of blocking its executor (std's `Child::wait`,
//! `Command::status`/`output`, `JoinHandle::join` of an OS thread).
//!
//! ## Protocol
//! - *A specific child* (`waitpid`/`wait4` with pid > 0, `waitid(P_PID)`),
//!   waiting for termination only (no WUNTRACED/WCONTINUED/WSTOPPED): the
//!   hook opens a pidfd (`pidfd_open`), registers it with the reactor
//!   (edge-triggered, like a socket), then loops: snapshot the read edge
//!   counter, make the real call with WNOHANG, and if the child has not
//!   exited yet park until the pidfd's next edge (a pidfd becomes readable
//!   when the process exits). Snapshot-then-check means an exit between
//!   the check and the park is not lost. The pidfd is closed (and
//!   deregistered) before returning; errno is the real call's.
//! - *Any child or a process group* (pid -1, 0, < -1; `waitid(P_ALL,
//!   P_PGID, P_PIDFD)`), or when `pidfd_open` fails: the real call with
//!   WNOHANG on a backing-off timer (1 ms doubling to 32 ms) while the
//!   coroutine parks in between: no executor blocks, at the cost of up to
//!   32 ms of latency.
//! - *`pthread_join` of an OS thread*: `pthread_tryjoin_np` first; then
//!   the thread's kernel tid (read from glibc's thread descriptor at an
//!   offset found once by matching the calling thread's own `gettid()`)
//!   gets a pidfd with `PIDFD_THREAD` (Linux 6.9+), parked on as above
//!   with a 50 ms re-check; on older kernels, or if the offset was not
//!   found, the backing-off timer as for "any child".
//! - *`posix_spawn`/`posix_spawnp`* (std's `Command::spawn`): glibc's
//!   function blocks the calling thread until the child has exec'd
//!   (CLONE_VFORK), which on a loaded machine lasted past the blocked-
//!   executor threshold (20-100 ms seen with 50 concurrent spawns). From a
//!   coroutine it runs on a helper thread (offload.rs) while the coroutine
//!   parks. The child is the process's child whichever thread spawned it;
//!   without POSIX_SPAWN_SETSIGMASK it inherits the helper's signal mask
//!   (a plain thread's: nothing blocked) — std always sets the mask.
//! - Plain threads, runtime code, a panicking coroutine, WNOHANG calls and
//!   waits for stop/continue events: the real call, unchanged.
//!
//! ## Invariants
//! The real call is always made by this thread with the caller's
//! arguments (plus WNOHANG), so status, rusage, siginfo and errno are the
//! kernel's. A pidfd is the runtime's own fd: it is registered only here
//! and closed through `fdops::close`, which deregisters it.

use std::time::{Duration, Instant};

use crate::reactor::registration::{self, Dir, Flags, Kind};
use crate::reactor::{timers, Waker};
use crate::sched::{self, NoPreempt, WaitReason};
use crate::sys::{self, sc2, sc4, sc5, to_libc};

const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(32);
/// Linux 6.9+: a pidfd for a thread (not only a thread-group leader).
const PIDFD_THREAD: usize = libc::O_EXCL as usize;

/// Parks the running coroutine for `d` (the caller holds `np`).
fn park_for(np: &NoPreempt, d: Duration, id: i64) {
    let deadline = Instant::now() + d;
    let t = timers().add(deadline, Waker::Coroutine(sched::current_coroutine()));
    while !t.fired() {
        sched::park_current(np, WaitReason::Child { id });
    }
}

/// Calls `attempt` (a non-blocking try in libc convention; `None`: not
/// ready yet) until it is done, parking on a backing-off timer between.
fn backoff<R>(np: &NoPreempt, id: i64, mut attempt: impl FnMut() -> Option<R>) -> R {
    let mut d = BACKOFF_MIN;
    loop {
        if let Some(r) = attempt() {
            return r;
        }
        park_for(np, d, id);
        d = (d * 2).min(BACKOFF_MAX);
    }
}

/// Opens a pidfd for `id` (`flags`: 0 or PIDFD_THREAD) registered with the
/// reactor. None if the kernel refuses (no such process, old kernel) or
/// the reactor cannot take it.
fn open_pidfd(id: i32, flags: usize) -> Option<(i32, &'static registration::Registration)> {
    // SAFETY: pidfd_open takes no pointers.
    let fd = unsafe { sc2(libc::SYS_pidfd_open, id as usize, flags) };
    if fd < 0 {
        return None;
    }
    let fd = fd as i32;
    registration::fresh(fd);
    let reg = match registration::get_or_alloc(fd) {
        Some(reg) if reg.begin_init() => reg,
        _ => {
            super::fdops::close(fd);
            return None;
        }
    };
    if crate::reactor::register(fd, reg.gen()) < 0 {
        reg.finish_init(Kind::Unknown, Flags::NONE);
        super::fdops::close(fd);
        return None;
    }
    reg.finish_init(Kind::Poll, Flags::NONE);
    Some((fd, reg))
}

/// Parks until `attempt` is done, woken by the pidfd's read edges (and,
/// with `recheck`, at least that often).
fn on_pidfd<R>(
    np: &NoPreempt,
    fd: i32,
    reg: &'static registration::Registration,
    recheck: Option<Duration>,
    mut attempt: impl FnMut() -> Option<R>,
) -> R {
    let gen = reg.gen();
    let r = loop {
        let snap = reg.seq(Dir::Read);
        if let Some(r) = attempt() {
            break r;
        }
        reg.wait(
            Dir::Read,
            gen,
            snap,
            recheck.map(|d| Instant::now() + d),
            np,
        );
    };
    let e = sys::errno();
    super::fdops::close(fd);
    sys::set_errno(e);
    r
}

fn raw_wait4(pid: i32, status: *mut i32, options: i32, ru: *mut libc::rusage) -> isize {
    // SAFETY: the caller's status and rusage pointers (wait4's contract).
    to_libc(unsafe {
        sc4(
            libc::SYS_wait4,
            pid as isize as usize,
            status as usize,
            options as usize,
            ru as usize,
        )
    })
}

/// `wait4` (and `waitpid` with a null rusage), libc convention.
pub(crate) fn wait4(pid: i32, status: *mut i32, options: i32, ru: *mut libc::rusage) -> i32 {
    if options & (libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED) != 0
        || !sched::in_coroutine_user_code()
    {
        return raw_wait4(pid, status, options, ru) as i32;
    }
    let np = NoPreempt::new();
    let attempt = || match raw_wait4(pid, status, options | libc::WNOHANG, ru) {
        0 => None,
        r => Some(r as i32),
    };
    if pid > 0 {
        if let Some((fd, reg)) = open_pidfd(pid, 0) {
            return on_pidfd(&np, fd, reg, None, attempt);
        }
    }
    backoff(&np, pid as i64, attempt)
}

/// `waitid`, libc convention.
pub(crate) fn waitid(
    idtype: libc::idtype_t,
    id: libc::id_t,
    info: *mut libc::siginfo_t,
    options: i32,
) -> i32 {
    let raw = |options: i32| {
        // SAFETY: the caller's siginfo pointer (waitid's contract); glibc
        // passes a null rusage too.
        to_libc(unsafe {
            sc5(
                libc::SYS_waitid,
                idtype as usize,
                id as usize,
                info as usize,
                options as usize,
                0,
            )
        }) as i32
    };
    if options & (libc::WNOHANG | libc::WSTOPPED | libc::WCONTINUED) != 0
        || info.is_null()
        || !sched::in_coroutine_user_code()
    {
        return raw(options);
    }
    let np = NoPreempt::new();
    let attempt = || {
        // With WNOHANG and nothing ready the kernel leaves si_pid 0; clear
        // it first so "nothing yet" is told from a result.
        // SAFETY: the caller's siginfo, writable (waitid's contract).
        unsafe { std::ptr::write_bytes(info, 0, 1) };
        match raw(options | libc::WNOHANG) {
            0 => {
                // SAFETY: as above; si_pid is set by the kernel on a result.
                (unsafe { (*info).si_pid() } != 0).then_some(0)
            }
            r => Some(r),
        }
    };
    if idtype == libc::P_PID && id > 0 {
        if let Some((fd, reg)) = open_pidfd(id as i32, 0) {
            return on_pidfd(&np, fd, reg, None, attempt);
        }
    }
    backoff(&np, id as i64, attempt)
}

// ---- pthread_join ----

fn real_join() -> unsafe extern "C" fn(libc::pthread_t, *mut *mut libc::c_void) -> i32 {
    static SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    resolve(&SLOT, c"pthread_join")
}

fn real_tryjoin() -> unsafe extern "C" fn(libc::pthread_t, *mut *mut libc::c_void) -> i32 {
    static SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    resolve(&SLOT, c"pthread_tryjoin_np")
}

fn resolve(
    slot: &std::sync::atomic::AtomicUsize,
    name: &std::ffi::CStr,
) -> unsafe extern "C" fn(libc::pthread_t, *mut *mut libc::c_void) -> i32 {
    let p = sys::resolve_next(slot, name);
    // SAFETY: `p` is libc's pthread_join / pthread_tryjoin_np, both with
    // this signature.
    unsafe {
        std::mem::transmute::<
            usize,
            unsafe extern "C" fn(libc::pthread_t, *mut *mut libc::c_void) -> i32,
        >(p)
    }
}

/// Byte offset of the kernel tid in glibc's thread descriptor (`struct
/// pthread`, which `pthread_t` points to), found once by looking for the
/// calling thread's own tid in the first 1 KiB of its descriptor (glibc
/// 2.36: at 720); None unless exactly one 4-aligned slot matches.
pub(crate) fn tid_offset() -> Option<usize> {
    use std::sync::atomic::{AtomicIsize, Ordering};
    // -2: not computed yet; -1: not found.
    static OFF: AtomicIsize = AtomicIsize::new(-2);
    let v = OFF.load(Ordering::Relaxed);
    if v != -2 {
        return (v >= 0).then_some(v as usize);
    }
    // SAFETY: pthread_self and gettid have no preconditions.
    let (me, tid) = unsafe { (libc::pthread_self() as *const i32, libc::gettid()) };
    let mut found = None;
    let mut count = 0;
    for i in 0..256 {
        // SAFETY: glibc's descriptor of the running thread is larger than
        // 1 KiB (its first-level key table alone is 512 bytes, after a
        // 700-byte header), so these reads stay inside it.
        if unsafe { std::ptr::read_volatile(me.add(i)) } == tid {
            found = Some(i * 4);
            count += 1;
        }
    }
    let off = if count == 1 { found } else { None };
    OFF.store(off.map_or(-1, |o| o as isize), Ordering::Relaxed);
    off
}

/// `pthread_join`: a coroutine joining an OS thread parks until it ended.
pub(crate) fn pthread_join(th: libc::pthread_t, ret: *mut *mut libc::c_void) -> i32 {
    if !sched::in_coroutine_user_code() {
        // SAFETY: libc's function with the caller's arguments.
        return unsafe { real_join()(th, ret) };
    }
    let np = NoPreempt::new();
    let attempt = || {
        // SAFETY: libc's function with the caller's arguments.
        match unsafe { real_tryjoin()(th, ret) } {
            libc::EBUSY => None,
            r => Some(r),
        }
    };
    if let Some(r) = attempt() {
        return r;
    }
    if let Some(off) = tid_offset() {
        // SAFETY: `th` is a joinable thread not yet joined (the caller's
        // contract), so its descriptor is alive; the kernel clears the
        // tid when the thread exits, hence the atomic read.
        let tid = unsafe {
            (*((th as *const u8).add(off) as *const std::sync::atomic::AtomicI32))
                .load(std::sync::atomic::Ordering::Acquire)
        };
        if tid > 0 {
            if let Some((fd, reg)) = open_pidfd(tid, PIDFD_THREAD) {
                // The re-check covers a tid reused between our read and
                // pidfd_open (the thread had ended meanwhile).
                return on_pidfd(&np, fd, reg, Some(Duration::from_millis(50)), attempt);
            }
        }
    }
    backoff(&np, -1, attempt)
}

/// `waitpid(pid, status, options)` is `wait4` without rusage.
pub(crate) fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32 {
    wait4(pid, status, options, std::ptr::null_mut())
}

// ---- posix_spawn ----

type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const libc::c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *mut libc::c_char,
    *const *mut libc::c_char,
) -> i32;

fn real_spawn(p: bool) -> SpawnFn {
    use std::sync::atomic::AtomicUsize;
    static SLOTS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let (slot, name) = if p {
        (&SLOTS[1], c"posix_spawnp")
    } else {
        (&SLOTS[0], c"posix_spawn")
    };
    let f = sys::resolve_next(slot, name);
    // SAFETY: `f` is libc's posix_spawn or posix_spawnp (same signature).
    unsafe { std::mem::transmute::<usize, SpawnFn>(f) }
}

/// `posix_spawn` (`p == false`) and `posix_spawnp`: on a helper thread
/// from a coroutine (module doc), else glibc's function here.
pub(crate) fn posix_spawn(
    p: bool,
    pid: *mut libc::pid_t,
    path: *const libc::c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
) -> i32 {
    let f = real_spawn(p);
    // SAFETY: `fa` is the caller's: null or initialised (posix_spawn's
    // contract).
    unsafe { super::handoff::hand_to_child(fa) };
    if !sched::in_coroutine_user_code() {
        // SAFETY: libc's function with the caller's arguments.
        return unsafe { f(pid, path, fa, attr, argv, envp) };
    }
    let a = [
        pid as usize,
        path as usize,
        fa as usize,
        attr as usize,
        argv as usize,
        envp as usize,
    ];
    super::offload::offload(
        super::offload::Class::Unbounded,
        crate::observe::wait::Job::Spawn,
        move || {
            // SAFETY: the caller's arguments, valid while the caller (parked
            // until this returns) keeps them (posix_spawn's contract).
            unsafe {
                f(
                    a[0] as *mut libc::pid_t,
                    a[1] as *const libc::c_char,
                    a[2] as *const libc::posix_spawn_file_actions_t,
                    a[3] as *const libc::posix_spawnattr_t,
                    a[4] as *const *mut libc::c_char,
                    a[5] as *const *mut libc::c_char,
                )
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offset found on one thread reads the right tid on others (and
    /// on glibc 2.36 x86-64 it is 720).
    #[test]
    fn tid_offset_reads_each_threads_tid() {
        let off = tid_offset().expect("tid offset not found");
        let read = |th: libc::pthread_t| {
            // SAFETY: `th` is a live, not yet joined thread (below).
            unsafe { *((th as *const u8).add(off) as *const i32) }
        };
        // SAFETY: gettid and pthread_self have no preconditions.
        assert_eq!(read(unsafe { libc::pthread_self() }), unsafe {
            libc::gettid()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            // SAFETY: as above.
            tx.send(unsafe { libc::gettid() }).unwrap();
            go_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        use std::os::unix::thread::JoinHandleExt;
        assert_eq!(read(h.as_pthread_t()), tid);
        go_tx.send(()).unwrap();
        h.join().unwrap();
    }

    /// pthread_join from a coroutine of a thread that takes a while.
    #[test]
    fn join_from_coroutine_returns_value() {
        let v = crate::spawn(|| {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                7
            })
            .join()
            .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(v, 7);
    }
}
