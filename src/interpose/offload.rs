//! Helper threads for calls that would block an executor and that epoll
//! cannot watch: regular-file I/O that would block, getaddrinfo, and the
//! rare poll/select/epoll_wait over an fd the reactor's epoll refuses.
//!
//! Protocol: the coroutine puts a job (a pointer to a closure on its own
//! stack plus a `done` flag) on the pool queue and parks until `done`; a
//! helper runs the closure, stores errno with the result, sets `done`
//! (Release) and wakes the coroutine. The coroutine cannot return (and
//! free the closure's stack frame) before `done` (Acquire), so the
//! non-'static closure is sound — the same argument as scoped threads.
//!
//! Two pools (`Class`), so that a wait without a bound never holds a slot
//! that a file read needs:
//! - `File`: regular-file reads and writes that would block. At most
//!   `Config::file_helpers` threads (`COROUTINES_FILE_HELPERS`, default
//!   16); more jobs wait in a FIFO queue, each taken by the next helper
//!   that finishes. A file call always completes (the disk answers), so
//!   queueing behind it is bounded; 16 keeps a disk queue busy without a
//!   thread per coroutine (2,000 coroutines reading cold files = 16
//!   threads).
//! - `Unbounded`: calls that may wait for seconds or forever —
//!   getaddrinfo (DNS timeouts), and a poll-family call over an fd the
//!   reactor cannot watch. No cap (a capped pool full of such waits would
//!   starve everything queued behind it, including what they wait for); a
//!   helper is started whenever a job finds none idle.
//!
//! Helpers idle for `IDLE_EXIT` exit. Helpers are plain threads: hooks
//! inside them are pass-throughs.
//!
//! Rejected: io_uring for file I/O. It would need no threads for reads the
//! page cache misses, but buffered reads that miss still go to io_uring's
//! own kernel worker threads (io-wq, unbounded by default), it is disabled
//! by default in many containers and hardened kernels (seccomp,
//! `kernel.io_uring_disabled`), and a completion ring needs a reaper in the
//! scheduler; RWF_NOWAIT already serves cached data inline, so only real
//! disk waits reach the pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::coroutine::CoroutineRef;
use crate::sched::{self, NoPreempt, WaitReason};

const IDLE_EXIT: Duration = Duration::from_secs(10);

/// A type-erased pointer to a `Job` on a parked coroutine's stack.
struct JobPtr(*const (dyn JobRun + 'static));
// SAFETY: the pointee is only touched by the helper that pops it, while
// the owning coroutine is parked waiting for `done` (module doc).
unsafe impl Send for JobPtr {}

trait JobRun {
    fn run(&self);
}

struct Job<F, R> {
    f: std::cell::Cell<Option<F>>,
    result: std::cell::Cell<Option<std::thread::Result<R>>>,
    errno: std::cell::Cell<i32>,
    done: AtomicBool,
    co: CoroutineRef,
}

impl<F: FnOnce() -> R, R> JobRun for Job<F, R> {
    fn run(&self) {
        let f = self.f.take().expect("offload job run twice");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        self.errno.set(crate::sys::errno());
        self.result.set(Some(r));
        let co = self.co.clone();
        // Release: the coroutine reads `result` after seeing `done`. After
        // this store the job's frame may disappear: touch only `co`.
        self.done.store(true, Ordering::Release);
        co.wake();
    }
}

/// Which helper pool a call goes to (module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// Regular-file I/O: capped pool with a queue.
    File,
    /// Waits without a bound (DNS, unwatchable polls): no cap.
    Unbounded,
}

/// Default cap of the `File` pool (`COROUTINES_FILE_HELPERS`).
pub(crate) const DEFAULT_FILE_HELPERS: usize = 16;

struct Synced {
    queue: VecDeque<JobPtr>,
    /// Helper threads alive (busy or idle).
    threads: usize,
    /// Most helper threads alive at once.
    peak: usize,
    /// Helpers waiting on `cv` and not yet claimed by a submitter.
    idle: usize,
    /// Claims made by submitters (idle -> busy) not yet taken by a helper.
    notified: usize,
}

struct Pool {
    synced: Mutex<Synced>,
    cv: Condvar,
    name: &'static str,
}

const fn pool(name: &'static str) -> Pool {
    Pool {
        synced: Mutex::new(Synced {
            queue: VecDeque::new(),
            threads: 0,
            peak: 0,
            idle: 0,
            notified: 0,
        }),
        cv: Condvar::new(),
        name,
    }
}

static FILE_POOL: Pool = pool("coroutines-file");
static UNBOUNDED_POOL: Pool = pool("coroutines-helper");

fn pool_of(class: Class) -> &'static Pool {
    match class {
        Class::File => &FILE_POOL,
        Class::Unbounded => &UNBOUNDED_POOL,
    }
}

