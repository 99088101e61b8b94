/* signal.c: signal handlers installed without SA_RESTART interrupt a blocked
 * call with EINTR, as they do natively.
 *
 * Natively the kernel interrupts the thread that takes the signal.  Under the
 * shim the green threads share an OS thread parked in the hub's epoll_wait,
 * which libev simply restarts, so the shim wraps such handlers: after the
 * program's handler has run, the hub is told (kz__hub_post, which is
 * async-signal-safe), and on the hub the main green thread, if it is parked
 * in an interposed call, is woken with EINTR: it is the thread a
 * process-directed signal interrupts in a single-threaded program, and where
 * servers keep their accept loop.  A handler installed with SA_RESTART is
 * left alone: the call resumes, as natively.
 *
 * Notes.
 * A. sigaction() reports the program's own handler and flags back to it;
 *    the wrapper is invisible.  glibc's signal() installs with SA_RESTART
 *    through an internal call, so it needs nothing here.
 * B. The message to the hub is static and posted at most once until it has
 *    run (an atomic flag), so a burst of signals cannot exhaust anything.
 */
#include "shim.h"

#include <stdatomic.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* The program's own disposition of each signal it wrapped. */
static struct sigaction user_act[_NSIG];
static _Atomic bool wrapped[_NSIG];

static struct kz__hub *main_hub;
static struct kz__post interrupt_post;
static atomic_flag interrupt_posted = ATOMIC_FLAG_INIT;

void kz_shim_signal_init(struct kz__hub *hub) { main_hub = hub; }

/* On the hub: wake the main green thread out of an interposed wait. */
static void interrupt_main(struct kz__post *p)
{
  struct kz_green *g = main_hub->main;
  atomic_flag_clear(&interrupt_posted);
  if (g->state == KZ_BLOCKED &&
      (g->waiting.kind == KZ__WAIT_FD || g->waiting.kind == KZ__WAIT_SLEEP))
    kz__wake(g, -EINTR);
}

static void wrapper(int sig, siginfo_t *si, void *uc)
{
  struct sigaction *a = &user_act[sig];
  int saved = errno;
  if (a->sa_flags & SA_SIGINFO)
    a->sa_sigaction(sig, si, uc);
  else if (a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN)
    a->sa_handler(sig);
  if (main_hub && !atomic_flag_test_and_set(&interrupt_posted)) { /* note B */
    interrupt_post.fn = interrupt_main;
    kz__hub_post(main_hub, &interrupt_post);
  }
  errno = saved;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
  struct sigaction mine, prev, prev_user;
  bool wrap, was_wrapped;
  int r;
  if (sig <= 0 || sig >= _NSIG || !kz_shim.ready || !(kz_shim.patch & KZ_PATCH_IO))
    return REAL(sigaction)(sig, act, old);
  wrap = act && !(act->sa_flags & SA_RESTART) && !(act->sa_flags & SA_RESETHAND) &&
         ((act->sa_flags & SA_SIGINFO) ? act->sa_sigaction != NULL
                                       : act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN);
  prev_user = user_act[sig];
  was_wrapped = atomic_load(&wrapped[sig]);
  if (wrap) {
    mine = *act;
    mine.sa_flags |= SA_SIGINFO;
    mine.sa_sigaction = wrapper;
    user_act[sig] = *act; /* before the wrapper can run */
  }
  r = REAL(sigaction)(sig, wrap ? &mine : act, &prev);
  if (r < 0)
    return r;
  if (old)
    *old = was_wrapped ? prev_user : prev; /* note A */
  if (act)
    atomic_store(&wrapped[sig], wrap);
  return 0;
}
