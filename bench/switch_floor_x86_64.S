/* switch_floor_x86_64.S: the floor of a stack switch on this machine, for
 * bench_core's switch_floor_ns: the six callee-saved registers pushed, the
 * stack pointers swapped, the target's six popped, ret.  Nothing else (no
 * floating-point control state, no thread pointer): what any switch that
 * keeps the System V ABI's callee-saved registers must do at least.
 *
 *   void bench_floor_switch(void **from_sp, void *to_sp)
 *   void bench_floor_fpctl_switch(void **from_sp, void *to_sp)
 *   void *bench_floor_init(void *stack_top, void (*entry)(void))
 *
 * bench_floor_fpctl_switch is the floor plus the two stores of the
 * floating-point control state (stmxcsr, fnstcw, into the words just below
 * the saved registers), nothing compared and nothing reloaded: the least a
 * switch costs that keeps MXCSR and the x87 control word per context, as
 * kz__switch must (hub/switch_x86_64.S, notes B and E).  Both take the
 * frames bench_floor_init builds.
 */
        .text

        .globl  bench_floor_switch
        .hidden bench_floor_switch
        .type   bench_floor_switch, @function
        .p2align 4
bench_floor_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   bench_floor_switch, .-bench_floor_switch

        .globl  bench_floor_fpctl_switch
        .hidden bench_floor_fpctl_switch
        .type   bench_floor_fpctl_switch, @function
        .p2align 4
bench_floor_fpctl_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        stmxcsr -8(%rsp)                /* the red zone: a leaf function's */
        fnstcw  -4(%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   bench_floor_fpctl_switch, .-bench_floor_fpctl_switch

/* A fresh context's first "return" lands here: call entry (in r12), which
   never returns. */
        .type   floor_start, @function
        .p2align 4
floor_start:
        .cfi_startproc
        .cfi_undefined %rip
        callq   *%r12
        ud2
        .cfi_endproc
        .size   floor_start, .-floor_start

        .globl  bench_floor_init
        .hidden bench_floor_init
        .type   bench_floor_init, @function
        .p2align 4
bench_floor_init:
        .cfi_startproc
        movq    %rdi, %rax
        andq    $-16, %rax
        subq    $72, %rax               /* 6 registers, resume address, pad: the
                                           entry then starts 16-byte aligned */
        movq    $0, 0(%rax)             /* r15 */
        movq    $0, 8(%rax)             /* r14 */
        movq    $0, 16(%rax)            /* r13 */
        movq    %rsi, 24(%rax)          /* r12 = entry */
        movq    $0, 32(%rax)            /* rbx */
        movq    $0, 40(%rax)            /* rbp */
        leaq    floor_start(%rip), %rcx
        movq    %rcx, 48(%rax)          /* resume address */
        movq    $0, 56(%rax)
        ret
        .cfi_endproc
        .size   bench_floor_init, .-bench_floor_init

        .section .note.GNU-stack, "", @progbits
