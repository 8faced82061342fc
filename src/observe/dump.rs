//! `dump()`: what every live coroutine is doing, as text and as data.
//!
//! How a dump is taken:
//! 1. The registry (registry.rs) is walked shard by shard in chunks; each
//!    coroutine's state is classified from its state word and the
//!    executors' `current` pointers (compared, never dereferenced):
//!    running on executor N, ready (queued after a spawn, yield,
//!    preemption or wake), parked, never run (no stack yet), or on its own
//!    thread (`Builder::dedicated`).
//! 2. A parked coroutine is *claimed* (`PARKED -> PARKED|CLAIMED`,
//!    coroutine.rs): while the claim lasts it cannot be resumed (a waker
//!    waits for the claim to end, then wakes it as usual), so its wait
//!    record, its saved stack pointer and its stack are stable and the
//!    dump is, for that moment, the owner of the right to run it. Under
//!    the claim the dump copies the wait record, strings the wait points
//!    to (a DNS host name on the coroutine's stack) and, with backtraces,
//!    the return addresses found by unwinding the stack from the saved
//!    registers (unwind.rs). Then it releases the claim. Nothing is
//!    symbolized, formatted or looked up under a claim or a registry lock.
//! 3. Outside the locks: symbols (symbol.rs), fd descriptions (the fd's
//!    `/proc/self/fd` link, socket type and addresses), lock holders known
//!    to the pthread hooks, futex waits classified by their backtrace
//!    (`std::sync::Mutex`, `Condvar`, `RwLock`, `Once`, channels), and
//!    wait-for cycles (joins and pthread locks) reported as deadlocks.
//!
//! Bounds: one registry chunk (256 coroutines without backtraces, 16 with)
//! per lock hold, so spawns and exits on that shard wait at most one chunk;
//! a waker of a claimed coroutine waits at most one stack walk. Ready and
//! running coroutines have no backtrace: their stacks are in use or may be
//! resumed at any moment without a state change the dump could hold.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::registry;
use super::symbol::{symbolize, Frame};
use super::unwind;
use super::wait::{now_ns, Job, PthreadKind, WaitReason};
use crate::coroutine::{CoroutineId, Inner, ACTIVE, CLAIMED, DONE, PARKED, RUNNABLE, STATE_MASK};

/// What to capture in a [`Dump`]; [`dump`] uses the defaults (with
/// backtraces).
///
/// ```
/// let d = coroutines::DumpOptions::new().backtraces(false).capture();
/// assert!(d.coroutines().iter().all(|c| c.backtrace.is_empty()));
/// ```
#[derive(Clone, Debug)]
pub struct DumpOptions {
    backtraces: bool,
    max_frames: usize,
    runtime_frames: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            backtraces: true,
            max_frames: 64,
            runtime_frames: false,
        }
    }
}

impl DumpOptions {
    /// Backtraces on, at most 64 frames each.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to capture a backtrace of each parked coroutine (default
    /// true). Without them a dump of 100,000 coroutines takes well under a
    /// second; with them, a few microseconds more per parked coroutine.
    pub fn backtraces(mut self, on: bool) -> Self {
        self.backtraces = on;
        self
    }

    /// Most frames per backtrace (default 64).
    pub fn max_frames(mut self, n: usize) -> Self {
        self.max_frames = n.max(1);
        self
    }

    /// Whether backtraces keep the runtime's own frames: the park path at
    /// the top (`coroutines::sched::…`, the reactor, the hooks' insides)
    /// and the coroutine entry at the bottom (default false: a backtrace
    /// starts at the call the program made — `recv`, `syscall` from std's
    /// `Mutex`, `JoinHandle::join` — and ends at its closure).
    pub fn runtime_frames(mut self, on: bool) -> Self {
        self.runtime_frames = on;
        self
    }

    /// Takes the dump.
    pub fn capture(&self) -> Dump {
        capture(self)
    }
}

