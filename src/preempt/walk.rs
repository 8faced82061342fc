//! Precise walk of a coroutine's frames, to confirm what the conservative
//! stack scan of safe-point condition 7 found.
//!
//! The scan (zones.rs `stack_zone`) reads every word from RSP to the stack
//! top and reports a no-preempt zone if any word points into one. Words of
//! live frames that were never written since an earlier, deeper call
//! (uninitialised slots, padding, `MaybeUninit` buffers such as
//! `io::copy`'s) still hold old return addresses — into `malloc` or
//! `free` above all: measured, every zone deferral of four allocation-bound
//! serde_json coroutines was such a stale libc address, and each cost a
//! backoff of ticks. So when the scan finds something, this walk decides:
//! it unwinds from the interrupted registers with the executable's
//! `.eh_frame` (observe/unwind.rs, the executable's tables only: the main
//! program is never unloaded, so the tables stay valid without the loader
//! lock) and looks at each real frame's pc.
//!
//! Verdicts: `Clean` only if the walk reached the stack's outermost frame
//! (a return address in `coroutines_entry`) through executable frames none
//! of which is in a zone; `Zone(kind)` at the first frame in a zone, or in
//! another object's text (a callback from libc or a shared library); and
//! `Unknown` whenever a step fails (no FDE, a DWARF expression, a slot
//! outside the stack, a JIT frame, too many frames) — the caller then keeps
//! the conservative answer. A wrong walk cannot end in `Clean` by accident:
//! it would have to land exactly on the trampoline's return address.
//!
//! Signal context: no allocation (gimli's evaluation state lives in line,
//! on the handler's stack: [`Small`]), no locks, no panics; memory is read
//! only inside the coroutine's live stack.

use gimli::{Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindTableRow};

use super::zones::{Table, ZoneKind};
use crate::observe::unwind::{self, Regs, StackMemory};

/// Most frames walked; deeper stacks keep the conservative answer.
const MAX_FRAMES: usize = 256;

/// gimli's evaluation state in line: up to 24 register rules per row (the
/// x86-64 CFI of Rust, C and glibc code names at most the 17 general
/// registers and the return address) and 2 remembered rows
/// (`DW_CFA_remember_state` nesting). A row that needs more makes the
/// step fail (`Unknown`). About 2 KiB.
pub(crate) struct Small;

impl UnwindContextStorage<usize> for Small {
    type Rules = [(Register, RegisterRule<usize>); 24];
    type Stack = [UnwindTableRow<usize, Self>; 2];
}

/// What the precise walk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every frame is Rust code of the executable outside the zones.
    Clean,
    /// A frame lies in a zone of this kind.
    Zone(ZoneKind),
    /// The walk could not finish: keep the conservative answer.
    Unknown,
}

/// Signal context: walks the frames of the coroutine whose interrupted
/// registers are `regs` and whose live stack is `[lo, hi)` (RSP to its
/// top), classifying each frame's pc with `table`.
///
/// `[lo, hi)` must be mapped and not change during the call (the running
/// coroutine's own stack, read from its executor's signal handler).
pub(crate) fn frames_zone(table: &Table, regs: Regs, lo: usize, hi: usize) -> Verdict {
    frames_zone_from(table, regs, lo, hi, true)
}

/// [`frames_zone`] from `regs` whose `rip` is an interrupted pc (`first`)
/// or a return address (not first: its frame is looked up at `rip - 1`).
/// A return address that is the hijack trampoline's stands for the real
/// one saved with it (hijack.rs).
pub(crate) fn frames_zone_from(
    table: &Table,
    regs: Regs,
    lo: usize,
    hi: usize,
    first_is_interrupted: bool,
) -> Verdict {
    let Some(exe) = unwind::exe_tables() else {
        return Verdict::Unknown;
    };
    let (entry_lo, entry_hi) = crate::arch::entry_code_range();
    let mem = StackMemory {
        lo: lo as u64,
        hi: hi as u64,
    };
    let mut ctx = UnwindContext::<usize, Small>::new_in();
    let mut regs = regs;
    for i in 0..MAX_FRAMES {
        let first = i == 0 && first_is_interrupted;
        if !first {
            regs.rip = regs.rip.map(super::hijack::real_return_address);
        }
        let Some(pc) = unwind::lookup_pc(&regs, first) else {
            return Verdict::Unknown;
        };
        let pc = pc as usize;
        if !first && pc >= entry_lo && pc < entry_hi {
            return Verdict::Clean;
        }
        if let Some(k) = table.zone(pc) {
            return Verdict::Zone(k);
        }
        if !table.in_exe_text(pc) {
            return Verdict::Unknown;
        }
        match unwind::step_in(exe, &mut ctx, &regs, &mem, first) {
            Some(next) => regs = next,
            None => return Verdict::Unknown,
        }
    }
    Verdict::Unknown
}

/// Signal context (or the running coroutine itself): condition 7 for the
/// stack `[lo, hi)` of a coroutine whose registers are `regs`: the
/// conservative scan, and when it finds a zone word, the precise walk to
/// confirm it. `cleared` is bumped when the walk shows the word was stale.
pub(crate) fn stack_zone(
    table: &Table,
    regs: Regs,
    lo: usize,
    hi: usize,
    cleared: &std::sync::atomic::AtomicU64,
) -> Option<ZoneKind> {
    let found = table.stack_zone(lo, hi)?;
    match frames_zone(table, regs, lo, hi) {
        Verdict::Clean => {
            cleared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
        Verdict::Zone(k) => Some(k),
        Verdict::Unknown => Some(found),
    }
}

/// The calling function's RIP, RSP and RBP (the other callee-saved
/// registers unknown: a walk step that needs one fails, `Unknown`), for a
/// walk from the caller's own frame. Inlined so the registers are the
/// caller's.
#[inline(always)]
pub(crate) fn here() -> Regs {
    let (rip, rsp, rbp): (u64, u64, u64);
    // SAFETY: only reads registers and a RIP-relative address; explicit
    // output registers, so no read sees an output already written.
    unsafe {
        std::arch::asm!(
            "lea rax, [rip]",
            "mov rcx, rsp",
            "mov rdx, rbp",
            out("rax") rip,
            out("rcx") rsp,
            out("rdx") rbp,
            options(nomem, nostack, preserves_flags),
        );
    }
    Regs {
        rip: Some(rip),
        rsp: Some(rsp),
        rbp: Some(rbp),
        ..Regs::default()
    }
}
