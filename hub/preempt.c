/* preempt.c: time slices for the green threads that are threads.
 *
 * Natively the kernel takes the CPU from a thread that computes and gives
 * it to another; a green thread keeps its hub until it waits.  A program
 * written for threads relies on the kernel: one thread spins on a flag that
 * another sets, an interpreter's thread holds its global lock in a tight
 * loop until another asks for it (the other one's request is a timed wait
 * that must end), a worker computes while the main thread waits for a
 * timer.  On one hub these never end.  So a hub whose running green thread
 * is a thread (the main one, or one made by the shim's pthread_create:
 * g->sig.own) and has computed a whole slice of CPU time without switching
 * is made to yield, at the point where it computes, as the kernel would.
 *
 * Green threads spawned through the API are never preempted: their code is
 * written for cooperative switching (nothing else runs between two waits),
 * as with gevent or asyncio, and relies on it.
 *
 * Notes.
 * A. The clock.  Each hub that has green threads to share with arms, the
 *    first time it has two (kz__preempt_arm), a POSIX timer on its own OS
 *    thread's CPU-time clock (CLOCK_THREAD_CPUTIME_ID) that signals that
 *    thread (SIGEV_THREAD_ID) every slice.  A CPU-time clock does not move
 *    while the thread sleeps in epoll_wait, so an idle hub is never woken
 *    by it (0 wake-ups when idle), and no thread is added to the process
 *    (programs and tests count their threads).  A busy hub takes one signal
 *    per slice of CPU, about 2 us per 10 ms.  A hub that never has two
 *    green threads never arms it, so a pre-fork worker or a forked child
 *    pays nothing (timers are not inherited by fork: the child re-arms when
 *    it needs to, kz__preempt_forked).
 * B. Who computed a whole slice.  The timer ticks TICKS times a slice.
 *    Each tick compares the hub's running green thread, loop passes and
 *    direct-switch budget with what the earlier ticks saw
 *    (hub->preempt_seen): the three unchanged for TICKS ticks in a row mean
 *    nothing switched on the hub for a whole slice of its CPU time (a
 *    switch bumps the pass or spends the budget: sched.c, hub.c), and the
 *    running green thread computed all of it.  With one tick a slice, a
 *    thread that started computing just after a tick ran up to two slices;
 *    with two, at most one and a half.
 * C. Where it may be interrupted.  The signal comes at any instruction.
 *    Yielding from there is what the kernel does to a thread, and is safe
 *    for the program's own code, but not for the runtime's: the shim, the
 *    hub, libev and libunwind run between their switch points with the hub's
 *    state half changed, and libc may be running on the runtime's behalf
 *    (malloc for a spawn, a system call an interposer makes).  So the
 *    handler yields only if the interrupted instruction is in none of
 *    those: the code of libkudzu, the shim, libev, libunwind, liblzma,
 *    liburing, libzydis (the core), libgcc_s (the unwinder), libc and the
 *    dynamic loader (object_kind, built once from dl_iterate_phdr: a
 *    handler must not take the loader's lock that dladdr takes).  libc is
 *    left alone even when the program called it: it may hold a lock that
 *    the hub context takes too (malloc's arena, for libev's arrays), and
 *    the hub context, which is not a green thread, would block the OS
 *    thread on it for good.  The vDSO holds nothing: it is interrupted
 *    unless the core called it (kz__now, libev's clock), which leaves a
 *    return address of the core among the first words of the stack
 *    (VDSO_WINDOW), so a loop that reads the clock until a deadline passes
 *    is preempted like any other.  The program's code, its libraries, its
 *    JIT-compiled code qualify: from them the runtime is either not on the
 *    stack at all or called them as a call-out (a green thread's body, a
 *    pthread_once routine, a destructor), where the body may wait anyway.
 *    An interruption in libc on the program's own behalf
 *    (a memcpy in its loop) is let go and tried again a slice later: a loop
 *    that spends 90% of its time in libc is preempted within a few slices.
 *    Also left alone: a program's signal handler (the shim's veto,
 *    pre.allowed, and an interrupted context on the alternate signal stack,
 *    which another signal would overwrite), and a context whose signal mask
 *    is not the hub's (the program changed the OS thread's mask where no
 *    interposer saw it).  The signals a handler held for the hub context
 *    (hub->sig.deferred, preload/signal.c rule 4) are the runtime's own
 *    change: a thread computing after one was held for another thread was
 *    never preempted, so the hub context that delivers it never ran, and
 *    the signal was never handled (sig_new_thread).  One call-out holds a
 *    lock that is not a green wait: the loader's, recursive and owned by the OS thread's id, around
 *    the constructors dlopen runs and dl_iterate_phdr's callbacks.  Another
 *    thread's dlopen while such a call-out is preempted enters it as the
 *    call-out's own dlopen would, which the loader supports; a dlclose
 *    of the object being iterated is the case left open.
 * D. How it yields.  The handler runs on the green thread's own stack (no
 *    SA_ONSTACK), so it can switch away with the kernel's signal frame,
 *    which holds every register of the interrupted code (the FPU and vector
 *    state included), left on that stack.  The switch goes to the hub,
 *    which polls, then queues the green thread (hub->preempted,
 *    kz__preempted_queue) behind what the poll woke: a thread whose sleep
 *    ended while this one computed runs first, as the kernel's scheduler
 *    favours a thread that wakes over one that used its slice (queued
 *    before the poll, the preempted thread ran a second slice ahead of the
 *    sleeper it had kept waiting).  When it is resumed
 *    the handler returns and sigreturn restores the interrupted code
 *    exactly.  SA_NODEFER: the signal is not blocked while the handler
 *    runs, since it runs for as long as the green thread is switched out
 *    and the others must be preemptible meanwhile.  The mask sigreturn
 *    restores is the one saved at the interruption; the hub may have
 *    changed the OS thread's mask since (another green thread's
 *    pthread_sigmask: sigmask.c), so the handler stores the current one in
 *    the context first.
 * E. EINTR.  The timer's signal never interrupts a green thread's wait: an
 *    interposed call parks, it does not sleep in the kernel.  What can
 *    sleep there on the hub's thread is libev's epoll_wait (which retries
 *    on EINTR), a call made in the kernel by a green thread alone on its
 *    hub (preload/block.c note F, which keeps the signal blocked around
 *    it: kz__preempt_hold), and calls the shim does not see or a family
 *    left unpatched.  SA_RESTART restarts what the kernel restarts; the
 *    calls signal(7) never restarts (sleeps, poll and its kind) could fail
 *    with EINTR there, as they do natively after a SIGSTOP/SIGCONT.
 * F. The signal, SIGRTMAX-4, is the runtime's: the hub's OS thread never
 *    blocks it (sigmask.c note A), and the shim refuses a program's handler
 *    for it (EINVAL, as glibc does for the two it keeps) while preemption
 *    is on.  A signal of that number that does not come from a timer
 *    (si_code other than SI_TIMER) is ignored.
 * G. Stack.  The kernel's signal frame takes AT_MINSIGSTKSZ (3.6 KiB with
 *    AVX-512 state on this project's machine) of the preempted thread's
 *    stack, and the handler and the switch about 300 bytes more: a thread
 *    preempted with less than that left of its stack dies of SIGSEGV,
 *    reported as an overflow, where natively it would not (the kernel
 *    keeps a preempted thread's registers elsewhere).
 * H. The tick also makes the unblocks a new thread's adoption put off
 *    (sigmask.c, note D) while that thread computes without switching
 *    away: at once (what is pending is delivered there, as at the
 *    interrupted instruction) and in the mask sigreturn restores, and
 *    only where the tick could preempt (note C), since the runtime's code
 *    interrupted elsewhere may be the one changing the mask.  So the tick is armed before a thread
 *    is adopted (preload/thread.c), and a hub without it puts nothing
 *    off.
 */
