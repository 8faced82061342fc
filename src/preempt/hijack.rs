//! Preemption at the return from foreign code: return-address hijacking.
//!
//! Problem: a preemption signal that lands in libc (or another shared
//! object, or C code linked into the executable, or std's printing code)
//! is declined — that code holds locks and per-thread state for the thread.
//! Code that spends nearly all its time there (a loop of large `memcpy`s:
//! 99 % inside libc) was only preempted when a retried signal happened to
//! land in the few Rust instructions between two calls: p99 lateness of a
//! sleeper beside such hogs was 27–112 ms.
//!
//! Design (like .NET's return-address hijacking for GC suspension): when
//! the handler declines for one of those reasons, it walks the frames from
//! the interrupted registers with the `.eh_frame` tables of the executable
//! and of the shared objects pinned at start (observe/unwind.rs
//! `init_pinned_tables`) to the innermost frame that returns into Rust code
//! of the executable outside every no-preempt zone, and confirms with the
//! precise walk (walk.rs) that every frame from there to the stack's
//! outermost one is clean (if not — a Rust callback called by C returns
//! into Rust code that C called — it goes on to the next return into
//! Rust, up to `MAX_CANDIDATES` times: `qsort`'s return for code inside
//! its comparator). Then it saves that frame's return address (and
//! the slot's address and the executor's switch count) in the coroutine's
//! own thread-local `HIJACK` and writes the address of
//! `coroutines_hijack_return` (asm/x86_64/hijack.S) into the slot. When the
//! foreign code returns, it lands in the trampoline, which keeps the return
//! registers, takes the real address back (`coroutines_hijack_take`) and
//! calls the safe point (`coroutines_hijack_yield` → sched's
//! `safe_point_yield`, the same one every hook's exit is), then returns
//! where the foreign code would have. No retry signals are needed while a
//! hijack is armed.
//!
//! Why it is safe: the return target is a call site in Rust code, where
//! the compiler expects any callee-saved state to survive and nothing else
//! (so a switch there is as safe as a hook's exit); the trampoline keeps
//! every register the caller may read (return values and, for safety, all
//! argument registers and XMM0–7); the slot is in the coroutine's own
//! stack and is written only by its executor's signal handler while the
//! coroutine is interrupted.
//!
//! Edges: `vfork`'s return is never hijacked (its child returns through
//! the same slot on the parent's stack first), nor that of `setjmp` and
//! `getcontext` (they save their return address for a second return);
//! after `fork` the child
//! returns through its copy of the trampoline and never yields there (the
//! safe point checks the thread id). An armed slot whose frame went away
//! without returning (longjmp)
//! is found stale at the next attempt (the slot no longer holds the
//! trampoline) and forgotten. Nothing is hijacked while the coroutine is
//! panicking or has a frame of libgcc's unwinder (`libgcc_s`) or of std's
//! panic, backtrace or unwinding code between the interrupted one and the
//! return (zones.rs `in_unwinding`): they read their callers' return
//! addresses, and a panic's start never returns (a hijack at a
//! `panic_fmt`'s return ended a panic with "failed to initiate panic").
//! An unwinder that meets the trampoline's
//! address as a return address stops there (its CFI marks the return
//! address undefined), so a panic unwinding out of a C-unwind callback
//! through a hijacked foreign frame aborts; walk.rs substitutes the saved
//! address. Needs per-coroutine thread-locals (the saved address must
//! follow the coroutine if it parks inside the foreign code and moves), and
//! is off under a CET shadow stack (a return to another address than the
//! call's faults) or with `COROUTINES_PREEMPT_RETURNS=0`.
//!
//! Signal context for `try_arm` and `saved_ra`: no allocation, no locks,
//! no panics; memory is read only inside the coroutine's live stack.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use gimli::UnwindContext;

use super::walk::{self, Small, Verdict};
use super::zones::Table;
use crate::observe::unwind::{self, Regs, StackMemory};

extern "C" {
    fn coroutines_hijack_return();
    fn coroutines_hijack_return_end();
}

core::arch::global_asm!(
    include_str!("../../asm/x86_64/hijack.S"),
    take = sym coroutines_hijack_take,
    yield_ = sym coroutines_hijack_yield,
);