/// Takes a [`Dump`] of every live coroutine, with backtraces of the
/// parked ones. Works from coroutines and plain threads; the program goes
/// on (no executor is stopped). Printing it gives Go-style text.
///
/// ```
/// use std::time::Duration;
/// let h = coroutines::Builder::new()
///     .name("sleeper".into())
///     .spawn(|| coroutines::sleep(Duration::from_millis(300)))
///     .unwrap();
/// std::thread::sleep(Duration::from_millis(50));
/// let d = coroutines::dump();
/// let c = d.coroutines().iter().find(|c| c.name.as_deref() == Some("sleeper")).unwrap();
/// assert!(matches!(c.wait, Some(coroutines::Wait::Sleep { .. })));
/// println!("{d}");
/// h.join().unwrap();
/// ```
pub fn dump() -> Dump {
    DumpOptions::new().capture()
}

/// A snapshot of the runtime's coroutines (see [`dump`]).
#[derive(Clone, Debug, Default)]
pub struct Dump {
    coroutines: Vec<CoroutineInfo>,
    executors: Vec<ExecutorInfo>,
    deadlocks: Vec<Vec<CoroutineId>>,
    took: Duration,
    longest_hold: Duration,
    longest_hold_cpu: Duration,
}

/// One coroutine in a [`Dump`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CoroutineInfo {
    /// Its id.
    pub id: CoroutineId,
    /// The name given with `Builder::name`.
    pub name: Option<String>,
    /// What it is doing.
    pub state: State,
    /// What it waits for, when parked.
    pub wait: Option<Wait>,
    /// How long it has been parked (the last park of its wait; at the
    /// kernel tick's resolution, a few ms).
    pub parked_for: Option<Duration>,
    /// The executor it runs on or last ran on.
    pub executor: Option<usize>,
    /// Time spent running on an executor (see `Coroutine::cpu_time`):
    /// sampled by the monitor at its tick (about 1 ms while coroutines
    /// run; coarse for short runs, right on average), up to the last
    /// switch-out.
    pub cpu_time: Duration,
    /// Times it was preempted.
    pub preemptions: u64,
    /// Innermost first; empty unless parked and backtraces were asked for.
    pub backtrace: Vec<Frame>,
}

/// What a coroutine is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Running on this executor now.
    Running {
        /// Executor index.
        executor: usize,
    },
    /// Runnable, waiting in a run queue (after a yield, a preemption or a
    /// wake-up).
    Ready,
    /// Parked until something wakes it (see [`CoroutineInfo::wait`]).
    Parked,
    /// Spawned, not started yet (no stack).
    NeverRun,
    /// A dedicated coroutine (`Builder::dedicated`) on its own OS thread.
    OwnThread,
}

/// What a parked coroutine waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// `coroutines::park`.
    Park,
    /// `coroutines::park_timeout`.
    ParkTimeout,
    /// A sleep with this much left.
    Sleep {
        /// Time left (zero once due).
        remaining: Duration,
    },
    /// Joining another coroutine.
    Join {
        /// The joined coroutine.
        coroutine: CoroutineId,
    },
    /// Readiness of a file descriptor (a socket, pipe, pidfd, ...).
    Io {
        /// The fd (the first of `fds` for a poll on several).
        fd: i32,
        /// Waiting to write (else to read).
        write: bool,
        /// Fds in the wait (1 for a plain read or write).
        fds: u32,
        /// What the fd is: `TCP 127.0.0.1:40000 -> 127.0.0.1:8080`,
        /// `pipe`, `pidfd`, a path.
        description: String,
    },
    /// A futex wait: std's `Mutex`, `Condvar`, `RwLock`, `Once` or another
    /// futex user.
    Futex {
        /// The futex word.
        addr: usize,
        /// The std primitive, recognised from the backtrace (None without
        /// backtraces or when not recognised).
        primitive: Option<&'static str>,
    },
    /// The coroutine's std thread parker: a std channel receive or send,
    /// `std::thread::park`.
    ThreadParker {
        /// What parked it, recognised from the backtrace (None without
        /// backtraces).
        operation: Option<&'static str>,
    },
    /// A pthread object (C code's locks and condition variables).
    Pthread {
        /// The object's address.
        addr: usize,
        /// `mutex`, `rwlock`, `condvar`, `semaphore`, `spinlock`, `once`.
        kind: &'static str,
        /// The coroutine holding it, if the runtime knows.
        holder: Option<CoroutineId>,
    },
    /// A call running on a helper thread.
    Helper {
        /// The job: `getaddrinfo("example.com")`, `file I/O on fd 5`, ...
        job: String,
    },
    /// A child process (`waitpid`) or an OS thread (`JoinHandle::join`).
    Child {
        /// The process id, None for a thread.
        pid: Option<i64>,
    },
}