#include "internal.h"

#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>

#define MAX_RANGES 64
/* Ticks per slice (note B). */
#define TICKS 2
/* Bytes above the stack pointer searched for the runtime's return addresses
   when the vDSO is interrupted (note C): its frames and libc's
   clock_gettime's take a few dozen. */
#define VDSO_WINDOW 512

/* What code belongs to (note C). */
enum kind {
  PROGRAM, /* not listed: the program's own, and its libraries' */
  CORE,    /* the runtime and its libraries */
  LIBC,    /* libc, the loader, libgcc_s: may run on the runtime's behalf */
  VDSO,    /* the vDSO: the caller decides */
};

static struct {
  double slice;          /* seconds of CPU time; 0: off */
  bool (*allowed)(void); /* the shim's veto (note C), or NULL */
  pthread_mutex_t lock;  /* the handler's installation and the ranges' building */
  bool installed;        /* handler installed and ranges built */
  unsigned nranges;
  struct {
    uintptr_t lo, hi;
    enum kind kind;
  } ranges[MAX_RANGES]; /* code that is not the program's: written once, before any timer */
} pre = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- Whose code (note C) ------------------------------------------------------- */

static enum kind object_kind(const char *path, const ElfW(Phdr) *phdr)
{
  static const struct {
    const char *prefix;
    enum kind kind;
  } names[] = {{"libkudzu", CORE}, {"libev.", CORE},   {"libunwind", CORE}, {"liblzma", CORE},
               {"liburing", CORE}, {"libzydis", CORE}, {"libgcc_s", LIBC},  {"libc.", LIBC},
               {"ld-linux", LIBC}, {"linux-vdso", VDSO}};
  const char *base = strrchr(path, '/');
  uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
  base = base ? base + 1 : path;
  if (vdso && (uintptr_t)phdr - vdso < 65536)
    return VDSO; /* whatever name the loader gives it */
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strncmp(base, names[i].prefix, strlen(names[i].prefix)))
      return names[i].kind;
  return PROGRAM;
}

