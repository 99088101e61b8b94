/* debug.c: diagnostics: kz_dump (every green thread with a libunwind
 * backtrace), stack-overflow reports, the verify build's invariant checks,
 * and kz__say.
 *
 * Notes.
 * A. A suspended green thread is unwound from the frame kz__switch left on
 *    its stack (switch.h names the slots): the saved registers and resume
 *    address are copied into a ucontext, which is what libunwind's
 *    unw_init_local takes on x86_64.  The walk stops at kz__trampoline,
 *    whose CFI ends the chain.
 * B. Fatal signals.  SIGSEGV, SIGBUS, SIGILL and SIGFPE get fatal_handler,
 *    installed once, when the first hub starts, on an alternate signal stack
 *    per hub thread (an overflow runs into the guard page below the stack
 *    and faults on a stack that has no room left).  A fault (si_code > 0)
 *    on a hub's thread is reported (the crash report, once per process),
 *    then the handler resets the default disposition and returns: the
 *    faulting instruction runs again and the process dies of it as it would
 *    have, with the kernel's signal information and core dump.  A signal
 *    sent with kill, raise, tgkill or sigqueue (si_code <= 0) does not repeat
 *    by itself, so it is sent again to the same thread with the default
 *    disposition and unblocked: the process ends inside the handler, with
 *    the status (and core dump) the default action gives natively.  A
 *    SIGSEGV at most 64 KiB below the stack pointer is reported as a stack
 *    overflow too: the main green thread runs on the OS thread's own stack,
 *    whose guard gap is the kernel's, not one kudzu can name.
 * C. A handler that was there before ours is called instead (a fault that
 *    is not a stack overflow may be part of someone's design: a garbage
 *    collector's write barrier, a JIT's guard).  A program that installs
 *    its own handler later sees ours as the previous one and may chain to
 *    it when it declines the fault: ours then does what the default
 *    disposition, which is what it replaced, would do (report, then note B).
 *    An ignored signal stays ignored when sent; a fault cannot be ignored
 *    (the kernel forces the default action), so it is not either.
 * D. The crash report is bounded and async-signal-safe: no stdio, no
 *    allocation (static storage: one report per process).  Of the other
 *    green threads, the first CRASH_SCAN are examined, and those whose
 *    shown frames are the same (a server's connection threads all parked in
 *    one read) are listed once with their count, as Go groups goroutine
 *    profiles: at most CRASH_OTHERS stacks of CRASH_OTHER_FRAMES frames.
 *    KUDZU_CRASH=short leaves the other green threads out; all (the
 *    default) lists them.  A parked green
 *    thread's first frames are kudzu's (the park, the wait, the interposed
 *    call): they are counted, not shown, so the frames shown are where the
 *    program waits.  Which frames are kudzu's is told by address, against
 *    the executable segments of libkudzu and the preload library found
 *    with dl_iterate_phdr when the handlers are installed (the handler
 *    itself may not take the loader's lock).
 * E. Several hubs.  The report covers every hub, each headed with its OS
 *    thread (id and name) and whether the fault is there.  What may the
 *    faulting thread read of a hub that runs on another core?  Nothing but
 *    its OS thread's id: hub_tids, atomic words written when the hub starts
 *    and ends.  Its green-thread list, its current green thread and the
 *    stacks of its parked ones change under a reader without any lock (a
 *    green thread resumed while libunwind walks its stack overwrites the
 *    frames being read; a green thread that ends gives its stack and its
 *    struct back), and its struct itself may be freed if the hub ends
 *    meanwhile.  Stopping it by a signal first is not enough either: the
 *    reporter would then unwind while the stopped thread may hold a lock the
 *    unwinder needs (the loader's, which libunwind's unw_step takes through
 *    dl_iterate_phdr, and glibc takes without blocking signals: a C++
 *    throw, a dlopen), and wait for ever.  So each hub writes its own part,
 *    on its own thread, in a handler of CRASH_SIGNAL, where its state is as
 *    quiescent as the faulting hub's is in the fault's handler and the
 *    context it was running is the handler's interrupted one (its running
 *    green thread's backtrace, which nobody else could take).  The hubs are
 *    asked one at a time, the reporter holding no lock meanwhile, and each
 *    resumes once its part is written.  Every wait is bounded: a hub that
 *    has not begun its part CRASH_BEGIN_NS after the signal (the signal
 *    blocked by the program's raw sigprocmask, the thread stopped in the
 *    kernel, or waiting for a lock the faulting thread holds) is named as
 *    not answering and skipped, and the handshake (asked: ASKED, then BEGUN
 *    by the hub or SKIPPED by the reporter, one compare-and-swap each)
 *    guarantees it never starts late, writing over the next one; a hub
 *    that has begun gets CRASH_PART_NS to finish.  CRASH_SIGNAL is the
 *    monitor's backtrace signal, never blocked on a hub's OS thread
 *    (sigmask.c, note A, as the fault signals are not), and its handler is
 *    installed when a report starts: the monitor's is no longer wanted.  A
 *    fault on a second hub while a report is written waits (bounded) for
 *    the report's end before dying, and its hub answers too, its running
 *    context showing where it faulted.  An id that is no thread of the
 *    process any more (a hub that ended, the parent's hubs after a fork)
 *    fails tgkill with ESRCH and is skipped without a word; after the fork
 *    of a threaded process the child's table is reset to its own hub.
 * F. libunwind calls libc through the dynamic linker like any library:
 *    sigprocmask around its locks, open, read and mmap to read an object's
 *    symbols.  Under the shim, in a green thread, these are the program's
 *    calls: the mask is the green thread's alone (the OS thread's signals
 *    stay unblocked while libunwind holds its lock), and every interposed
 *    call may yield to the hub (preload/init.c, note D).  Yielding from a
 *    handler that runs on the alternate signal stack leaves frames there
 *    that the next signal overwrites, and leaves libunwind's lock held by
 *    the OS thread: the next unwinding on that thread waits for ever (seen:
 *    a hub faulting at address 0x30 in ev_run, then its crash report
 *    stuck on libunwind's lock).  A green thread calling kz_dump could so
 *    yield with that lock held, and the next kz_dump on its hub wait for
 *    ever; or park in a write to a full pipe while the others changed the
 *    list it walks.  So the runtime's handlers that unwind (the fault's, a hub's
 *    part of the report, and the monitor's: monitor.c, note B), kz_dump and
 *    the canary's overflow report take the hub off its green thread while
 *    they run (hub->current NULL, restored on the way out): the shim passes
 *    every call straight through, as on the hub's own context, and the
 *    slice's signal sees no green thread to preempt.  Nothing switches
 *    meanwhile, so the interrupted code finds hub->current as it left it.
 */
