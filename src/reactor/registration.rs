//! Per-fd registration table: what the runtime knows about each file
//! descriptor, and the reader/writer wait slots of pollable ones.
//!
//! The table is indexed by fd number: a fixed top level of `TOP` pointers
//! to chunks of `CHUNK` entries, each chunk allocated on first use (CAS)
//! and never freed, so a `&'static Registration` stays valid for the
//! process lifetime and lookups take no lock (two loads). fds at or above
//! `TOP * CHUNK` (1,048,576) are not tracked: hooks treat them as plain
//! blocking fds. (Rejected: crossbeam-epoch growable array — entries are
//! never freed, so there is nothing to reclaim; a sharded Mutex table —
//! a lock per lookup on every hooked call.)
//!
//! ## Kind and flags
//! What the fd is (`Kind`: `Unknown`, `Init`, `Poll`, `File`, `Pass`),
//! the facts kept beside it (`Flags`) and the transitions between kinds
//! are described once, in fd_state.rs; this table stores them in atomics.
//!
//! ## Readiness, per direction (read, write)
//! A direction has an edge counter (`rseq`/`wseq`) and a waiter list. The
//! reactor increments the counter on each epoll edge, then wakes every
//! waiter in the list (wake-all: with edge triggering, waking one waiter
//! that then takes only part of the data would strand the others).
//!
//! Wait protocol (no lost edge), mirror sides:
//! 1. Waiter: snapshot the counter (`seq`), try the syscall; on EAGAIN
//!    take the lock, recheck `gen` (closed?) and the counter (edge since
//!    the snapshot? then retry), push itself, unlock, park; recheck. After
//!    a wake-up that shows no change, push itself again under the lock if
//!    it is no longer listed (`rearm`: a reactor that counted an edge
//!    before the snapshot may drain a waiter registered after it).
//! 2. Reactor: increment the counter (SeqCst), `fence(SeqCst)`, load
//!    `nwaiters`; if non-zero, take the lock and drain the list, then wake
//!    outside it.
//!
//! The waiter raises `nwaiters` (SeqCst), then `fence(SeqCst)`, before its
//! locked recheck, so either the reactor sees the waiter, or the waiter
//! sees the new count. (The fences state the store-buffering argument in
//! the form loom checks — `models/tests/protocols.rs` models exactly this;
//! on x86-64 the locked RMW before each is already a full barrier.)
//!
//! Short reads (tokio's trick): on a byte stream, a plain read that
//! returned less than asked for emptied the kernel buffer; while the read
//! edge count is still what it was when that read began, the next blocking
//! read parks at once instead of making a system call that would say
//! EAGAIN (`drained`). End of stream and errors are states, not arrivals:
//! once the reactor saw RDHUP/HUP/ERR the fd is `read_closed` and reads
//! always make the call.
//!
//! Watched fds (`WATCHED`): the poll-family hooks (poll, ppoll, select,
//! pselect, epoll_wait & co) also need readiness of fds that stay `Pass`
//! for I/O — the user's own epoll fd above all (an epoll fd is pollable:
//! it turns readable when its ready list gains an entry), eventfd, timerfd,
//! pipes of other kinds. Such an fd is added to the reactor's epoll like a
//! `Poll` fd (same data, same edges) but its O_NONBLOCK is never touched
//! and its read/write hooks stay plain calls; `reset` removes it.
//!
//! ## Shared file descriptions (`desc` groups)
//! O_NONBLOCK belongs to the open file description, not to the fd number;
//! numbers sharing one (dup) are kept in a description group: desc.rs.
//!
//! Stale events: epoll data is `gen << 32 | fd`; the reactor drops an event
//! whose `gen` differs from the entry's (the fd was closed and reused).
//! Closing an fd that coroutines wait on bumps `gen` and wakes them; they
//! return EBADF.

use std::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::coroutine::CoroutineRef;
use crate::sched::{self, NoPreempt, WaitReason};

pub(crate) use super::desc::{
    desc_view, fork_guard, note_runtime_nonblock, set_desc_view, share_desc,
};
pub(crate) use super::fd_state::{Dir, Dirs, Flags, Kind};

