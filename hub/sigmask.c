/* sigmask.c: each green thread's own signal mask, and the mask of the OS
 * thread its hub runs on.
 *
 * A thread's mask (g->sig.mask) is its own, as natively: the shim's
 * pthread_sigmask changes only the caller's.  The threads are the main green
 * thread and the green threads the shim's pthread_create makes (g->sig.own);
 * a green thread spawned through the API is not a thread and follows the
 * main green thread's mask, as it follows the OS thread's without the shim.
 * The OS thread, which all green threads of the hub share, blocks exactly
 * the signals that every thread blocks (plus what the shim keeps blocked
 * for its waits, hub->sig.keep).  A signal that some green thread does not
 * block therefore reaches the OS thread, and the shim's handler wrapper
 * gives it to such a green thread (preload/signal.c); a signal that all of
 * them block stays pending in the kernel, where sigwait, signalfd and
 * sigpending find it, and where another thread of the process may take it.
 *
 * Notes.
 * A. Why the intersection, and not the running green thread's mask: that
 *    would cost a system call on every switch between two green threads
 *    whose masks differ (glibc's swapcontext makes one per switch for this
 *    reason, about 180 ns).  The intersection changes only when a mask
 *    changes or a green thread that was alone in not blocking a signal
 *    finishes; a switch never touches it.  Never blocked on the OS thread,
 *    whatever the program's masks say: glibc's own signals (32: thread
 *    cancellation, 33: set*id across threads, which would wait for ever for
 *    a thread that blocks it; glibc's pthread_sigmask refuses them too), the
 *    runtime's backtrace signal (monitor.c, and the crash report's: debug.c
 *    note E) and slice signal (preempt.c), SIGKILL and SIGSTOP, and the
 *    signals of a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE).  A fault with its
 *    signal blocked is not delivered: the kernel kills the process at once,
 *    as natively, but without the crash report (debug.c); a remote hub's
 *    thread, which starts with every signal blocked, died so of a fault on
 *    the hub's own context, silently.  What this costs: a fault signal sent
 *    with kill to a process whose every thread blocks it stays pending
 *    natively, and here reaches the runtime's handler, which ends the
 *    process as the default action would (debug.c, note B).
 * B. Counting.  hub->sig.block[s-1] counts the threads that block s,
 *    hub->sig.n the threads counted, so s is blocked by all of them when
 *    the two are equal.  A new thread inherits its creator's mask, which
 *    holds every signal they all block: the intersection stays as it is.
 *    A spawn through the API costs nothing here.  A finish may make the
 *    remaining threads agree on a signal: checked only while some thread of
 *    the hub has a mask at all (hub->sig.nmasked).
 * C. The OS mask is changed with SIG_BLOCK and SIG_UNBLOCK of the
 *    difference (raw system calls: pthread_sigmask is the shim's), so bits
 *    set by someone else meanwhile (glibc blocks everything around a
 *    posix_spawn, and restores it) are left alone.  hub->sig.os is what
 *    this file set, not a copy of the kernel's mask.
 * D. A new thread's unblocks wait for its first switch away.  A thread
 *    made with an empty mask on a hub whose other threads block signals
 *    (another hub of the set, whose main green thread blocks everything:
 *    hub/remote.c, note D) unblocks them on the OS thread, and its end
 *    blocks them again: two system calls, 0.3 us of the 2-3 us a spawn +
 *    join on another hub costs, for a thread that often ends before any
 *    signal could reach it.  So kz__sigmask_adopt only records what it
 *    would unblock (hub->sig.lag; hub->sig.os keeps the kernel's mask, lag
 *    a part of it), and the hub unblocks it at its next loop pass after
 *    the threads it ran switched away (kz__sigmask_catch_up), before it
 *    sleeps, and at the slice timer's tick if the thread computes
 *    meanwhile (hub/preempt.c, note H).  Any other change of the mask (a
 *    pthread_sigmask, a finish, a signal wait) makes the whole change at
 *    once; another adoption puts off its own unblocks with the rest.  A thread that ends in its first run
 *    leaves the mask as it found it: no system call at all.  What this
 *    costs: a signal sent to the process that only the new thread admits
 *    waits in the kernel for up to its first run (one slice tick, 5 ms of
 *    CPU time, at most), where natively it would interrupt the thread at
 *    once; one sent to the thread itself (pthread_kill) is not delayed
 *    (preload/signal.c, note H, unblocks it for the delivery).  Blocks are
 *    never put off: a signal that every thread blocks must stay pending,
 *    not meet a default action.
 */
