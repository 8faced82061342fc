//! What a parked coroutine waits for: the wait reason a park site passes
//! to `sched::park_current` ([`WaitReason`], with its detail: the fd, the
//! futex address, the deadline, the joined coroutine, the helper job), and
//! the per-coroutine record it is kept in ([`WaitRecord`]) for `dump()`.
//!
//! Cost: a park writes three words and a coarse timestamp, [`NOW`], which
//! the preemption monitor (or, with preemption off, the detector thread)
//! refreshes at each of its ticks, and an executor when it wakes from
//! sleep (the monitor sleeps while every executor does): no clock read on
//! the park path (even the vDSO's coarse clock measured ~5 ns per
//! spawn-and-join). "Parked for" is therefore good to the monitor's tick
//! (half a time slice, 1 ms by default; the detector's `blocked_after / 4`
//! with preemption off).
//! Nothing else on any hot path. Only the coroutine itself writes its
//! record (owner, Relaxed); `dump()` reads it after claiming the parked
//! coroutine (observe/dump.rs), which orders the reads after the writes
//! (the executor's Release CAS to PARKED, the dump's Acquire claim). Words
//! that point into the parked coroutine's stack (a DNS host name, a path)
//! are only dereferenced under such a claim: the coroutine cannot return
//! from the call that owns them while the dump holds it.

use std::ffi::c_char;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why a coroutine parks, with what the runtime knows about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// `coroutines::park`.
    Park,
    /// `coroutines::park_timeout`.
    ParkTimeout,
    /// A sleep (or a timed back-off) until `deadline`.
    Sleep { deadline: Instant },
    /// `JoinHandle::join` of coroutine `id`.
    Join { id: u64 },
    /// Readiness of `fd` (the first of `nfds` for a poll of several).
    Io { fd: i32, write: bool, nfds: u32 },
    /// A futex wait on `addr` (std's `Mutex`, `Condvar`, `RwLock`, `Once`,
    /// or any futex user).
    Futex { addr: usize },
    /// A futex wait on the coroutine's own std thread parker: std channel
    /// receives and sends, `thread::park`.
    StdParker { addr: usize },
    /// A pthread object (mutex, rwlock, condition variable, semaphore,
    /// spin lock) at `addr`.
    Pthread { addr: usize, kind: PthreadKind },
    /// A call running on a helper thread.
    Helper(Job),
    /// A child process or thread (`waitpid`, `JoinHandle::join` of an OS
    /// thread) through a back-off timer.
    Child { id: i64 },
}

/// Kinds of pthread objects a coroutine can wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PthreadKind {
    Mutex = 0,
    RwLock = 1,
    Cond = 2,
    Semaphore = 3,
    Spin = 4,
    Once = 5,
}

impl PthreadKind {
    /// The object's kind in a dump or trace: `mutex`, `rwlock`, ...
    pub(crate) fn name(self) -> &'static str {
        match self {
            PthreadKind::Mutex => "mutex",
            PthreadKind::RwLock => "rwlock",
            PthreadKind::Cond => "condvar",
            PthreadKind::Semaphore => "semaphore",
            PthreadKind::Spin => "spinlock",
            PthreadKind::Once => "once",
        }
    }
}

/// What a helper thread runs for a parked coroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    /// `getaddrinfo` of a host name (NUL-terminated, owned by the caller,
    /// which is parked until the job is done); null when none was given.
    Dns(*const c_char),
    /// Regular-file I/O on `fd`.
    File { fd: i32 },
    /// `open` of a path (a FIFO or a device) (NUL-terminated, as `Dns`).
    Open(*const c_char),
    /// A lock on an fd (`flock`, `fcntl` record locks).
    FileLock { fd: i32 },
    /// A poll/select/epoll wait on fds the reactor does not manage.
    ForeignPoll { nfds: u32 },
    /// `pthread_barrier_wait`.
    Barrier { addr: usize },
    /// `sigwait` and friends.
    Signal,
    /// Spawning a process (`posix_spawn`).
    Spawn,
}

// Record kinds (`WaitRecord::kind`; 0: no wait recorded yet).
const K_PARK: u8 = 1;
const K_PARK_TIMEOUT: u8 = 2;
const K_SLEEP: u8 = 3;
const K_JOIN: u8 = 4;
const K_IO: u8 = 5;
const K_FUTEX: u8 = 6;
const K_STD_PARKER: u8 = 7;
const K_PTHREAD: u8 = 8;
const K_CHILD: u8 = 9;
const K_HELPER: u8 = 16; // + job code
const J_DNS: u8 = 0;
const J_FILE: u8 = 1;
const J_OPEN: u8 = 2;
const J_FILE_LOCK: u8 = 3;
const J_FOREIGN_POLL: u8 = 4;
const J_BARRIER: u8 = 5;
const J_SIGNAL: u8 = 6;
const J_SPAWN: u8 = 7;

/// The last wait of a coroutine: written by the coroutine itself at each
/// park (`set`), read by `dump()` while the coroutine is claimed parked.
#[derive(Default)]
pub(crate) struct WaitRecord {
    kind: AtomicU8,
    a: AtomicU64,
    b: AtomicU64,
    /// [`NOW`] when the wait began (its last park).
    since: AtomicU64,
}

