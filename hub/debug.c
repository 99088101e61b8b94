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
 * B. An overflow runs into the guard page below the stack and raises SIGSEGV
 *    on a stack that has no room left, so the handler runs on an alternate
 *    signal stack installed per hub thread.  It reports, restores the
 *    previous disposition and returns: the faulting instruction runs again
 *    and the process dies of SIGSEGV as it would have.  Faults that are not
 *    overflows go to whatever handler was there before.
 */
#include "internal.h"

#ifndef UNW_LOCAL_ONLY
#define UNW_LOCAL_ONLY
#endif
#include <libunwind.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define ALTSTACK_SIZE (64 * 1024)
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

/* Write the frames of cursor to fd, at most max. */
static void backtrace_write(int fd, unw_cursor_t *cur, int max)
{
  for (int i = 0; i < max; i++) {
    unw_word_t ip = 0, off = 0;
    char name[256];
    unw_get_reg(cur, UNW_REG_IP, &ip);
    if (!ip)
      break;
    if (unw_get_proc_name(cur, name, sizeof name, &off) == 0)
      dprintf(fd, "    #%-2d 0x%016lx %s+0x%lx\n", i, (unsigned long)ip, name, (unsigned long)off);
    else
      dprintf(fd, "    #%-2d 0x%016lx ?\n", i, (unsigned long)ip);
    if (unw_step(cur) <= 0)
      return;
  }
  dprintf(fd, "    ...\n");
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

static void dump_one(int fd, struct kz__hub *hub, struct kz_green *g)
{
  char nbuf[24];
  unw_context_t uc;
  unw_cursor_t cur;
  int st = g->state == KZ__S_READY ? KZ_RUNNING : g->state;
  dprintf(fd, "green %u \"%s\" %s%s", (unsigned)g->id, kz__green_name(g, nbuf), kz_state_name(st),
          g == hub->current ? " (current)" : "");
  if (g->state == KZ_BLOCKED)
    describe_wait(fd, g);
  if (g->flags & KZ__G_CANCEL)
    dprintf(fd, " [cancel requested]");
  dprintf(fd, "\n");
  if (g->state == KZ_PENDING) {
    dprintf(fd, "    (not started)\n");
    return;
  }
  if (g == hub->current) {
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
  struct kz__link *l;
  if (!hub) {
    dprintf(fd, "kudzu: no hub on this OS thread\n");
    return 0;
  }
  dprintf(fd, "kudzu hub %p: %zu green threads%s\n", (void *)hub, hub->nlive,
          hub->current ? "" : " (dumped from a hub callback)");
  for (l = hub->all.next; l != &hub->all; l = l->next)
    dump_one(fd, hub, kz__container_of(l, struct kz_green, all));
  return 0;
}

/* ---- Stack overflow (note B) ------------------------------------------- */

static struct sigaction old_segv, old_bus;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;

void kz__overflow_die(struct kz_green *g, const void *addr)
{
  char nbuf[24];
  unw_context_t uc;
  unw_cursor_t cur;
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  kz__say("stack overflow in green thread %u \"%s\" (stack %zu bytes at %p, fault at %p)",
          (unsigned)g->id, kz__green_name(g, nbuf), g->stack.size, (void *)g->stack.base, addr);
  unw_getcontext(&uc);
  if (unw_init_local(&cur, &uc) == 0)
    backtrace_write(2, &cur, 24);
  kz__os_sigaction(SIGSEGV, &dfl, NULL);
  raise(SIGSEGV);
  abort();
}

static void chain(struct sigaction *old, int sig, siginfo_t *si, void *uc)
{
  if (old->sa_flags & SA_SIGINFO) {
    if (old->sa_sigaction) {
      old->sa_sigaction(sig, si, uc);
      return;
    }
  } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
    old->sa_handler(sig);
    return;
  }
  kz__os_sigaction(sig, old->sa_handler == SIG_IGN ? &(struct sigaction){.sa_handler = SIG_DFL} : old, NULL);
}

static void segv_handler(int sig, siginfo_t *si, void *ucv)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  int saved = errno;
  if (hub && ((g && kz__stack_in_guard(&g->stack, si->si_addr)) ||
              (!g && kz__stack_in_guard(&hub->hub_stack, si->si_addr)))) {
    char nbuf[24];
    unw_cursor_t cur;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    if (g)
      kz__say("stack overflow in green thread %u \"%s\" (stack %zu bytes, fault at %p)",
              (unsigned)g->id, kz__green_name(g, nbuf), g->stack.size, si->si_addr);
    else
      kz__say("stack overflow on the hub's own stack (a callback recursed too deep?)");
    if (unw_init_local2(&cur, (unw_context_t *)ucv, UNW_INIT_SIGNAL_FRAME) == 0)
      backtrace_write(2, &cur, 24);
    kz__os_sigaction(SIGSEGV, &dfl, NULL);
    kz__os_sigaction(SIGBUS, &dfl, NULL);
    errno = saved;
    return; /* the fault repeats, now fatal */
  }
  chain(sig == SIGSEGV ? &old_segv : &old_bus, sig, si, ucv);
  errno = saved;
}

static void segv_install(void)
{
  struct sigaction sa = {.sa_sigaction = segv_handler, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER};
  sigemptyset(&sa.sa_mask);
  kz__os_sigaction(SIGSEGV, &sa, &old_segv);
  kz__os_sigaction(SIGBUS, &sa, &old_bus);
}

void kz__debug_thread_init(struct kz__hub *hub)
{
  stack_t ss, old;
  kz__os_once(&segv_once, segv_install); /* libc's, not the shim's (internal.h) */
  if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
    return; /* the thread has one already */
  if (!(hub->altstack = malloc(ALTSTACK_SIZE)))
    return;
  ss = (stack_t){.ss_sp = hub->altstack, .ss_size = ALTSTACK_SIZE};
  if (sigaltstack(&ss, NULL) != 0) {
    free(hub->altstack);
    hub->altstack = NULL;
  }
}

void kz__debug_thread_term(struct kz__hub *hub)
{
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
  size_t n = 0, ready = 0;
  struct kz__link *l;
  CHECK(hub->current == NULL);
  for (struct kz_green *g = hub->run_head; g; g = g->run_next) {
    CHECK(g->hub == hub);
    CHECK(g->state == KZ__S_READY || g->state == KZ_PENDING);
    CHECK(g->run_next || g == hub->run_tail);
    CHECK(++ready <= hub->nlive);
  }
  CHECK(ready == hub->nready);
  for (l = hub->all.next; l != &hub->all; l = l->next, n++) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    CHECK(l->next->prev == l);
    CHECK(g->hub == hub);
    CHECK(g->state != KZ_DONE && g->state != KZ_CANCELLED);
    CHECK(kz__green_get(g->id) == g);
    CHECK(g->state != KZ_RUNNING);
    if (g->stack.guard == KZ__GUARD_CANARY)
      CHECK(kz__stack_canary_ok(&g->stack));
  }
  CHECK(n == hub->nlive);
  CHECK(hub->dying == NULL);
}
#else
void kz__verify(struct kz__hub *hub) { (void)hub; }
#endif
