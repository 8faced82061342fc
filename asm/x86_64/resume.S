// resume.S — resume a *preempted* coroutine: all GPRs, RFLAGS, FP/SIMD state.
//
// Rust callers: none directly. The SIGURG handler (src/preempt/signal.rs,
// `preempt_here`) saves the interrupted context into a save area on the
// coroutine's own stack and writes a suspended switch frame (switch.S layout)
// below it whose return address is coroutines_restore_full. The executor
// later resumes the coroutine with the ordinary `arch::switch`; its second
// half pops that frame and "returns" here.
//
// On entry:  RSP = save area (64-byte aligned), laid out as the SA_* offsets
//                  below (mirrored in src/preempt/ucontext.rs with
//                  compile-time checks)
//            every other register: meaningless (what the fake switch frame
//                  held, and RAX = the executor pointer from the switch)
// On exit:   (at the interrupted instruction) RAX..R15, RSP, RIP, RFLAGS and
//            the x87/SSE/AVX/AVX-512 state (MXCSR and x87 control word
//            included) exactly as the kernel reported them in the signal's
//            ucontext.
//
// Not restored, deliberately: the signal mask (per thread, sigreturn
// restored it when the handler returned into the scheduler), the FS base
// (loaded by coroutines_switch, which resumed us: the coroutine's own TLS
// block, or unchanged with shared thread-locals), the GS base (unused),
// and the red zone — it is never written.
//
// Coroutine stack while preempted (grows down):
//
//      stack_hi                          <- stack base
//      ...   live frames of the coroutine
//      RSP0                              <- interrupted RSP
//      RSP0 - 0x80 .. RSP0               red zone: untouched, still holds the
//                                        interrupted function's data
//      RSP0 - 0x88  (RIP slot)           written by this routine, not by the
//      RSP0 - 0x90  (RFLAGS slot)        handler (the handler may run on this
//                                        stack when a foreign handler without
//                                        SA_ONSTACK chains to ours)
//      ...          padding to 64 bytes
//      XS           xsave image (kernel's, copied; 64-aligned), XS = SA + 0xC0
//      SA           save area header: GPRs, RIP, RFLAGS, RSP0, mask
//      SA - 0x40    suspended switch frame: MXCSR|FCW, R15..RBP (unused
//                   values), return address = coroutines_restore_full
//                                        <- Inner.sp (saved RSP)
//      ...
//      stack_lo
//      guard page
//
// Final sequence: RSP := RSP0 - 0x90; popfq (RFLAGS); ret 128 pops RIP and
// adds 128, leaving RSP = RSP0 with the red zone intact.
//
// A signal arriving while this routine runs finds RIP inside
// [coroutines_restore_full, coroutines_restore_full_end): the preemption
// handler refuses to preempt there (safe-point condition 4). Other handlers
// are fine: every write below RSP here is to dead memory.
//
// Backtraces: no CFI; nothing unwinds through this routine, and a debugger
// stopped inside it sees a stack that is half restored.

    .set SA_RAX,    0x00
    .set SA_RBX,    0x08
    .set SA_RCX,    0x10
    .set SA_RDX,    0x18
    .set SA_RSI,    0x20
    .set SA_RDI,    0x28
    .set SA_RBP,    0x30
    .set SA_R8,     0x38
    .set SA_R9,     0x40
    .set SA_R10,    0x48
    .set SA_R11,    0x50
    .set SA_R12,    0x58
    .set SA_R13,    0x60
    .set SA_R14,    0x68
    .set SA_R15,    0x70
    .set SA_RIP,    0x78
    .set SA_RFLAGS, 0x80
    .set SA_RSP,    0x88
    .set SA_XMASK,  0x90     // XCR0 subset used by the kernel's xsave; 0 = fxsave image
    .set SA_TARGET, 0x98     // RSP0 - 0x90, computed here
    .set SA_XSAVE,  0xC0     // 64-aligned image (xsave or fxsave format)
    .set RED_ZONE,  0x80

    .text
    .globl coroutines_restore_full
    .type coroutines_restore_full,@function
    .p2align 4
coroutines_restore_full:
    // Place RFLAGS and RIP just below the red zone of the interrupted RSP:
    // that is where the final popfq/ret read them. Done here rather than by
    // the handler (see header).
    mov rcx, [rsp + SA_RSP]
    sub rcx, RED_ZONE + 0x10
    mov [rsp + SA_TARGET], rcx
    mov rdx, [rsp + SA_RFLAGS]
    mov [rcx], rdx
    mov rdx, [rsp + SA_RIP]
    mov [rcx + 8], rdx

    // FP/SIMD state: xrstor with the kernel's feature mask in EDX:EAX
    // (components whose XSTATE_BV bit is clear get their init state, as the
    // kernel's own sigreturn would do). MXCSR and the x87 control word come
    // back with it. An all-zero mask means a legacy fxsave image.
    mov eax, [rsp + SA_XMASK]
    mov edx, [rsp + SA_XMASK + 4]
    mov rcx, rax
    or rcx, rdx
    jz 1f
    xrstor64 [rsp + SA_XSAVE]
    jmp 2f
1:
    fxrstor64 [rsp + SA_XSAVE]
2:
    // General registers, RSP last (the loads use it as the base).
    mov rax, [rsp + SA_RAX]
    mov rbx, [rsp + SA_RBX]
    mov rcx, [rsp + SA_RCX]
    mov rdx, [rsp + SA_RDX]
    mov rsi, [rsp + SA_RSI]
    mov rdi, [rsp + SA_RDI]
    mov rbp, [rsp + SA_RBP]
    mov r8,  [rsp + SA_R8]
    mov r9,  [rsp + SA_R9]
    mov r10, [rsp + SA_R10]
    mov r11, [rsp + SA_R11]
    mov r12, [rsp + SA_R12]
    mov r13, [rsp + SA_R13]
    mov r14, [rsp + SA_R14]
    mov r15, [rsp + SA_R15]
    mov rsp, [rsp + SA_TARGET]
    // RFLAGS last but one: nothing after it changes flags.
    popfq
    // Pop RIP, then skip the 128-byte red zone: RSP = interrupted RSP.
    ret RED_ZONE
    .globl coroutines_restore_full_end
coroutines_restore_full_end:
    .size coroutines_restore_full, coroutines_restore_full_end - coroutines_restore_full

    .section .note.GNU-stack,"",@progbits