/// One executor in a [`Dump`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutorInfo {
    /// Executor index.
    pub index: usize,
    /// The coroutine it runs now, if any.
    pub running: Option<CoroutineId>,
    /// Its thread runs (false: a retired extra executor).
    pub alive: bool,
    /// The spare executor, which runs coroutines woken while every other
    /// executor is busy (README, "Scheduling").
    pub spare: bool,
}

impl Dump {
    /// Every coroutine alive when the dump was taken, by id.
    pub fn coroutines(&self) -> &[CoroutineInfo] {
        &self.coroutines
    }

    /// The coroutine with this id, if it was alive.
    pub fn get(&self, id: CoroutineId) -> Option<&CoroutineInfo> {
        self.coroutines
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.coroutines[i])
    }

    /// The executors.
    pub fn executors(&self) -> &[ExecutorInfo] {
        &self.executors
    }

    /// Cycles of coroutines each waiting for the next (joins, pthread
    /// locks with a known holder): deadlocks.
    pub fn deadlocks(&self) -> &[Vec<CoroutineId>] {
        &self.deadlocks
    }

    /// How long taking the dump took.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// The longest the dump held one registry shard (a chunk of
    /// coroutines, each parked one claimed for a moment): the most a
    /// spawn, an exit or a wake-up on an executor can have waited for it.
    pub fn longest_hold(&self) -> Duration {
        self.longest_hold
    }

    /// Like [`longest_hold`](Self::longest_hold), counting only the
    /// dumping thread's CPU time: the dump's own work per hold. Executors
    /// never wait for a shard the dump holds (they defer their registry
    /// update instead), but a wake-up of a coroutine the dump has claimed
    /// waits for the claim, which this bounds unless the OS deschedules
    /// the dumping thread meanwhile.
    pub fn longest_hold_cpu(&self) -> Duration {
        self.longest_hold_cpu
    }
}

/// What the dump copies under a claim or a registry lock.
struct Raw {
    id: CoroutineId,
    name: Option<String>,
    state: State,
    wait: Option<(WaitReason, u64)>,
    host: Option<String>,
    pcs: Vec<u64>,
    executor: Option<usize>,
    cpu_ns: u64,
    preemptions: u64,
}