#include "internal.h"

#ifndef UNW_LOCAL_ONLY
#define UNW_LOCAL_ONLY
#endif
#include <libunwind.h>

#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define MAX_FRAMES 48

KZ_INTERNAL const char *kz__green_name(struct kz_green *g, char buf[24]);

void kz__say(const char *fmt, ...)
{
  char buf[512];
  va_list ap;
  int n = snprintf(buf, sizeof buf, "kudzu: ");
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2)
    n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  (void)!kz__os_write(2, buf, (size_t)n);
}

/* ---- Async-signal-safe output ------------------------------------------
 * The crash report runs in a signal handler, so it formats with these
 * instead of stdio (which may lock or allocate) and writes with
 * kz__os_write.  kz_dump shares them. */

struct out {
  int fd;
  size_t n;
  char buf[256];
};

static void out_flush(struct out *o)
{
  if (o->n)
    (void)!kz__os_write(o->fd, o->buf, o->n);
  o->n = 0;
}

static void out_str(struct out *o, const char *s)
{
  for (; *s; s++) {
    if (o->n == sizeof o->buf)
      out_flush(o);
    o->buf[o->n++] = *s;
  }
}

/* v in base 10, or in base 16 with "0x" and at least width digits. */
static void out_num(struct out *o, unsigned long v, unsigned base, int width)
{
  char t[24];
  int i = sizeof t - 1;
  t[i] = 0;
  do {
    t[--i] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v && i > 0);
  while (sizeof t - 1 - (size_t)i < (size_t)width && i > 0)
    t[--i] = '0';
  if (base == 16)
    out_str(o, "0x");
  out_str(o, t + i);
}

static void backtrace_from(struct out *o, unw_cursor_t *cur, int first, int max);

/* Write the frames of cursor, at most max (async-signal-safe). */
static void backtrace_out(struct out *o, unw_cursor_t *cur, int max)
{
  backtrace_from(o, cur, 0, max);
}

/* The same, numbering the first frame `first`. */
static void backtrace_from(struct out *o, unw_cursor_t *cur, int first, int max)
{
  for (int i = first; i < first + max; i++) {
    unw_word_t ip = 0, off = 0;
    char name[256];
    unw_get_reg(cur, UNW_REG_IP, &ip);
    if (!ip)
      break;
    out_str(o, "    #");
    out_num(o, (unsigned long)i, 10, 0);
    out_str(o, i < 10 ? "  " : " ");
    out_num(o, (unsigned long)ip, 16, 16);
    if (unw_get_proc_name(cur, name, sizeof name, &off) == 0) {
      out_str(o, " ");
      out_str(o, name);
      out_str(o, "+");
      out_num(o, (unsigned long)off, 16, 0);
      out_str(o, "\n");
    } else {
      out_str(o, " ?\n");
    }
    if (unw_step(cur) <= 0) {
      out_flush(o);
      return;
    }
  }
  out_str(o, "    ...\n");
  out_flush(o);
}

static void backtrace_write(int fd, unw_cursor_t *cur, int max)
{
  struct out o = {.fd = fd};
  backtrace_out(&o, cur, max);
}

