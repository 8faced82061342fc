//! `syscall(SYS_futex, …)` for coroutines: std's `Mutex`, `Condvar`,
//! `RwLock`, `Once`/`OnceLock`, `Barrier`, `thread::park` (hence `mpsc`),
//! and crates such as `parking_lot` block through the libc `syscall`
//! function on Linux. Interposing it lets a coroutine that would block in
//! FUTEX_WAIT park instead, so its executor keeps running the others.
//! Without this, a coroutine waiting for a std `Mutex` held by a coroutine
//! parked on the same executor deadlocks that executor for good.
//!
//! ## Who takes which path
//! | caller                                              | FUTEX_WAIT(_BITSET)        | FUTEX_WAKE(_BITSET)              |
//! |-----------------------------------------------------|----------------------------|----------------------------------|
//! | coroutine, no-preempt level 0 (user code)           | parks in the waiter table  | table first, kernel for the rest |
//! | coroutine inside runtime code (no-preempt > 0)      | raw syscall (kernel)       | table first, kernel for the rest |
//! | plain thread, executor's scheduler context          | raw syscall (kernel)       | table first, kernel for the rest |
//!
//! Every other futex command and every other system call number goes to
//! the kernel with a raw `syscall` instruction (never libc's `syscall`:
//! this function *is* libc's `syscall` inside the binary), and errors come
//! back as libc does it: return -1 and set `errno`. Commands that wake
//! (`FUTEX_WAKE_OP`, `FUTEX_REQUEUE`, `FUTEX_CMP_REQUEUE`) run in the
//! kernel and then also wake the coroutine waiters of the words concerned
//! (a requeue becomes a wake: coroutines see a spurious return, which every
//! futex user handles, instead of sleeping on a word nobody wakes).
//!
//! ## Waiter table and protocol
//! The waiter table (`Node`, `Shard`, `wait`/`remove`/`wake`) and the
//! protocol that makes a wait and a wake never lose each other are in
//! futex/table.rs, with their description.
//!
//! Kernel semantics mirrored: EINVAL for a misaligned address, bitset 0 or
//! an invalid timespec; EFAULT for a null address (an unmapped address
//! would fault here instead of returning EFAULT); EAGAIN; ETIMEDOUT; a
//! FUTEX_WAKE of n <= 0 wakes one waiter, as the kernel's loop does. A
//! parked coroutine is never interrupted by signals, so EINTR is not
//! returned by the emulated wait.
//!
//! ## Coverage (what parks the coroutine, what still blocks or misbehaves)
//! Coroutine-aware through this hook: std `Mutex`, `RwLock`, `Condvar`
//! (incl. `wait_timeout`), `Barrier`, `Once`/`OnceLock`/`LazyLock`, and
//! any crate waiting with `syscall(SYS_futex, FUTEX_WAIT*)` on a word of
//! its own object. Still blocking the executor (the blocked-executor
//! detector, sched/blocked.rs, then lends another executor): PI futexes,
//! `futex_waitv`, pthread primitives waited on by glibc-internal code
//! (glibc calls the kernel directly; the pthread entry points themselves
//! are hooked in pthread.rs), `JoinHandle::join` of an OS thread.
//!
//! Limitation — waits keyed on the *thread*, not on an object: std's
//! `thread::park` (and so std `mpsc`/`mpmc` blocking `recv`/`send`,
//! `crossbeam-channel` blocking operations) waits on the park token of
//! `thread::current()`, which inside a coroutine is its executor thread;
//! `parking_lot` queues a per-thread `ThreadData` from a `thread_local!`.
//! One coroutine per executor blocked that way at a time works (it parks
//! here). Two at once on the same executor do not: std's parker state
//! goes below PARKED and std's own `futex_wait` pre-check then spins in
//! user space without calling `syscall` (and an unpark that does not see
//! PARKED issues no FUTEX_WAKE at all), so nothing here can see or fix it;
//! `parking_lot` links the shared `ThreadData` into two queues. The fix
//! is per-coroutine thread identity (swapping std's `thread::current`
//! thread-local and the thread-id thread-locals std's mpmc and crossbeam
//! use to avoid self-pairing), which belongs to the scheduler, not here.
//!
//! Rejected: passing coroutine waits to the kernel with a helper thread per
//! wait (costly, and the executor would still have to block or poll);
//! std's `Mutex` for the shards (its contended path calls `syscall`, i.e.
//! this hook, from inside the table); waking only the table *or* the kernel
//! depending on who waited last (a thread sleeping in the kernel can only
//! be seen through the kernel's return value, so always ask the kernel for
//! the remainder).

