//! Guard-page overflow report: the SIGSEGV/SIGBUS handler and per-thread
//! sigaltstacks.
//!
//! Protocol:
//! 1. `install_overflow_handler` (once per process) installs `handle_fault`
//!    for SIGSEGV and SIGBUS with `SA_SIGINFO | SA_ONSTACK`, saving the
//!    previous actions (usually std's main-thread overflow handler). SIGURG
//!    is blocked while it runs, so the preemption handler can never interrupt
//!    it and redirect the thread into the scheduler.
//! 2. Every executor calls `ensure_sigaltstack` at start: an overflowed
//!    coroutine has no stack left, so the handler must run elsewhere. We map
//!    64 KiB + a guard page; a smaller existing altstack (std gives its
//!    threads ~8 KiB) is replaced, an equal or larger one is kept.
//! 3. On a fault (si_code > 0, i.e. raised by the kernel) whose address is in
//!    one of our guard pages (`mmap::guard_hit`): write one line to fd 2,
//!    naming the coroutine (through the scheduler's name callback) and its
//!    stack size, then `abort()`.
//! 4. Anything else goes to the previous action: SA_SIGINFO handler → called
//!    with (sig, info, ctx); plain handler → called with (sig); SIG_DFL or
//!    SIG_IGN → our action is reset to SIG_DFL and we return, so the faulting
//!    instruction runs again and the kernel kills the process with the signal
//!    (a signal sent with kill(2) is re-raised instead, since nothing re-runs).
//!    The previous action's sa_mask and flags other than SA_SIGINFO are not
//!    emulated.
//!
//! Rejected: printing with `std::io::stderr` or `format!` (locks, allocation:
//! not async-signal-safe); checking only the *current* coroutine's guard (it
//! would need the scheduler's thread-local state in signal context; the
//! registry scan is lock-free and also catches a fault in another stack's
//! guard).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use super::mmap::{self, PAGE_SIZE};
use crate::sys::signal::{call_previous, SavedAction};

/// Size of the sigaltstacks we map (usable bytes; plus one guard page).
const SIGALTSTACK_BYTES: usize = 64 * 1024;

/// Longest coroutine name printed (bytes); longer names are cut with "...".
const MAX_NAME_BYTES: usize = 256;

// ---------------------------------------------------------------------------
// Coroutine name callback

/// The scheduler's `fn() -> (*const u8, usize)` as usize; 0 = not set.
static NAME_FN: AtomicUsize = AtomicUsize::new(0);

/// Bytes at the top of every coroutine stack the runtime keeps for itself
/// (the TLS block, tls/block.rs), page-rounded: the overflow line reports
/// the stack size the user asked for, without them.
static RESERVED_TOP: AtomicUsize = AtomicUsize::new(0);

/// Runtime start: see [`RESERVED_TOP`].
pub(crate) fn set_reserved_top(bytes: usize) {
    RESERVED_TOP.store(bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE, Ordering::Relaxed);
}

/// Register the function that returns the name of the coroutine running on
/// the calling thread as (ptr, len), or (null, 0). It is called from the
/// fault handler, so it must be async-signal-safe (no locks, no allocation,
/// no panics) and the bytes must stay valid while the thread is stopped in
/// the handler. Calling it again replaces the function.
pub(crate) fn set_current_name_fn(f: fn() -> (*const u8, usize)) {
    // Release: pairs with the Acquire load in `report_overflow`; a fn pointer
    // has no data behind it to publish, but this keeps the reasoning local.
    NAME_FN.store(f as usize, Ordering::Release);
}

// ---------------------------------------------------------------------------
// Handler installation

/// The actions installed before ours (sys/signal.rs).
static PREV_SEGV: SavedAction = SavedAction::new();
static PREV_BUS: SavedAction = SavedAction::new();
static INSTALL: Once = Once::new();