static int collect(struct dl_phdr_info *info, size_t size, void *arg)
{
  enum kind kind = object_kind(info->dlpi_name ? info->dlpi_name : "", info->dlpi_phdr);
  (void)size;
  (void)arg;
  if (kind == PROGRAM)
    return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *p = &info->dlpi_phdr[i];
    if (p->p_type != PT_LOAD || !(p->p_flags & PF_X) || pre.nranges == MAX_RANGES)
      continue;
    pre.ranges[pre.nranges].lo = info->dlpi_addr + p->p_vaddr;
    pre.ranges[pre.nranges].hi = info->dlpi_addr + p->p_vaddr + p->p_memsz;
    pre.ranges[pre.nranges].kind = kind;
    pre.nranges++;
  }
  return 0;
}

static enum kind kind_of(uintptr_t pc)
{
  for (unsigned i = 0; i < pre.nranges; i++)
    if (pc - pre.ranges[i].lo < pre.ranges[i].hi - pre.ranges[i].lo)
      return pre.ranges[i].kind;
  return PROGRAM;
}

/* May the code interrupted at pc, with its stack from sp to end, be
   preempted?  Note C. */
static bool interruptible(uintptr_t pc, uintptr_t sp, uintptr_t end)
{
  switch (kind_of(pc)) {
  case PROGRAM:
    return true;
  case VDSO: /* who called it: its return address is among the first words */
    for (uintptr_t w = sp; w < sp + VDSO_WINDOW && w + sizeof(uintptr_t) <= end; w += sizeof(uintptr_t))
      if (kind_of(*(const uintptr_t *)w) == CORE)
        return false;
    return true;
  default:
    return false;
  }
}

/* ---- The handler (notes B to D) ------------------------------------------------ */

/* Has the running green thread computed since the last tick?  Note B. */
static bool whole_slice(struct kz__hub *hub)
{
  struct kz__preempt_seen *s = &hub->preempt_seen;
  if (s->current == hub->current && s->pass == hub->pass && s->budget == hub->budget)
    return ++s->ticks >= TICKS;
  s->current = hub->current;
  s->pass = hub->pass;
  s->budget = hub->budget;
  s->ticks = 0;
  return false;
}

/* Is there anything else for the hub to run or look at? */
static bool company(const struct kz__hub *hub)
{
  return hub->nlive > 1 || hub->nready || hub->holds || !kz__list_empty(&hub->soon) ||
         !kz__list_empty(&hub->timed) || atomic_load_explicit(&hub->inbox, memory_order_relaxed);
}

/* Note C: may the code uc interrupted in g be made to yield? */
static bool may_yield(struct kz_green *g, const ucontext_t *uc)
{
  uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
  uintptr_t end = g->flags & KZ__G_MAIN ? sp + VDSO_WINDOW : (uintptr_t)g->stack.base + g->stack.size;
  return !(uc->uc_stack.ss_flags & SS_ONSTACK) &&
         interruptible((uintptr_t)uc->uc_mcontext.gregs[REG_RIP], sp, end) &&
         (!pre.allowed || pre.allowed());
}

/* Note H: the unblocks a new thread's adoption put off, if the code
   interrupted is the program's: made now (a signal pending is delivered
   here, as at the interrupted instruction) and in the mask sigreturn
   restores. */
