//! The few OS facilities the benches need: RSS and CPU pinning.
//!
//! Declared directly against glibc (always linked) rather than through the
//! `libc` crate, so the bench package needs no dependency of its own.

use std::io;
use std::os::raw::{c_int, c_long};

extern "C" {
    fn sysconf(name: c_int) -> c_long;
    fn sched_setaffinity(pid: c_int, cpusetsize: usize, mask: *const u64) -> c_int;
}

/// `_SC_PAGESIZE` on Linux (glibc, all architectures).
const SC_PAGESIZE: c_int = 30;

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("parse /proc/self/statm");
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { sysconf(SC_PAGESIZE) };
    resident_pages * page.max(1) as u64
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // A 1024-bit cpu_set_t, as glibc's CPU_SETSIZE.
    let mut mask = [0u64; 16];
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: `mask` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let rc = unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads a small integer sysctl such as `vm/max_map_count`, for the report.
pub fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|s| s.trim().to_string())
}
