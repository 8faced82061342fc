//! Architecture layer: the x86-64 context switch.
//!
//! Owns the assembly in `asm/x86_64/` (included with `global_asm!`) and the
//! layout of a suspended frame. A suspended side (coroutine or scheduler) is
//! represented by one word: its saved stack pointer, which points at the
//! frame documented in `asm/x86_64/switch.S`. Fresh coroutines get such a
//! frame from [`init_stack`]; preempted ones get one from the preemption
//! handler whose return address is the full-restore routine, so the
//! scheduler resumes every coroutine the same way.
//!
//! Invariants:
//! - A saved stack pointer is resumed at most once, by exactly one thread.
//! - The frame layout is [`SwitchFrame`]; the assembly takes its offsets
//!   from it (`const` operands of `global_asm!`), so the two cannot drift.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

/// A suspended side's frame, as `coroutines_switch` leaves it at the saved
/// stack pointer (lowest address first; see `asm/x86_64/switch.S`): the
/// control bits, the callee-saved GPRs in the reverse order of their
/// pushes, and the return address the resumed side continues at.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SwitchFrame {
    /// MXCSR in the low 4 bytes, the x87 control word in bytes 4-5, 0 in
    /// bytes 6-7 (`push 0`: frames compare as whole words).
    pub(crate) ctrl: u64,
    pub(crate) r15: u64,
    pub(crate) r14: u64,
    pub(crate) r13: u64,
    pub(crate) r12: u64,
    pub(crate) rbx: u64,
    pub(crate) rbp: u64,
    /// Return address: into the caller of `coroutines_switch`, or
    /// `coroutines_entry` (fresh coroutine), or `coroutines_restore_full`
    /// (preempted coroutine).
    pub(crate) ret: u64,
}

/// Offsets the assembly uses (`FRAME_*` in switch.S are these values).
pub(crate) const FRAME_CTRL: usize = offset_of!(SwitchFrame, ctrl);
pub(crate) const FRAME_R15: usize = offset_of!(SwitchFrame, r15);
pub(crate) const FRAME_R14: usize = offset_of!(SwitchFrame, r14);
pub(crate) const FRAME_R13: usize = offset_of!(SwitchFrame, r13);
pub(crate) const FRAME_R12: usize = offset_of!(SwitchFrame, r12);
pub(crate) const FRAME_RBX: usize = offset_of!(SwitchFrame, rbx);
pub(crate) const FRAME_RBP: usize = offset_of!(SwitchFrame, rbp);
pub(crate) const FRAME_RET: usize = offset_of!(SwitchFrame, ret);
/// Size of a suspended frame including its return address.
pub(crate) const FRAME_SIZE: usize = size_of::<SwitchFrame>();

// The assembly pushes RBP, RBX, R12-R15, then the control slot: each one
// 8 bytes below the previous push, the return address on top. Its push
// order is fixed, so these offsets are too.
const _: () = assert!(FRAME_CTRL == 0 && FRAME_R15 == 8 && FRAME_R14 == 0x10);
const _: () = assert!(FRAME_R13 == 0x18 && FRAME_R12 == 0x20 && FRAME_RBX == 0x28);
const _: () = assert!(FRAME_RBP == 0x30 && FRAME_RET == 0x38 && FRAME_SIZE == 0x40);

global_asm!(
    include_str!("../../asm/x86_64/switch.S"),
    FRAME_CTRL = const FRAME_CTRL,
    FRAME_R15 = const FRAME_R15,
    FRAME_R14 = const FRAME_R14,
    FRAME_R13 = const FRAME_R13,
    FRAME_R12 = const FRAME_R12,
    FRAME_RBX = const FRAME_RBX,
    FRAME_RBP = const FRAME_RBP,
    FRAME_RET = const FRAME_RET,
);
global_asm!(include_str!("../../asm/x86_64/entry.S"));
global_asm!(include_str!("../../asm/x86_64/resume.S"));

/// Address of the first-run trampoline: the return address in the frame
/// of a coroutine that never ran (observe/unwind.rs tells those apart).
// Used by `coroutines::dump()` (issue #12), and by the tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn entry_addr() -> usize {
    coroutines_entry as *const () as usize
}

/// Signal context: address range of the first-run trampoline, `[start,
/// end)`: a return address there marks a coroutine stack's outermost frame
/// (the preemption handler's precise walk, preempt/walk.rs, ends there).
pub(crate) fn entry_code_range() -> (usize, usize) {
    (
        coroutines_entry as *const () as usize,
        coroutines_entry_end as *const () as usize,
    )
}

