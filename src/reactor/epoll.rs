//! The epoll driver: one epoll fd for the process, an eventfd to wake the
//! executor blocked in it, and event dispatch to registrations.
//!
//! Every pollable fd is added once, edge-triggered, for both directions
//! (`EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET`), with data `gen << 32 | fd`;
//! registration.rs owns what happens on an edge.
//!
//! Who polls (no dedicated thread):
//! - an idle executor that goes to sleep takes the *poller role* (at most
//!   one holder, a CAS on `poller`) and blocks in `epoll_pwait2` instead of
//!   its futex, with the timeout it would have used (earliest timer if it
//!   holds the timer role). `Parker::unpark` of that executor writes the
//!   eventfd (idle.rs has the handshake).
//! - busy executors poll without blocking every `GLOBAL_EVERY`-th scheduling
//!   pick (sched/run.rs) and
//!   whenever they run out of local work, but only while some coroutine
//!   waits on an fd (`COUNTERS.io_waiting`; an event that nobody waits for
//!   stays queued in the kernel until the next poll, so skipping is safe).
//!
//! Rejected: a dedicated poller thread (an extra thread hop on every wake,
//! and one more thread that is not an executor); level-triggered
//! registration (re-arming or re-reporting on every poll).
//!
//! The eventfd is registered level-triggered and only the executor that
//! blocked in epoll reads it: a non-blocking poller that drained it could
//! make the blocked poller find nothing and sleep on (lost wake).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::registration::{self, Dirs, Flags, Kind};
use crate::sys;

/// epoll data of the wake-up eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
const EVENTS: usize = 256;

/// I/O counters for `stats()` (Relaxed: statistics only).
#[derive(Default)]
pub(crate) struct IoCounters {
    /// Parks of coroutines waiting for fd readiness.
    pub(crate) io_parks: AtomicU64,
    /// Parks of coroutines in sleep hooks (nanosleep & co).
    pub(crate) sleep_parks: AtomicU64,
    /// Calls run on the helper pool (getaddrinfo, blocking file I/O, …).
    pub(crate) offloaded: AtomicU64,
    /// epoll events dispatched to registrations.
    pub(crate) events: AtomicU64,
    /// epoll_wait calls (blocking or not).
    pub(crate) polls: AtomicU64,
    /// fds registered in epoll.
    pub(crate) registered: AtomicU64,
    /// Coroutines parked on fd readiness now (a gauge).
    pub(crate) io_waiting: AtomicU64,
}

pub(crate) static COUNTERS: IoCounters = IoCounters {
    io_parks: AtomicU64::new(0),
    sleep_parks: AtomicU64::new(0),
    offloaded: AtomicU64::new(0),
    events: AtomicU64::new(0),
    polls: AtomicU64::new(0),
    registered: AtomicU64::new(0),
    io_waiting: AtomicU64::new(0),
};

pub(crate) struct Epoll {
    epfd: i32,
    evfd: i32,
    /// 1 + index of the executor blocked in epoll, or 0.
    poller: AtomicUsize,
    /// Whether epoll_pwait2 exists (else epoll_wait with ms rounding up).
    pwait2: AtomicBool,
}

static EPOLL: OnceLock<Epoll> = OnceLock::new();

/// The reactor's epoll, created on first use (first registration).
fn epoll() -> &'static Epoll {
    EPOLL.get_or_init(|| {
        // SAFETY: plain syscalls with constant arguments.
        let epfd = unsafe { sys::sc1(libc::SYS_epoll_create1, libc::EPOLL_CLOEXEC as usize) };
        // SAFETY: as above.
        let evfd = unsafe {
            sys::sc2(
                libc::SYS_eventfd2,
                0,
                (libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) as usize,
            )
        };
        if epfd < 0 || evfd < 0 {
            sys::fatal("reactor: cannot create epoll fd or eventfd");
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TOKEN,
        };
        // SAFETY: valid epfd/evfd and a live epoll_event.
        let r = unsafe {
            sys::sc4(
                libc::SYS_epoll_ctl,
                epfd as usize,
                libc::EPOLL_CTL_ADD as usize,
                evfd as usize,
                &mut ev as *mut _ as usize,
            )
        };
        if r < 0 {
            sys::fatal("reactor: cannot register the wake-up eventfd");
        }
        // Keep the table entries of our own fds out of the hooks' way.
        for fd in [epfd as i32, evfd as i32] {
            if let Some(reg) = registration::get_or_alloc(fd) {
                reg.reset();
                if reg.begin_init() {
                    reg.finish_init(Kind::Pass, Flags::NONE);
                }
            }
        }
        Epoll {
            epfd: epfd as i32,
            evfd: evfd as i32,
            poller: AtomicUsize::new(0),
            pwait2: AtomicBool::new(true),
        }
    })
}