fn capture(opts: &DumpOptions) -> Dump {
    let t0 = Instant::now();
    let Some(rt) = crate::sched::try_runtime() else {
        return Dump::default();
    };
    let execs = rt.live_executors();
    let running: HashMap<usize, usize> = execs
        .iter()
        .filter_map(|e| {
            let p = e.current.load(Ordering::Acquire) as usize;
            (p != 0).then_some((p, e.index))
        })
        .collect();
    let chunk = if opts.backtraces { 16 } else { registry::CHUNK };
    let seen = HashSet::new();
    let raws = Vec::new();
    let current_ids = HashMap::new();
    let mut st = (seen, raws, current_ids);
    let (longest_hold, longest_hold_cpu) = registry::for_each(
        chunk,
        &mut st,
        |(seen, raws, _), n| {
            raws.reserve(n);
            seen.reserve(n);
        },
        |(seen, raws, current_ids), co| {
            if !seen.insert(co.id) {
                return;
            }
            if let Some(r) = copy(co, &running, opts) {
                if let State::Running { executor } = r.state {
                    current_ids.insert(executor, r.id);
                }
                raws.push(r);
            }
        },
    );
    let (mut seen, mut raws, mut current_ids) = st;
    // Coroutines not in the registry yet (registry.rs `register`): the
    // one in an executor's `next` slot, never run, and one running its
    // first run. Their names are not reachable without a reference.
    for e in execs {
        let running = (!e.current.load(Ordering::Acquire).is_null())
            .then(|| e.current_id.load(Ordering::Relaxed));
        let next = e.next_id.load(Ordering::Relaxed);
        for (n, state) in [
            (running.unwrap_or(0), State::Running { executor: e.index }),
            (next, State::NeverRun),
        ] {
            let Some(id) = id_of(n) else { continue };
            if seen.insert(id) {
                if let State::Running { executor } = state {
                    current_ids.insert(executor, id);
                }
                raws.push(Raw {
                    id,
                    name: None,
                    state,
                    wait: None,
                    host: None,
                    pcs: Vec::new(),
                    executor: Some(e.index),
                    cpu_ns: 0,
                    preemptions: 0,
                });
            }
        }
    }
    let now_coarse = now_ns();
    let now = Instant::now();
    let mut coroutines: Vec<CoroutineInfo> = raws
        .into_iter()
        .map(|r| finish(r, now, now_coarse, opts.runtime_frames))
        .collect();
    coroutines.sort_by_key(|c| c.id);
    let executors = execs
        .iter()
        .map(|e| ExecutorInfo {
            index: e.index,
            running: current_ids.get(&e.index).copied(),
            alive: e.alive.load(Ordering::Relaxed),
            spare: rt.is_spare(e.index),
        })
        .collect();
    let deadlocks = find_cycles(&coroutines);
    Dump {
        coroutines,
        executors,
        deadlocks,
        took: t0.elapsed(),
        longest_hold,
        longest_hold_cpu,
    }
}

/// Copies one coroutine (registry lock held: no formatting, no lookups).
fn copy(co: &Inner, running: &HashMap<usize, usize>, opts: &DumpOptions) -> Option<Raw> {
    let st = co.state.load(Ordering::Acquire);
    if st & STATE_MASK == DONE {
        return None;
    }
    let home = co.home.load(Ordering::Relaxed);
    let mut raw = Raw {
        id: co.id,
        name: co.name.as_deref().map(str::to_owned),
        state: State::Ready,
        wait: None,
        host: None,
        pcs: Vec::new(),
        executor: (home != crate::coroutine::NO_HOME).then_some(home as usize),
        cpu_ns: co.cpu_ns.load(Ordering::Relaxed),
        preemptions: co.preemptions.load(Ordering::Relaxed),
    };
    if co.dedicated {
        raw.state = State::OwnThread;
        return Some(raw);
    }
    if let Some(&executor) = running.get(&(co as *const Inner as usize)) {
        if st & STATE_MASK == ACTIVE {
            raw.state = State::Running { executor };
            raw.executor = Some(executor);
            return Some(raw);
        }
    }
    match st & STATE_MASK {
        PARKED => {
            if co
                .state
                .compare_exchange(
                    PARKED,
                    PARKED | CLAIMED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                return Some(raw); // woken meanwhile: ready
            }
            raw.state = State::Parked;
            raw.wait = co.wait.get();
            if let Some((WaitReason::Helper(Job::Dns(p) | Job::Open(p)), _)) = raw.wait {
                // SAFETY: the coroutine is parked inside the hook whose
                // caller passed this NUL-terminated string, and cannot
                // return from it while we hold the claim.
                raw.host = unsafe { read_c_string(p) };
            }
            if opts.backtraces {
                let lo = co.stack_lo.load(Ordering::Relaxed);
                let hi = co.stack_hi.load(Ordering::Relaxed);
                if lo != 0 {
                    // SAFETY: the claim makes us the owner of the right to
                    // run the coroutine, the party that may read `sp`
                    // (coroutine.rs); it points at the suspended switch
                    // frame the coroutine (or the preemption handler)
                    // wrote on its stack, which stays put while we hold
                    // the claim.
                    let regs = unsafe { unwind::regs_of_suspended(*co.sp.get()) };
                    let mem = unwind::StackMemory {
                        lo: lo as u64,
                        hi: hi as u64,
                    };
                    raw.pcs = unwind::unwind(regs, &mem, opts.max_frames);
                }
            }
            // Release: our reads are done before a waker resumes it.
            co.state.fetch_and(!CLAIMED, Ordering::Release);
        }
        RUNNABLE => {}
        _ => {
            if co.stack_lo.load(Ordering::Relaxed) == 0 {
                raw.state = State::NeverRun;
            }
        }
    }
    Some(raw)
}