/// Install the process-wide SIGSEGV/SIGBUS handler that reports guard-page
/// hits. Idempotent and thread-safe: the first call installs, later calls
/// return at once.
///
/// # Panics
/// If `sigaction` fails (it cannot for these signals with valid arguments).
pub(crate) fn install_overflow_handler() {
    INSTALL.call_once(|| {
        for (sig, saved) in [(libc::SIGSEGV, &PREV_SEGV), (libc::SIGBUS, &PREV_BUS)] {
            // SIGURG blocked while it runs (module doc, step 1).
            // SAFETY: once per signal (call_once); `handle_fault` is an
            // SA_SIGINFO handler.
            let r = unsafe {
                saved.install(
                    sig,
                    handle_fault as *const () as usize,
                    libc::SA_SIGINFO | libc::SA_ONSTACK,
                    &[libc::SIGURG],
                )
            };
            assert_eq!(
                r, 0,
                "coroutines: sigaction({sig}) for the stack overflow handler failed"
            );
            // A fault before `install` saved the old action is treated as
            // "previous = SIG_DFL".
        }
    });
}

/// Signal context: async-signal-safe. The SIGSEGV/SIGBUS handler (protocol
/// steps 3 and 4 in the module comment).
extern "C" fn handle_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler;
    // si_addr is meaningful for SIGSEGV/SIGBUS.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code > 0 {
        if let Some(usable_bytes) = mmap::guard_hit(addr) {
            report_overflow(usable_bytes);
        }
    }
    // SAFETY: forwarding the kernel's own arguments.
    unsafe { chain(sig, info, ctx, code) };
}

/// Signal context: async-signal-safe. Step 4: run the previous action.
///
/// # Safety
/// Arguments must be the ones the kernel passed to `handle_fault`.
unsafe fn chain(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
    code: libc::c_int,
) {
    let saved = if sig == libc::SIGBUS {
        &PREV_BUS
    } else {
        &PREV_SEGV
    };
    // No previous action yet (a fault before `install` saved it) counts
    // as SIG_DFL.
    let real = saved
        .previous()
        .filter(|p| p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN);
    let Some(prev) = real else {
        // SAFETY: sigaction and raise are async-signal-safe; a zeroed
        // sigaction with SIG_DFL (= 0) is valid.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            if code <= 0 {
                // Sent by kill/tgkill: nothing will re-execute, so re-raise;
                // it is delivered (and kills) once this handler returns.
                libc::raise(sig);
            }
        }
        return;
    };
    // SAFETY: a real handler, saved by `install`; the kernel's arguments
    // (caller).
    unsafe { call_previous(prev, sig, info, ctx) };
}

/// Signal context: async-signal-safe. Print the overflow line and abort.
fn report_overflow(usable_bytes: usize) -> ! {
    // Acquire: pairs with the Release in `set_current_name_fn`.
    let f = NAME_FN.load(Ordering::Acquire);
    let name: &[u8] = if f == 0 {
        &[]
    } else {
        // SAFETY: the only non-zero values stored are `fn() -> (*const u8,
        // usize)` pointers (set_current_name_fn); the callback is documented
        // async-signal-safe and returns bytes valid for this call.
        unsafe {
            let f: fn() -> (*const u8, usize) = std::mem::transmute(f);
            let (ptr, len) = f();
            if ptr.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(ptr, len)
            }
        }
    };
    let mut line = Line::new();
    let reserved = RESERVED_TOP.load(Ordering::Relaxed);
    write_overflow_line(&mut line, name, usable_bytes.saturating_sub(reserved));
    write_stderr(line.as_bytes());
    // SAFETY: abort is async-signal-safe and never returns.
    unsafe { libc::abort() }
}