/// MXCSR with all exceptions masked, round-to-nearest (the ABI's initial
/// value) in the low half, x87 control word 0x037f (extended precision,
/// all exceptions masked) in bytes 4-5.
pub(crate) const INITIAL_CTRL: u64 = 0x1f80 | (0x037f << 32);

extern "C" {
    /// See `asm/x86_64/switch.S`.
    fn coroutines_switch(save_sp: *mut usize, new_sp: usize, arg: usize, new_fs: usize) -> usize;
    /// See `asm/x86_64/switch.S`: where the preemption handler lands.
    pub(crate) fn coroutines_preempt_land() -> !;
    fn coroutines_entry() -> !;
    fn coroutines_entry_end();
    fn coroutines_switch_end();
    /// See `asm/x86_64/resume.S`: full restore of a preempted context.
    pub(crate) fn coroutines_restore_full() -> !;
    fn coroutines_restore_full_end();
}

/// Entry function signature for a fresh coroutine: receives the argument
/// given to [`init_stack`] and the value passed to the first [`switch`].
pub(crate) type EntryFn = unsafe extern "C" fn(arg: usize, resume_arg: usize) -> !;

/// Suspends the current side, storing its stack pointer in `*save_sp`, and
/// resumes the side whose saved stack pointer is `new_sp`, handing it `arg`.
/// Returns the `arg` of whoever later resumes us.
///
/// # Safety
/// `new_sp` must be a suspended frame (from a previous switch, from
/// [`init_stack`] or from the preemption handler) that nobody else resumes,
/// on a stack that stays mapped while it runs. `save_sp` must stay valid
/// until the saved value is consumed. `new_fs` is 0 or the thread pointer
/// the resumed side runs with (a live TLS block of that side, or the
/// carrier's own), and FSGSBASE is usable (tls/block.rs discovery).
// Inlined: the call itself is the switch; an extra Rust frame would only
// cost a call/ret pair and confuse the return-address predictor.
#[inline(always)]
pub(crate) unsafe fn switch(
    save_sp: *mut usize,
    new_sp: usize,
    arg: usize,
    new_fs: usize,
) -> usize {
    // SAFETY: forwarded contract; the assembly saves and restores every
    // register the ABI makes callee-saved, so the call behaves like an
    // ordinary extern "C" call to the compiler. `new_fs` (when not 0) is
    // the resumed side's own thread pointer (caller's contract), loaded
    // before that side runs.
    unsafe { coroutines_switch(save_sp, new_sp, arg, new_fs) }
}

/// Builds the initial suspended frame of a fresh coroutine at the top of a
/// stack and returns its saved stack pointer. The first [`switch`] to it
/// calls `entry(arg, resume_arg)` on that stack.
///
/// # Safety
/// `top` must be the 16-byte aligned top of a writable stack with at least
/// [`FRAME_SIZE`] + 16 bytes below it.
pub(crate) unsafe fn init_stack(top: usize, entry: EntryFn, arg: usize) -> usize {
    debug_assert!(top % 16 == 0);
    // Two zero words of padding at the top (asm/x86_64/entry.S: RSP after
    // the frame's `ret` is top - 0x10, 16-aligned at entry's call), then
    // the frame whose return address is the entry trampoline.
    let sp = top - 0x10 - FRAME_SIZE;
    let frame = SwitchFrame {
        ctrl: INITIAL_CTRL,
        r12: arg as u64,
        r13: entry as usize as u64,
        ret: coroutines_entry as *const () as usize as u64,
        ..SwitchFrame::default()
    };
    // SAFETY: [sp, top) = [top - 0x50, top) lies inside the
    // caller-guaranteed writable region; `sp` is 16-aligned, enough for
    // the 8-aligned frame.
    unsafe {
        (sp as *mut SwitchFrame).write(frame);
        ((top - 0x10) as *mut [u64; 2]).write([0, 0]);
    }
    sp
}

/// Address range of the switch routine, `[start, end)`: a signal landing
/// there finds a half-switched stack and must not preempt.
pub(crate) fn switch_code_range() -> (usize, usize) {
    (
        coroutines_switch as *const () as usize,
        coroutines_switch_end as *const () as usize,
    )
}

/// Signal context: address range of the full-restore routine, `[start, end)`: a signal
/// landing there finds a half-restored context and must not preempt.
pub(crate) fn restore_code_range() -> (usize, usize) {
    (
        coroutines_restore_full as *const () as usize,
        coroutines_restore_full_end as *const () as usize,
    )
}

#[cfg(test)]
mod tests;