/// The cap of `class`'s pool.
fn cap(class: Class) -> usize {
    match class {
        Class::File => crate::sched::try_runtime_pub()
            .map_or(DEFAULT_FILE_HELPERS, |rt| rt.config.file_helpers)
            .max(1),
        Class::Unbounded => usize::MAX,
    }
}

/// (alive now, peak) helper threads of `class`'s pool, for `stats()`.
pub(crate) fn helper_counts(class: Class) -> (usize, usize) {
    let s = pool_of(class)
        .synced
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    (s.threads, s.peak)
}

/// Runs `f` on a helper thread of `class`'s pool while the calling
/// coroutine parks; returns its result and leaves its errno in the
/// caller's errno. Only call from a coroutine
/// (`sched::in_coroutine_user_code()`).
pub(crate) fn offload<F: FnOnce() -> R + Send, R: Send>(
    class: Class,
    what: crate::observe::wait::Job,
    f: F,
) -> R {
    let np = NoPreempt::new();
    crate::reactor::COUNTERS
        .offloaded
        .fetch_add(1, Ordering::Relaxed);
    let job = Job {
        f: std::cell::Cell::new(Some(f)),
        result: std::cell::Cell::new(None),
        errno: std::cell::Cell::new(0),
        done: AtomicBool::new(false),
        co: sched::current_coroutine(),
    };
    let dynref: &dyn JobRun = &job;
    // SAFETY: lifetime erasure only; see the module doc for why the frame
    // outlives every use by the helper.
    let ptr: *const (dyn JobRun + 'static) =
        unsafe { std::mem::transmute(dynref as *const dyn JobRun) };
    submit(class, JobPtr(ptr));
    while !job.done.load(Ordering::Acquire) {
        sched::park_current(&np, WaitReason::Helper(what));
    }
    crate::sys::set_errno(job.errno.get());
    match job.result.take() {
        Some(Ok(r)) => r,
        Some(Err(p)) => std::panic::resume_unwind(p),
        None => crate::sys::fatal("offload: job done without a result"),
    }
}

fn submit(class: Class, job: JobPtr) {
    let pool = pool_of(class);
    let mut s = pool.synced.lock().unwrap_or_else(|e| e.into_inner());
    s.queue.push_back(job);
    if s.idle > 0 {
        s.idle -= 1;
        s.notified += 1;
        drop(s);
        pool.cv.notify_one();
        return;
    }
    if s.threads >= cap(class) {
        // Queued: the next helper to finish its job takes it (FIFO).
        return;
    }
    s.threads += 1;
    s.peak = s.peak.max(s.threads);
    drop(s);
    let spawned = std::thread::Builder::new()
        .name(pool.name.into())
        .stack_size(256 * 1024)
        .spawn(move || helper_main(pool));
    if spawned.is_err() {
        let mut s = pool.synced.lock().unwrap_or_else(|e| e.into_inner());
        s.threads -= 1;
        if s.threads > 0 {
            return; // a live helper will take it
        }
        // No thread at all: run it here (blocks this executor, but
        // completes).
        let job = s.queue.pop_back();
        drop(s);
        if let Some(j) = job {
            // SAFETY: as in helper_main.
            unsafe { (*j.0).run() };
        }
    }
}

fn helper_main(pool: &'static Pool) {
    let mut s = pool.synced.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = s.queue.pop_front() {
            drop(s);
            // SAFETY: the job's owner is parked until we set `done`.
            unsafe { (*job.0).run() };
            s = pool.synced.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        s.idle += 1;
        let (g, t) = pool
            .cv
            .wait_timeout(s, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        s = g;
        if s.notified > 0 {
            // A submitter moved one idle helper to busy for us.
            s.notified -= 1;
        } else {
            s.idle -= 1;
            if t.timed_out() && s.queue.is_empty() {
                s.threads -= 1;
                return;
            }
        }
    }
}
