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
//! - The frame layout below matches `switch.S` (checked at compile time
//!   against the offsets the assembly uses, mirrored here).

use core::arch::global_asm;

global_asm!(include_str!("../../asm/x86_64/switch.S"));
global_asm!(include_str!("../../asm/x86_64/entry.S"));
global_asm!(include_str!("../../asm/x86_64/resume.S"));

/// Offsets inside a suspended frame (mirror of the `.set FRAME_*` lines in
/// `asm/x86_64/switch.S`).
pub(crate) const FRAME_CTRL: usize = 0x00;
pub(crate) const FRAME_R12: usize = 0x20;
pub(crate) const FRAME_R13: usize = 0x30 - 0x18;
pub(crate) const FRAME_RBP: usize = 0x30;
pub(crate) const FRAME_RET: usize = 0x38;
/// Size of a suspended frame including its return address.
pub(crate) const FRAME_SIZE: usize = 0x40;

const _: () = assert!(FRAME_R13 == 0x18);
const _: () = assert!(FRAME_RET + 8 == FRAME_SIZE);

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
/// carrier's own), and FSGSBASE is usable (sched/tls.rs discovery).
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
    let ret_slot = top - 0x18;
    let sp = ret_slot - FRAME_RET;
    let words: [(usize, u64); 9] = [
        (top - 0x08, 0),
        (top - 0x10, 0),
        (
            sp + FRAME_RET,
            coroutines_entry as *const () as usize as u64,
        ),
        (sp + FRAME_RBP, 0),
        (sp + 0x28, 0), // RBX
        (sp + FRAME_R12, arg as u64),
        (sp + FRAME_R13, entry as usize as u64),
        (sp + 0x10, 0), // R14
        (sp + 0x08, 0), // R15
    ];
    for (addr, value) in words {
        // SAFETY: every address lies in [top - 0x50, top), inside the
        // caller-guaranteed writable region.
        unsafe { (addr as *mut u64).write(value) };
    }
    // SAFETY: as above.
    unsafe { ((sp + FRAME_CTRL) as *mut u64).write(INITIAL_CTRL) };
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