/// Signal context: fixed-size line buffer; appends never allocate or panic
/// (excess is dropped).
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    /// Decimal, by hand (no `core::fmt` in signal context).
    fn push_usize(&mut self, mut v: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Signal context: build the one-line report (newline included).
fn write_overflow_line(line: &mut Line, name: &[u8], usable_bytes: usize) {
    line.push(b"coroutine '");
    if name.is_empty() {
        line.push(b"<unnamed>");
    } else if name.len() > MAX_NAME_BYTES {
        line.push(&name[..MAX_NAME_BYTES]);
        line.push(b"...");
    } else {
        line.push(name);
    }
    line.push(b"' has overflowed its stack (");
    line.push_usize(usable_bytes);
    line.push(
        b" B); raise it with coroutines::Builder::stack_size or COROUTINES_STACK_SIZE (e.g. 1M)\n",
    );
}

/// Signal context: write all of `bytes` to fd 2 (retrying short writes and
/// EINTR; other errors give up silently).
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable slice.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[(n as usize).min(bytes.len())..];
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Per-thread sigaltstack

/// The calling thread's sigaltstack state. `base` is our mapping (0 = none
/// mapped by us); `checked` makes `ensure_sigaltstack` a no-op after the
/// first call. Touched only by its own thread (thread_local).
struct AltStack {
    checked: Cell<bool>,
    base: Cell<usize>,
}

thread_local! {
    static ALT_STACK: AltStack = const { AltStack { checked: Cell::new(false), base: Cell::new(0) } };
}

impl Drop for AltStack {
    /// Thread exit: disable the altstack if it is still ours, then unmap it.
    fn drop(&mut self) {
        let base = self.base.get();
        if base == 0 {
            return;
        }
        // SAFETY: querying/disabling the calling thread's altstack; we are not
        // running on it (TLS destructors run on the thread's normal stack).
        unsafe {
            let mut cur: libc::stack_t = std::mem::zeroed();
            libc::sigaltstack(std::ptr::null(), &mut cur);
            if cur.ss_flags & libc::SS_ONSTACK != 0 {
                return; // cannot happen; leak rather than unmap a live stack
            }
            if cur.ss_sp as usize == base + PAGE_SIZE && cur.ss_flags & libc::SS_DISABLE == 0 {
                let disable = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&disable, std::ptr::null_mut());
            }
            mmap::unmap_guarded(base, SIGALTSTACK_BYTES);
        }
    }
}

