// switch.S — voluntary coroutine <-> scheduler switch (callee-saved state only).
//
// Rust callers: src/arch/mod.rs (`switch`), used by the executor run loop to
// resume a coroutine and by a coroutine to give the CPU back (yield, park,
// exit). The preemption path (src/preempt) re-enters the second half,
// `coroutines_switch_restore`, from a rewritten signal context.
//
// extern "C" fn coroutines_switch(save_sp: *mut usize, new_sp: usize, arg: usize) -> usize
//
// On entry:  RDI = where to store the suspended side's stack pointer
//            RSI = stack pointer of the side to resume (a frame built by this
//                  routine, by arch::init_stack, or by the preemption handler)
//            RDX = value handed to the resumed side (it returns it in RAX)
// On exit (in the resumed side): RBX, RBP, R12-R15, RSP, MXCSR (control and
//            status bits), x87 control word restored; RAX = the RDX passed by
//            whoever resumed us.
//
// Saved deliberately: exactly what the SysV ABI makes callee-saved. The
// MXCSR rounding/exception-mask bits and the x87 control word are
// "callee-saved control bits" too, so a coroutine that changes its rounding
// mode does not leak it into the scheduler or into other coroutines.
// Not saved: caller-saved GPRs and vector registers (the compiler already
// spilled whatever it needs across this call), RFLAGS (DF is clear at every
// call by the ABI; arithmetic flags are dead across a call), the signal mask
// (per thread, not per coroutine) and the red zone (this is a real call, so
// there is no red zone of interest below RSP).
//
// Suspended frame, as left at *save_sp (8 words, grows down):
//
//      +0x38  return address (into the caller of coroutines_switch,
//             or coroutines_entry for a fresh coroutine, or
//             coroutines_restore_full for a preempted one)
//      +0x30  RBP
//      +0x28  RBX
//      +0x20  R12
//      +0x18  R13
//      +0x10  R14
//      +0x08  R15
//      +0x00  MXCSR (low 4 bytes) | x87 control word (bytes 4-5) | 0 (6-7)
//                                                              <- saved RSP
//
// The layout is mirrored in src/arch/mod.rs (FRAME_* constants, with
// compile-time checks) and in the preemption handler's fake frame.
//
// Backtraces: no CFI here. Nothing unwinds through this routine (panics are
// caught in the coroutine entry), and a debugger stopped inside it sees a
// stack that is half one side, half the other.

    .set FRAME_CTRL, 0x00
    .set FRAME_R15,  0x08
    .set FRAME_R14,  0x10
    .set FRAME_R13,  0x18
    .set FRAME_R12,  0x20
    .set FRAME_RBX,  0x28
    .set FRAME_RBP,  0x30
    .set FRAME_RET,  0x38

    .text
    .globl coroutines_switch
    .type coroutines_switch,@function
    .p2align 4
coroutines_switch:
    // Save the callee-saved GPRs of the side that is leaving.
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    // Save its control bits: MXCSR and the x87 control word.
    // `push 0` (not `sub rsp, 8`) so bytes 6-7 of the slot are zero:
    // frames are then comparable as whole words by the preemption code.
    push 0
    stmxcsr [rsp + FRAME_CTRL]
    fnstcw [rsp + FRAME_CTRL + 4]
    // Keep the leaving side's bits in scratch registers (ECX = MXCSR,
    // R8W = FCW; both caller-saved). Loads of the same size and address as
    // the stores just above forward from the store buffer; one 8-byte load
    // of the slot would not (a store-forwarding stall of ~15 cycles).
    mov ecx, [rsp + FRAME_CTRL]
    movzx r8d, word ptr [rsp + FRAME_CTRL + 4]
    // Publish our stack pointer, then adopt the other side's stack.
    mov [rdi], rsp
    mov rsp, rsi
    // Hand the argument over: the resumed side returns it.
    mov rax, rdx
    // Fast path: loading MXCSR/FCW is slow (partly serialising), and both
    // sides almost always hold the same (default) control bits; when the
    // resumed side saved the ones in force, skip the loads.
    cmp ecx, [rsp + FRAME_CTRL]
    jne 1f
    cmp r8w, [rsp + FRAME_CTRL + 4]
    je 2f
    // Second half: pop a suspended frame at RSP and return into it.
    // The preemption handler enters here directly (the slow path, control
    // bits loaded unconditionally), with RSP pointing at the scheduler's
    // suspended frame (RAX is then meaningless to the scheduler, which
    // never uses the value of the switch call it resumes from).
    .globl coroutines_switch_restore
coroutines_switch_restore:
1:
    ldmxcsr [rsp + FRAME_CTRL]
    fldcw [rsp + FRAME_CTRL + 4]
2:
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
    .globl coroutines_switch_end
coroutines_switch_end:
    .size coroutines_switch, coroutines_switch_end - coroutines_switch

    .section .note.GNU-stack,"",@progbits