impl WaitRecord {
    /// Records `r` as the current wait (owner only), stamped now. A wait
    /// loop that parks again (a spurious wake-up, a re-check timer)
    /// restamps it: "since" is the last park of the wait.
    #[inline]
    pub(crate) fn set(&self, r: WaitReason) {
        let (kind, a, b) = encode(r);
        self.kind.store(kind, Ordering::Relaxed);
        self.a.store(a, Ordering::Relaxed);
        self.b.store(b, Ordering::Relaxed);
        self.since
            .store(NOW.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The recorded wait and when it began (`coarse_now` units), if any.
    pub(crate) fn get(&self) -> Option<(WaitReason, u64)> {
        let kind = self.kind.load(Ordering::Relaxed);
        let a = self.a.load(Ordering::Relaxed);
        let b = self.b.load(Ordering::Relaxed);
        let since = self.since.load(Ordering::Relaxed);
        decode(kind, a, b).map(|r| (r, since))
    }
}

fn encode(r: WaitReason) -> (u8, u64, u64) {
    match r {
        WaitReason::Park => (K_PARK, 0, 0),
        WaitReason::ParkTimeout => (K_PARK_TIMEOUT, 0, 0),
        WaitReason::Sleep { deadline } => (K_SLEEP, instant_to_ns(deadline), 0),
        WaitReason::Join { id } => (K_JOIN, id, 0),
        WaitReason::Io { fd, write, nfds } => {
            (K_IO, fd as u32 as u64, (nfds as u64) << 1 | write as u64)
        }
        WaitReason::Futex { addr } => (K_FUTEX, addr as u64, 0),
        WaitReason::StdParker { addr } => (K_STD_PARKER, addr as u64, 0),
        WaitReason::Pthread { addr, kind } => (K_PTHREAD, addr as u64, kind as u64),
        WaitReason::Child { id } => (K_CHILD, id as u64, 0),
        WaitReason::Helper(job) => match job {
            Job::Dns(p) => (K_HELPER + J_DNS, p as u64, 0),
            Job::File { fd } => (K_HELPER + J_FILE, fd as u32 as u64, 0),
            Job::Open(p) => (K_HELPER + J_OPEN, p as u64, 0),
            Job::FileLock { fd } => (K_HELPER + J_FILE_LOCK, fd as u32 as u64, 0),
            Job::ForeignPoll { nfds } => (K_HELPER + J_FOREIGN_POLL, nfds as u64, 0),
            Job::Barrier { addr } => (K_HELPER + J_BARRIER, addr as u64, 0),
            Job::Signal => (K_HELPER + J_SIGNAL, 0, 0),
            Job::Spawn => (K_HELPER + J_SPAWN, 0, 0),
        },
    }
}

fn decode(kind: u8, a: u64, b: u64) -> Option<WaitReason> {
    Some(match kind {
        K_PARK => WaitReason::Park,
        K_PARK_TIMEOUT => WaitReason::ParkTimeout,
        K_SLEEP => WaitReason::Sleep {
            deadline: ns_to_instant(a),
        },
        K_JOIN => WaitReason::Join { id: a },
        K_IO => WaitReason::Io {
            fd: a as u32 as i32,
            write: b & 1 != 0,
            nfds: (b >> 1) as u32,
        },
        K_FUTEX => WaitReason::Futex { addr: a as usize },
        K_STD_PARKER => WaitReason::StdParker { addr: a as usize },
        K_PTHREAD => WaitReason::Pthread {
            addr: a as usize,
            kind: match b {
                0 => PthreadKind::Mutex,
                1 => PthreadKind::RwLock,
                2 => PthreadKind::Cond,
                3 => PthreadKind::Semaphore,
                4 => PthreadKind::Spin,
                _ => PthreadKind::Once,
            },
        },
        K_CHILD => WaitReason::Child { id: a as i64 },
        k if k >= K_HELPER => WaitReason::Helper(match k - K_HELPER {
            J_DNS => Job::Dns(a as usize as *const c_char),
            J_FILE => Job::File {
                fd: a as u32 as i32,
            },
            J_OPEN => Job::Open(a as usize as *const c_char),
            J_FILE_LOCK => Job::FileLock {
                fd: a as u32 as i32,
            },
            J_FOREIGN_POLL => Job::ForeignPoll { nfds: a as u32 },
            J_BARRIER => Job::Barrier { addr: a as usize },
            J_SIGNAL => Job::Signal,
            _ => Job::Spawn,
        }),
        _ => return None,
    })
}

/// The process's reference instant: deadlines are stored as nanoseconds
/// after it.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn instant_to_ns(t: Instant) -> u64 {
    t.saturating_duration_since(base()).as_nanos() as u64
}

fn ns_to_instant(ns: u64) -> Instant {
    base() + Duration::from_nanos(ns)
}

/// The time (nanoseconds after `base()`) at the monitor's last tick.
pub(crate) static NOW: AtomicU64 = AtomicU64::new(0);

/// Refreshes [`NOW`] (the monitor's or the detector's loop).
#[inline]
pub(crate) fn tick(now: Instant) {
    NOW.store(instant_to_ns(now), Ordering::Relaxed);
}

/// The current time in [`NOW`]'s units (exact, for the dump).
pub(crate) fn now_ns() -> u64 {
    instant_to_ns(Instant::now())
}