/// Reads a NUL-terminated string of at most 255 bytes.
///
/// # Safety
/// `p` is null or a live NUL-terminated string.
unsafe fn read_c_string(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut v = Vec::new();
    for i in 0..255 {
        // SAFETY: within the caller's string: we stop at its NUL.
        let b = unsafe { *p.add(i) } as u8;
        if b == 0 {
            break;
        }
        v.push(b);
    }
    Some(String::from_utf8_lossy(&v).into_owned())
}

fn id_of(n: u64) -> Option<CoroutineId> {
    NonZeroU64::new(n).map(CoroutineId::from_raw)
}

/// Module paths of the runtime's internals (not its public API).
const RUNTIME_INTERNALS: &[&str] = &[
    "coroutines::sched::",
    "coroutines::reactor::",
    "coroutines::interpose::",
    "coroutines::observe::",
    "coroutines::tls::",
    "coroutines_entry",
];

/// Drops the runtime's frames above the program's call into it and below
/// the coroutine's closure (see `DumpOptions::runtime_frames`).
fn trim_runtime_frames(frames: &mut Vec<Frame>) {
    let internal = |f: &Frame| {
        f.symbol
            .as_deref()
            .is_some_and(|s| RUNTIME_INTERNALS.iter().any(|p| s.starts_with(p)))
    };
    let top = frames.iter().take_while(|f| internal(f)).count();
    if top == frames.len() {
        return; // nothing but the runtime: keep it all
    }
    frames.drain(..top);
    while frames.last().is_some_and(internal) {
        frames.pop();
    }
}

/// Turns a raw copy into the public record (no locks held).
fn finish(r: Raw, now: Instant, now_coarse: u64, runtime_frames: bool) -> CoroutineInfo {
    let mut backtrace = symbolize(&r.pcs);
    // Classified on the full backtrace, shown trimmed.
    let wait = r
        .wait
        .map(|(w, _)| describe(w, r.host.as_deref(), &backtrace, now));
    if !runtime_frames {
        trim_runtime_frames(&mut backtrace);
    }
    CoroutineInfo {
        id: r.id,
        name: r.name,
        state: r.state,
        wait,
        parked_for: r
            .wait
            .map(|(_, since)| Duration::from_nanos(now_coarse.saturating_sub(since))),
        executor: r.executor,
        cpu_time: Duration::from_nanos(r.cpu_ns),
        preemptions: r.preemptions,
        backtrace,
    }
}