#include "internal.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline uint64_t bit(int s) { return 1ull << (s - 1); }

/* Note A: what the OS thread never blocks. */
static uint64_t never_blocked(void)
{
  return bit(SIGKILL) | bit(SIGSTOP) | bit(32) | bit(33) | bit(SIGRTMAX - 2) | bit(KZ__SIG_PREEMPT) |
         bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGFPE);
}

uint64_t kz__sigmask_os_read(void)
{
  uint64_t m = 0;
  kz__syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, sizeof m);
  return m;
}

void kz__sigmask_count(struct kz__hub *hub, uint64_t mask, int by)
{
  if (!mask)
    return;
  hub->sig.nmasked += by;
  for (uint64_t m = mask; m; m &= m - 1) {
    int i = __builtin_ctzll(m);
    if ((hub->sig.block[i] += by) != 0)
      hub->sig.any |= 1ull << i;
    else
      hub->sig.any &= ~(1ull << i);
  }
}

uint64_t kz__sigmask_want(const struct kz__hub *hub)
{
  uint64_t all = 0;
  if (hub->sig.nmasked && hub->sig.n) {
    for (uint64_t m = hub->sig.any; m; m &= m - 1) /* only those some thread blocks */
      if (hub->sig.block[__builtin_ctzll(m)] == hub->sig.n)
        all |= 1ull << __builtin_ctzll(m);
  }
  return (all | hub->sig.keep) & ~never_blocked();
}

/* Bring the OS thread's mask in line with the counts (note C); with
   later, its unblocks wait (note D). */
static void sync_os(struct kz__hub *hub, bool later)
{
  uint64_t want = kz__sigmask_want(hub), add = want & ~hub->sig.os, drop = hub->sig.os & ~want;
  hub->sig.lag = later ? drop : 0;
  if (later)
    drop = 0;
  hub->sig.os = want | hub->sig.lag;
  if (add)
    kz__syscall(SYS_rt_sigprocmask, SIG_BLOCK, &add, NULL, sizeof add);
  if (drop) /* a pending one is delivered on the way out */
    kz__syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &drop, NULL, sizeof drop);
}

void kz__sigmask_leave(struct kz__hub *hub, struct kz_green *g)
{
  kz__sigmask_count(hub, g->sig.mask, -1);
  sync_os(hub, false);
}

void kz__sigmask_adopt(struct kz_green *g, uint64_t mask)
{
  struct kz__hub *hub = g->hub;
  g->sig = (struct kz__green_sig){.mask = mask, .own = 1};
  hub->sig.n++;
  kz__sigmask_count(hub, mask, 1);
  sync_os(hub, hub->preempt_timer >= 0); /* note D: the tick bounds the wait */
}

void kz__sigmask_catch_up(struct kz__hub *hub) { sync_os(hub, false); }

void kz__sigmask_set(struct kz_green *g, uint64_t mask)
{
  struct kz__hub *hub = g->hub;
  g = kz__sig_owner(g);
  if (mask == g->sig.mask)
    return;
  kz__sigmask_count(hub, g->sig.mask, -1);
  g->sig.mask = mask;
  kz__sigmask_count(hub, mask, 1);
  sync_os(hub, false);
}

void kz__sigmask_keep(struct kz__hub *hub, uint64_t add, uint64_t drop)
{
  hub->sig.keep = (hub->sig.keep | add) & ~drop;
  sync_os(hub, false);
}

void kz__sigmask_recount(struct kz__hub *hub)
{
  memset(hub->sig.block, 0, sizeof hub->sig.block);
  hub->sig.n = hub->sig.nmasked = 0;
  hub->sig.any = 0;
  for (struct kz__link *l = hub->all.next; l != &hub->all; l = l->next) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    if (!g->sig.own || g->state == KZ__S_GONE || g->state == KZ_DONE || g->state == KZ_CANCELLED)
      continue;
    hub->sig.n++;
    kz__sigmask_count(hub, g->sig.mask, 1);
  }
  hub->sig.os = kz__sigmask_os_read() & ~never_blocked(); /* the child's, inherited */
  sync_os(hub, false);
}
