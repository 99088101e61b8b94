/* signal.c: signal handlers interrupt a blocked call with EINTR as they do
 * natively, and calls made from a handler pass straight through.
 *
 * Natively the kernel interrupts the thread that takes the signal.  Under the
 * shim the green threads share an OS thread parked in the hub's epoll_wait,
 * which libev simply restarts, so the shim wraps every handler the program
 * installs: the wrapper marks the thread as in a handler (kz_shim_in_handler,
 * so the handler's own calls are never parked: note E), runs the program's handler,
 * then tells the main hub (kz__hub_post, which is async-signal-safe).  On the
 * hub, the main green thread, if it is parked in an interposed call, is
 * woken with EINTR when the kernel would have interrupted that call:
 *   - after a handler without SA_RESTART: any interposed blocking call;
 *   - after any handler: the calls signal(7) never restarts (sleeps, poll,
 *     select, epoll_wait, and waits bounded by SO_RCVTIMEO/SO_SNDTIMEO);
 *   - otherwise the call resumes, as with SA_RESTART natively.
 * Why the main green thread: a process-directed signal goes to the main
 * thread unless it blocks the signal (the kernel prefers the thread-group
 * leader), so it is the thread whose call is interrupted natively, and the
 * one where a single-threaded server keeps its accept loop.  Other green
 * threads are left alone, as other threads are natively.
 *
 * Notes.
 * A. sigaction() reports the program's own handler and flags back to it;
 *    the wrapper is invisible.  signal() (bsd_signal) is glibc's: it
 *    installs with SA_RESTART through an internal call the shim cannot see,
 *    so it is reimplemented here on top of sigaction.
 * B. The message to the hub is static and posted at most once until it has
 *    run (an atomic flag), so a burst of signals cannot exhaust anything.
 *    Only handlers that ran after the main green thread parked count: two
 *    counters, read when it parks, tell which (a signal handled just before
 *    a call does not interrupt that call natively either).
 * C. The wrapper reads SA_RESTART from the kernel's current disposition, so
 *    siginterrupt() (which changes it through glibc's internal sigaction) is
 *    honoured; after SA_RESETHAND the program's flags at installation are
 *    used, as the kernel does.
 * D. A handler that leaves with siglongjmp/longjmp never returns to the
 *    wrapper: the jump functions clear the in-handler mark.
 * E. "Pass straight through" is for the calls that would park.  The calls
 *    that only ask who is running (shim_identity in shim.h: pthread_self,
 *    thread-specific data) answer in a handler for the green thread the
 *    OS thread was running, whose stack the handler runs on, as natively
 *    for the thread a handler interrupts (thread.c, note I).  They read
 *    kz__self(), not the mark, so handlers installed before the shim
 *    started, which are not wrapped, are answered the same way.
 * F. pause and sigsuspend (sigwait.c) wait for a handler to run.  Their
 *    green threads, on the main hub, are listed here and all woken with
 *    EINTR after any wrapped handler ran since their call began, wherever
 *    it ran (the hub's context, another green thread, another OS thread):
 *    natively one process-directed signal interrupts one thread, but a
 *    thread waits in pause for exactly that, and which one the kernel picks
 *    is not the program's to choose.  The wait holds the hub (a signal is
 *    the only thing that ends it, so it is not a deadlock).
 */
#include "shim.h"

#include <stdatomic.h>
#include <string.h>

#define EXPORT KZ_SHIM_EXPORT

KZ_TLS int kz_shim_in_handler;

static struct sigaction user_act[_NSIG]; /* the program's disposition, if wrapped */

static struct kz__hub *main_hub;
static struct kz_green *main_green;
static _Atomic unsigned long handled;           /* handlers run so far */
static _Atomic unsigned long handled_norestart; /* of which without SA_RESTART */
static struct kz__post interrupt_post;
static atomic_flag interrupt_posted = ATOMIC_FLAG_INIT;

/* The main green thread's current park (hub thread only; note B). */
static struct {
  int intr;                 /* enum kz_shim_intr, 0: not parked in a call */
  unsigned long handled;    /* counters when it parked */
  unsigned long norestart;
} mark;

void kz_shim_signal_init(struct kz__hub *hub)
{
  main_hub = hub;
  main_green = hub->main;
}

void kz_shim_intr_begin(struct kz_green *g, int intr)
{
  if (g != main_green)
    return;
  mark.handled = atomic_load(&handled);
  mark.norestart = atomic_load(&handled_norestart);
  mark.intr = intr;
}

void kz_shim_intr_end(struct kz_green *g)
{
  if (g == main_green)
    mark.intr = 0;
}

/* Green threads of the main hub in pause or sigsuspend (note F; hub thread
   only). */
struct suspender {
  struct kz__link link;  /* in suspenders */
  struct kz_green *g;
  unsigned long handled; /* handlers run when its call began */
};
static struct kz__link suspenders = {&suspenders, &suspenders};

unsigned long kz_shim_handled(void) { return atomic_load(&handled); }