fn describe(w: WaitReason, text: Option<&str>, frames: &[Frame], now: Instant) -> Wait {
    match w {
        WaitReason::Park => Wait::Park,
        WaitReason::ParkTimeout => Wait::ParkTimeout,
        WaitReason::Sleep { deadline } => Wait::Sleep {
            remaining: deadline.saturating_duration_since(now),
        },
        WaitReason::Join { id } => match id_of(id) {
            Some(coroutine) => Wait::Join { coroutine },
            None => Wait::Park,
        },
        WaitReason::Io { fd, write, nfds } => Wait::Io {
            fd,
            write,
            fds: nfds,
            description: describe_fd(fd),
        },
        // With per-coroutine thread-locals a parker wait is a plain futex
        // wait to the hooks; the backtrace tells them apart.
        WaitReason::Futex { addr } | WaitReason::StdParker { addr } => match classify(frames) {
            Some((op, true)) => Wait::ThreadParker {
                operation: Some(op),
            },
            Some((primitive, false)) => Wait::Futex {
                addr,
                primitive: Some(primitive),
            },
            None if matches!(w, WaitReason::StdParker { .. }) => {
                Wait::ThreadParker { operation: None }
            }
            None => Wait::Futex {
                addr,
                primitive: None,
            },
        },
        WaitReason::Pthread { addr, kind } => Wait::Pthread {
            addr,
            kind: kind.name(),
            holder: match kind {
                PthreadKind::Mutex | PthreadKind::RwLock => {
                    crate::interpose::pthread_lock_owner(addr).and_then(id_of)
                }
                _ => None,
            },
        },
        WaitReason::Helper(job) => Wait::Helper {
            job: match job {
                Job::Dns(_) => format!("getaddrinfo({:?})", text.unwrap_or("")),
                Job::Open(_) => format!("open({:?})", text.unwrap_or("")),
                Job::File { fd } => format!("file I/O on fd {fd} ({})", describe_fd(fd)),
                Job::FileLock { fd } => format!("file lock on fd {fd} ({})", describe_fd(fd)),
                Job::ForeignPoll { nfds: 0 } => {
                    "epoll_wait on an epoll fd the runtime does not manage".into()
                }
                Job::ForeignPoll { nfds } => format!("poll/select on {nfds} fds"),
                Job::Barrier { addr } => format!("pthread_barrier_wait({addr:#x})"),
                Job::Signal => "sigwait".into(),
                Job::Spawn => "posix_spawn".into(),
            },
        },
        WaitReason::Child { id } => Wait::Child {
            pid: (id > 0).then_some(id),
        },
    }
}

/// What a futex wait is for, recognised from its backtrace: (fragments
/// that must all appear in one frame's name, what it means, whether it
/// waits on the thread parker). The first entry matching any frame wins,
/// so a channel operation (which parks through `Thread::park`) is named
/// before a bare `thread::park`, and a primitive before `Once` (whose
/// frames a closure's `FnOnce::call_once` could otherwise mimic).
const FUTEX_USERS: &[(&[&str], &str, bool)] = &[
    (&["mpmc", "recv"], "channel receive", true),
    (&["mpsc", "recv"], "channel receive", true),
    (&["mpmc", "send"], "channel send", true),
    (&["mpsc", "send"], "channel send", true),
    (&["Condvar", "wait"], "std::sync::Condvar::wait", false),
    (&["RwLock", "read"], "std::sync::RwLock::read", false),
    (&["RwLock", "write"], "std::sync::RwLock::write", false),
    (&["Mutex", "lock"], "std::sync::Mutex::lock", false),
    (&["Barrier", "wait"], "std::sync::Barrier::wait", false),
    (&["sync::once", "Once"], "std::sync::Once", false),
    (&["OnceLock"], "std::sync::OnceLock", false),
    (&["Thread", "park"], "std::thread::park", true),
    (&["thread::park"], "std::thread::park", true),
];

/// The primitive behind a futex wait (see [`FUTEX_USERS`]).
fn classify(frames: &[Frame]) -> Option<(&'static str, bool)> {
    FUTEX_USERS.iter().find_map(|(parts, what, parker)| {
        frames
            .iter()
            .filter_map(|f| f.symbol.as_deref())
            .any(|name| parts.iter().all(|p| name.contains(p)))
            .then_some((*what, *parker))
    })
}

