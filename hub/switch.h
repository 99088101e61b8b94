/* switch.h: the context-switch contract, implemented per architecture in
 * switch_<arch>.S.
 *
 * A context is only a saved stack pointer: kz__switch pushes the callee-saved
 * registers and the floating-point control words onto the current stack,
 * stores the stack pointer in *from, loads to_sp and pops the target's
 * registers.  No system call, no signal-mask change.  The floating-point
 * control state (x86_64: MXCSR control bits and the x87 control word) is
 * reloaded only when the target's differs from the current one.
 *
 * kz__switch_init prepares a fresh stack so that the first switch to it calls
 * entry(arg) on that stack.  If entry returns, what it returns is the hub
 * (struct kz__hub *) whose kz__schedule then makes the context's last switch
 * (green.c, note C).  The frame it builds ends the call chain (the unwinders
 * stop there).  fpctl is the floating-point
 * control state the new context starts with: kz__fpctl_get(), or
 * KZ__FPCTL_CURRENT to capture the caller's.
 */
#ifndef KZ_SWITCH_H
#define KZ_SWITCH_H

#include <stdint.h>

void kz__switch(void **from_sp, void *to_sp);
void *kz__switch_init(void *stack_top, void *(*entry)(void *), void *arg, uint64_t fpctl);
uint64_t kz__fpctl_get(void);

/* fpctl for kz__switch_init: the calling thread's current control state,
   captured straight into the new frame (cheaper than kz__fpctl_get, whose
   result is a load right after a store that the CPU cannot forward fast). */
#define KZ__FPCTL_CURRENT UINT64_MAX

/* Layout of a suspended context, from the saved stack pointer upwards (in
 * 8-byte words), as switch_x86_64.S writes it; debug.c and gdb/kudzu-gdb.py
 * read it to unwind. */
enum {
  KZ__SW_FPCTL,
  KZ__SW_R15,
  KZ__SW_R14,
  KZ__SW_R13,
  KZ__SW_R12,
  KZ__SW_RBX,
  KZ__SW_RBP,
  KZ__SW_RIP,
  KZ__SW_WORDS /* the stack pointer after resuming is sp + 8 * KZ__SW_WORDS */
};

/* Bytes below the (16-byte aligned) stack top that kz__switch_init writes:
   16 of padding and the 8 words above. */
#define KZ__SW_INIT_BYTES 80

#endif
