//! Installing a signal handler in front of whatever was installed before,
//! and chaining to that previous action.
//!
//! Used by the preemption handler (SIGURG, preempt/signal.rs) and the
//! stack-overflow report (SIGSEGV/SIGBUS, stack/overflow.rs). Each keeps
//! one `SavedAction` per signal:
//! 1. `install` (inside the caller's `Once`) sets the new action with
//!    `sigaction(2)`, writes the old one into the slot, then sets `ready`
//!    with Release.
//! 2. A handler reads `previous()` (Acquire on `ready`: the saved action is
//!    fully written when seen, and never written again) and decides what to
//!    do with SIG_DFL/SIG_IGN itself (the two users differ: SIGURG's
//!    default is to ignore it; a fault's default kills); for a real handler
//!    it calls `call_previous`. The previous action's `sa_mask` and flags
//!    other than `SA_SIGINFO` are not emulated.
//!
//! Everything a handler calls here is async-signal-safe (atomic loads,
//! reads of the saved action, a call).
//!
//! Rejected: `signal-hook`'s registry (the runtime's handlers need the raw
//! `ucontext` and must chain to a handler installed before them, which the
//! registry does not expose; README, "Dependencies and why").

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// A previous `sigaction`, written once before `ready` is set.
pub(crate) struct SavedAction {
    ready: AtomicBool,
    action: UnsafeCell<MaybeUninit<libc::sigaction>>,
}

// SAFETY: `action` is written exactly once, by `install` (which callers run
// inside a `Once`), before `ready` is stored with Release; readers load
// `ready` with Acquire and only then read `action`, never write it.
unsafe impl Sync for SavedAction {}

impl SavedAction {
    pub(crate) const fn new() -> Self {
        SavedAction {
            ready: AtomicBool::new(false),
            action: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Installs `handler` (an `SA_SIGINFO` handler's address) for `sig`
    /// with `flags` (`SA_SIGINFO` included by the caller) and a mask of
    /// `blocked` signals, and saves the action it replaces. Returns
    /// `sigaction`'s result: on failure (not 0) nothing is saved.
    ///
    /// # Safety
    /// Called at most once per `SavedAction` (inside a `Once`); `handler`
    /// has the signature `flags` announces.
    pub(crate) unsafe fn install(
        &self,
        sig: libc::c_int,
        handler: usize,
        flags: libc::c_int,
        blocked: &[libc::c_int],
    ) -> libc::c_int {
        // SAFETY: a zeroed sigaction is a valid "no handler, no flags"
        // value; we fill the fields the kernel reads. `action` is written
        // only here, once (caller), before `ready` is set.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = handler;
            new.sa_flags = flags;
            libc::sigemptyset(&mut new.sa_mask);
            for &b in blocked {
                libc::sigaddset(&mut new.sa_mask, b);
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            let r = libc::sigaction(sig, &new, &mut old);
            if r == 0 {
                (*self.action.get()).write(old);
                // Release: pairs with the Acquire in `previous`, publishing
                // `action`.
                self.ready.store(true, Ordering::Release);
            }
            r
        }
    }

    /// Signal context: the action installed before ours, or None if ours is
    /// not installed yet (a signal before `install` finished).
    #[inline]
    pub(crate) fn previous(&self) -> Option<&libc::sigaction> {
        // Acquire: pairs with the Release in `install`.
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `ready` is set only after `action` was initialised; it is
        // never written again.
        Some(unsafe { (*self.action.get()).assume_init_ref() })
    }
}

/// Signal context: calls the handler of `prev` (neither SIG_DFL nor
/// SIG_IGN: the caller decides those) the way the kernel would: with
/// `(sig, info, ctx)` if it has `SA_SIGINFO`, else with `(sig)`.
///
/// # Safety
/// `prev` is a saved action whose handler is a real function; the
/// arguments are the ones the kernel passed to the calling handler.
#[inline]
pub(crate) unsafe fn call_previous(
    prev: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let handler = prev.sa_sigaction;
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the kernel-facing contract of
        // sa_sigaction is exactly this signature; the value came from
        // sigaction(2).
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler as *const ());
            f(sig, info, ctx);
        }
    } else {
        // SAFETY: without SA_SIGINFO, sa_handler is `void (*)(int)`.
        unsafe {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler as *const ());
            f(sig);
        }
    }
}