/// What fd `fd` is: its `/proc/self/fd` link, and for sockets the type
/// and addresses.
fn describe_fd(fd: i32) -> String {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "closed".into());
    if !link.starts_with("socket:") {
        return match link.as_str() {
            l if l.starts_with("pipe:") => "pipe".into(),
            "anon_inode:[pidfd]" => "pidfd".into(),
            "anon_inode:[eventfd]" => "eventfd".into(),
            "anon_inode:[timerfd]" => "timerfd".into(),
            "anon_inode:[signalfd]" => "signalfd".into(),
            l => l.into(),
        };
    }
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    let local = sock_addr(fd, false);
    let peer = sock_addr(fd, true);
    let (family, local) = local.unwrap_or(("socket", String::new()));
    let kind = match (family, ty) {
        ("unix", libc::SOCK_STREAM) => "Unix stream",
        ("unix", libc::SOCK_DGRAM) => "Unix datagram",
        ("unix", _) => "Unix socket",
        (_, libc::SOCK_STREAM) => "TCP",
        (_, libc::SOCK_DGRAM) => "UDP",
        _ => "socket",
    };
    match peer {
        Some((_, p)) => format!("{kind} {local} -> {p}"),
        None if family == "socket" => kind.to_string(),
        None => format!("{kind} {local} (listening or unconnected)"),
    }
}

/// The socket's own (`peer == false`) or peer address as (family, text).
fn sock_addr(fd: i32, peer: bool) -> Option<(&'static str, String)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: the kernel writes at most `len` bytes into `ss`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r != 0 {
        return None;
    }
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(p as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(("inet", format!("{ip}:{}", u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(p as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(("inet", format!("[{ip}]:{}", u16::from_be(a.sin6_port))))
        }
        libc::AF_UNIX => {
            // SAFETY: the family says the storage holds a sockaddr_un.
            let a = unsafe { &*(p as *const libc::sockaddr_un) };
            let n = (len as usize).saturating_sub(2).min(a.sun_path.len());
            let path: Vec<u8> = a.sun_path[..n]
                .iter()
                .map(|&c| c as u8)
                .take_while(|&c| c != 0)
                .collect();
            let text = if path.is_empty() {
                "(unnamed)".to_string()
            } else {
                String::from_utf8_lossy(&path).into_owned()
            };
            Some(("unix", text))
        }
        _ => None,
    }
}

/// Wait-for edges (a join, a pthread lock with a known holder) and the
/// cycles they form.
fn find_cycles(cos: &[CoroutineInfo]) -> Vec<Vec<CoroutineId>> {
    let edge: HashMap<CoroutineId, CoroutineId> = cos
        .iter()
        .filter_map(|c| {
            let to = match c.wait.as_ref()? {
                Wait::Join { coroutine } => *coroutine,
                Wait::Pthread {
                    holder: Some(h), ..
                } => *h,
                _ => return None,
            };
            Some((c.id, to))
        })
        .collect();
    let mut done: HashSet<CoroutineId> = HashSet::new();
    let mut cycles = Vec::new();
    for &start in edge.keys() {
        let mut path = Vec::new();
        let mut at = start;
        while !done.contains(&at) {
            if let Some(i) = path.iter().position(|&p| p == at) {
                let mut cycle: Vec<CoroutineId> = path[i..].to_vec();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, c)| **c)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                cycle.rotate_left(min);
                cycles.push(cycle);
                break;
            }
            path.push(at);
            match edge.get(&at) {
                Some(&n) => at = n,
                None => break,
            }
        }
        done.extend(path);
    }
    cycles.sort();
    cycles
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Park => write!(f, "coroutines::park"),
            Wait::ParkTimeout => write!(f, "coroutines::park_timeout"),
            Wait::Sleep { remaining } => write!(f, "sleep, {} left", Ms(*remaining)),
            Wait::Join { coroutine } => write!(f, "join of #{}", coroutine.as_u64()),
            Wait::Io {
                fd,
                write,
                fds,
                description,
            } => {
                let dir = if *write { "write" } else { "read" };
                if *fds > 1 {
                    write!(f, "poll of {fds} fds, first: {dir} fd {fd} ({description})")
                } else {
                    write!(f, "{dir} fd {fd} ({description})")
                }
            }
            Wait::Futex {
                addr,
                primitive: Some(p),
            } => write!(f, "{p} (futex {addr:#x})"),
            Wait::Futex {
                addr,
                primitive: None,
            } => write!(f, "futex {addr:#x}"),
            Wait::ThreadParker {
                operation: Some(op),
            } => write!(f, "{op} (thread parker)"),
            Wait::ThreadParker { operation: None } => {
                write!(f, "thread parker (std channel or thread::park)")
            }
            Wait::Pthread { addr, kind, holder } => {
                write!(f, "pthread {kind} {addr:#x}")?;
                if let Some(h) = holder {
                    write!(f, " held by #{}", h.as_u64())?;
                }
                Ok(())
            }
            Wait::Helper { job } => write!(f, "helper thread: {job}"),
            Wait::Child { pid: Some(p) } => write!(f, "child process {p}"),
            Wait::Child { pid: None } => write!(f, "join of an OS thread"),
        }
    }
}

