//! The dump on a signal (`COROUTINES_DUMP_SIGNAL`, `RuntimeBuilder::
//! dump_signal`): the signal prints `dump()` to stderr and the program
//! goes on, like Go's SIGQUIT traceback without the exit.
//!
//! Built on `signal-hook`'s `low_level::register`, which installs one
//! process-wide handler per signal and chains the handlers registered
//! through it (the crate's choice for signals it does not own: it keeps
//! other libraries' handlers working). The handler itself only does what
//! is async-signal-safe and cannot reach a hook: it raises a counter and
//! wakes a futex with the raw system call. It may run on any thread,
//! including an executor in the middle of a coroutine or of the runtime.
//! A plain OS thread (`coroutines-dump`) waits on that futex and takes the
//! dump, outside any executor, so a dump never runs on the stack or in
//! the thread-local storage of the coroutine the signal interrupted.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// Signals received and not yet dumped (the futex word).
static PENDING: AtomicU32 = AtomicU32::new(0);

/// Installs the handler and starts the dump thread.
pub(crate) fn start(sig: i32) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("coroutines-dump".into())
        .spawn(dump_loop)?;
    // SAFETY: the handler is async-signal-safe: an atomic RMW and a raw
    // futex-wake system call, no allocation, no lock, no libc call that a
    // hook of this crate could intercept.
    unsafe {
        signal_hook::low_level::register(sig, || {
            PENDING.fetch_add(1, Ordering::Release);
            crate::sys::futex_wake(&PENDING, 1);
        })
    }
    .map_err(|e| std::io::Error::new(e.kind(), format!("signal-hook refused signal {sig}: {e}")))?;
    Ok(())
}

fn dump_loop() {
    loop {
        if PENDING.swap(0, Ordering::Acquire) == 0 {
            crate::sys::futex_wait(&PENDING, 0, None);
            continue;
        }
        let d = super::dump();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{d}");
        let _ = err.flush();
    }
}
