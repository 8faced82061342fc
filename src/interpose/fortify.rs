//! glibc's `_FORTIFY_SOURCE` entry points (`__read_chk`, `__recv_chk`,
//! `__poll_chk`, ...): C code compiled with `-D_FORTIFY_SOURCE` calls these
//! instead of `read`, `recv`, `poll` where the compiler knows the buffer's
//! size. glibc implements them inside libc.so, calling its own `read` &c.
//! directly, so hooking only the plain names would leave such C code
//! blocking its executor. The hooks (hooks.rs) do glibc's size check and
//! then what the plain hook does.

extern "C" {
    /// glibc: prints "*** buffer overflow detected ***: terminated" and
    /// aborts the process.
    fn __chk_fail() -> !;
}

/// glibc's check: `ok` false means the caller asked for more bytes (or
/// entries) than its buffer holds, which glibc treats as a buffer overflow
/// and aborts; so do we, through glibc's own reporting function.
#[inline]
pub(super) fn check(ok: bool) {
    if !ok {
        // SAFETY: __chk_fail takes no arguments and never returns; aborting
        // here is exactly what the unhooked glibc function would do.
        unsafe { __chk_fail() }
    }
}
