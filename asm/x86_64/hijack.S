// hijack.S — the return trampoline of a preemption taken at the return
// from foreign code (libc, another shared object, C code in the
// executable) into the coroutine's Rust code.
//
// Rust callers: none directly. The preemption handler (src/preempt/
// hijack.rs `try_arm`), finding a coroutine inside code it may not switch
// away from, overwrites the return-address slot of the innermost frame
// that returns into preemptible Rust code with coroutines_hijack_return,
// after saving the real return address in the coroutine's own
// thread-local (`HIJACK`). When that frame returns, it "returns" here.
//
// On entry (a function return, so by the System V ABI):
//            RSP = the caller's stack pointer after its call (16-aligned)
//            RAX, RDX, XMM0, XMM1 = the callee's return value (preserved);
//            every other caller-saved register is dead, but RCX, RSI, RDI,
//            R8-R11 and XMM2-XMM7 are preserved anyway (cheap, and a
//            hand-written callee may return more than the ABI says)
//            RBX, RBP, R12-R15 = the caller's (untouched here)
//            direction flag clear, MXCSR and x87 control word the caller's
// On exit:   `ret` to the real return address with every register above as
//            it was on entry; RSP as on entry plus the popped slot, i.e.
//            exactly where the real return would have left it.
//
// Frame while the Rust helpers run (highest address first):
//
//      RSP0        (entry RSP: the caller's frame above)
//      RSP0 - 0x08 real return address (written after coroutines_hijack_take)
//      RSP0 - 0x10 RAX
//      ...         RDX, RCX, RSI, RDI, R8, R9, R10, R11
//      RSP0 - 0x50 R11
//      RSP0 - 0xD0 XMM0..XMM7 (16 bytes each, XMM0 lowest)  <- RSP (16-aligned)
//
// coroutines_hijack_take returns the real return address (and forgets it);
// coroutines_hijack_yield is the safe point (it may switch the coroutine
// out and resume it on another executor; it returns normally).
//
// CFI: until the real return address is in its slot the return address is
// undefined (an unwind from inside coroutines_hijack_take stops here, and
// so does one that meets the trampoline's address in a hijacked slot: the
// FDE starts one byte early, so that address minus one is covered);
// from then on the frame looks like an ordinary function's — CFA = RSP0,
// return address at CFA - 8 — so the preemption handler's precise walk and
// the safe point's own walk continue into the Rust caller.
//
// Invariants: reached only through a return into a slot the handler wrote,
// once per arming (the helper clears the saved address); never preempted
// by the handler while RIP is in [coroutines_hijack_return,
// coroutines_hijack_return_end) (signal.rs treats it as switch code).

    .text
    .p2align 4
    .cfi_startproc
    .cfi_def_cfa rsp, 0
    .cfi_undefined rip
    // One byte before the entry point, inside this FDE: an unwinder that
    // meets the trampoline's address as a return address looks its frame
    // up at that address minus one, and must find this FDE (return address
    // undefined: it stops) rather than whatever function precedes it.
    int3
    .globl coroutines_hijack_return
    .type coroutines_hijack_return,@function
coroutines_hijack_return:
    sub rsp, 8
    .cfi_adjust_cfa_offset 8
    push rax
    .cfi_adjust_cfa_offset 8
    push rdx
    .cfi_adjust_cfa_offset 8
    push rcx
    .cfi_adjust_cfa_offset 8
    push rsi
    .cfi_adjust_cfa_offset 8
    push rdi
    .cfi_adjust_cfa_offset 8
    push r8
    .cfi_adjust_cfa_offset 8
    push r9
    .cfi_adjust_cfa_offset 8
    push r10
    .cfi_adjust_cfa_offset 8
    push r11
    .cfi_adjust_cfa_offset 8
    sub rsp, 128
    .cfi_adjust_cfa_offset 128
    movdqu [rsp + 0x00], xmm0
    movdqu [rsp + 0x10], xmm1
    movdqu [rsp + 0x20], xmm2
    movdqu [rsp + 0x30], xmm3
    movdqu [rsp + 0x40], xmm4
    movdqu [rsp + 0x50], xmm5
    movdqu [rsp + 0x60], xmm6
    movdqu [rsp + 0x70], xmm7
    call {take}
    mov [rsp + 128 + 72], rax
    .cfi_offset rip, -8
    call {yield_}
    movdqu xmm0, [rsp + 0x00]
    movdqu xmm1, [rsp + 0x10]
    movdqu xmm2, [rsp + 0x20]
    movdqu xmm3, [rsp + 0x30]
    movdqu xmm4, [rsp + 0x40]
    movdqu xmm5, [rsp + 0x50]
    movdqu xmm6, [rsp + 0x60]
    movdqu xmm7, [rsp + 0x70]
    add rsp, 128
    .cfi_adjust_cfa_offset -128
    pop r11
    .cfi_adjust_cfa_offset -8
    pop r10
    .cfi_adjust_cfa_offset -8
    pop r9
    .cfi_adjust_cfa_offset -8
    pop r8
    .cfi_adjust_cfa_offset -8
    pop rdi
    .cfi_adjust_cfa_offset -8
    pop rsi
    .cfi_adjust_cfa_offset -8
    pop rcx
    .cfi_adjust_cfa_offset -8
    pop rdx
    .cfi_adjust_cfa_offset -8
    pop rax
    .cfi_adjust_cfa_offset -8
    ret
    .cfi_endproc
    .globl coroutines_hijack_return_end
coroutines_hijack_return_end:
    .size coroutines_hijack_return, coroutines_hijack_return_end - coroutines_hijack_return