static void catch_up(struct kz__hub *hub, ucontext_t *uc)
{
  struct kz_green *g = hub->current;
  uint64_t mask, lag = hub->sig.lag;
  if (!g || !may_yield(g, uc))
    return;
  memcpy(&mask, &uc->uc_sigmask, sizeof mask);
  mask &= ~lag;
  memcpy(&uc->uc_sigmask, &mask, sizeof mask);
  hub->sig.os &= ~lag;
  hub->sig.lag = 0;
  kz__syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &lag, NULL, sizeof lag);
}

static void handler(int sig, siginfo_t *si, void *ucv)
{
  ucontext_t *uc = ucv;
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g;
  uint64_t mask;
  int saved;
  (void)sig;
  if (si->si_code != SI_TIMER || !hub) /* note F */
    return;
  if (hub->handoff_ok && atomic_load_explicit(&hub->sys, memory_order_relaxed)) {
    int pin = kz__handoff_pin(hub); /* in a call its hub may leave in (handoff.c): */
    if (pin > 0)                    /* never preempted there (the shim's code) */
      kz__handoff_unpin(hub);
    if (pin != 0)
      return;
  }
  if (KZ_UNLIKELY(hub->sig.lag)) /* note H */
    catch_up(hub, uc);
  if (!whole_slice(hub) || !(g = hub->current) || !g->sig.own || !company(hub))
    return;
  memcpy(&mask, &uc->uc_sigmask, sizeof mask);
  if ((mask & ~atomic_load(&hub->sig.deferred)) != hub->sig.os || !may_yield(g, uc))
    return; /* note C: a slice later */
  saved = errno;
  hub->preempts++;
  g->state = KZ__S_READY; /* note D: queued by the hub after its poll */
  hub->preempted = g;
  hub->budget = 0;
  kz__schedule(hub);
  mask = kz__sigmask_os_read();
  memcpy(&uc->uc_sigmask, &mask, sizeof mask);
  errno = saved;
}

/* ---- Configuration and arming ------------------------------------------------- */

void kz__preempt_config(double slice, bool (*allowed)(void))
{
  pre.slice = slice > 0 ? slice : 0;
  pre.allowed = allowed;
}

bool kz__preempt_on(void) { return pre.slice > 0; }

/* Once per process: the ranges, then the handler.  0 or -errno. */
static int install(void)
{
  struct sigaction sa = {.sa_sigaction = handler, .sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER};
  int r = 0;
  kz__os_lock(&pre.lock);
  if (!pre.installed) {
    dl_iterate_phdr(collect, NULL);
    sigemptyset(&sa.sa_mask);
    if (kz__os_sigaction(KZ__SIG_PREEMPT, &sa, NULL) < 0)
      r = -errno;
    else
      pre.installed = true;
  }
  kz__os_unlock(&pre.lock);
  return r;
}

void kz__preempt_arm(struct kz__hub *hub)
{
  struct sigevent sev;
  struct itimerspec its;
  double tick;
  int id = -1;
  if (hub->preempt_timer >= 0 || !pre.slice || install() < 0)
    return;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = KZ__SIG_PREEMPT;
  sev._sigev_un._tid = (pid_t)kz__syscall(SYS_gettid);
  if (kz__syscall(SYS_timer_create, CLOCK_THREAD_CPUTIME_ID, &sev, &id) < 0)
    return; /* no preemption on this hub: as before */
  tick = pre.slice / TICKS;
  its.it_value.tv_sec = its.it_interval.tv_sec = (time_t)tick;
  its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)((tick - (double)(time_t)tick) * 1e9);
  if (kz__syscall(SYS_timer_settime, id, 0, &its, NULL) < 0) {
    kz__syscall(SYS_timer_delete, id);
    return;
  }
  hub->preempt_timer = id;
}

void kz__preempt_disarm(struct kz__hub *hub)
{
  if (hub->preempt_timer >= 0)
    kz__syscall(SYS_timer_delete, hub->preempt_timer);
  hub->preempt_timer = -1;
}

void kz__preempt_forked(struct kz__hub *hub)
{
  if (hub->preempt_timer >= 0) /* a page only read stays shared with the parent */
    hub->preempt_timer = -1;   /* note A */
}

void kz__preempt_hold(bool hold)
{
  uint64_t m = 1ull << (KZ__SIG_PREEMPT - 1);
  kz__syscall(SYS_rt_sigprocmask, hold ? SIG_BLOCK : SIG_UNBLOCK, &m, NULL, sizeof m);
}