/// Give the calling thread a 64 KiB sigaltstack (own mapping, guard page
/// below it) unless it already has one at least that large. Idempotent per
/// thread (only the first call makes syscalls). Executors call it at start;
/// the overflow handler and the SIGURG preemption handler run on it.
///
/// # Panics
/// If the mapping or `sigaltstack` fails (out of memory or mappings); the
/// message names the operation and sizes.
pub(crate) fn ensure_sigaltstack() {
    let _ = ALT_STACK.try_with(|alt| {
        if alt.checked.get() {
            return;
        }
        alt.checked.set(true);
        // SAFETY: querying the calling thread's altstack into a local.
        let cur = unsafe {
            let mut cur: libc::stack_t = std::mem::zeroed();
            libc::sigaltstack(std::ptr::null(), &mut cur);
            cur
        };
        let has_one = cur.ss_flags & libc::SS_DISABLE == 0;
        if (has_one && cur.ss_size >= SIGALTSTACK_BYTES) || cur.ss_flags & libc::SS_ONSTACK != 0 {
            return;
        }
        let base = match mmap::map_guarded(SIGALTSTACK_BYTES, "sigaltstack") {
            Ok(b) => b,
            Err(e) => panic!("coroutines: {e}"),
        };
        let new = libc::stack_t {
            ss_sp: (base + PAGE_SIZE) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: SIGALTSTACK_BYTES,
        };
        // SAFETY: [ss_sp, ss_sp + ss_size) is a live read/write mapping owned
        // by this thread's ALT_STACK until its destructor disables and
        // unmaps it. We are not on the old altstack (checked SS_ONSTACK).
        let r = unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: not installed, nothing refers to it.
            unsafe { mmap::unmap_guarded(base, SIGALTSTACK_BYTES) };
            panic!(
                "coroutines: sigaltstack ({SIGALTSTACK_BYTES} B at {:#x}): {e}",
                base + PAGE_SIZE
            );
        }
        alt.base.set(base);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    const CHILD_ENV: &str = "COROUTINES_STACK_TEST_CHILD";

    /// Run this test binary's test `name` (in this module) as a child with
    /// `CHILD_ENV=mode`; returns (signal that killed it, stderr).
    fn run_child(name: &str, mode: &str) -> (Option<i32>, String) {
        let module = module_path!().split_once("::").unwrap().1;
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{module}::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap();
        (
            out.status.signal(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn child_mode() -> Option<String> {
        std::env::var(CHILD_ENV).ok()
    }

    fn test_name() -> (*const u8, usize) {
        let s = "overflow-test";
        (s.as_ptr(), s.len())
    }

    #[test]
    fn guard_write_aborts_with_message() {
        if child_mode().as_deref() == Some("guard") {
            install_overflow_handler();
            ensure_sigaltstack();
            set_current_name_fn(test_name);
            let s = crate::stack::alloc(64 * 1024).unwrap();
            // SAFETY: deliberately writes into the guard page: must fault.
            unsafe { std::ptr::write_volatile((s.bottom() - 1) as *mut u8, 1) };
            unreachable!("guard page write did not fault");
        }
        let (sig, stderr) = run_child("guard_write_aborts_with_message", "guard");
        assert_eq!(sig, Some(libc::SIGABRT), "stderr: {stderr}");
        assert!(
            stderr.contains("has overflowed its stack"),
            "stderr: {stderr}"
        );
        assert!(
            stderr.contains(
                "coroutine 'overflow-test' has overflowed its stack (65536 B); raise it with \
                 coroutines::Builder::stack_size or COROUTINES_STACK_SIZE (e.g. 1M)\n"
            ),
            "stderr: {stderr}"
        );
    }

    /// Recurse forever on one of our stacks.
    #[inline(never)]
    extern "C" fn recurse_forever() {
        #[allow(unconditional_recursion)] // the point of the test
        fn go(depth: u64) -> u64 {
            let buf = std::hint::black_box([depth; 64]);
            go(depth + 1) + buf[3]
        }
        std::hint::black_box(go(0));
    }

    #[test]
    fn recursion_overflow_aborts_with_message() {
        if child_mode().as_deref() == Some("recurse") {
            install_overflow_handler();
            ensure_sigaltstack();
            let s = crate::stack::alloc(32 * 1024).unwrap();
            // SAFETY: switch RSP to the top of our stack (16-aligned; `call`
            // pushes the return address as the ABI expects), run a function
            // that overflows it; r12 (callee-saved) keeps the old RSP. It never
            // returns normally: the guard page fault aborts the process.
            unsafe {
                std::arch::asm!(
                    "mov r12, rsp",
                    "mov rsp, {top}",
                    "call {f}",
                    "mov rsp, r12",
                    top = in(reg) s.top(),
                    f = sym recurse_forever,
                    out("r12") _,
                    clobber_abi("C"),
                );
            }
            unreachable!("recursion did not overflow");
        }
        let (sig, stderr) = run_child("recursion_overflow_aborts_with_message", "recurse");
        assert_eq!(sig, Some(libc::SIGABRT), "stderr: {stderr}");
        assert!(
            stderr.contains("coroutine '<unnamed>' has overflowed its stack (32768 B)"),
            "stderr: {stderr}"
        );
    }

    #[test]
    fn non_guard_fault_is_chained() {
        if child_mode().as_deref() == Some("nonguard") {
            install_overflow_handler();
            ensure_sigaltstack();
            // SAFETY: a fresh PROT_NONE page that is not one of our guards.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    PAGE_SIZE,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                std::ptr::write_volatile(p as *mut u8, 1);
            }
            unreachable!("PROT_NONE write did not fault");
        }
        let (sig, stderr) = run_child("non_guard_fault_is_chained", "nonguard");
        assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {stderr}");
        assert!(!stderr.contains("overflowed"), "stderr: {stderr}");
    }

    #[test]
    fn sigaltstack_installed_once() {
        std::thread::spawn(|| {
            ensure_sigaltstack();
            let get = || {
                // SAFETY: query into a local.
                unsafe {
                    let mut cur: libc::stack_t = std::mem::zeroed();
                    libc::sigaltstack(std::ptr::null(), &mut cur);
                    cur
                }
            };
            let a = get();
            assert_eq!(a.ss_flags & libc::SS_DISABLE, 0);
            assert!(a.ss_size >= SIGALTSTACK_BYTES);
            ensure_sigaltstack();
            assert_eq!(get().ss_sp, a.ss_sp);
            assert!(super::super::mmap::tests::is_guarded(a.ss_sp as usize - 1));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn line_format() {
        let mut l = Line::new();
        write_overflow_line(&mut l, b"", 262144);
        assert_eq!(
            l.as_bytes(),
            &b"coroutine '<unnamed>' has overflowed its stack (262144 B); raise it with \
               coroutines::Builder::stack_size or COROUTINES_STACK_SIZE (e.g. 1M)\n"[..]
        );
        for v in [0usize, 7, 10, 1234567890, usize::MAX] {
            let mut l = Line::new();
            l.push_usize(v);
            assert_eq!(l.as_bytes(), v.to_string().as_bytes());
        }
        let long = [b'x'; 1000];
        let mut l = Line::new();
        write_overflow_line(&mut l, &long, 1);
        assert!(l.as_bytes().ends_with(b"\n"));
        assert!(l.len <= l.buf.len());
    }
}
