//! Sleeps: in a coroutine `nanosleep`, `clock_nanosleep` (what
//! `std::thread::sleep` calls), `usleep` and `sleep` park on the reactor's
//! timers — no fd, no thread per sleep. A parked sleep is never
//! interrupted, so the "remaining time" outputs are never written (the
//! calls return 0). Other clocks than REALTIME/MONOTONIC/BOOTTIME (CPU-time
//! clocks) and calls outside coroutines get the plain system call.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::sched;
use crate::sys::{sc2, sc4, to_libc};

fn valid(ts: &libc::timespec) -> bool {
    ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec)
}

fn dur(ts: &libc::timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn park_until(deadline: Instant) {
    crate::reactor::COUNTERS
        .sleep_parks
        .fetch_add(1, Ordering::Relaxed);
    crate::coroutine::sleep_until(deadline);
}

/// nanosleep(2), libc convention.
pub(crate) fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> i32 {
    if !sched::in_coroutine_user_code() || req.is_null() {
        // SAFETY: the caller's timespec pointers.
        return to_libc(unsafe { sc2(libc::SYS_nanosleep, req as usize, rem as usize) }) as i32;
    }
    // SAFETY: non-null, the caller's contract.
    let ts = unsafe { &*req };
    if !valid(ts) {
        crate::sys::set_errno(libc::EINVAL);
        return -1;
    }
    park_until(Instant::now() + dur(ts));
    0
}

/// clock_nanosleep(2): returns the error number (0 on success), not -1.
pub(crate) fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: i32,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> i32 {
    let ours = matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
    );
    if !ours || req.is_null() || !sched::in_coroutine_user_code() {
        // SAFETY: the caller's timespec pointers.
        let r = unsafe {
            sc4(
                libc::SYS_clock_nanosleep,
                clock as usize,
                flags as usize,
                req as usize,
                rem as usize,
            )
        };
        return (-r) as i32;
    }
    // SAFETY: non-null, the caller's contract.
    let ts = unsafe { &*req };
    if !valid(ts) {
        return libc::EINVAL;
    }
    let deadline = if flags & libc::TIMER_ABSTIME != 0 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec (vDSO-free raw call; cheap enough).
        unsafe {
            sc2(
                libc::SYS_clock_gettime,
                clock as usize,
                &mut now as *mut _ as usize,
            )
        };
        let target = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let cur = now.tv_sec as i128 * 1_000_000_000 + now.tv_nsec as i128;
        // REALTIME: a clock step after this point is not followed (the
        // kernel would); the sleep lasts the distance measured now.
        Instant::now() + Duration::from_nanos((target - cur).clamp(0, u64::MAX as i128) as u64)
    } else {
        Instant::now() + dur(ts)
    };
    park_until(deadline);
    0
}

/// usleep(3).
pub(crate) fn usleep(us: u32) -> i32 {
    let ts = libc::timespec {
        tv_sec: (us / 1_000_000) as i64,
        tv_nsec: (us % 1_000_000) as i64 * 1000,
    };
    nanosleep(&ts, std::ptr::null_mut())
}

/// sleep(3): returns the seconds left (0: a parked sleep is never cut short).
pub(crate) fn sleep(secs: u32) -> u32 {
    let ts = libc::timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    let mut rem = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if nanosleep(&ts, &mut rem) == 0 {
        0
    } else {
        rem.tv_sec as u32 + (rem.tv_nsec > 0) as u32
    }
}