/// A duration printed in ms (or s above 10 s).
struct Ms(Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1e3;
        if ms >= 10_000.0 {
            write!(f, "{:.1} s", ms / 1e3)
        } else {
            write!(f, "{ms:.0} ms")
        }
    }
}

impl fmt::Display for CoroutineInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coroutine #{}", self.id.as_u64())?;
        if let Some(n) = &self.name {
            write!(f, " '{n}'")?;
        }
        match (&self.state, &self.wait) {
            (State::Running { executor }, _) => write!(f, " [running on executor {executor}")?,
            (State::Parked, Some(w)) => {
                write!(f, " [{w}")?;
                if let Some(d) = self.parked_for {
                    write!(f, ", {}", Ms(d))?;
                }
            }
            (State::Parked, None) => write!(f, " [parked")?,
            (State::Ready, _) => write!(f, " [ready")?,
            (State::NeverRun, _) => write!(f, " [never run")?,
            (State::OwnThread, _) => write!(f, " [on its own thread")?,
        }
        write!(f, "]")?;
        if let (Some(e), false) = (self.executor, matches!(self.state, State::Running { .. })) {
            write!(f, " executor {e},")?;
        }
        write!(f, " cpu {}", Ms(self.cpu_time))?;
        if self.preemptions > 0 {
            write!(f, ", {} preemptions", self.preemptions)?;
        }
        for fr in &self.backtrace {
            write!(f, "\n    {fr}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |s: fn(&State) -> bool| self.coroutines.iter().filter(|c| s(&c.state)).count();
        writeln!(
            f,
            "coroutines dump: {} coroutines ({} running, {} ready, {} parked, {} never run), taken in {:.1} ms",
            self.coroutines.len(),
            count(|s| matches!(s, State::Running { .. })),
            count(|s| matches!(s, State::Ready)),
            count(|s| matches!(s, State::Parked)),
            count(|s| matches!(s, State::NeverRun)),
            self.took.as_secs_f64() * 1e3
        )?;
        for e in &self.executors {
            let spare = if e.spare { " (spare)" } else { "" };
            match (e.alive, e.running) {
                (false, _) => writeln!(f, "executor {}: retired", e.index)?,
                (true, Some(id)) => {
                    writeln!(f, "executor {}{spare}: running #{}", e.index, id.as_u64())?
                }
                (true, None) => {
                    writeln!(f, "executor {}{spare}: idle or in its scheduler", e.index)?
                }
            }
        }
        for cycle in &self.deadlocks {
            let ids: Vec<String> = cycle.iter().map(|c| format!("#{}", c.as_u64())).collect();
            writeln!(
                f,
                "DEADLOCK: {} -> {} (each waits for the next)",
                ids.join(" -> "),
                ids[0]
            )?;
        }
        for c in &self.coroutines {
            writeln!(f, "\n{c}")?;
        }
        Ok(())
    }
}