thread_local! {
    /// While armed: the hijacked slot, the real return address and the
    /// executor's switch count at arming; zeros otherwise. Per coroutine
    /// (its own TLS block), read and written by its executor's signal
    /// handler and by the coroutine itself (the trampoline's helpers).
    static HIJACK: Cell<[usize; 3]> = const { Cell::new([0; 3]) };
    /// The switch count saved with the hijack that just landed, for the
    /// safe point (the trampoline's second helper).
    static LANDED: Cell<usize> = const { Cell::new(0) };
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// libc functions whose return is never hijacked: `vfork` (the child
/// returns through the same slot first, on the parent's stack) and the
/// ones that read their own return address to save it for a second return
/// (`setjmp`, `_setjmp`, `__sigsetjmp` — `sigsetjmp` —, `getcontext`): a
/// hijack before that read would make the later `longjmp`/`setcontext`
/// return to the trampoline with nothing saved.
const EXCLUDED_NAMES: [&std::ffi::CStr; 5] = [
    c"vfork",
    c"setjmp",
    c"_setjmp",
    c"__sigsetjmp",
    c"getcontext",
];
/// Their addresses (0: not found), resolved by `init`.
static EXCLUDED: [std::sync::atomic::AtomicUsize; 5] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 5];
/// Bytes from each excluded function's start treated as inside it
/// (glibc's are a few dozen bytes of assembly).
const EXCLUDED_SPAN: usize = 160;

/// Most frames walked to find the return into Rust code.
const MAX_FOREIGN_FRAMES: usize = 64;
/// Returns into Rust code passed over because foreign code lies further
/// out, before giving up.
const MAX_CANDIDATES: usize = 3;

/// Runtime start (after thread-locals are decided, before the monitor):
/// turns hijacking on if `wanted`, per-coroutine thread-locals are on and
/// no shadow stack is active; builds the pinned objects' tables.
pub(crate) fn init(wanted: bool) {
    if !wanted || !crate::tls::enabled() {
        return;
    }
    if shadow_stack_active() {
        crate::sys::write_stderr(
            b"coroutines: warning: a CET shadow stack is active: code inside libc or C code is \
              preempted by retried signals only, not at its return (set \
              COROUTINES_PREEMPT_RETURNS=0 to silence this)\n",
        );
        return;
    }
    unwind::init_exe_tables();
    unwind::init_pinned_tables();
    for (name, slot) in EXCLUDED_NAMES.iter().zip(EXCLUDED.iter()) {
        // SAFETY: a NUL-terminated name; RTLD_NEXT from the executable
        // finds libc's definition (not an interposed one in the executable).
        let v = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        slot.store(v, Ordering::Relaxed);
    }
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether the kernel enforces a user shadow stack for this thread
/// (`x86_Thread_features: shstk` in /proc/self/status).
fn shadow_stack_active() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("x86_Thread_features:") && l.contains("shstk"))
        })
        .unwrap_or(false)
}

/// The trampoline's address range `[start, end)` (never preempted there).
pub(crate) fn code_range() -> (usize, usize) {
    (
        coroutines_hijack_return as *const () as usize,
        coroutines_hijack_return_end as *const () as usize,
    )
}

/// Signal context (or the coroutine itself): if `ra` is the trampoline's
/// address, the real return address saved for it; else `ra`.
pub(crate) fn real_return_address(ra: u64) -> u64 {
    if ra == coroutines_hijack_return as *const () as u64 {
        let [_, saved, _] = HIJACK.get();
        if saved != 0 {
            return saved as u64;
        }
    }
    ra
}

/// Signal context: whether a hijack is armed for the interrupted
/// coroutine (without checking its slot: right after `try_arm`).
pub(crate) fn armed() -> bool {
    HIJACK.get()[1] != 0
}

/// Signal context: whether a hijack is armed and still pending for the
/// interrupted coroutine, whose live stack is `[lo, hi)`.
pub(crate) fn pending(lo: usize, hi: usize) -> bool {
    let [slot, ra, _] = HIJACK.get();
    if ra == 0 {
        return false;
    }
    let tramp = coroutines_hijack_return as *const () as usize;
    // SAFETY: read only inside the live stack, 8-aligned.
    if slot >= lo && slot + 8 <= hi && slot % 8 == 0 && unsafe { *(slot as *const usize) } == tramp
    {
        return true;
    }
    // The frame went away without returning through the slot: forget it.
    HIJACK.set([0; 3]);
    false
}

