//! Helper threads for calls that would block an executor and that epoll
//! cannot watch: getaddrinfo, regular-file I/O that would block, and
//! poll/select/epoll_wait over fds the reactor does not manage.
//!
//! Protocol: the coroutine puts a job (a pointer to a closure on its own
//! stack plus a `done` flag) on the pool queue and parks until `done`; a
//! helper runs the closure, stores errno with the result, sets `done`
//! (Release) and wakes the coroutine. The coroutine cannot return (and
//! free the closure's stack frame) before `done` (Acquire), so the
//! non-'static closure is sound — the same argument as scoped threads.
//!
//! Pool: a helper is started when a job finds no idle helper, so a call
//! that blocks indefinitely (poll with no timeout) never starves another
//! (no cap); helpers idle for `IDLE_EXIT` exit. Helpers are plain threads:
//! hooks inside them are pass-throughs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::coroutine::Task;
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
    task: Task,
}

impl<F: FnOnce() -> R, R> JobRun for Job<F, R> {
    fn run(&self) {
        let f = self.f.take().expect("offload job run twice");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        self.errno.set(crate::sys::errno());
        self.result.set(Some(r));
        let task = self.task.clone();
        // Release: the coroutine reads `result` after seeing `done`. After
        // this store the job's frame may disappear: touch only `task`.
        self.done.store(true, Ordering::Release);
        task.wake();
    }
}

struct Synced {
    queue: VecDeque<JobPtr>,
    /// Helpers waiting on `cv` and not yet claimed by a submitter.
    idle: usize,
    /// Claims made by submitters (idle -> busy) not yet taken by a helper.
    notified: usize,
}

struct Pool {
    synced: Mutex<Synced>,
    cv: Condvar,
}

static POOL: Pool = Pool {
    synced: Mutex::new(Synced {
        queue: VecDeque::new(),
        idle: 0,
        notified: 0,
    }),
    cv: Condvar::new(),
};

/// Runs `f` on a helper thread while the calling coroutine parks; returns
/// its result and leaves its errno in the caller's errno. Only call from a
/// coroutine (`sched::in_coroutine_user_code()`).
pub(crate) fn offload<F: FnOnce() -> R + Send, R: Send>(f: F) -> R {
    let np = NoPreempt::new();
    crate::reactor::COUNTERS
        .offloaded
        .fetch_add(1, Ordering::Relaxed);
    let job = Job {
        f: std::cell::Cell::new(Some(f)),
        result: std::cell::Cell::new(None),
        errno: std::cell::Cell::new(0),
        done: AtomicBool::new(false),
        task: sched::current_task(),
    };
    let dynref: &dyn JobRun = &job;
    // SAFETY: lifetime erasure only; see the module doc for why the frame
    // outlives every use by the helper.
    let ptr: *const (dyn JobRun + 'static) =
        unsafe { std::mem::transmute(dynref as *const dyn JobRun) };
    submit(JobPtr(ptr));
    while !job.done.load(Ordering::Acquire) {
        sched::park_current(&np, WaitReason::Offload);
    }
    crate::sys::set_errno(job.errno.get());
    match job.result.take() {
        Some(Ok(r)) => r,
        Some(Err(p)) => std::panic::resume_unwind(p),
        None => crate::sys::fatal("offload: job done without a result"),
    }
}

fn submit(job: JobPtr) {
    let mut s = POOL.synced.lock().unwrap_or_else(|e| e.into_inner());
    s.queue.push_back(job);
    if s.idle > 0 {
        s.idle -= 1;
        s.notified += 1;
        drop(s);
        POOL.cv.notify_one();
        return;
    }
    drop(s);
    let spawned = std::thread::Builder::new()
        .name("coroutines-helper".into())
        .stack_size(256 * 1024)
        .spawn(helper_main);
    if spawned.is_err() {
        // No thread: run it here (blocks this executor, but completes).
        let job = POOL
            .synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue
            .pop_back();
        if let Some(j) = job {
            // SAFETY: as in helper_main.
            unsafe { (*j.0).run() };
        }
    }
}

fn helper_main() {
    let mut s = POOL.synced.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = s.queue.pop_front() {
            drop(s);
            // SAFETY: the job's owner is parked until we set `done`.
            unsafe { (*job.0).run() };
            s = POOL.synced.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        s.idle += 1;
        let (g, t) = POOL
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
                return;
            }
        }
    }
}