/// Cached socket timeout not fetched yet.
const TIMEO_UNKNOWN: u64 = u64::MAX;

const CHUNK: usize = 1024;
const TOP: usize = 1024;

/// Outcome of a wait for readiness.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WaitOutcome {
    /// An edge arrived (or may have): retry the call.
    Ready,
    /// The deadline passed.
    TimedOut,
    /// The fd was closed (or reused) meanwhile.
    Closed,
}

#[derive(Default)]
struct Waiters {
    readers: Vec<CoroutineRef>,
    writers: Vec<CoroutineRef>,
}

/// What the runtime knows about one fd number.
pub(crate) struct Registration {
    /// Generation of the fd number; bumped by `reset` (under `waiters`).
    gen: AtomicU32,
    kind: AtomicU8,
    flags: AtomicU8,
    rseq: AtomicU32,
    wseq: AtomicU32,
    /// Coroutines in either waiter list (see the wait protocol).
    nwaiters: AtomicU32,
    rcvtimeo_ns: AtomicU64,
    sndtimeo_ns: AtomicU64,
    /// A socket error consumed by `connect`'s SO_ERROR check after the
    /// connection was established (ECONNRESET/EPIPE: the peer reset it
    /// before we looked). A blocking connect would have returned 0 and the
    /// next read/write would report the error, so the I/O paths hand it
    /// out once, when the kernel reports EOF/EPIPE in its place.
    pending_err: AtomicI32,
    /// `1 << 32 | seq`: a stream read that began at read-edge count `seq`
    /// came back short (the buffer was empty when it returned); 0: none.
    /// While the count is still `seq`, a blocking read parks at once
    /// instead of making a system call that would say EAGAIN (any byte
    /// arriving since raises an edge). What tokio does with readiness.
    drained: AtomicU64,
    /// The reactor saw EPOLLRDHUP/HUP/ERR: end of stream or an error is
    /// pending, a state (not an arrival) that raises no further edge, so
    /// reads always make the system call (`drained` is ignored).
    read_closed: AtomicBool,
    /// Description group id (module doc), 0 if none. Changed under `DESCS`.
    pub(super) desc: AtomicU32,
    /// Waiter lists. Lock held for pushes/drains only; never across a park
    /// or a syscall.
    waiters: Mutex<Waiters>,
}