/// Adds `fd` (generation `gen`) to the epoll set. Returns -errno on error.
pub(crate) fn register(fd: i32, gen: u32) -> isize {
    let ep = epoll();
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: ((gen as u64) << 32) | fd as u32 as u64,
    };
    // SAFETY: valid epfd and a live epoll_event; fd validity is checked
    // by the kernel.
    let r = unsafe {
        sys::sc4(
            libc::SYS_epoll_ctl,
            ep.epfd as usize,
            libc::EPOLL_CTL_ADD as usize,
            fd as usize,
            &mut ev as *mut _ as usize,
        )
    };
    if r == -(libc::EEXIST as isize) {
        // Still registered under an old generation (closed without our
        // close hook, e.g. by libc internally): update the data.
        // SAFETY: as above.
        return unsafe {
            sys::sc4(
                libc::SYS_epoll_ctl,
                ep.epfd as usize,
                libc::EPOLL_CTL_MOD as usize,
                fd as usize,
                &mut ev as *mut _ as usize,
            )
        };
    }
    if r == 0 {
        COUNTERS.registered.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// Whether `fd` is the reactor's own epoll fd or wake-up eventfd (never
/// to be registered again: that would rewrite their epoll data).
pub(crate) fn own_fd(fd: i32) -> bool {
    EPOLL.get().is_some_and(|e| e.epfd == fd || e.evfd == fd)
}

/// In a fork child (sched/thread.rs `on_fork_child`): the epoll instance
/// and the wake-up eventfd are shared with the parent (a fork copies fds,
/// not the kernel objects behind them), so anything the child did to them
/// — an `EPOLL_CTL_DEL` when it closes a registered fd, a wake-up — would
/// act on the parent's reactor. Replaces both, at the same fd numbers, by
/// fresh private ones. Raw system calls only (it runs in an atfork
/// handler).
pub(crate) fn private_after_fork() {
    let Some(ep) = EPOLL.get() else { return };
    // SAFETY: plain syscalls on fd numbers this reactor owns; dup3 closes
    // the inherited descriptors (the parent's objects stay alive in the
    // parent) and puts the fresh ones in their place.
    unsafe {
        let epfd = sys::sc1(libc::SYS_epoll_create1, libc::EPOLL_CLOEXEC as usize);
        if epfd >= 0 {
            sys::sc3(
                libc::SYS_dup3,
                epfd as usize,
                ep.epfd as usize,
                libc::O_CLOEXEC as usize,
            );
            sys::sc1(libc::SYS_close, epfd as usize);
        }
        let evfd = sys::sc2(
            libc::SYS_eventfd2,
            0,
            (libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) as usize,
        );
        if evfd >= 0 {
            sys::sc3(
                libc::SYS_dup3,
                evfd as usize,
                ep.evfd as usize,
                libc::O_CLOEXEC as usize,
            );
            sys::sc1(libc::SYS_close, evfd as usize);
        }
    }
}

/// Removes `fd` from the epoll set (before close: a dup'ed file
/// description would otherwise keep reporting events for this number).
pub(crate) fn deregister(fd: i32) {
    let Some(ep) = EPOLL.get() else { return };
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: valid epfd; errors (ENOENT, EBADF) are harmless here.
    unsafe {
        sys::sc4(
            libc::SYS_epoll_ctl,
            ep.epfd as usize,
            libc::EPOLL_CTL_DEL as usize,
            fd as usize,
            &mut ev as *mut _ as usize,
        );
    }
}

/// Non-blocking poll from a busy executor (scheduler context). Cheap when
/// the reactor was never used.
pub(crate) fn poll_nonblocking() {
    if let Some(ep) = EPOLL.get() {
        if COUNTERS.io_waiting.load(Ordering::SeqCst) != 0 {
            ep.poll(Some(Duration::ZERO), false);
        }
    }
}

/// Idle executor (idle.rs): block in epoll instead of the futex if the
/// reactor exists and nobody else holds the poller role. `polling` is set
/// before `still_sleeping` is checked (handshake in idle.rs). Returns
/// whether it took the role (and waited).
pub(crate) fn park_in_epoll(
    index: usize,
    polling: &AtomicBool,
    still_sleeping: impl Fn() -> bool,
    timeout: Option<Duration>,
) -> bool {
    let Some(ep) = EPOLL.get() else { return false };
    if ep
        .poller
        .compare_exchange(0, index + 1, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    polling.store(true, Ordering::SeqCst);
    if still_sleeping() {
        ep.poll(timeout, true);
    }
    polling.store(false, Ordering::SeqCst);
    ep.poller.store(0, Ordering::Release);
    true
}

/// Wakes the executor blocked in epoll (its parker was notified).
pub(crate) fn wake_poller() {
    if let Some(ep) = EPOLL.get() {
        let one: u64 = 1;
        // SAFETY: 8-byte write to our eventfd; EAGAIN (counter full) is as
        // good as success.
        unsafe {
            sys::sc3(
                libc::SYS_write,
                ep.evfd as usize,
                &one as *const u64 as usize,
                8,
            )
        };
    }
}

impl Epoll {
    /// One epoll wait (timeout `None` = forever) and dispatch. `blocking`:
    /// the caller holds the poller role (it alone drains the eventfd).
    fn poll(&self, timeout: Option<Duration>, blocking: bool) -> usize {
        let _np = crate::sched::NoPreempt::new();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        COUNTERS.polls.fetch_add(1, Ordering::Relaxed);
        let n = self.wait(&mut events, timeout);
        if n <= 0 {
            return 0;
        }
        let n = n as usize;
        let mut dispatched = 0;
        for ev in &events[..n] {
            let data = ev.u64;
            if data == WAKE_TOKEN {
                if blocking {
                    let mut v: u64 = 0;
                    // SAFETY: 8-byte read from our non-blocking eventfd.
                    unsafe {
                        sys::sc3(
                            libc::SYS_read,
                            self.evfd as usize,
                            &mut v as *mut u64 as usize,
                            8,
                        )
                    };
                }
                continue;
            }
            let fd = data as u32 as i32;
            let gen = (data >> 32) as u32;
            let Some(reg) = registration::get(fd) else {
                continue;
            };
            if reg.gen() != gen {
                continue; // stale: the fd number was closed and reused
            }
            let e = ev.events as i32;
            let mut dirs = Dirs::NONE;
            if e & (libc::EPOLLIN
                | libc::EPOLLRDHUP
                | libc::EPOLLHUP
                | libc::EPOLLERR
                | libc::EPOLLPRI)
                != 0
            {
                dirs |= Dirs::READ;
            }
            if e & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                dirs |= Dirs::WRITE;
            }
            if e & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                reg.set_read_closed(); // before `notify` counts the edge
            }
            reg.notify(dirs);
            dispatched += 1;
        }
        COUNTERS
            .events
            .fetch_add(dispatched as u64, Ordering::Relaxed);
        dispatched
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout: Option<Duration>) -> isize {
        if self.pwait2.load(Ordering::Relaxed) {
            let ts = timeout.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: d.subsec_nanos() as i64,
            });
            let tsp = ts
                .as_ref()
                .map_or(0, |t| t as *const libc::timespec as usize);
            // SAFETY: live events buffer of the given length, timespec or
            // null, no signal mask.
            let r = unsafe {
                sys::syscall6(
                    libc::SYS_epoll_pwait2 as usize,
                    self.epfd as usize,
                    events.as_mut_ptr() as usize,
                    events.len(),
                    tsp,
                    0,
                    8,
                )
            };
            if r != -(libc::ENOSYS as isize) {
                return r;
            }
            self.pwait2.store(false, Ordering::Relaxed);
        }
        let ms = match timeout {
            None => -1i64,
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64,
        };
        // SAFETY: as above.
        unsafe {
            sys::sc4(
                libc::SYS_epoll_wait,
                self.epfd as usize,
                events.as_mut_ptr() as usize,
                events.len(),
                ms as usize,
            )
        }
    }
}
