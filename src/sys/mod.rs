//! Low-level pieces shared by the subsystems: raw system calls (here),
//! reading the executable's ELF image (`elf.rs`), a raw futex lock
//! (`lock.rs`) and installing a signal handler that chains to the previous
//! one (`signal.rs`). Nothing here knows about coroutines or executors.
//!
//! The crate interposes libc symbols such as `syscall`, `read` and
//! `nanosleep`, so runtime code must never reach the kernel through those
//! libc entry points (it would call its own hooks). The system calls here
//! issue the `syscall` instruction directly.

use core::arch::asm;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

pub(crate) mod elf;
pub(crate) mod lock;
pub(crate) mod signal;

/// Issues a raw system call with up to six arguments; returns the kernel's
/// result (negative errno on failure).
///
/// # Safety
/// The arguments must be valid for the given system call.
#[inline]
pub(crate) unsafe fn syscall6(
    n: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux syscall ABI: number in RAX, arguments in
    // RDI, RSI, RDX, R10, R8, R9; RCX and R11 are clobbered by the CPU.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a1, in("rsi") a2, in("rdx") a3,
            in("r10") a4, in("r8") a5, in("r9") a6,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Waits while `*word == expected`, at most `timeout` (None = forever).
/// Returns on wake-up, timeout, value mismatch or signal; callers recheck.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts;
    let ts_ptr = match timeout {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: d.subsec_nanos() as i64,
            };
            &ts as *const libc::timespec as usize
        }
        None => 0,
    };
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAIT_PRIVATE only reads
    // it and `ts_ptr` is null or points at a live timespec.
    unsafe {
        syscall6(
            libc::SYS_futex as usize,
            word.as_ptr() as usize,
            (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as usize,
            expected as usize,
            ts_ptr,
            0,
            0,
        );
    }
}

/// Wakes up to `n` threads waiting on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    // SAFETY: FUTEX_WAKE_PRIVATE on a live, aligned u32.
    unsafe {
        syscall6(
            libc::SYS_futex as usize,
            word.as_ptr() as usize,
            (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as usize,
            n as usize,
            0,
            0,
            0,
        );
    }
}

/// The calling thread's kernel thread id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { syscall6(libc::SYS_gettid as usize, 0, 0, 0, 0, 0, 0) as i32 }
}

/// Writes `msg` to stderr with one raw write (async-signal-safe).
pub(crate) fn write_stderr(msg: &[u8]) {
    // SAFETY: writes from a valid buffer; the result is ignored on purpose
    // (nothing useful can be done if stderr is gone).
    unsafe {
        syscall6(
            libc::SYS_write as usize,
            2,
            msg.as_ptr() as usize,
            msg.len(),
            0,
            0,
            0,
        );
    }
}

/// Prints `msg` (a constant, so it cannot fail to format) and aborts.
/// Used for runtime invariant violations, like Go's `throw`.
pub(crate) fn fatal(msg: &str) -> ! {
    write_stderr(b"coroutines: fatal: ");
    write_stderr(msg.as_bytes());
    write_stderr(b"\n");
    std::process::abort()
}

/// Like [`fatal`] for messages built at run time (not for signal context:
/// the caller already allocated).
pub(crate) fn fatal_fmt(msg: &str) -> ! {
    fatal(msg)
}

/// Resolves libc's definition of `name` once (`dlsym(RTLD_NEXT)`: the
/// next object after the executable, i.e. libc; the executable's own
/// definition is the hook), caching it in `slot`. Fatal if not found.
pub(crate) fn resolve_next(slot: &std::sync::atomic::AtomicUsize, name: &std::ffi::CStr) -> usize {
    use std::sync::atomic::Ordering;
    let p = slot.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: dlsym with a NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if p == 0 {
        fatal_fmt(&format!("coroutines: dlsym(RTLD_NEXT, {name:?}) failed"));
    }
    // Relaxed: every thread computes the same value.
    slot.store(p, Ordering::Relaxed);
    p
}

/// Raw system call with libc's return convention: on failure sets the
/// calling thread's `errno` and returns -1 (the kernel's `-errno` range is
/// -4095..=-1).
#[inline]
pub(crate) fn to_libc(r: isize) -> isize {
    if (-4095..0).contains(&r) {
        set_errno((-r) as i32);
        -1
    } else {
        r
    }
}

/// The calling thread's `errno`.
#[inline]
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub(crate) fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

