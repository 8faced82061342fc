// entry.S — first-resume trampoline for a fresh coroutine stack.
//
// Rust callers: none directly. src/arch/mod.rs (`init_stack`) builds a
// suspended switch frame whose return address is coroutines_entry, so the
// first coroutines_switch into a fresh coroutine "returns" here.
//
// On entry (set up by init_stack through the switch frame):
//            R12 = argument for the entry function (the coroutine pointer)
//            R13 = entry function, extern "C" fn(arg, executor) -> !
//            RAX = the RDX given to coroutines_switch (the executor pointer)
//            RBP = 0 (frame-pointer walkers stop here)
//            RSP = stack top - 16, 16-byte aligned
// On exit:   never returns: the entry function ends by switching away for
//            the last time, and the stack is then recycled.
//
// Fresh stack, as built by init_stack:
//
//      top                 <- stack base (highest address, 16-aligned)
//      top - 0x08  0       (padding, keeps the call below 16-aligned)
//      top - 0x10  0       <- RSP after the frame's `ret`
//      top - 0x18  coroutines_entry           (FRAME_RET)
//      top - 0x20  RBP = 0
//      top - 0x28  RBX = 0
//      top - 0x30  R12 = arg
//      top - 0x38  R13 = entry fn
//      top - 0x40  R14 = 0
//      top - 0x48  R15 = 0
//      top - 0x50  MXCSR 0x1f80 | FCW 0x037f  <- saved RSP
//      ...
//      bottom      (lowest usable byte)
//      guard page  (PROT_NONE / MADV_GUARD_INSTALL)
//
// CFI: `.cfi_undefined rip` marks this as the outermost frame, so unwinders
// (panics, std::backtrace, gdb, perf) stop cleanly here instead of walking
// into garbage above the stack top.

    .text
    .globl coroutines_entry
    .type coroutines_entry,@function
    .p2align 4
coroutines_entry:
    .cfi_startproc
    .cfi_undefined rip
    mov rdi, r12
    mov rsi, rax
    // RSP is 16-aligned here, as the ABI wants at a call.
    call r13
    // The entry function never returns.
    ud2
    // End label: the preemption handler's precise stack walk
    // (src/preempt/walk.rs) ends cleanly at a return address in
    // [coroutines_entry, coroutines_entry_end): the stack's outermost frame.
    .globl coroutines_entry_end
coroutines_entry_end:
    .cfi_endproc
    .size coroutines_entry, . - coroutines_entry

    .section .note.GNU-stack,"",@progbits