mod table;

use std::ffi::{c_int, c_long};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::sched;
use crate::sys;
use table::{key_of, wait, wake};

// Names the tests below (`use super::*`) used from this file before the
// waiter table moved to futex/table.rs.
#[cfg(test)]
use crate::sched::NoPreempt;
#[cfg(test)]
use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};
#[cfg(test)]
use table::shard_of;

/// Emulated waits that parked a coroutine (not counting EAGAIN).
pub(crate) static WAITS_PARKED: AtomicU64 = AtomicU64::new(0);
/// Emulated waits that ended with ETIMEDOUT.
pub(crate) static WAIT_TIMEOUTS: AtomicU64 = AtomicU64::new(0);
/// Coroutines woken from the table.
pub(crate) static WAKES: AtomicU64 = AtomicU64::new(0);

const FUTEX_WAIT: c_int = libc::FUTEX_WAIT;
const FUTEX_WAKE: c_int = libc::FUTEX_WAKE;
const FUTEX_REQUEUE: c_int = libc::FUTEX_REQUEUE;
const FUTEX_CMP_REQUEUE: c_int = libc::FUTEX_CMP_REQUEUE;
const FUTEX_WAKE_OP: c_int = libc::FUTEX_WAKE_OP;
const FUTEX_WAIT_BITSET: c_int = libc::FUTEX_WAIT_BITSET;
const FUTEX_WAKE_BITSET: c_int = libc::FUTEX_WAKE_BITSET;
const BITSET_MATCH_ANY: u32 = u32::MAX;

/// The start-up self-check (interpose/mod.rs `verify`): libc's `syscall` as seen
/// from this crate must be our shim, or std's blocking primitives would
/// block executors. Referencing the shim here also keeps its object linked.
pub(crate) fn check_linked() -> Result<(), &'static str> {
    let ours = super::hooks::syscall as *const () as usize;
    let seen = libc::syscall as *const () as usize;
    if ours == seen {
        Ok(())
    } else {
        Err("coroutines: the `syscall` interposer is not linked into this binary (libc's `syscall` \
             resolves elsewhere), so std::sync primitives would block executors; link the crate \
             statically into the executable")
    }
}

use sys::set_errno;

/// Converts a kernel result (negative errno) into libc's convention
/// (sys.rs `to_libc`; `c_long` is `isize` on x86-64).
#[inline]
fn libc_ret(r: isize) -> c_long {
    sys::to_libc(r) as c_long
}

#[inline]
unsafe fn raw(n: c_long, a: [c_long; 6]) -> isize {
    // SAFETY: forwarded from `syscall`'s contract.
    unsafe {
        sys::syscall6(
            n as usize,
            a[0] as usize,
            a[1] as usize,
            a[2] as usize,
            a[3] as usize,
            a[4] as usize,
            a[5] as usize,
        )
    }
}