/* Note A. */
static int cursor_of_suspended(struct kz_green *g, unw_context_t *uc, unw_cursor_t *cur)
{
  uint64_t *f = g->sp;
  memset(uc, 0, sizeof *uc);
  uc->uc_mcontext.gregs[REG_R15] = (greg_t)f[KZ__SW_R15];
  uc->uc_mcontext.gregs[REG_R14] = (greg_t)f[KZ__SW_R14];
  uc->uc_mcontext.gregs[REG_R13] = (greg_t)f[KZ__SW_R13];
  uc->uc_mcontext.gregs[REG_R12] = (greg_t)f[KZ__SW_R12];
  uc->uc_mcontext.gregs[REG_RBX] = (greg_t)f[KZ__SW_RBX];
  uc->uc_mcontext.gregs[REG_RBP] = (greg_t)f[KZ__SW_RBP];
  uc->uc_mcontext.gregs[REG_RIP] = (greg_t)f[KZ__SW_RIP];
  uc->uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)(f + KZ__SW_WORDS);
  return unw_init_local(cur, uc);
}

static void describe_wait(int fd, struct kz_green *g)
{
  const struct kz__wait_info *w = &g->waiting;
  switch (w->kind) {
  case KZ__WAIT_SLEEP:
    dprintf(fd, " waiting on a timer (%.3f s left)", g->until - kz__now());
    break;
  case KZ__WAIT_FD:
    dprintf(fd, " waiting on fd %d for %s%s%s", w->arg, (w->arg2 & KZ_READ) ? "read" : "",
            (w->arg2 & KZ_READ) && (w->arg2 & KZ_WRITE) ? "+" : "",
            (w->arg2 & KZ_WRITE) ? "write" : "");
    break;
  case KZ__WAIT_JOIN:
    dprintf(fd, " waiting to join green %u", (unsigned)w->arg2);
    break;
  case KZ__WAIT_SYNC:
    dprintf(fd, " waiting on %s", w->what ? w->what : "a synchronisation object");
    break;
  case KZ__WAIT_REMOTE:
    dprintf(fd, " waiting on another OS thread%s%s", w->what ? ": " : "", w->what ? w->what : "");
    break;
  default:
    break;
  }
  if (g->state == KZ_BLOCKED && ev_is_active(&g->timer) && w->kind != KZ__WAIT_SLEEP)
    dprintf(fd, " (timeout in %.3f s)", g->until - kz__now());
}

/* g's entry; self is the green thread that dumps (NULL: the hub's context). */
static void dump_one(int fd, struct kz_green *self, struct kz_green *g)
{
  char nbuf[24];
  unw_context_t uc;
  unw_cursor_t cur;
  int st = g->state == KZ__S_READY ? KZ_RUNNING : g->state == KZ__S_AWAY ? KZ_BLOCKED : g->state;
  dprintf(fd, "green %u \"%s\" %s%s", (unsigned)g->id, kz__green_name(g, nbuf), kz_state_name(st),
          g == self ? " (current)" : "");
  if (g->state == KZ_BLOCKED)
    describe_wait(fd, g);
  if (g->flags & KZ__G_CANCEL)
    dprintf(fd, " [cancel requested]");
  dprintf(fd, "\n");
  if (g->state == KZ_PENDING) {
    dprintf(fd, "    (not started)\n");
    return;
  }
  if (g == self) {
    unw_getcontext(&uc);
    if (unw_init_local(&cur, &uc) == 0) {
      unw_step(&cur); /* skip dump_one */
      unw_step(&cur); /* and kz_dump */
      backtrace_write(fd, &cur, MAX_FRAMES);
    }
    return;
  }
  if (cursor_of_suspended(g, &uc, &cur) == 0)
    backtrace_write(fd, &cur, MAX_FRAMES);
}

int kz_dump(int fd)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *self;
  struct kz__link *l;
  if (!hub) {
    dprintf(fd, "kudzu: no hub on this OS thread\n");
    return 0;
  }
  self = kz__runtime_enter(); /* note F: the runtime's own scope (sched.c, note H) */
  dprintf(fd, "kudzu hub %p: %zu green threads%s\n", (void *)hub, hub->nlive,
          self ? "" : " (dumped from a hub callback)");
  for (l = hub->all.next; l != &hub->all; l = l->next)
    dump_one(fd, self, kz__container_of(l, struct kz_green, all));
  kz__runtime_leave(self);
  return 0;
}

/* ---- Fatal signals: the crash report (notes B, C, D) ------------------- */

/* The signals a fault raises.  Each gets fatal_handler. */
static const int fatal_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
static struct sigaction old_act[_NSIG]; /* the disposition before ours */
static pthread_once_t fatal_once = PTHREAD_ONCE_INIT;
static bool crash_all = true;           /* KUDZU_CRASH: list the other green threads */
static atomic_flag reporting = ATOMIC_FLAG_INIT; /* one report per process */

#define CRASH_FRAMES 24     /* frames of the crashing green thread */
#define CRASH_OTHER_FRAMES 8 /* frames of each other green thread */
#define CRASH_OTHERS 64     /* distinct stacks of other green threads listed, at most */
#define CRASH_SCAN 10000    /* other green threads examined, at most */

static const char *sig_name(int sig)
{
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGBUS: return "SIGBUS";
  case SIGILL: return "SIGILL";
  case SIGFPE: return "SIGFPE";
  default: return "a fatal signal";
  }
}

