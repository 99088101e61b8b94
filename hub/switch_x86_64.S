/* switch_x86_64.S: the context switch for x86_64 (System V ABI).
 *
 * A suspended context, from its saved stack pointer upwards (switch.h names
 * the slots; debug.c and gdb/kudzu-gdb.py read them to unwind a suspended
 * green thread):
 *
 *        +--------------------------+  higher addresses
 *   +56  | resume address (rip)     |  pushed by the caller's `call`
 *   +48  | rbp                      |
 *   +40  | rbx                      |
 *   +32  | r12                      |
 *   +24  | r13                      |
 *   +16  | r14                      |
 *    +8  | r15                      |
 *    +0  | MXCSR (32) | x87 CW (16) |  <- saved stack pointer
 *        +--------------------------+
 *
 * Notes.
 * A. Only callee-saved state is kept: kz__switch is an ordinary call for the
 *    compiler, so everything else is already saved by the caller.
 * B. MXCSR's control bits and the x87 control word are callee-saved too, and
 *    a green thread may change its rounding mode.  Loading them costs about
 *    30 ns (ldmxcsr serialises), storing them about 1 ns (note E), so the
 *    switch stores both and reloads only when the target's control bits
 *    differ.  MXCSR's six exception-flag bits (0x3f) are sticky status, not
 *    control, and are left out of the comparison.
 * C. The switch resumes with ret, not pop + jmp.  Every switch in kudzu goes
 *    through one call site (kz__switch_to in sched.c), so the address a ret
 *    resumes at is always the one the return-stack predictor holds, and the
 *    predictor stays balanced.  pop + jmp leaves the entry pushed by the call
 *    unconsumed, so every later return of the resumed green thread is
 *    mispredicted: measured on this project's 2.5 GHz Xeon, a kz_yield
 *    ping-pong cost 44 ns per yield with pop + jmp and 25 ns with ret.  (A
 *    first switch into a fresh context "returns" into kz__trampoline: one
 *    misprediction per spawn.)
 * D. A fresh context starts in kz__trampoline, whose CFI marks the return
 *    address undefined: gdb and libunwind stop there cleanly instead of
 *    walking into the zeroed words above it.
 * E. Where a switch's time goes, over the floor of six pushes, six pops and
 *    ret (bench_core: switch_floor_ns, switch_fpctl_floor_ns, switch_ns,
 *    best of 10 runs of 20 million switches, this project's 2-core
 *    Xeon VM, family 6 model 207, under other load):
 *      floor                                  1.6 ns
 *      floor + stmxcsr + fnstcw, no compare   2.5 ns
 *      kz__switch + sched.c's TLS check       3.0 ns (3.1 before the lea)
 *    Most of it is stmxcsr: it does not overlap with the work around it (a
 *    loop of eight independent adds costs 1.0 ns, with one stmxcsr 1.9 ns;
 *    where in the switch it goes, first, after the pushes or before the
 *    ret, changes nothing; vstmxcsr costs the same), while fnstcw alone
 *    costs nothing measurable.  The other 0.3 to 0.5 ns are the loads of
 *    the control words for the comparison: loading only ours, or only the
 *    target's, or comparing after the pops costs the same, and a single
 *    8-byte load of both words is slower (it cannot be forwarded from the
 *    two smaller stores).  sched.c's thread pointer check costs nothing
 *    measurable (switch_raw_ns, without it, is no faster).  MXCSR has no
 *    cheaper reader (fxsave and xsave store it with the vector registers),
 *    no instruction reports whether it changed, and a green thread may
 *    change it with an inline ldmxcsr the runtime never sees, so one
 *    stmxcsr per switch is the price of note B: a switch that keeps the
 *    control state per context costs at least 1.5 times the floor here.
 *    What was cut: the stack pointer is not lowered over the control word
 *    and raised again; the word is stored just below the pushed registers,
 *    and the target's registers are reached with one lea (its control word
 *    then lies just below the stack pointer, in the red zone, which a
 *    signal frame skips).  Dropping the x87 word would gain nothing (and
 *    note B needs it).
 */

        .text

/* void kz__switch(void **from_sp, void *to_sp) */
        .globl  kz__switch
        .hidden kz__switch
        .type   kz__switch, @function
        .p2align 4
kz__switch:
        .cfi_startproc
        endbr64
        /* Save the callee-saved registers on the current stack. */
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r15, 0
        /* Save the floating-point control state (note B) below the
           registers and keep it in eax/edx for the comparison after the
           switch.  The saved stack pointer points at it (switch.h). */
        stmxcsr -8(%rsp)
        fnstcw  -4(%rsp)
        movl    -8(%rsp), %eax
        movzwl  -4(%rsp), %edx
        leaq    -8(%rsp), %rcx
        movq    %rcx, (%rdi)
        /* Switch stacks, straight to the target's registers (note E): its
           control state is then just below the stack pointer, in the red
           zone, which a signal frame skips.  The target's frame has the
           same layout, so the CFI above describes it too. */
        leaq    8(%rsi), %rsp
        /* Reload the control state only when it differs. */
        xorl    -8(%rsp), %eax
        testl   $0xffc0, %eax
        jnz     .Lload_fpctl
        cmpw    -4(%rsp), %dx
        jne     .Lload_fpctl