impl Registration {
    fn new() -> Self {
        Registration {
            gen: AtomicU32::new(0),
            kind: AtomicU8::new(Kind::Unknown as u8),
            flags: AtomicU8::new(0),
            rseq: AtomicU32::new(0),
            wseq: AtomicU32::new(0),
            nwaiters: AtomicU32::new(0),
            rcvtimeo_ns: AtomicU64::new(TIMEO_UNKNOWN),
            sndtimeo_ns: AtomicU64::new(TIMEO_UNKNOWN),
            pending_err: AtomicI32::new(0),
            drained: AtomicU64::new(0),
            read_closed: AtomicBool::new(false),
            desc: AtomicU32::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    #[inline]
    pub(crate) fn kind(&self) -> Kind {
        // Acquire: pairs with the Release store ending the lazy init, so
        // the flags written by the initialiser are visible.
        Kind::from_u8(self.kind.load(Ordering::Acquire))
    }

    #[inline]
    pub(crate) fn gen(&self) -> u32 {
        self.gen.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn flags(&self) -> Flags {
        Flags::from_bits(self.flags.load(Ordering::Relaxed))
    }

    pub(crate) fn set_flag(&self, f: Flags, on: bool) {
        if on {
            self.flags.fetch_or(f.bits(), Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!f.bits(), Ordering::Relaxed);
        }
    }

    /// Whether the kernel's O_NONBLOCK on this fd is the runtime's doing
    /// (so the user's view is in `USER_NONBLOCK`).
    #[inline]
    pub(crate) fn managed(&self) -> bool {
        self.kind() == Kind::Poll || self.flags().contains(Flags::INHERITED)
    }

    /// Whether a hook must give blocking semantics over a non-blocking fd.
    #[inline]
    pub(crate) fn emulates_blocking(&self) -> bool {
        self.managed() && !self.flags().contains(Flags::USER_NONBLOCK)
    }

    /// Tries `Unknown -> Init`; the winner must call `finish_init`.
    pub(crate) fn begin_init(&self) -> bool {
        self.kind
            .compare_exchange(
                Kind::Unknown as u8,
                Kind::Init as u8,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Ends the lazy init with `kind` and `flags` (Release: see `kind()`).
    pub(crate) fn finish_init(&self, kind: Kind, flags: Flags) {
        self.flags.store(flags.bits(), Ordering::Relaxed);
        self.kind.store(kind as u8, Ordering::Release);
    }

    /// Sets the cached socket timeout for `dir` (setsockopt hook).
    pub(crate) fn set_timeout(&self, dir: Dir, d: Option<Duration>) {
        let ns = d.map_or(0, |d| d.as_nanos().min(u64::MAX as u128 - 1) as u64);
        self.timeo(dir).store(ns, Ordering::Relaxed);
    }

    /// The socket timeout for `dir` (SO_RCVTIMEO/SO_SNDTIMEO), fetched with
    /// getsockopt once per fd and cached; `None` for no timeout.
    pub(crate) fn timeout(&self, fd: i32, dir: Dir) -> Option<Duration> {
        if !self.flags().contains(Flags::SOCKET) {
            return None;
        }
        let slot = self.timeo(dir);
        let mut ns = slot.load(Ordering::Relaxed);
        if ns == TIMEO_UNKNOWN {
            ns = socket_timeout(fd, dir).map_or(0, |d| d.as_nanos() as u64);
            slot.store(ns, Ordering::Relaxed);
        }
        (ns != 0).then(|| Duration::from_nanos(ns))
    }

    fn timeo(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Read => &self.rcvtimeo_ns,
            Dir::Write => &self.sndtimeo_ns,
        }
    }

    fn seq_of(&self, dir: Dir) -> &AtomicU32 {
        match dir {
            Dir::Read => &self.rseq,
            Dir::Write => &self.wseq,
        }
    }

    /// Snapshot of the edge counter for `dir` (take it before the syscall).
    #[inline]
    pub(crate) fn seq(&self, dir: Dir) -> u32 {
        self.seq_of(dir).load(Ordering::SeqCst)
    }

    /// Parks the running coroutine until an edge for `dir` newer than
    /// `snap`, the `deadline`, or a close (generation other than `gen`).
    /// The caller holds `np` (we are in a hook on a coroutine).
    pub(crate) fn wait(
        &self,
        dir: Dir,
        gen: u32,
        snap: u32,
        deadline: Option<Instant>,
        np: &NoPreempt,
    ) -> WaitOutcome {
        Self::wait_many(&[(self, dir, gen, snap)], deadline, np)
    }

    /// Like [`wait`](Self::wait) on several (registration, direction)
    /// pairs at once (the poll hook); returns at the first of them.
    pub(crate) fn wait_many(
        list: &[(&Registration, Dir, u32, u32)],
        deadline: Option<Instant>,
        np: &NoPreempt,
    ) -> WaitOutcome {
        let co = sched::current_coroutine();
        let mut pushed = 0;
        let mut early = None;
        for &(reg, dir, gen, snap) in list {
            reg.nwaiters.fetch_add(1, Ordering::SeqCst);
            // Store-buffering with `notify` (module doc): the fence, not
            // only the SeqCst RMW, orders the raise before the re-check;
            // the loom model (models/tests/protocols.rs) is this code.
            fence(Ordering::SeqCst);
            let mut w = reg.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if reg.gen.load(Ordering::SeqCst) != gen {
                early = Some(WaitOutcome::Closed);
            } else if reg.seq_of(dir).load(Ordering::SeqCst) != snap {
                early = Some(WaitOutcome::Ready);
            } else {
                match dir {
                    Dir::Read => w.readers.push(co.clone()),
                    Dir::Write => w.writers.push(co.clone()),
                }
            }
            drop(w);
            pushed += 1;
            if early.is_some() {
                break;
            }
        }
        let outcome = match early {
            Some(o) => o,
            None => {
                super::epoll::COUNTERS
                    .io_parks
                    .fetch_add(1, Ordering::Relaxed);
                // SeqCst: a poller that skips polling because this is 0
                // leaves the edge queued in the kernel; see epoll.rs.
                super::epoll::COUNTERS
                    .io_waiting
                    .fetch_add(1, Ordering::SeqCst);
                let timer =
                    deadline.map(|d| super::timers().add(d, super::Waker::Coroutine(co.clone())));
                let mut woken = false;
                let (first, dir, ..) = list[0];
                let reason = WaitReason::Io {
                    fd: fd_of(first),
                    write: dir == Dir::Write,
                    nfds: list.len() as u32,
                };
                let outcome = loop {
                    if let Some(o) = Self::check(list) {
                        break o;
                    }
                    if timer.as_ref().is_some_and(|t| t.fired()) {
                        break WaitOutcome::TimedOut;
                    }
                    // Woken without a change we can see: a reactor that
                    // counted its edge before our snapshot may have drained
                    // us from the list since (see `rearm`). Get back in.
                    if woken {
                        if let Some(o) = Self::rearm(list, &co) {
                            break o;
                        }
                    }
                    sched::park_current(np, reason);
                    woken = true;
                };
                if let Some(t) = &timer {
                    super::timers().cancel(t);
                }
                super::epoll::COUNTERS
                    .io_waiting
                    .fetch_sub(1, Ordering::SeqCst);
                outcome
            }
        };
        for &(reg, dir, _, _) in &list[..pushed] {
            let mut w = reg.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let v = match dir {
                Dir::Read => &mut w.readers,
                Dir::Write => &mut w.writers,
            };
            if let Some(i) = v.iter().position(|t| std::sync::Arc::ptr_eq(t, &co)) {
                v.swap_remove(i);
            }
            drop(w);
            reg.nwaiters.fetch_sub(1, Ordering::SeqCst);
        }
        outcome
    }

    /// After a wake-up that `check` found no reason for: puts `co` back in
    /// every waiter list it is missing from, rechecking `gen` and the edge
    /// counter under each lock (as the first registration does).
    ///
    /// Why a waiter can be missing: `notify` counts the edge, *then* drains
    /// the list under the lock. A coroutine that snapshotted the counter
    /// after that count (so this edge is not news to it), got EAGAIN and
    /// registered before the drain is taken with the drained list and
    /// woken; `check` sees its snapshot unchanged and it parks again, now
    /// in no list, while `nwaiters` still counts it — the next edge finds
    /// an empty list and the wake-up is lost (seen in stress/io.rs
    /// `echo_10k_connections` under CPU load: a reader parked forever with
    /// data or an EOF queued). `nwaiters` stays raised for the whole wait,
    /// so the registration protocol's argument applies to the re-push: a
    /// later edge either precedes our locked recheck (we see the new
    /// count) or drains the list after we are back in it.
    fn rearm(list: &[(&Registration, Dir, u32, u32)], co: &CoroutineRef) -> Option<WaitOutcome> {
        for &(reg, dir, gen, snap) in list {
            let mut w = reg.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if reg.gen.load(Ordering::SeqCst) != gen {
                return Some(WaitOutcome::Closed);
            }
            if reg.seq_of(dir).load(Ordering::SeqCst) != snap {
                return Some(WaitOutcome::Ready);
            }
            let v = match dir {
                Dir::Read => &mut w.readers,
                Dir::Write => &mut w.writers,
            };
            if !v.iter().any(|t| std::sync::Arc::ptr_eq(t, co)) {
                v.push(co.clone());
            }
        }
        None
    }

    fn check(list: &[(&Registration, Dir, u32, u32)]) -> Option<WaitOutcome> {
        for &(reg, dir, gen, snap) in list {
            if reg.gen.load(Ordering::SeqCst) != gen {
                return Some(WaitOutcome::Closed);
            }
            if reg.seq_of(dir).load(Ordering::SeqCst) != snap {
                return Some(WaitOutcome::Ready);
            }
        }
        None
    }

    /// Reactor side: an edge for the directions in `dirs`.
    pub(crate) fn notify(&self, dirs: Dirs) {
        if dirs.contains(Dirs::READ) {
            self.rseq.fetch_add(1, Ordering::SeqCst);
        }
        if dirs.contains(Dirs::WRITE) {
            self.wseq.fetch_add(1, Ordering::SeqCst);
        }
        // The mirror fence of `wait_many`'s (module doc, loom model).
        fence(Ordering::SeqCst);
        if self.nwaiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let (r, w) = {
            let mut g = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let r = if dirs.contains(Dirs::READ) {
                std::mem::take(&mut g.readers)
            } else {
                Vec::new()
            };
            let w = if dirs.contains(Dirs::WRITE) {
                std::mem::take(&mut g.writers)
            } else {
                Vec::new()
            };
            (r, w)
        };
        for t in r.into_iter().chain(w) {
            t.wake();
        }
    }

    /// The fd number is closed or handed out anew: forget everything, bump
    /// the generation (stale epoll events are dropped), and wake waiters
    /// (they return EBADF). Returns whether the fd was in the reactor's
    /// epoll (a `Poll` or `WATCHED` fd): the caller deregisters it.
    pub(crate) fn reset(&self) -> bool {
        let (r, w) = {
            let mut g = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.gen.fetch_add(1, Ordering::SeqCst);
            (
                std::mem::take(&mut g.readers),
                std::mem::take(&mut g.writers),
            )
        };
        let prev = Kind::from_u8(self.kind.swap(Kind::Unknown as u8, Ordering::AcqRel));
        let prev_flags = Flags::from_bits(self.flags.swap(0, Ordering::Relaxed));
        if self.desc.load(Ordering::Relaxed) != 0 {
            super::desc::leave_desc(self);
        }
        self.rcvtimeo_ns.store(TIMEO_UNKNOWN, Ordering::Relaxed);
        self.sndtimeo_ns.store(TIMEO_UNKNOWN, Ordering::Relaxed);
        self.pending_err.store(0, Ordering::Relaxed);
        self.drained.store(0, Ordering::Relaxed);
        self.read_closed.store(false, Ordering::Relaxed);
        for t in r.into_iter().chain(w) {
            t.wake();
        }
        prev == Kind::Poll || prev_flags.contains(Flags::WATCHED)
    }

    /// Whether the entry holds anything `reset` would clear.
    #[inline]
    pub(crate) fn dirty(&self) -> bool {
        self.kind.load(Ordering::Relaxed) != Kind::Unknown as u8
            || !self.flags().is_empty()
            || self.desc.load(Ordering::Relaxed) != 0
    }

    /// Whether a plain thread's call that got EAGAIN must wait and retry:
    /// the runtime made the description non-blocking (through this number,
    /// or through another number of its description group) while the
    /// user's view is blocking. Cold path (after an EAGAIN).
    pub(crate) fn thread_blocking(&self) -> bool {
        if self.managed() {
            return !self.flags().contains(Flags::USER_NONBLOCK);
        }
        desc_view(self) == Some(false)
    }

    /// Records a short stream read that began at read-edge count `snap`.
    #[inline]
    pub(crate) fn set_drained(&self, snap: u32) {
        self.drained.store(1 << 32 | snap as u64, Ordering::Relaxed);
    }

    /// Whether a stream read beginning now (read-edge count `snap`) would
    /// find the buffer empty: the last read came back short and no edge
    /// was counted since it began.
    /// `snap` is read (SeqCst) after the reactor's `set_read_closed` +
    /// edge increment, or before that increment (then the count moved on):
    /// either way a pending end of stream is never skipped.
    #[inline]
    pub(crate) fn drained_at(&self, snap: u32) -> bool {
        self.drained.load(Ordering::Relaxed) == (1 << 32 | snap as u64)
            && !self.read_closed.load(Ordering::SeqCst)
    }

    /// Reactor: end of stream or an error is pending (before it counts the
    /// edge: see `drained_at`).
    #[inline]
    pub(crate) fn set_read_closed(&self) {
        self.read_closed.store(true, Ordering::SeqCst);
    }

    /// Remembers an error consumed on the user's behalf (see `pending_err`).
    pub(crate) fn set_pending_error(&self, errno: i32) {
        self.pending_err.store(errno, Ordering::Release);
    }

    /// Takes the remembered error, if any, as a kernel result (-errno).
    pub(crate) fn take_pending_error(&self) -> Option<isize> {
        if self.pending_err.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.pending_err.swap(0, Ordering::AcqRel) {
            0 => None,
            e => Some(-(e as isize)),
        }
    }

    /// Marks a fresh socket whose timeouts are known to be unset.
    pub(crate) fn set_no_timeouts(&self) {
        self.rcvtimeo_ns.store(0, Ordering::Relaxed);
        self.sndtimeo_ns.store(0, Ordering::Relaxed);
    }
}

type Chunk = [Registration; CHUNK];

static TABLE: [AtomicPtr<Chunk>; TOP] = [const { AtomicPtr::new(std::ptr::null_mut()) }; TOP];

/// The fd number of a table entry (for the wait record: observe/wait.rs).
fn fd_of(reg: &Registration) -> i32 {
    let addr = reg as *const Registration as usize;
    let size = std::mem::size_of::<Registration>();
    for (hi, slot) in TABLE.iter().enumerate() {
        let p = slot.load(Ordering::Acquire) as usize;
        if p != 0 && addr >= p && addr < p + CHUNK * size {
            return (hi * CHUNK + (addr - p) / size) as i32;
        }
    }
    -1
}

/// The entry of `fd` if its chunk exists (never allocates).
#[inline]
pub(crate) fn get(fd: i32) -> Option<&'static Registration> {
    if fd < 0 {
        return None;
    }
    let (hi, lo) = (fd as usize / CHUNK, fd as usize % CHUNK);
    if hi >= TOP {
        return None;
    }
    // Acquire: pairs with the Release CAS publishing the chunk.
    let p = TABLE[hi].load(Ordering::Acquire);
    // SAFETY: chunks are published fully initialised and never freed.
    (!p.is_null()).then(|| unsafe { &(*p)[lo] })
}

/// The entry of `fd`, allocating its chunk if needed; `None` for fds
/// outside the table.
pub(crate) fn get_or_alloc(fd: i32) -> Option<&'static Registration> {
    if let Some(r) = get(fd) {
        return Some(r);
    }
    if fd < 0 || fd as usize / CHUNK >= TOP {
        return None;
    }
    let hi = fd as usize / CHUNK;
    let chunk: Box<Chunk> = {
        let v: Vec<Registration> = (0..CHUNK).map(|_| Registration::new()).collect();
        match v.into_boxed_slice().try_into() {
            Ok(b) => b,
            Err(_) => crate::sys::fatal("registration chunk size mismatch"),
        }
    };
    let p = Box::into_raw(chunk);
    if TABLE[hi]
        .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // SAFETY: we just created `p` and lost the race; nobody saw it.
        drop(unsafe { Box::from_raw(p) });
    }
    get(fd)
}

/// An fd number was just returned by a creating call (socket, accept,
/// pipe, dup…): whatever the table holds for it is stale.
#[inline]
pub(crate) fn fresh(fd: i32) {
    if let Some(r) = get(fd) {
        if r.dirty() && r.reset() {
            super::epoll::deregister(fd);
        }
    }
}

/// SO_RCVTIMEO/SO_SNDTIMEO of socket `fd`, asked of the kernel (not
/// cached); `None` for no timeout or not a socket.
pub(crate) fn socket_timeout(fd: i32, dir: Dir) -> Option<Duration> {
    let opt = if dir == Dir::Read {
        libc::SO_RCVTIMEO
    } else {
        libc::SO_SNDTIMEO
    };
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `tv`.
    let r = unsafe {
        crate::sys::sc5(
            libc::SYS_getsockopt,
            fd as usize,
            libc::SOL_SOCKET as usize,
            opt as usize,
            &mut tv as *mut _ as usize,
            &mut len as *mut _ as usize,
        )
    };
    let ns = if r < 0 {
        0
    } else {
        tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000
    };
    (ns != 0).then(|| Duration::from_nanos(ns))
}