/* What g is parked on, without stdio or floating point (the crash report). */
static void wait_out(struct out *o, struct kz_green *g)
{
  const struct kz__wait_info *w = &g->waiting;
  switch (w->kind) {
  case KZ__WAIT_SLEEP: out_str(o, " waiting on a timer"); break;
  case KZ__WAIT_FD:
    out_str(o, " waiting on fd ");
    out_num(o, (unsigned long)w->arg, 10, 0);
    out_str(o, (w->arg2 & KZ_READ) && (w->arg2 & KZ_WRITE) ? " for read+write"
               : (w->arg2 & KZ_READ)                      ? " for read"
                                                          : " for write");
    break;
  case KZ__WAIT_JOIN:
    out_str(o, " waiting to join green ");
    out_num(o, (unsigned)w->arg2, 10, 0);
    break;
  case KZ__WAIT_SYNC:
    out_str(o, " waiting on ");
    out_str(o, w->what ? w->what : "a synchronisation object");
    break;
  case KZ__WAIT_REMOTE: out_str(o, " waiting on another OS thread"); break;
  default: break;
  }
}

/* The line naming g: green ID "NAME" STATE [what it waits on]. */
static void green_out(struct out *o, struct kz_green *g)
{
  char nbuf[24];
  int st = g->state == KZ__S_READY ? KZ_RUNNING : g->state == KZ__S_AWAY ? KZ_BLOCKED : g->state;
  out_str(o, "green ");
  out_num(o, (unsigned)g->id, 10, 0);
  out_str(o, " \"");
  out_str(o, kz__green_name(g, nbuf));
  out_str(o, "\" ");
  out_str(o, kz_state_name(st));
  if (g->state == KZ_BLOCKED)
    wait_out(o, g);
}

/* The executable segments of libkudzu and of the preload library, found
   when the handlers are installed (note D). */
static struct {
  uintptr_t lo, hi;
} own_text[8];
static int n_own_text;

static int own_text_find(struct dl_phdr_info *info, size_t size, void *arg)
{
  bool mine = info->dlpi_name && strstr(info->dlpi_name, "libkudzu-preload");
  (void)size;
  for (int i = 0; !mine && i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    mine = ph->p_type == PT_LOAD && (uintptr_t)arg >= lo && (uintptr_t)arg < lo + ph->p_memsz;
  }
  for (int i = 0; mine && i < info->dlpi_phnum && n_own_text < 8; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
      own_text[n_own_text].lo = info->dlpi_addr + ph->p_vaddr;
      own_text[n_own_text++].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    }
  }
  return 0;
}

static bool in_own_text(unw_word_t ip)
{
  for (int i = 0; i < n_own_text; i++)
    if (ip >= own_text[i].lo && ip < own_text[i].hi)
      return true;
  return false;
}

/* Put cur on g's first frame that is not kudzu's own (its park, the wait,
   the interposed call: where the program waits starts after them).
   Returns how many were passed, or -1 if g cannot be unwound.  A stack of
   nothing but kudzu's frames is left whole (0). */
static int program_frames(struct kz_green *g, unw_context_t *uc, unw_cursor_t *cur)
{
  unw_word_t ip = 0;
  int passed = 0;
  if (cursor_of_suspended(g, uc, cur) != 0)
    return -1;
  while (passed < 32 && unw_get_reg(cur, UNW_REG_IP, &ip) == 0 && in_own_text(ip)) {
    if (unw_step(cur) <= 0)
      return cursor_of_suspended(g, uc, cur) == 0 ? 0 : -1;
    passed++;
  }
  return passed < 32 ? passed : (cursor_of_suspended(g, uc, cur) == 0 ? 0 : -1);
}

/* A parked green thread's frames, from the first that is the program's. */
static void parked_out(struct out *o, struct kz_green *g)
{
  unw_context_t uc;
  unw_cursor_t cur;
  int passed = program_frames(g, &uc, &cur);
  if (passed < 0)
    return;
  if (passed) {
    out_str(o, "    (");
    out_num(o, (unsigned long)passed, 10, 0);
    out_str(o, passed == 1 ? " frame" : " frames");
    out_str(o, " in kudzu)\n");
  }
  backtrace_from(o, &cur, passed, CRASH_OTHER_FRAMES);
}

/* What the report shows of g's stack, as a number: a hash of the frames
   shown (FNV-1a over their addresses), or of its body if it has not
   started.  Green threads with the same are listed once. */
static uint64_t stack_key(struct kz_green *g)
{
  unw_context_t uc;
  unw_cursor_t cur;
  uint64_t h = 14695981039346656037ull;
  unw_word_t ip;
  if (g->state == KZ_PENDING || program_frames(g, &uc, &cur) < 0)
    return h ^ (uint64_t)(uintptr_t)g->fn;
  for (int i = 0; i < CRASH_OTHER_FRAMES; i++) {
    if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || !ip)
      break;
    h = (h ^ ip) * 1099511628211ull;
    if (unw_step(&cur) <= 0)
      break;
  }
  return h;
}

/* Note D: the green threads of hub but its current one, those with the
   same stack listed once with their count, at most CRASH_OTHERS stacks,
   from the first CRASH_SCAN green threads.  The groups are on the stack
   (the signal stack, 1.5 KiB): two hubs' parts never share them (note E). */