int kz_shim_suspend(struct kz_green *g, unsigned long since)
{
  struct suspender s = {.g = g, .handled = since};
  int r;
  if (g->hub != main_hub)
    return -EPERM;
  if (atomic_load(&handled) != since)
    return -EINTR; /* one ran as the mask changed */
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "a signal handler"};
  kz__list_push(&suspenders, &s.link);
  kz__hub_hold(g->hub); /* only a signal can end it: not a deadlock */
  kz_shim_stats().parks++;
  r = kz__park(-1);
  kz__hub_unhold(g->hub);
  kz__list_remove(&s.link);
  return r == -ECANCELED ? r : -EINTR;
}

/* On the hub: wake every suspender a handler ran for. */
static void interrupt_suspenders(void)
{
  unsigned long now = atomic_load(&handled);
  for (struct kz__link *l = suspenders.next; l != &suspenders; l = l->next) {
    struct suspender *s = kz__container_of(l, struct suspender, link);
    if (s->handled != now && kz__wake(s->g, -EINTR))
      kz_shim_stats().eintr++;
  }
}

/* On the hub: wake the main green thread with EINTR if a handler ran since
   it parked and would have interrupted its call; and the suspenders. */
static void interrupt_main(struct kz__post *p)
{
  atomic_flag_clear(&interrupt_posted);
  interrupt_suspenders();
  if (!mark.intr || main_green->state != KZ_BLOCKED)
    return;
  if (atomic_load(&handled_norestart) != mark.norestart ||
      (mark.intr == KZ_INTR_ALWAYS && atomic_load(&handled) != mark.handled)) {
    if (kz__wake(main_green, -EINTR)) {
      kz_shim_stats().eintr++;
      if (KZ_UNLIKELY(kz_shim.debug))
        kz__say("a signal handler ran: the main green thread's blocked call fails with EINTR");
    }
  }
}

/* Note C. */
static bool restarts(int sig, void (*self)(int, siginfo_t *, void *))
{
  struct sigaction cur;
  if (REAL(sigaction)(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == self)
    return (cur.sa_flags & SA_RESTART) != 0;
  return (user_act[sig].sa_flags & SA_RESTART) != 0;
}

static void wrapper(int sig, siginfo_t *si, void *uc)
{
  struct sigaction *a = &user_act[sig];
  int saved;
  kz_shim_in_handler++;
  if (a->sa_flags & SA_SIGINFO)
    a->sa_sigaction(sig, si, uc);
  else
    a->sa_handler(sig);
  kz_shim_in_handler--;
  saved = errno; /* what the handler left is the program's business */
  atomic_fetch_add(&handled, 1);
  if (!restarts(sig, wrapper))
    atomic_fetch_add(&handled_norestart, 1);
  if (main_hub && !atomic_flag_test_and_set(&interrupt_posted)) { /* note B */
    interrupt_post.fn = interrupt_main;
    kz__hub_post(main_hub, &interrupt_post);
  }
  errno = saved;
}

static bool is_handler(const struct sigaction *act)
{
  return act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN; /* a union with sa_sigaction */
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
  struct sigaction mine, prev, prev_user;
  bool wrap;
  if (sig <= 0 || sig >= _NSIG || !kz_shim.ready)
    return REAL(sigaction)(sig, act, old);
  wrap = act && is_handler(act);
  prev_user = user_act[sig];
  if (wrap) {
    mine = *act;
    mine.sa_flags |= SA_SIGINFO;
    mine.sa_sigaction = wrapper;
    user_act[sig] = *act; /* before the wrapper can run */
  }
  if (REAL(sigaction)(sig, wrap ? &mine : act, &prev) < 0)
    return -1;
  kz_shim_switch_point(); /* init.c, note D */
  if (old) /* note A */
    *old = (prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction == wrapper ? prev_user : prev;
  return 0;
}

/* glibc's signal(): BSD semantics (note A). */
EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
  struct sigaction act, old;
  memset(&act, 0, sizeof act);
  act.sa_handler = handler;
  act.sa_flags = SA_RESTART;
  if (sig > 0 && sig < _NSIG)
    sigaddset(&act.sa_mask, sig);
  if (sigaction(sig, &act, &old) < 0)
    return SIG_ERR;
  return old.sa_handler;
}

EXPORT sighandler_t bsd_signal(int sig, sighandler_t handler) { return signal(sig, handler); }

/* ---- Leaving a handler by a jump (note D) -------------------------------- */

EXPORT _Noreturn void siglongjmp(sigjmp_buf env, int val)
{
  kz_shim_in_handler = 0;
  REAL(siglongjmp)(env, val);
  __builtin_unreachable();
}

EXPORT _Noreturn void longjmp(jmp_buf env, int val)
{
  kz_shim_in_handler = 0;
  REAL(longjmp)(env, val);
  __builtin_unreachable();
}

EXPORT _Noreturn void _longjmp(jmp_buf env, int val)
{
  kz_shim_in_handler = 0;
  REAL(_longjmp)(env, val);
  __builtin_unreachable();
}

EXPORT _Noreturn void __longjmp_chk(jmp_buf env, int val)
{
  kz_shim_in_handler = 0;
  REAL(__longjmp_chk)(env, val);
  __builtin_unreachable();
}
