//! The SIGURG handler: recognise the runtime's own signal, check the safe
//! point, save the interrupted context onto the coroutine's stack and land
//! the executor in its scheduler. Everything else is chained to the handler
//! installed before ours. Protocol and safe-point list: `preempt/mod.rs`.
//!
//! Who may call: `install` from runtime start (once); `request` from the
//! monitor thread; the rest runs in signal context on an executor thread.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

use super::retry;
use super::ucontext::{self, SaveArea, RED_ZONE, SA_XSAVE, TARGET_SLOTS};
use super::zones;
use crate::arch;
use crate::sched::{current_executor_raw, Action, Executor, ExecutorShared};
use crate::sys::signal::{call_previous, SavedAction};

/// Why the handler declined to preempt (safe-point condition that failed).
/// Indexes `PreemptCounters::deferred`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Defer {
    /// 1: the executor was in its scheduler, not running a coroutine.
    NotCoroutine = 0,
    /// 2: runtime or hook code (no-preempt level > 0), or `no_preempt`.
    NoPreempt,
    /// 3: RSP outside the coroutine stack, or too little room below it.
    Stack,
    /// 4: RIP in the switch or full-restore assembly.
    SwitchCode,
    /// 5: RIP outside the executable's own text (libc, ld.so, vdso, ...).
    ForeignCode,
    /// 6: the coroutine is panicking.
    Panicking,
    /// 7: RIP or a word of the live stack in a no-preempt zone.
    Zone,
    /// 8: the handler runs on the coroutine stack (a handler installed over
    /// ours without SA_ONSTACK chained to us); the monitor fixes the flags.
    NotOnAltstack,
    /// 9: the kernel's FP/SIMD image is missing, malformed or too large.
    FpState,
    /// 7 (C part): RIP or a word of the live stack in a non-Rust function
    /// linked into the executable (C, C++, assembly) not on the allow-list.
    CCode,
}

pub(crate) const DEFER_KINDS: usize = 10;

/// Per-executor preemption counters. Written with Relaxed RMWs by the
/// executor's own signal handler and by the monitor; read by `stats()`.
/// Relaxed is enough: they are statistics, and the monitor's backoff only
/// needs to see *a* change, eventually.
#[derive(Default)]
pub(crate) struct PreemptCounters {
    /// SIGURGs the monitor sent to this executor.
    pub(crate) signals: AtomicU64,
    /// Of those, sent early because a freshly woken coroutine waited.
    pub(crate) wakeup_signals: AtomicU64,
    /// Times the monitor backed off after repeated deferrals.
    pub(crate) backoffs: AtomicU64,
    /// Due preemptions not sent: the thread was asleep in the kernel.
    pub(crate) in_kernel: AtomicU64,
    pub(crate) deferred: [AtomicU64; DEFER_KINDS],
    /// A preemption was due while the coroutine ran with a raised
    /// no-preempt level (hook or runtime code): set by the monitor (which
    /// then sends no signal) and by the handler when it declines for that
    /// reason; the coroutine yields when its level drops back to 0
    /// (`sched::level`'s `NoPreempt` drop: every hook's exit is a safe
    /// point). Cleared when the executor switches the coroutine out.
    pub(crate) yield_wanted: AtomicBool,
    /// The preemption asked for last only cuts the run short for work that
    /// never ran (or yielded, or waits on the spare executor): neither a
    /// whole slice while other coroutines waited nor a woken coroutine's
    /// early preemption. Set by the monitor before it signals or sets
    /// `yield_wanted`; read by the executor when the coroutine comes back
    /// preempted (only other preemptions give it malloc state of its own,
    /// sched/run.rs).
    pub(crate) for_new_work: AtomicBool,
    /// Yields made at such a safe point.
    pub(crate) safe_point_yields: AtomicU64,
    /// Zone words found by the conservative stack scan that the precise
    /// frame walk showed to be stale (walk.rs).
    pub(crate) scan_hits_cleared: AtomicU64,
    /// Retries the handler armed on its own timer after landing in libc
    /// (retry.rs).
    pub(crate) retries: AtomicU64,
    /// Returns from foreign code hijacked by the handler (hijack.rs).
    pub(crate) return_hijacks: AtomicU64,
    /// Hijacked returns that reached the safe point in the run they were
    /// armed in (the coroutine may still not yield there: safe_point_yield
    /// checks the stack).
    pub(crate) return_landings: AtomicU64,
}