struct crash_group {
  uint64_t key;            /* stack_key of its green threads */
  struct kz_green *first;  /* the one shown */
  size_t count;            /* how many have that key */
};

static void others_out(struct out *o, struct kz__hub *hub, struct kz_green *running)
{
  struct crash_group groups[CRASH_OTHERS];
  size_t ngroups = 0, unlisted = 0, unseen = 0, seen = 0;
  for (struct kz__link *l = hub->all.next; l != &hub->all; l = l->next) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    uint64_t key;
    size_t i;
    if (g == running)
      continue;
    if (seen++ >= CRASH_SCAN) {
      unseen++;
      continue;
    }
    key = stack_key(g);
    for (i = 0; i < ngroups && groups[i].key != key; i++)
      ;
    if (i < ngroups)
      groups[i].count++;
    else if (ngroups < CRASH_OTHERS)
      groups[ngroups++] = (struct crash_group){key, g, 1};
    else
      unlisted++;
  }
  for (size_t i = 0; i < ngroups; i++) {
    green_out(o, groups[i].first);
    if (groups[i].count > 1) {
      out_str(o, " (and ");
      out_num(o, (unsigned long)groups[i].count - 1, 10, 0);
      out_str(o, " more with this stack)");
    }
    out_str(o, "\n");
    if (groups[i].first->state == KZ_PENDING)
      out_str(o, "    (not started)\n");
    else
      parked_out(o, groups[i].first);
  }
  if (unlisted) {
    out_str(o, "kudzu: ... and ");
    out_num(o, (unsigned long)unlisted, 10, 0);
    out_str(o, " more with other stacks\n");
  }
  if (unseen) {
    out_str(o, "kudzu: ... and ");
    out_num(o, (unsigned long)unseen, 10, 0);
    out_str(o, " more not examined\n");
  }
  out_flush(o);
}

/* ---- Every hub in the report (note E) -------------------------------------- */

#define CRASH_SIGNAL (SIGRTMAX - 2)   /* monitor.c's BT_SIGNAL (note E) */
#define CRASH_HUBS 1024               /* hubs whose OS thread is known, at most */
#define CRASH_BEGIN_NS 1000000000L    /* a hub asked has 1 s to begin its part */
#define CRASH_PART_NS 10000000000L    /* and 10 s to write it */
#define CRASH_LATE_NS 60000000000L    /* a second fault waits at most this for the report */

static _Atomic pid_t hub_tids[CRASH_HUBS]; /* each hub's OS thread; 0: a free slot */
static _Atomic int hub_tids_lost;          /* hubs that found no free slot */

/* The handshake of one hub's part: the reporter sets asked and state ASKED
   and signals the hub's thread; the hub's handler moves ASKED to BEGUN, or
   the reporter, after CRASH_BEGIN_NS, to SKIPPED (one compare-and-swap
   decides); a hub that began sets DONE.  state is the futex word the
   reporter sleeps on.  over is the futex word a second fault sleeps on. */
enum { PART_ASKED, PART_BEGUN, PART_SKIPPED, PART_DONE };
static struct {
  _Atomic pid_t reporter; /* the OS thread writing the report */
  _Atomic pid_t asked;    /* the hub whose part is wanted now */
  _Atomic int state;      /* PART_* */
  _Atomic int over;       /* 1 once the report is written */
} crash;

static pid_t os_tid(void) { return (pid_t)kz__syscall(SYS_gettid); }

static long mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Sleep while *word is still from, until the CLOCK_MONOTONIC deadline (ns).
   True if it moved. */
static bool wait_moved(_Atomic int *word, int from, long deadline)
{
  long now;
  while (atomic_load(word) == from) {
    struct timespec ts;
    if ((now = mono_ns()) >= deadline)
      return false;
    ts.tv_sec = (deadline - now) / 1000000000L;
    ts.tv_nsec = (deadline - now) % 1000000000L;
    kz__syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, from, &ts, NULL, 0);
  }
  return true;
}