.Lrestore:
        .cfi_remember_state
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbp
        /* Resume (note C). */
        ret
.Lload_fpctl:
        .cfi_restore_state      /* the frame as at .Lrestore */
        ldmxcsr -8(%rsp)
        fldcw   -4(%rsp)
        jmp     .Lrestore
        .cfi_endproc
        .size   kz__switch, .-kz__switch

/* The first code a fresh context runs: entry(arg), with entry in r12 and arg
   in r13 (kz__switch_init put them there).  entry returns the hub (or never
   returns); the trampoline then makes the context's last switch by jumping
   to kz__schedule(hub) with a zero return address, so that every call the
   context made has returned first (green.c, note C). */
        .globl  kz__trampoline
        .hidden kz__trampoline
        .type   kz__trampoline, @function
        .p2align 4
kz__trampoline:
        .cfi_startproc
        .cfi_undefined %rip     /* note D: the outermost frame */
        endbr64
        movq    %r13, %rdi
        callq   *%r12
        movq    %rax, %rdi
        pushq   $0              /* kz__schedule never returns here */
        jmp     kz__schedule
        .cfi_endproc
        .size   kz__trampoline, .-kz__trampoline

/* void *kz__switch_init(void *stack_top, void (*entry)(void *), void *arg,
                         uint64_t fpctl)
   Builds a suspended frame below stack_top (16-byte aligned down) and returns
   its stack pointer.  Every register starts at zero but r12/r13; rbp = 0 ends
   frame-pointer chains. */
        .globl  kz__switch_init
        .hidden kz__switch_init
        .type   kz__switch_init, @function
        .p2align 4
kz__switch_init:
        .cfi_startproc
        endbr64
        movq    %rdi, %rax
        andq    $-16, %rax
        subq    $80, %rax               /* 16 bytes of padding + 8 words */
        cmpq    $-1, %rcx               /* KZ__FPCTL_CURRENT: capture it here, */
        jne     1f                      /* stored once and never read back */
        movq    $0, 0(%rax)
        stmxcsr 0(%rax)
        fnstcw  4(%rax)
        jmp     2f
1:      movq    %rcx, 0(%rax)           /* fpctl */
2:
        movq    $0, 8(%rax)             /* r15 */
        movq    $0, 16(%rax)            /* r14 */
        movq    %rdx, 24(%rax)          /* r13 = arg */
        movq    %rsi, 32(%rax)          /* r12 = entry */
        movq    $0, 40(%rax)            /* rbx */
        movq    $0, 48(%rax)            /* rbp */
        leaq    kz__trampoline(%rip), %rcx
        movq    %rcx, 56(%rax)          /* rip */
        movq    $0, 64(%rax)
        movq    $0, 72(%rax)
        ret
        .cfi_endproc
        .size   kz__switch_init, .-kz__switch_init

/* uint64_t kz__fpctl_get(void): MXCSR in bits 0-31, x87 CW in bits 32-47. */
        .globl  kz__fpctl_get
        .hidden kz__fpctl_get
        .type   kz__fpctl_get, @function
        .p2align 4
kz__fpctl_get:
        .cfi_startproc
        endbr64
        movq    $0, -8(%rsp)            /* red zone */
        stmxcsr -8(%rsp)
        fnstcw  -4(%rsp)
        movq    -8(%rsp), %rax
        ret
        .cfi_endproc
        .size   kz__fpctl_get, .-kz__fpctl_get

/* void kz__tp_set(void *tp): load the thread pointer (the %fs base) for a
   green thread with TLS of its own (tls.c, note F).  wrfsbase where the CPU
   has it and the kernel lets user space use it (kz__fsgsbase, read from
   AT_HWCAP2 by tls.c), else arch_prctl(ARCH_SET_FS), which cannot fail for
   an address of this process.  Clobbers only what a call may. */
        .globl  kz__tp_set
        .hidden kz__tp_set
        .type   kz__tp_set, @function
        .p2align 4
kz__tp_set:
        .cfi_startproc
        endbr64
        cmpb    $0, kz__fsgsbase(%rip)
        je      1f
        wrfsbase %rdi
        ret
1:      movq    %rdi, %rsi
        movl    $0x1002, %edi           /* ARCH_SET_FS */
        movl    $158, %eax              /* SYS_arch_prctl */
        syscall
        ret
        .cfi_endproc
        .size   kz__tp_set, .-kz__tp_set

/* bool kz__fsgsbase: wrfsbase may be used (set once by tls.c). */
        .data
        .globl  kz__fsgsbase
        .hidden kz__fsgsbase
        .type   kz__fsgsbase, @object
        .size   kz__fsgsbase, 1
kz__fsgsbase:
        .byte   0

        .section .note.GNU-stack, "", @progbits