impl PreemptCounters {
    /// Signal context: count one deferral.
    #[inline]
    fn defer(&self, why: Defer) {
        self.deferred[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn deferred_total(&self) -> u64 {
        self.deferred
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum()
    }
}

/// Room kept free below the fake switch frame: the switch itself pushes
/// nothing there, but a future resume calls into Rust on this stack.
const STACK_MARGIN: usize = 1024;

/// The action that was installed for SIGURG before ours (sys/signal.rs).
static PREV: SavedAction = SavedAction::new();
static INSTALL: Once = Once::new();
/// Our pid, to recognise our own tgkill (si_pid). Set at install.
static OUR_PID: AtomicI32 = AtomicI32::new(0);

/// Installs the SIGURG handler (once per process).
///
/// # Panics
/// If `sigaction` fails (it cannot for SIGURG with valid arguments).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: getpid cannot fail.
        OUR_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
        // SA_ONSTACK: the kernel's frame (~3 KiB with AVX-512) must not
        // land on a coroutine stack; SA_RESTART: fewer EINTRs.
        // SAFETY: once (call_once); `handle_sigurg` is an SA_SIGINFO handler.
        let r = unsafe {
            PREV.install(
                libc::SIGURG,
                handle_sigurg as *const () as usize,
                libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART,
                &[],
            )
        };
        assert_eq!(r, 0, "coroutines: sigaction(SIGURG) for preemption failed");
    });
}

/// Monitor: if a handler installed after ours (signal-hook, ...) lacks
/// SA_ONSTACK, add the flag, so that our handler, which it chains to, runs
/// on the executor's sigaltstack. Harmless for that handler: threads without
/// an altstack ignore the flag, and on one it only changes which stack the
/// handler uses. Returns whether it changed anything.
pub(crate) fn ensure_onstack() -> bool {
    // SAFETY: querying then re-setting SIGURG's action with one flag added;
    // the handler pointer, mask and other flags are kept as they were.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGURG, std::ptr::null(), &mut cur) != 0 {
            return false;
        }
        let h = cur.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN || cur.sa_flags & libc::SA_ONSTACK != 0 {
            return false;
        }
        cur.sa_flags |= libc::SA_ONSTACK;
        libc::sigaction(libc::SIGURG, &cur, std::ptr::null_mut()) == 0
    }
}