static void wake_all(_Atomic int *word)
{
  kz__syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static void tids_add(pid_t tid)
{
  for (int i = 0; i < CRASH_HUBS; i++) {
    pid_t none = 0;
    if (atomic_compare_exchange_strong(&hub_tids[i], &none, tid))
      return;
  }
  atomic_fetch_add(&hub_tids_lost, 1);
}

static void tids_remove(pid_t tid)
{
  for (int i = 0; i < CRASH_HUBS; i++) {
    pid_t was = tid;
    if (atomic_compare_exchange_strong(&hub_tids[i], &was, 0))
      return;
  }
}

void kz__debug_thread_moved(pid_t from, pid_t to)
{
  for (int i = 0; i < CRASH_HUBS; i++) {
    pid_t was = from;
    if (atomic_compare_exchange_strong(&hub_tids[i], &was, to))
      return;
  }
  tids_add(to);
}

/* The heading of a hub's part: its OS thread, the thread's name (prctl
   reads the calling thread's: each hub heads its own part). */
static void hub_heading(struct out *o, struct kz__hub *hub, const char *role, const char *tail)
{
  char comm[17] = "";
  kz__syscall(SYS_prctl, PR_GET_NAME, comm, 0, 0, 0);
  out_str(o, "kudzu: hub of OS thread ");
  out_num(o, (unsigned long)os_tid(), 10, 0);
  out_str(o, " \"");
  out_str(o, comm);
  out_str(o, "\"");
  out_str(o, role);
  out_str(o, ", ");
  out_num(o, (unsigned long)hub->nlive, 10, 0);
  out_str(o, hub->nlive == 1 ? " green thread" : " green threads");
  out_str(o, tail);
}

/* A hub's part, on its own thread, in the handler of CRASH_SIGNAL (note E):
   the context the signal interrupted (running: the green thread, or NULL),
   then the hub's other green threads. */
static void hub_part(struct kz__hub *hub, struct kz_green *running, void *ucv)
{
  struct out o = {.fd = 2};
  unw_cursor_t cur;
  hub_heading(&o, hub, "", ":\n");
  if (running) {
    green_out(&o, running);
    out_str(&o, " (interrupted for the report)\n");
  } else {
    out_str(&o, "the hub's own context (polling, or running a callback), interrupted for the report\n");
  }
  if (unw_init_local2(&cur, (unw_context_t *)ucv, UNW_INIT_SIGNAL_FRAME) == 0)
    backtrace_out(&o, &cur, CRASH_FRAMES);
  others_out(&o, hub, running);
}

static void crash_part_handler(int sig, siginfo_t *si, void *ucv)
{
  int saved = errno, begun = PART_ASKED;
  struct kz__hub *hub = kz__tls_hub;
  (void)sig;
  (void)si;
  if (atomic_load(&crash.asked) != os_tid() ||
      !atomic_compare_exchange_strong(&crash.state, &begun, PART_BEGUN)) {
    errno = saved; /* not asked, or no longer: the reporter went on */
    return;
  }
  if (hub) {
    struct kz_green *running = kz__runtime_enter(); /* note F */
    hub_part(hub, running, ucv);
    kz__runtime_leave(running);
  }
  atomic_store(&crash.state, PART_DONE);
  wake_all(&crash.state);
  errno = saved;
}

/* Ask the hub of OS thread tid for its part and wait for it (note E). */
static void ask_hub(struct out *o, pid_t tid)
{
  int asked = PART_ASKED;
  atomic_store(&crash.state, PART_ASKED);
  atomic_store(&crash.asked, tid);
  if (kz__syscall(SYS_tgkill, getpid(), tid, CRASH_SIGNAL) < 0)
    return; /* ESRCH: no thread of the process any more */
  if (!wait_moved(&crash.state, PART_ASKED, mono_ns() + CRASH_BEGIN_NS) &&
      atomic_compare_exchange_strong(&crash.state, &asked, PART_SKIPPED)) {
    out_str(o, "kudzu: hub of OS thread ");
    out_num(o, (unsigned long)tid, 10, 0);
    out_str(o, ": no answer within 1 s (the report's signal blocked, or the thread stopped in "
               "the kernel or on a lock): its green threads are not listed\n");
  } else if (!wait_moved(&crash.state, PART_BEGUN, mono_ns() + CRASH_PART_NS)) {
    out_str(o, "kudzu: hub of OS thread ");
    out_num(o, (unsigned long)tid, 10, 0);
    out_str(o, ": its part did not end within 10 s\n");
  }
  out_flush(o);
}

/* The other hubs' parts, one at a time (note E); true if there were any. */
static bool other_hubs_out(struct out *o)
{
  struct sigaction sa = {.sa_sigaction = crash_part_handler,
                         .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART};
  pid_t me = os_tid();
  int asked = 0, lost = atomic_load(&hub_tids_lost);
  sigemptyset(&sa.sa_mask);
  kz__os_sigaction(CRASH_SIGNAL, &sa, NULL);
  for (int i = 0; i < CRASH_HUBS; i++) {
    pid_t tid = atomic_load(&hub_tids[i]);
    if (tid && tid != me) {
      ask_hub(o, tid);
      asked++;
    }
  }
  atomic_store(&crash.asked, 0);
  if (lost) {
    out_str(o, "kudzu: ... and ");
    out_num(o, (unsigned long)lost, 10, 0);
    out_str(o, " hubs whose OS thread is not known\n");
  }
  out_flush(o);
  return asked || lost;
}

/* The faulting hub's green threads but the faulting one (g), then every
   other hub's part (notes D, E). */
static void hubs_out(struct out *o, struct kz__hub *hub, struct kz_green *g)
{
  hub_heading(o, hub, " (the faulting one)", "; the others:\n");
  out_flush(o);
  others_out(o, hub, g);
  if (other_hubs_out(o)) {
    out_str(o, "kudzu: end of the crash report\n");
    out_flush(o);
  }
}

/* The crash report of a fault on a hub's thread (note D): what and where,
   the faulting context's backtrace, then (KUDZU_CRASH=all) the other green
   threads of every hub. */
static void crash_report(struct kz__hub *hub, struct kz_green *g, int sig, const siginfo_t *si, void *ucv,
                         bool overflow)
{
  struct out o = {.fd = 2};
  unw_cursor_t cur;
  out_str(&o, "kudzu: ");
  if (overflow) {
    out_str(&o, "stack overflow ");
  } else {
    out_str(&o, "fatal ");
    out_str(&o, sig_name(sig));
    out_str(&o, " (fault at ");
    out_num(&o, (unsigned long)(uintptr_t)si->si_addr, 16, 0);
    out_str(&o, ") ");
  }
  if (g) {
    char nbuf[24];
    out_str(&o, "in green thread ");
    out_num(&o, (unsigned)g->id, 10, 0);
    out_str(&o, " \"");
    out_str(&o, kz__green_name(g, nbuf));
    out_str(&o, "\"");
    if (overflow) {
      out_str(&o, " (");
      if (g->stack.size && !g->stack.user) {
        out_str(&o, "stack ");
        out_num(&o, (unsigned long)g->stack.size, 10, 0);
        out_str(&o, " bytes, ");
      }
      out_str(&o, "fault at ");
      out_num(&o, (unsigned long)(uintptr_t)si->si_addr, 16, 0);
      out_str(&o, ")");
    }
  } else {
    out_str(&o, overflow ? "on the hub's own stack (a callback recursed too deep?)"
                         : "in a callback run by the hub");
  }
  out_str(&o, "\n");
  out_flush(&o); /* said, whatever the unwinding below meets */
  if (unw_init_local2(&cur, (unw_context_t *)ucv, UNW_INIT_SIGNAL_FRAME) == 0)
    backtrace_out(&o, &cur, CRASH_FRAMES);
  out_flush(&o);
  if (crash_all)
    hubs_out(&o, hub, g);
}

/* Whether this thread writes the report (once per process); if another
   does, wait (bounded) until it has ended, so that the process does not
   die of this fault in the middle of it (note E). */
static bool report_begin(void)
{
  if (!atomic_flag_test_and_set(&reporting)) {
    atomic_store(&crash.reporter, os_tid());
    return true;
  }
  if (atomic_load(&crash.reporter) != os_tid()) /* not a fault inside our own report */
    wait_moved(&crash.over, 0, mono_ns() + CRASH_LATE_NS);
  return false;
}

static void report_end(void)
{
  atomic_store(&crash.over, 1);
  wake_all(&crash.over);
}

/* The default action of sig, as the kernel takes it without a handler
   (note B).  A fault returns: the instruction runs again and the process
   dies of it, with the kernel's own signal information and core dump.  A
   sent signal is sent again to this thread and unblocked, so the process
   ends in here. */
static void die_default(int sig, const siginfo_t *si)
{
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigset_t set;
  kz__os_sigaction(sig, &dfl, NULL);
  if (si->si_code > 0)
    return;
  sigemptyset(&set);
  sigaddset(&set, sig);
  kz__syscall(SYS_tgkill, getpid(), (pid_t)kz__syscall(SYS_gettid), sig);
  kz__syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, NULL, _NSIG / 8);
}