/// Signal context: the handler declined to preempt the coroutine whose
/// interrupted registers are `regs` and live stack `[rsp, hi)`, because
/// of foreign code or a zone on its stack. Arms a hijack at the innermost
/// return into preemptible Rust code if the rest of the stack is clean;
/// returns whether one is armed (now or from before) for this coroutine.
pub(crate) fn try_arm(table: &Table, regs: Regs, rsp: usize, hi: usize, switches: u64) -> bool {
    // Not while panicking: the unwinder reads its callers' return
    // addresses (a hijacked one would end the unwind: "failed to initiate
    // panic").
    if !ENABLED.load(Ordering::Relaxed) || !table.have_symtab || std::thread::panicking() {
        return false;
    }
    if pending(rsp, hi) {
        return true;
    }
    let mem = StackMemory {
        lo: rsp as u64,
        hi: hi as u64,
    };
    let tramp = coroutines_hijack_return as *const () as usize;
    let no_go = [
        crate::arch::switch_code_range(),
        crate::arch::restore_code_range(),
        crate::arch::entry_code_range(),
        code_range(),
    ];
    let mut candidates = 0;
    let mut ctx = UnwindContext::<usize, Small>::new_in();
    let mut r = regs;
    let mut first = true;
    for _ in 0..MAX_FOREIGN_FRAMES {
        let Some(pc) = unwind::lookup_pc(&r, first) else {
            return false;
        };
        let Some(obj) = unwind::tables_for(pc) else {
            return false;
        };
        // Not out of a panic or a backtrace being taken (libgcc's
        // unwinder, std's panic and backtrace code): they read their
        // callers' return addresses, and a panic's start never returns.
        if obj.is_unwinder() || table.in_unwinding(pc as usize) {
            return false;
        }
        let Some((next, slot)) = unwind::step_in_slot(obj, &mut ctx, &r, &mem, first) else {
            return false;
        };
        let Some(ra) = next.rip.map(|ra| ra as usize) else {
            return false;
        };
        if ra == tramp {
            return false; // a stale arming further out: leave it be
        }
        let call = ra.wrapping_sub(1);
        let preemptible = table.in_exe_text(call)
            && table.zone(call).is_none()
            && !no_go.iter().any(|&(a, b)| call >= a && call < b);
        if preemptible {
            let callee = r.rip.unwrap_or(0) as usize;
            if EXCLUDED.iter().any(|a| {
                let a = a.load(Ordering::Relaxed);
                a != 0 && callee >= a && callee < a + EXCLUDED_SPAN
            }) {
                return false;
            }
            let Some(slot) = slot.map(|s| s as usize) else {
                return false;
            };
            if slot < rsp || slot + 8 > hi || slot % 8 != 0 {
                return false;
            }
            // SAFETY: inside the live stack (just checked), 8-aligned.
            if unsafe { *(slot as *const usize) } != ra {
                return false;
            }
            match walk::frames_zone_from(table, next, rsp, hi, false) {
                Verdict::Clean => {}
                // Foreign code further out (a Rust callback called by C:
                // its Rust caller returns into C): try the next return out,
                // a few times at most (each check walks to the stack's top).
                Verdict::Zone(_) if candidates < MAX_CANDIDATES => {
                    candidates += 1;
                    r = next;
                    first = false;
                    continue;
                }
                _ => return false,
            }
            HIJACK.set([slot, ra, switches as usize]);
            // SAFETY: the slot holds `ra` (checked) in the interrupted
            // coroutine's own stack; nothing else writes it while the
            // coroutine is stopped in this handler.
            unsafe { *(slot as *mut usize) = tramp };
            return true;
        }
        r = next;
        first = false;
    }
    false
}

/// The trampoline's first helper: the real return address, forgotten.
extern "C" fn coroutines_hijack_take() -> usize {
    let [_, ra, switches] = HIJACK.replace([0; 3]);
    if ra == 0 {
        crate::sys::fatal("coroutines: a hijacked return without its saved address");
    }
    LANDED.set(switches);
    ra
}

/// The trampoline's second helper: the safe point, if the run the
/// preemption was asked for is still going (the coroutine may have parked
/// inside C code meanwhile and resumed anywhere).
extern "C" fn coroutines_hijack_yield() {
    crate::sched::hijack_safe_point(LANDED.get() as u64);
}