/// Monitor: asks executor `e` to preempt its coroutine. Returns false if a
/// request is already pending (not yet seen by the handler).
pub(crate) fn request(e: &ExecutorShared) -> bool {
    // AcqRel/Acquire pair with the handler's swap: the handler consumes
    // exactly one request per signal it recognises.
    if e.preempt_pending
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    e.preempt.signals.fetch_add(1, Ordering::Relaxed);
    let tid = e.tid.load(Ordering::Relaxed);
    // SAFETY: tgkill is a plain system call on integers; no memory is
    // involved. The tid is an executor's, read from its slot. A surplus
    // executor may retire and its thread end between that read and the
    // call (sched/thread.rs), and the kernel may give the tid to a new
    // thread of this process: that thread then gets one SIGURG with our
    // signature, which the handler below passes on (not an executor, or no
    // request pending for it) like any stray SIGURG; the request flag is
    // cleared by the next one. The first `workers` executors never exit.
    let r = unsafe {
        crate::sys::syscall6(
            libc::SYS_tgkill as usize,
            OUR_PID.load(Ordering::Relaxed) as usize,
            tid as usize,
            libc::SIGURG as usize,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        e.preempt_pending.store(false, Ordering::Relaxed);
    }
    r == 0
}

/// Signal context: the SIGURG handler.
extern "C" fn handle_sigurg(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // the _kill member (si_pid) is meaningful for SI_TKILL, the _timer
    // member's sigval (same offset as _rt's) for SI_TIMER.
    let (tkill, retry) = unsafe {
        let code = (*info).si_code;
        (
            code == libc::SI_TKILL && (*info).si_pid() == OUR_PID.load(Ordering::Relaxed),
            code == libc::SI_TIMER && (*info).si_value().sival_ptr as usize == retry::COOKIE,
        )
    };
    if tkill || retry {
        let exec = current_executor_raw();
        // SAFETY: non-null means this thread's Executor; a retiring
        // executor clears the pointer before freeing it (sched/thread.rs),
        // and this handler interrupts that same thread, so the Executor
        // outlives the handler.
        if let Some(exec) = unsafe { exec.as_ref() } {
            // Acquire: pairs with the monitor's CAS (see `request`).
            if exec.shared.preempt_pending.swap(false, Ordering::Acquire) {
                let switches = exec.shared.switches.load(Ordering::Relaxed);
                if retry && !exec.retry.current(switches) {
                    // Armed for a run that has ended since: drop it.
                    return;
                }
                // SAFETY: ctx is the ucontext of this very signal.
                if let Err(why) = unsafe { preempt_here(exec, ctx) } {
                    exec.shared.preempt.defer(why);
                    // In libc: try again shortly, by our own timer
                    // (retry.rs). Pending again first, so the monitor
                    // sends nothing meanwhile.
                    // (Not while a hijacked return is pending: the
                    // coroutine yields when the foreign code returns.)
                    if why == Defer::ForeignCode && !super::hijack::armed() {
                        exec.shared.preempt_pending.store(true, Ordering::Relaxed);
                        if exec.retry.arm(switches) {
                            exec.shared.preempt.retries.fetch_add(1, Ordering::Relaxed);
                        } else {
                            exec.shared.preempt_pending.store(false, Ordering::Relaxed);
                        }
                    }
                    if why == Defer::NoPreempt {
                        // In hook or runtime code: yield on the way out.
                        exec.shared
                            .preempt
                            .yield_wanted
                            .store(true, Ordering::Relaxed);
                    }
                }
                return;
            }
        }
    }
    // SAFETY: forwarding the kernel's own arguments.
    unsafe { chain(sig, info, ctx) };
}

/// Signal context: hands a SIGURG that is not ours to the previous action.
///
/// # Safety
/// Arguments must be the ones the kernel passed to `handle_sigurg`.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(prev) = PREV.previous() else {
        return;
    };
    // SIGURG's default action is to ignore it: SIG_DFL and SIG_IGN agree.
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        return;
    }
    // SAFETY: a real handler, saved by `install`; the kernel's arguments
    // (caller).
    unsafe { call_previous(prev, sig, info, ctx) };
}

/// Signal context: `addr` in `[r.0, r.1)`.
fn in_range(addr: usize, r: (usize, usize)) -> bool {
    addr >= r.0 && addr < r.1
}