/* Pass the signal to the handler that was there before ours (note C). */
static void chain(const struct sigaction *old, int sig, siginfo_t *si, void *uc)
{
  if (old->sa_flags & SA_SIGINFO)
    old->sa_sigaction(sig, si, uc);
  else
    old->sa_handler(sig);
}

static bool is_handler(const struct sigaction *a)
{
  return a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN; /* a union with sa_sigaction */
}

/* Whether a fault at addr is next to the faulting context's stack pointer:
   an overflow of a stack that has no guard page of kudzu's (the main green
   thread's, on the OS thread's own stack; a stack the program gave). */
static bool near_sp(const void *ucv, const void *addr)
{
#if defined(__x86_64__)
  uintptr_t sp = (uintptr_t)((const ucontext_t *)ucv)->uc_mcontext.gregs[REG_RSP];
  uintptr_t a = (uintptr_t)addr;
  return a + 65536 >= sp && a < sp + 4096;
#else
  (void)ucv;
  (void)addr;
  return false;
#endif
}

/* Notes B and C. */
static void fatal_handler(int sig, siginfo_t *si, void *ucv)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  const struct sigaction *old = &old_act[sig];
  bool fault = si->si_code > 0;
  int saved = errno;
  bool overflow = hub && fault && (sig == SIGSEGV || sig == SIGBUS) &&
                  kz__stack_in_guard(g ? &g->stack : &hub->hub_stack, si->si_addr);
  if (!overflow && is_handler(old)) {
    chain(old, sig, si, ucv);
  } else if (!fault && old->sa_handler == SIG_IGN) {
    /* ignored, as it would have been */
  } else {
    if (hub && fault && report_begin()) {
      struct kz_green *hidden = kz__runtime_enter(); /* note F; g: hub->current */
      crash_report(hub, g, sig, si, ucv, overflow || (sig == SIGSEGV && near_sp(ucv, si->si_addr)));
      kz__runtime_leave(hidden);
      report_end();
    }
    die_default(sig, si);
  }
  errno = saved;
}