pub(super) unsafe fn syscall_entry(n: c_long, a: [c_long; 6]) -> c_long {
    if n != libc::SYS_futex {
        // SAFETY: caller's contract.
        return libc_ret(unsafe { raw(n, a) });
    }
    let uaddr = a[0] as usize;
    let op = a[1] as c_int;
    let private = op & libc::FUTEX_PRIVATE_FLAG != 0;
    let realtime = op & libc::FUTEX_CLOCK_REALTIME != 0;
    let cmd = op & !(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME);
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET
            if coroutine_may_park() && !(realtime && cmd == FUTEX_WAIT) =>
        {
            let bitset = if cmd == FUTEX_WAIT {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            let val = a[2] as u32;
            if uaddr % 4 != 0 || bitset == 0 {
                set_errno(libc::EINVAL);
                return -1;
            }
            if uaddr == 0 {
                set_errno(libc::EFAULT);
                return -1;
            }
            let ts = a[3] as *const libc::timespec;
            let deadline = if ts.is_null() {
                None
            } else {
                // SAFETY: the caller passes a readable timespec (the kernel
                // would return EFAULT for a bad one; we trust std & co).
                let ts = unsafe { *ts };
                match deadline_of(ts, cmd == FUTEX_WAIT, realtime) {
                    Some(d) => Some(d),
                    None => {
                        set_errno(libc::EINVAL);
                        return -1;
                    }
                }
            };
            match wait(uaddr, val, deadline, bitset, private) {
                Ok(()) => 0,
                Err(e) => {
                    set_errno(e);
                    -1
                }
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET if !realtime => {
            let bitset = if cmd == FUTEX_WAKE {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            if uaddr % 4 != 0 || bitset == 0 {
                // The kernel reports EINVAL (we have nothing to add).
                // SAFETY: caller's contract.
                return libc_ret(unsafe { raw(n, a) });
            }
            let nr = a[2] as c_int;
            let woken = wake(key_of(uaddr, private), nr.max(1) as usize, bitset);
            if woken > 0 && (nr <= 0 || woken >= nr as usize) {
                return woken as c_long;
            }
            let mut rest = a;
            if woken > 0 {
                rest[2] = (nr as usize - woken) as c_long;
            }
            // SAFETY: caller's contract; only the count was lowered.
            let r = unsafe { raw(n, rest) };
            if r < 0 && woken > 0 {
                return woken as c_long;
            }
            if r >= 0 {
                r as c_long + woken as c_long
            } else {
                libc_ret(r)
            }
        }
        FUTEX_WAKE_OP | FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            // SAFETY: caller's contract.
            let r = unsafe { raw(n, a) };
            if r < 0 {
                return libc_ret(r);
            }
            let nr = a[2] as c_int;
            let mut woken = if cmd == FUTEX_WAKE_OP {
                wake(key_of(uaddr, private), nr.max(1) as usize, BITSET_MATCH_ANY)
            } else {
                // Requeue: the coroutine waiters of uaddr wake (spuriously
                // for the requeued share) and wait again where they must.
                wake(key_of(uaddr, private), usize::MAX, BITSET_MATCH_ANY)
            };
            if cmd == FUTEX_WAKE_OP && a[4] as usize % 4 == 0 && a[4] != 0 {
                let nr2 = a[3] as c_int;
                woken += wake(
                    key_of(a[4] as usize, private),
                    nr2.max(1) as usize,
                    BITSET_MATCH_ANY,
                );
            }
            r as c_long + woken as c_long
        }
        // SAFETY: caller's contract.
        _ => libc_ret(unsafe { raw(n, a) }),
    }
}

/// Whether the caller is a coroutine in its own code (not runtime code,
/// which raises the no-preempt level and may hold runtime locks) and not
/// panicking: std counts panics per thread, so a coroutine parked inside
/// the panic machinery (which takes locks: the hook, stderr, backtrace)
/// while another coroutine on its executor panics makes std abort
/// ("thread panicked while processing panic"). Such a wait blocks the
/// executor instead, briefly: those locks are never held across a park.
#[inline]
fn coroutine_may_park() -> bool {
    sched::in_coroutine_user_code()
}

/// Deadline of a futex timeout, or None for an invalid timespec.
/// FUTEX_WAIT: relative. FUTEX_WAIT_BITSET: absolute on CLOCK_MONOTONIC,
/// or CLOCK_REALTIME with FUTEX_CLOCK_REALTIME.
pub(crate) fn deadline_of(ts: libc::timespec, relative: bool, realtime: bool) -> Option<Instant> {
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    let now = Instant::now();
    let want = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    if relative {
        return Some(
            now.checked_add(want)
                .unwrap_or(now + Duration::from_secs(u32::MAX as u64)),
        );
    }
    let clock = if realtime {
        libc::CLOCK_REALTIME
    } else {
        libc::CLOCK_MONOTONIC
    };
    let mut cur = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec (vDSO, not a hooked call).
    unsafe { libc::clock_gettime(clock, &mut cur) };
    let cur = Duration::new(cur.tv_sec.max(0) as u64, cur.tv_nsec as u32);
    let left = want.saturating_sub(cur);
    Some(
        now.checked_add(left)
            .unwrap_or(now + Duration::from_secs(u32::MAX as u64)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: c_long, a: [c_long; 6]) -> (c_long, c_int) {
        set_errno(0);
        // SAFETY: test arguments are valid for the calls made.
        let r = unsafe { crate::interpose::hooks::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
        // errno means something only on failure (on success it may hold
        // whatever other code on the executor left in it).
        (
            r,
            if r == -1 {
                // SAFETY: reads this thread's errno.
                unsafe { *libc::__errno_location() }
            } else {
                0
            },
        )
    }

    #[test]
    fn linked() {
        check_linked().unwrap();
    }

    #[test]
    fn passthrough_getpid_and_errno() {
        let (r, _) = call(libc::SYS_getpid, [0; 6]);
        // SAFETY: getpid has no preconditions.
        assert_eq!(r, unsafe { libc::getpid() } as c_long);
        let (r, e) = call(libc::SYS_close, [-1, 0, 0, 0, 0, 0]);
        assert_eq!((r, e), (-1, libc::EBADF));
    }

    #[test]
    fn emulated_wait_errors() {
        let w = Arc::new(AtomicU32::new(5));
        let w2 = w.clone();
        let r = crate::spawn(move || {
            let a = w2.as_ptr() as c_long;
            let op = (libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG) as c_long;
            let mismatch = call(libc::SYS_futex, [a, op, 4, 0, 0, -1]);
            let zero_bits = call(libc::SYS_futex, [a, op, 5, 0, 0, 0]);
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 2_000_000_000,
            };
            let bad_ts = call(
                libc::SYS_futex,
                [a, op, 5, &ts as *const _ as c_long, 0, -1],
            );
            let rel = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            let t = Instant::now();
            let wait_op = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as c_long;
            let timed = call(
                libc::SYS_futex,
                [a, wait_op, 5, &rel as *const _ as c_long, 0, 0],
            );
            (mismatch, zero_bits, bad_ts, timed, t.elapsed())
        })
        .join()
        .unwrap();
        assert_eq!(r.0, (-1, libc::EAGAIN));
        assert_eq!(r.1, (-1, libc::EINVAL));
        assert_eq!(r.2, (-1, libc::EINVAL));
        assert_eq!(r.3, (-1, libc::ETIMEDOUT));
        assert!(r.4 >= Duration::from_millis(20), "{:?}", r.4);
    }

    #[test]
    fn wake_reaches_coroutine_and_counts() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let h = crate::spawn(move || {
            let a = w2.as_ptr() as c_long;
            let op = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as c_long;
            while w2.load(Ordering::Acquire) == 0 {
                call(libc::SYS_futex, [a, op, 0, 0, 0, 0]);
            }
        });
        // Wait until it sits in the table, then wake it from a thread.
        let key = key_of(w.as_ptr() as usize, true);
        while shard_of(key).with(|q| q.get(&key).map_or(0, |l| l.len())) == 0 {
            std::thread::yield_now();
        }
        w.store(1, Ordering::Release);
        let op = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let (r, _) = call(libc::SYS_futex, [w.as_ptr() as c_long, op, 1, 0, 0, 0]);
        assert_eq!(r, 1);
        h.join().unwrap();
    }

    fn queued(w: &AtomicU32, private: bool) -> usize {
        let key = key_of(w.as_ptr() as usize, private);
        let _np = NoPreempt::new();
        shard_of(key).with(|q| q.get(&key).map_or(0, |l| l.len()))
    }

    fn wait_queued(w: &AtomicU32, private: bool, n: usize) {
        let t = Instant::now();
        while queued(w, private) < n {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "waiters never queued"
            );
            std::thread::yield_now();
        }
    }

    /// Spawns a coroutine doing one futex wait with `op`/`val`/`ts`/`bits`
    /// on `w`; returns (result, errno).
    fn co_wait(
        w: &Arc<AtomicU32>,
        op: c_int,
        val: u32,
        ts: Option<libc::timespec>,
        bits: u32,
    ) -> crate::JoinHandle<(c_long, c_int)> {
        let w = w.clone();
        crate::spawn(move || {
            let tsp = ts
                .as_ref()
                .map_or(0, |t| t as *const libc::timespec as c_long);
            call(
                libc::SYS_futex,
                [
                    w.as_ptr() as c_long,
                    op as c_long,
                    val as c_long,
                    tsp,
                    0,
                    bits as c_long,
                ],
            )
        })
    }

    fn now_ts(clock: libc::clockid_t, plus: Duration) -> libc::timespec {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec.
        unsafe { libc::clock_gettime(clock, &mut t) };
        let d = Duration::new(t.tv_sec as u64, t.tv_nsec as u32) + plus;
        libc::timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        }
    }

    #[test]
    fn absolute_timeouts_both_clocks() {
        let w = Arc::new(AtomicU32::new(0));
        let bitset = libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG;
        for (clock, flag) in [
            (libc::CLOCK_MONOTONIC, 0),
            (libc::CLOCK_REALTIME, libc::FUTEX_CLOCK_REALTIME),
        ] {
            let t = Instant::now();
            let past = co_wait(
                &w,
                bitset | flag,
                0,
                Some(now_ts(clock, Duration::ZERO)),
                u32::MAX,
            );
            assert_eq!(past.join().unwrap(), (-1, libc::ETIMEDOUT));
            let soon = co_wait(
                &w,
                bitset | flag,
                0,
                Some(now_ts(clock, Duration::from_millis(20))),
                u32::MAX,
            );
            assert_eq!(soon.join().unwrap(), (-1, libc::ETIMEDOUT));
            assert!(
                t.elapsed() >= Duration::from_millis(19),
                "{:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn bitsets_and_counts() {
        let w = Arc::new(AtomicU32::new(0));
        let addr = w.as_ptr() as c_long;
        let wait_bits = libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG;
        let wake_bits = (libc::FUTEX_WAKE_BITSET | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let a = co_wait(&w, wait_bits, 0, None, 0b01);
        let b = co_wait(&w, wait_bits, 0, None, 0b10);
        let c = co_wait(&w, wait_bits, 0, None, 0b10);
        wait_queued(&w, true, 3);
        // Wrong bits wake nobody (the kernel has no waiter either).
        assert_eq!(
            call(libc::SYS_futex, [addr, wake_bits, 10, 0, 0, 0b100]).0,
            0
        );
        assert_eq!(call(libc::SYS_futex, [addr, wake_bits, 1, 0, 0, 0b10]).0, 1);
        // Exactly one of b, c (both wait on bit 1) woke: which one depends
        // on the order they queued in, which two executors do not fix.
        let t = Instant::now();
        while !(b.is_finished() || c.is_finished()) {
            assert!(t.elapsed() < Duration::from_secs(20), "nobody woke");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !(b.is_finished() && c.is_finished()),
            "a wake of 1 woke two"
        );
        assert!(!a.is_finished(), "bit 0 waiter woken by a bit 1 wake");
        assert_eq!(
            call(
                libc::SYS_futex,
                [addr, wake_bits, i32::MAX as c_long, 0, 0, 0b11]
            )
            .0,
            2
        );
        assert_eq!(a.join().unwrap(), (0, 0));
        assert_eq!(b.join().unwrap(), (0, 0));
        assert_eq!(c.join().unwrap(), (0, 0));
        // Bitset 0 is EINVAL for wakes too (from the kernel).
        assert_eq!(
            call(libc::SYS_futex, [addr, wake_bits, 1, 0, 0, 0]),
            (-1, libc::EINVAL)
        );
    }

    #[test]
    fn wake_counts_coroutines_and_threads() {
        let w = Arc::new(AtomicU32::new(0));
        let addr = w.as_ptr() as c_long;
        let wait = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let wake = (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let co = co_wait(&w, wait as c_int, 0, None, 0);
        let w2 = w.clone();
        let th = std::thread::spawn(move || {
            // A plain thread waits in the kernel (pass-through).
            while w2.load(Ordering::Acquire) == 0 {
                call(libc::SYS_futex, [w2.as_ptr() as c_long, wait, 0, 0, 0, 0]);
            }
        });
        wait_queued(&w, true, 1);
        std::thread::sleep(Duration::from_millis(20)); // let the thread reach the kernel
        w.store(1, Ordering::Release);
        let (n, _) = call(libc::SYS_futex, [addr, wake, i32::MAX as c_long, 0, 0, 0]);
        assert!(n == 2 || n == 1, "woke {n}"); // 1 if the thread had not slept yet
        assert_eq!(co.join().unwrap(), (0, 0));
        th.join().unwrap();
    }

    #[test]
    fn requeue_wakes_coroutines() {
        let w = Arc::new(AtomicU32::new(0));
        let other = AtomicU32::new(0);
        let wait = libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG;
        let co = co_wait(&w, wait, 0, None, 0);
        wait_queued(&w, true, 1);
        let op = (libc::FUTEX_CMP_REQUEUE | libc::FUTEX_PRIVATE_FLAG) as c_long;
        let (n, _) = call(
            libc::SYS_futex,
            [
                w.as_ptr() as c_long,
                op,
                0,
                i32::MAX as c_long,
                other.as_ptr() as c_long,
                0,
            ],
        );
        assert_eq!(n, 1);
        assert_eq!(co.join().unwrap(), (0, 0));
    }

    #[test]
    fn shared_futex_sees_foreign_wake() {
        // A non-private futex may be woken by another process straight in
        // the kernel: the coroutine notices the changed word by polling.
        let w = Arc::new(AtomicU32::new(0));
        let co = co_wait(&w, libc::FUTEX_WAIT, 0, None, 0);
        wait_queued(&w, false, 1);
        let t = Instant::now();
        w.store(1, Ordering::Release);
        // SAFETY: a raw FUTEX_WAKE, as another process would issue it.
        unsafe {
            sys::syscall6(
                libc::SYS_futex as usize,
                w.as_ptr() as usize,
                libc::FUTEX_WAKE as usize,
                1,
                0,
                0,
                0,
            )
        };
        assert_eq!(co.join().unwrap(), (0, 0));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