/// Signal context: checks the safe-point conditions (numbered as in
/// `preempt/mod.rs`) and, if they hold, preempts: saves the context onto the
/// coroutine stack, writes the fake switch frame, and redirects the
/// ucontext into the scheduler. No allocation, no locks, no panics.
///
/// # Safety
/// `ctx` is the ucontext of the SIGURG being handled on `exec`'s thread.
unsafe fn preempt_here(exec: &Executor, ctx: *mut libc::c_void) -> Result<(), Defer> {
    let shared = exec.shared;
    // 1. Running a coroutine. Relaxed: written by this same thread.
    let co = shared.current.load(Ordering::Relaxed);
    if co.is_null() {
        return Err(Defer::NotCoroutine);
    }
    // 2. Not in runtime/hook code, not in `no_preempt`: the interrupted
    //    side's own level (a thread-local read through its thread pointer:
    //    per coroutine with per-coroutine thread-locals, see sched/level.rs
    //    `LEVEL`).
    if crate::sched::preempt_level() != 0 {
        return Err(Defer::NoPreempt);
    }
    // SAFETY: `current` is non-null only while run_coroutine holds the
    // coroutine.
    let co = unsafe { &*co };
    // SAFETY: caller contract.
    let mut regs = unsafe { ucontext::regs(ctx) };
    let (rip, rsp) = (regs.rip(), regs.rsp());
    let (lo, hi) = (
        co.stack_lo.load(Ordering::Relaxed),
        co.stack_hi.load(Ordering::Relaxed),
    );
    // 3. On the coroutine's stack (not the scheduler's: run_coroutine publishes
    //    `current` a few instructions before the switch).
    if rsp <= lo || rsp > hi {
        return Err(Defer::Stack);
    }
    let here: usize;
    // SAFETY: reads RSP into a register; no memory access.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) here, options(nomem, nostack, preserves_flags))
    };
    if here >= lo && here < hi {
        return Err(Defer::NotOnAltstack);
    }
    // 4. Not mid-switch or mid-restore (or in the hijack trampoline).
    if in_range(rip, arch::switch_code_range())
        || in_range(rip, arch::restore_code_range())
        || in_range(rip, super::hijack::code_range())
    {
        return Err(Defer::SwitchCode);
    }
    // 5. In the executable's own text. The monitor builds the table before
    //    it sends its first signal, so None cannot happen; treat it as
    //    foreign code anyway.
    let Some(table) = zones::table() else {
        return Err(Defer::ForeignCode);
    };
    // A return out of foreign code is hijacked when possible (hijack.rs);
    // the deferral stands either way.
    let switches = shared.switches.load(Ordering::Relaxed);
    let hijack = |table: &zones::Table, regs: &ucontext::Regs| {
        if super::hijack::try_arm(table, regs.unwind_regs(), rsp, hi, switches) {
            shared
                .preempt
                .return_hijacks
                .fetch_add(1, Ordering::Relaxed);
        }
    };
    if !table.in_exe_text(rip) {
        hijack(table, &regs);
        return Err(Defer::ForeignCode);
    }
    // 6. Not panicking: a sibling panicking on this thread mid-unwind of
    //    this one would abort the process (std counts panics per thread).
    if std::thread::panicking() {
        return Err(Defer::Panicking);
    }
    // SAFETY: caller contract.
    let Some(fp) = (unsafe { ucontext::fp_image(ctx) }) else {
        return Err(Defer::FpState);
    };
    // 3 (room). Layout: resume.S header.
    let xs = (rsp - RED_ZONE - TARGET_SLOTS - fp.len) & !63;
    let sa = xs - SA_XSAVE;
    let frame = sa - arch::FRAME_SIZE;
    if frame < lo + STACK_MARGIN {
        return Err(Defer::Stack);
    }
    // 7. No frame inside a no-preempt zone: std's printing/panic code and
    //    other objects' text (Zone), or C code linked into the executable
    //    (CCode; a Rust callback called by C has C's frame below it).
    //    The stack scan is confirmed by a precise walk of the frames
    //    (walk.rs): stale words in live frames are common.
    let zone = table.zone(rip).or_else(|| {
        super::walk::stack_zone(
            table,
            regs.unwind_regs(),
            rsp,
            hi,
            &shared.preempt.scan_hits_cleared,
        )
    });
    match zone {
        Some(zones::ZoneKind::Std) => {
            hijack(table, &regs);
            return Err(Defer::Zone);
        }
        Some(zones::ZoneKind::C) => {
            hijack(table, &regs);
            return Err(Defer::CCode);
        }
        None => {}
    }

    // Commit. Everything below writes dead stack of the coroutine (below
    // its red zone) and this executor's own state.
    // SAFETY: [frame, rsp - RED_ZONE - TARGET_SLOTS) lies inside the
    // coroutine's mapped stack (checked above), below everything live, and
    // `sa`/`xs` are 64-byte aligned.
    unsafe {
        let area = &mut *(sa as *mut SaveArea);
        regs.save_into(area);
        area.xmask = fp.mask;
        std::ptr::copy_nonoverlapping(fp.ptr, xs as *mut u8, fp.len);
        (frame as *mut arch::SwitchFrame).write(arch::SwitchFrame {
            ctrl: fp.ctrl_word(),
            ret: arch::coroutines_restore_full as *const () as usize as u64,
            ..arch::SwitchFrame::default()
        });
        // The coroutine's saved stack pointer: only this executor (the
        // owner of the right to run it) reads it, after we return.
        *co.sp.get() = frame;
    }
    exec.action.set(Action::Preempted);
    fp.reset_for_scheduler();
    // SAFETY: sched_sp holds the scheduler's suspended frame while a
    // coroutine runs; it is resumed exactly once, by our return.
    let sched_sp = unsafe { *exec.sched_sp.get() };
    // Land through coroutines_preempt_land, which loads the carrier's
    // thread pointer (RDI; 0 = unchanged) before the scheduler runs.
    regs.redirect(
        arch::coroutines_preempt_land as *const () as usize,
        sched_sp,
        exec.sched_fs(),
    );
    Ok(())
}