void kz__overflow_die(struct kz_green *g, const void *addr)
{
  char nbuf[24];
  unw_context_t uc;
  unw_cursor_t cur;
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  (void)kz__runtime_enter(); /* note F: in a switch, and never returning */
  kz__say("stack overflow in green thread %u \"%s\" (stack %zu bytes at %p, fault at %p)",
          (unsigned)g->id, kz__green_name(g, nbuf), g->stack.size, (void *)g->stack.base, addr);
  unw_getcontext(&uc);
  if (unw_init_local(&cur, &uc) == 0)
    backtrace_write(2, &cur, 24);
  if (crash_all && report_begin()) {
    struct out o = {.fd = 2};
    hubs_out(&o, g->hub, g); /* g's own stack is not to be trusted */
    report_end();
  }
  kz__os_sigaction(SIGSEGV, &dfl, NULL);
  kz__os_raise(SIGSEGV);
  abort();
}

/* Note E: after the fork of a threaded process, the child's hubs are the
   forking thread's alone.  (A process that never had a second thread keeps
   its table: the one stale id fails tgkill, and the child writes no page.) */
static void fatal_atfork_child(void)
{
  if (!kz__fork_threaded())
    return;
  for (int i = 0; i < CRASH_HUBS; i++)
    atomic_store(&hub_tids[i], 0);
  atomic_store(&hub_tids_lost, 0);
  if (kz__tls_hub)
    tids_add(os_tid());
}

/* KUDZU_CRASH, then the handlers, once per process. */
static void fatal_install(void)
{
  struct sigaction sa = {.sa_sigaction = fatal_handler, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER};
  const char *env = secure_getenv("KUDZU_CRASH");
  if (env && *env) {
    if (!strcmp(env, "short"))
      crash_all = false;
    else if (strcmp(env, "all"))
      kz__say("ignoring KUDZU_CRASH=%s (short or all)", env);
  }
  dl_iterate_phdr(own_text_find, (void *)(uintptr_t)kz_dump);
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof fatal_sigs / sizeof *fatal_sigs; i++)
    kz__os_sigaction(fatal_sigs[i], &sa, &old_act[fatal_sigs[i]]);
  pthread_atfork(NULL, NULL, fatal_atfork_child);
}

void kz__debug_thread_init(struct kz__hub *hub)
{
  stack_t ss, old;
  kz__os_once(&fatal_once, fatal_install); /* libc's, not the shim's (internal.h) */
  tids_add(os_tid()); /* note E; its thread never blocks CRASH_SIGNAL (sigmask.c, note A) */
  if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
    return; /* the thread has one already */
  if (!(hub->altstack = malloc(KZ__ALTSTACK_SIZE)))
    return;
  ss = (stack_t){.ss_sp = hub->altstack, .ss_size = KZ__ALTSTACK_SIZE};
  if (sigaltstack(&ss, NULL) != 0) {
    free(hub->altstack);
    hub->altstack = NULL;
  }
}

void kz__debug_thread_term(struct kz__hub *hub)
{
  tids_remove(os_tid());
  if (hub->altstack) {
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(hub->altstack);
    hub->altstack = NULL;
  }
}

/* ---- Verify build ---------------------------------------------------------- */

#ifdef KZ_VERIFY
#define CHECK(c)                                                                   \
  do {                                                                             \
    if (!(c)) {                                                                    \
      kz__say("hub invariant broken: %s (%s:%d)", #c, __FILE__, __LINE__);        \
      abort();                                                                     \
    }                                                                              \
  } while (0)

void kz__verify(struct kz__hub *hub)
{
  size_t n = 0, ready = 0, shared = 0;
  struct kz__link *l;
  CHECK(hub->current == NULL);
  for (struct kz_green *g = hub->run_head; g; g = g->run_next) {
    CHECK(g->hub == hub);
    CHECK(g->state == KZ__S_READY || g->state == KZ_PENDING);
    CHECK(g->run_next || g == hub->run_tail);
    CHECK(++ready <= hub->nlive);
  }
  CHECK(ready == hub->nready);
  CHECK(hub->preempted == NULL || (hub->preempted->hub == hub &&
                                   (hub->preempted->state == KZ__S_READY || hub->preempted->state == KZ__S_GONE)));
  for (l = hub->all.next; l != &hub->all; l = l->next, n++) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    CHECK(l->next->prev == l);
    CHECK(g->hub == hub);
    CHECK(g->state != KZ_DONE && g->state != KZ_CANCELLED);
    CHECK(kz__green_get(g->id) == g);
    CHECK(g->state != KZ_RUNNING);
    if (g->stack.guard == KZ__GUARD_CANARY)
      CHECK(kz__stack_canary_ok(&g->stack));
    shared += g != hub->main && !g->tp;
  }
  CHECK(n == hub->nlive);
  CHECK(shared == hub->nshared);
  CHECK(hub->dying == NULL);
  CHECK((hub->sig.lag & ~hub->sig.os) == 0); /* put off, so still blocked (sigmask.c, note D) */
  CHECK((hub->sig.lag & kz__sigmask_want(hub)) == 0);
}
#else
void kz__verify(struct kz__hub *hub) { (void)hub; }
#endif
