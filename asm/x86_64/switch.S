// switch.S — voluntary coroutine <-> scheduler switch (callee-saved state only).
//
// Rust callers: src/arch/mod.rs (`switch`), used by the executor run loop to
// resume a coroutine and by a coroutine to give the CPU back (yield, park,
// exit). The preemption path (src/preempt) re-enters the second half,
// `coroutines_switch_restore`, from a rewritten signal context.
//
// extern "C" fn coroutines_switch(save_sp: *mut usize, new_sp: usize, arg: usize,
//                                  new_fs: usize) -> usize
//
// On entry:  RDI = where to store the suspended side's stack pointer
//            RSI = stack pointer of the side to resume (a frame built by this
//                  routine, by arch::init_stack, or by the preemption handler)
//            RDX = value handed to the resumed side (it returns it in RAX)
//            RCX = thread pointer (FS base) of the side to resume, or 0 to
//                  keep the current one (thread-locals shared per executor)
// On exit (in the resumed side): RBX, RBP, R12-R15, RSP, MXCSR (control and
//            status bits), x87 control word restored; FS base = RCX if it
//            was not 0; RAX = the RDX passed by whoever resumed us.
//
// Thread pointer: with per-coroutine thread-locals (src/sched/tls.rs) each
// side has its own. It is loaded here, after the stack is switched and
// before the resumed side runs any instruction of its own, so Rust code
// never runs with another side's thread pointer (the compiler may keep
// thread-local addresses across the call). `wrfsbase` needs FSGSBASE,
// checked at start before any caller passes a non-zero RCX. The
// preemption handler lands in the scheduler through
// coroutines_preempt_land (end of this file), which loads the carrier's.
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
// The layout is defined once, as `arch::SwitchFrame` in src/arch/mod.rs;
// the FRAME_* offsets below are its field offsets (const operands), and
// the preemption handler builds its frame through the same type.
//
// Backtraces: no CFI here. Nothing unwinds through this routine (panics are
// caught in the coroutine entry), and a debugger stopped inside it sees a
// stack that is half one side, half the other.

    // Offsets of `arch::SwitchFrame` (src/arch/mod.rs), substituted by
    // global_asm!'s const operands: the Rust type is the one definition.
    .set FRAME_CTRL, {FRAME_CTRL}
    .set FRAME_R15,  {FRAME_R15}
    .set FRAME_R14,  {FRAME_R14}
    .set FRAME_R13,  {FRAME_R13}
    .set FRAME_R12,  {FRAME_R12}
    .set FRAME_RBX,  {FRAME_RBX}
    .set FRAME_RBP,  {FRAME_RBP}
    .set FRAME_RET,  {FRAME_RET}

    .text
    .globl coroutines_switch
    .type coroutines_switch,@function
    .p2align 4
coroutines_switch:
    // RCX is needed as scratch below: keep the new thread pointer in R9
    // (caller-saved, not an argument of this routine).
    mov r9, rcx
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
    // The resumed side's thread pointer, if it has its own.
    test r9, r9
    jz 3f
    wrfsbase r9
3:
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

    // Preemption landing (src/preempt/signal.rs): the handler rewrites the
    // interrupted context to resume here, on the scheduler's stack (RSP =
    // its suspended frame) with RDI = the carrier's thread pointer, or 0
    // when thread-locals are shared. sigreturn does not restore the FS
    // base, so the coroutine's is still loaded: put the carrier's back
    // before the scheduler runs. Inside [coroutines_switch,
    // coroutines_switch_end): the handler never preempts here.
    .globl coroutines_preempt_land
coroutines_preempt_land:
    test rdi, rdi
    jz coroutines_switch_restore
    wrfsbase rdi
    jmp coroutines_switch_restore
    .globl coroutines_switch_end
coroutines_switch_end:
    .size coroutines_switch, coroutines_switch_end - coroutines_switch

    .section .note.GNU-stack,"",@progbits