/// Shorthands for [`syscall6`] with fewer arguments (raw result).
///
/// # Safety
/// As for [`syscall6`].
#[inline]
pub(crate) unsafe fn sc1(n: i64, a1: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n as usize, a1, 0, 0, 0, 0, 0) }
}
/// # Safety
/// As for [`syscall6`].
#[inline]
pub(crate) unsafe fn sc2(n: i64, a1: usize, a2: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n as usize, a1, a2, 0, 0, 0, 0) }
}
/// # Safety
/// As for [`syscall6`].
#[inline]
pub(crate) unsafe fn sc3(n: i64, a1: usize, a2: usize, a3: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n as usize, a1, a2, a3, 0, 0, 0) }
}
/// # Safety
/// As for [`syscall6`].
#[inline]
pub(crate) unsafe fn sc4(n: i64, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n as usize, a1, a2, a3, a4, 0, 0) }
}
/// # Safety
/// As for [`syscall6`].
#[inline]
pub(crate) unsafe fn sc5(n: i64, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n as usize, a1, a2, a3, a4, a5, 0) }
}

/// Whether thread `tid` of this process is running or runnable (state `R`
/// in `/proc/self/task/<tid>/stat`) rather than asleep in the kernel, for
/// repeated checks of one thread at a time: the
/// stat file is kept open and re-read with one `pread` at offset 0 (procfs
/// regenerates it), instead of open, statx, reads and close per check (the
/// monitor checks before every preemption signal, on a CPU an executor
/// needs). Owned by one thread (the monitor). A read that fails (the
/// thread exited) answers "running" and reopens next time.
pub(crate) struct ThreadStat {
    tid: i32,
    fd: i32,
}

impl ThreadStat {
    pub(crate) const fn new() -> Self {
        ThreadStat { tid: 0, fd: -1 }
    }

    /// Whether thread `tid` of this process is running or runnable.
    pub(crate) fn is_running(&mut self, tid: i32) -> bool {
        if tid != self.tid || self.fd < 0 {
            self.close();
            let path = format!("/proc/self/task/{tid}/stat\0");
            // Raw system calls throughout: not through this crate's hooks
            // (no fd bookkeeping for a file only the monitor reads).
            // SAFETY: a NUL-terminated path; the fd is ours until `close`.
            self.fd = unsafe {
                sc4(
                    libc::SYS_openat,
                    libc::AT_FDCWD as isize as usize,
                    path.as_ptr() as usize,
                    (libc::O_RDONLY | libc::O_CLOEXEC) as usize,
                    0,
                )
            } as i32;
            self.tid = tid;
            if self.fd < 0 {
                return true;
            }
        }
        let mut buf = [0u8; 512];
        // SAFETY: reads at most `buf.len()` bytes into `buf` from the fd.
        let n = unsafe {
            sc4(
                libc::SYS_pread64,
                self.fd as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            // -ESRCH: the thread is gone, the file is ours. Anything else
            // (EBADF, ESPIPE): the program closed our fd, maybe reused the
            // number: forget it without closing what may be its own.
            if n == -(libc::ESRCH as isize) {
                self.close();
            }
            self.fd = -1;
            return true;
        }
        let stat = &buf[..n as usize];
        // The same check for a reused fd number whose reads succeed.
        let digits = stat.iter().take_while(|b| b.is_ascii_digit()).count();
        let lead = std::str::from_utf8(&stat[..digits])
            .ok()
            .and_then(|d| d.parse::<i32>().ok());
        if lead != Some(tid) || !stat[digits..].starts_with(b" (") {
            self.fd = -1;
            return true;
        }
        running_state(stat)
    }

    fn close(&mut self) {
        if self.fd >= 0 {
            // SAFETY: our own fd, closed once.
            unsafe { sc1(libc::SYS_close, self.fd as usize) };
            self.fd = -1;
        }
    }
}

impl Clone for ThreadStat {
    /// A fresh reader (the fd is not shared).
    fn clone(&self) -> Self {
        ThreadStat::new()
    }
}

impl Drop for ThreadStat {
    fn drop(&mut self) {
        self.close();
    }
}

/// "tid (comm) S ...": comm may hold spaces and parentheses, so the state
/// is the first byte after the last ") ". Unparsable: "running".
fn running_state(stat: &[u8]) -> bool {
    match stat.iter().rposition(|&b| b == b')') {
        Some(i) => stat.get(i + 2).is_none_or(|&st| st == b'R'),
        None => true,
    }
}

/// On-CPU time of thread `tid` of this process, in nanoseconds (first
/// field of `/proc/self/task/<tid>/schedstat`). Not for hot paths; not
/// signal-safe. None if it cannot be read.
pub(crate) fn thread_cpu_ns(tid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Calls `f` for every loaded object as `dl_iterate_phdr` reports them
/// (the executable first) until `f` returns false. `f` must not panic (it
/// runs under a C frame).
pub(crate) fn for_each_object<F: FnMut(&libc::dl_phdr_info) -> bool>(mut f: F) {
    unsafe extern "C" fn cb<G: FnMut(&libc::dl_phdr_info) -> bool>(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: glibc passes a valid info for the duration of the call;
        // `data` is the `&mut F` below, used only during the iteration.
        unsafe { i32::from(!(*(data as *mut G))(&*info)) }
    }
    // SAFETY: the callback only calls `f`; the pointer outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(cb::<F>), &mut f as *mut F as *mut libc::c_void);
    }
}
