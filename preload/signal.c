/* signal.c: signal handlers and signal masks as each thread has them
 * natively: a green thread's mask is its own, a signal goes to a green
 * thread that does not block it, and a handler interrupts that thread's
 * blocked call with EINTR as the kernel would; calls made from a handler
 * pass straight through.
 *
 * Masks.  pthread_sigmask and sigprocmask change only the calling green
 * thread's mask (g->sig.mask; a green thread spawned through the API follows
 * the main green thread's, kz__sig_owner); the OS thread blocks what every
 * thread of its hub blocks (hub/sigmask.c, which says why).  So a signal that some
 * green thread does not block reaches the OS thread, and the shim's wrapper
 * around every handler the program installs decides which green thread
 * takes it (the taker); one they all block stays pending in the kernel.
 *
 * Who takes a signal (note G), first that applies:
 *   1. the green thread it was sent to (pthread_kill, raise);
 *   2. the main green thread, if it does not block the signal and is parked
 *      in a call the handler interrupts (the kernel offers a process-
 *      directed signal to the thread-group leader first);
 *   3. the running green thread, if it does not block it (the handler then
 *      runs where it would natively: on its stack, interrupting its code);
 *      on the hub context (every green thread parked), the main green
 *      thread if it does not block it;
 *   4. on the hub context, once the running green thread has given the hub
 *      back: a green thread that does not block it and is parked in a call
 *      the handler interrupts, else the main green thread, else any that
 *      does not block it; if none does (masks changed meanwhile), the signal
 *      is sent to the process again, where it stays pending.
 * The handler runs at once for 1 to 3, in the handler the kernel invoked.
 * For 4 the wrapper does not run it: it keeps the signal blocked on the OS
 * thread (in the context the kernel restores) and posts it to the hub,
 * which sends it again to its own OS thread, for the taker it chose (note
 * H).  A handler for a taker that is not the running green thread runs on
 * the stack of the running one, or the hub's, and answers for the taker
 * (pthread_self, thread-specific data: kz_shim_handler_for, note E).
 *
 * EINTR.  After the handler, the taker, if it is parked in an interposed
 * call (kz_shim_intr_begin), is woken with EINTR when the kernel would
 * have interrupted that call:
 *   - after a handler without SA_RESTART: any interposed blocking call;
 *   - after any handler: the calls signal(7) never restarts (sleeps, poll,
 *     select, epoll_wait, and waits bounded by SO_RCVTIMEO/SO_SNDTIMEO);
 *   - otherwise the call resumes, as with SA_RESTART natively.
 * The wake is posted to the hub (kz__hub_post is async-signal-safe) and
 * given only if the taker is still in the same park (g->sig.park).
 *
 * Notes.
 * A. sigaction() reports the program's own handler and flags back to it;
 *    the wrapper is invisible.  signal() (bsd_signal) is glibc's: it
 *    installs with SA_RESTART through an internal call the shim cannot see,
 *    so it is reimplemented here on top of sigaction.
 * B. The message to the hub is per hub (hub->sig.post) and posted at most
 *    once until it has run, so a burst of signals cannot exhaust anything.
 *    What it carries (deferred signals, green threads to interrupt) is
 *    written by handlers on the hub's own OS thread, so the hub context
 *    reads it with every signal blocked for the moment.
 * C. The wrapper reads SA_RESTART from the kernel's current disposition, so
 *    siginterrupt() (which changes it through glibc's internal sigaction) is
 *    honoured; after SA_RESETHAND the program's flags at installation are
 *    used, as the kernel does.
 * D. A handler that leaves with siglongjmp/longjmp never returns to the
 *    wrapper: the jump functions clear the in-handler mark.  A mask saved by
 *    sigsetjmp is the OS thread's as it was then; siglongjmp restores the
 *    OS thread's mask as the hub has set it now instead (hub->sig.os; the
 *    green threads' masks are not the kernel's to restore).
 * E. "Pass straight through" is for the calls that would park.  The calls
 *    that only ask who is running (shim_identity in shim.h: pthread_self,
 *    thread-specific data) answer in a handler for its taker, and else for
 *    the green thread the OS thread was running (thread.c, note I).  Handlers
 *    installed before the shim started are not wrapped: they run where the
 *    kernel delivers them and answer for the running green thread.
 * F. pause and sigsuspend (sigwait.c) wait for a handler to run on their
 *    behalf: they are parks that every handler interrupts (rule 2 and 4),
 *    and g->sig.handled, counted for each taker, tells whether one ran
 *    since the call began (sigsuspend's mask may unblock a pending signal,
 *    handled as the mask changes).  Each signal ends one of them, as
 *    natively; the wait holds the hub (a signal is the only thing that ends
 *    it, so it is not a deadlock).
 * G. Why this order.  The kernel picks the thread-group leader when it does
 *    not block the signal, and programs rely on it: an interpreter's main
 *    thread sleeping in select must be woken when Ctrl-C's handler runs,
 *    whatever the other threads compute.  When the leader's call would not
 *    be interrupted (it waits in pthread_join), natively nothing tells which
 *    thread took the signal but where the handler ran, and the running
 *    green thread is the one whose stack the handler can run on.  A green
 *    thread that blocks the signal is never interrupted by its handler:
 *    programs block signals precisely around code a handler must not run
 *    in the middle of (a lock the handler takes), so the handler waits for
 *    the hub context (rule 4), which is reached as soon as that green
 *    thread parks or yields: with green threads nothing else runs before
 *    then anyway.  Among parked threads, one whose call the handler ends
 *    is preferred: it is waiting for exactly that (pause, a sleep).
 * H. Sending a signal to the hub's own OS thread (tgkill; rt_tgsigqueueinfo
 *    with the original information where the kernel allows it, that is from
 *    the process's main thread, else tgkill) delivers it before the call
 *    returns, since the OS thread does not block it: hub->sig.direct names
 *    the taker meanwhile (rule 1).  A signal sent to a green thread that
 *    blocks it waits in g->sig.pend, for that thread alone: its sigpending,
 *    sigwait and the unblock that delivers it see it; nothing else does.
 * I. A fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS raised by
 *    the kernel for an instruction) belongs to the running green thread,
 *    whatever it blocks: natively the kernel forces it on the faulting
 *    thread.  So does SIGABRT from abort(), which unblocks it and raises it
 *    through glibc's internal calls, on the OS thread's mask alone.  So
 *    does a handler installed with SA_RESETHAND: the kernel reset it to the
 *    default as it delivered the signal, so it cannot be sent again for a
 *    later taker.
 * J. The older mask calls (sigblock, sigsetmask, siggetmask, sighold,
 *    sigrelse, and sigpause in its BSD and XSI forms) reach the kernel
 *    through glibc's internal calls, which no interposer sees: they are
 *    reimplemented here on the caller's own mask (sigpause on the shim's
 *    sigsuspend, which parks only the caller).
 * K. A handler that ends a green thread's interruptible park records the
 *    park (sig.req = sig.park) and the hub delivers the EINTR later, when
 *    it runs.  The delivery wakes the thread only if it is still in that
 *    park: the count matches, it is blocked, and it is in an interruptible
 *    park at all (sig.intr).  Without the last test, a thread whose park
 *    ended otherwise before the delivery (its descriptor was ready in the
 *    same loop pass) and which went on to wait where no count is kept (a
 *    lookup handed to a worker) got that EINTR: a fork child, whose
 *    delivery always comes after the fork, failed its first lookup that
 *    way about one time in three (shim_fork_wake).  With it, the request
 *    the forking thread carries into a fork child is harmless where it is,
 *    and the child need not write it away.
 * L. A deferred signal is given to its taker by sending it again to the
 *    hub's own OS thread, which the handler that deferred it left blocking
 *    it (defer).  Another instance of it may be pending there already: one
 *    sent again earlier while the OS thread still blocked it.  The unblock
 *    delivers that one at once, so the taker is named before it (in
 *    send_self): unblocked with no taker named, it was deferred again, and
 *    the copy sent after it found the signal blocked again and stayed
 *    pending, for ever, each delivery making the next (two hubs' OS
 *    threads at 100% of a CPU after a storm of SIGUSR1 and SIGUSR2,
 *    rel_signals, 3 runs in 10).
 */
#include "shim.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT

KZ_TLS int kz_shim_in_handler;
KZ_TLS struct kz_green *kz_shim_handler_for;

static struct sigaction user_act[_NSIG]; /* the program's disposition, if wrapped */
static _Atomic bool any_wrapped;         /* some handler is wrapped: parks are marked */

static inline uint64_t bit(int s) { return 1ull << (s - 1); }

/* glibc's sigset_t holds signals 1 to 64 in its first word, signal s at
   bit s-1, as the kernel's mask. */
static uint64_t set_bits(const sigset_t *set)
{
  uint64_t m;
  memcpy(&m, set, sizeof m);
  return m;
}

static void bits_set(uint64_t m, sigset_t *set)
{
  sigemptyset(set);
  memcpy(set, &m, sizeof m);
}

/* What no mask may hold: SIGKILL and SIGSTOP (the kernel ignores them),
   glibc's own 32 and 33 (its pthread_sigmask drops them). */
static const uint64_t unmaskable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)) | (1ull << 31) | (1ull << 32);

void kz_shim_intr_begin(struct kz_green *g, int intr)
{
  if (!atomic_load_explicit(&any_wrapped, memory_order_relaxed))
    return; /* no handler: nothing can interrupt it */
  g->sig.park++;
  g->sig.intr = (uint8_t)intr;
}

void kz_shim_intr_end(struct kz_green *g)
{
  if (atomic_load_explicit(&any_wrapped, memory_order_relaxed))
    g->sig.intr = 0;
}

/* ---- Who takes a signal (rules 1 to 4) ------------------------------------------- */

static bool alive(const struct kz_green *g)
{
  return g->state != KZ__S_GONE && g->state != KZ_DONE && g->state != KZ_CANCELLED;
}

/* Does g not block sig (a green thread spawned through the API follows the
   main green thread's mask: hub/sigmask.c)? */
static bool admits(struct kz_green *g, int sig) { return !(kz__sig_owner(g)->sig.mask & bit(sig)) && alive(g); }

/* Note C. */
static bool restarts(int sig);

/* Would a handler for sig end g's blocked call with EINTR? */
static bool interrupts(struct kz_green *g, int sig)
{
  return g->state == KZ_BLOCKED &&
         (g->sig.intr == KZ_INTR_ALWAYS || (g->sig.intr == KZ_INTR_RESTART && !restarts(sig)));
}

/* Rules 1 to 3, in a handler: the taker, or NULL to defer to the hub. */
static struct kz_green *taker_now(struct kz__hub *hub, int sig, const siginfo_t *si)
{
  struct kz_green *cur = hub->current, *main = hub->main;
  if (hub->sig.direct && hub->sig.direct_sig == sig) {
    struct kz_green *t = hub->sig.direct;
    hub->sig.direct = NULL;
    return t;
  }
  if (cur && si && si->si_code > 0 &&
      (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS))
    return cur; /* note I */
  if (cur && si && sig == SIGABRT && si->si_code == SI_TKILL && si->si_pid == getpid())
    return cur; /* note I: abort() */
  if (main && admits(main, sig) && interrupts(main, sig))
    return main;
  if (cur && admits(cur, sig))
    return cur;
  if (!cur && main && admits(main, sig))
    return main; /* the hub context: the leader, as the kernel's first choice */
  if (user_act[sig].sa_flags & SA_RESETHAND)
    return cur ? cur : main; /* note I */
  return NULL;
}

/* Rule 4, on the hub context. */
static struct kz_green *taker_later(struct kz__hub *hub, int sig)
{
  struct kz_green *any = NULL;
  if (hub->main && admits(hub->main, sig) && interrupts(hub->main, sig))
    return hub->main;
  for (struct kz__link *l = hub->all.next; l != &hub->all; l = l->next) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    if (!admits(g, sig))
      continue;
    if (interrupts(g, sig))
      return g;
    if (!any)
      any = g;
  }
  return hub->main && admits(hub->main, sig) ? hub->main : any;
}

static void wrapper(int sig, siginfo_t *si, void *uc);

/* Note C. */
static bool restarts(int sig)
{
  struct sigaction cur;
  if (REAL(sigaction)(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == wrapper)
    return (cur.sa_flags & SA_RESTART) != 0;
  return (user_act[sig].sa_flags & SA_RESTART) != 0;
}

/* ---- The hub's side (notes B, H) ----------------------------------------------------- */

static void deliver(struct kz__post *p);

/* Have hub run deliver (from a handler on its thread, or from it). */
static void post(struct kz__hub *hub)
{
  if (atomic_exchange(&hub->sig.posted, 1)) /* also against a handler on this thread */
    return;
  hub->sig.post.fn = deliver;
  kz__hub_post(hub, &hub->sig.post);
}

/* Send sig to this very OS thread for green thread g (NULL: whoever rule
   2 or 3 picks), with info if not NULL (note H).  It is delivered before
   this returns unless the OS thread blocks it.  With unblock, the OS thread
   stops blocking sig first, g named the taker already (note L). */
static void send_self(struct kz__hub *hub, struct kz_green *g, int sig, siginfo_t *info, bool unblock)
{
  hub->sig.direct = g;
  hub->sig.direct_sig = sig;
  if (unblock) {
    uint64_t one = bit(sig);
    kz__syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &one, NULL, sizeof one);
    hub->sig.os &= ~one; /* it may have been an unblock put off (hub/sigmask.c, note D) */
    hub->sig.lag &= ~one;
    hub->sig.direct = g; /* an instance pending here was g's just now: this one is g's too */
  }
  if (!info || kz__syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)kz__syscall(SYS_gettid), sig, info) != 0)
    REAL(raise)(sig); /* glibc's: a debugger stops in raise, as natively */
  hub->sig.direct = NULL;
}

/* The signals a handler took that are for none of the takers it could see
   (rule 4): on the hub context, where green threads can be looked at. */
static void deliver_deferred(struct kz__hub *hub, uint64_t d, kz_green_t *to, siginfo_t *info)
{
  for (; d; d &= d - 1) {
    int sig = __builtin_ctzll(d) + 1;
    struct kz_green *t = to[sig - 1] ? kz__green_get(to[sig - 1]) : NULL;
    uint64_t one = bit(sig);
    if (!t || !admits(t, sig))
      t = taker_later(hub, sig);
    if (!t) { /* nobody takes it: pending for the process, which all block */
      hub->sig.os |= one; /* as the handler left it, and as sigmask.c wants it */
      if (kz__syscall(SYS_rt_sigqueueinfo, getpid(), sig, &info[sig - 1]) != 0)
        kill(getpid(), sig);
      continue;
    }
    send_self(hub, t, sig, &info[sig - 1], !(kz__sigmask_want(hub) & one));
  }
}

/* Wake, with EINTR, the green threads whose parks a handler ended, if
   they are still in them (note K). */
static void interrupt(struct kz__hub *hub, const kz_green_t *ids, unsigned n)
{
  if (n > sizeof hub->sig.wake / sizeof *hub->sig.wake) { /* too many to list: every one */
    for (struct kz__link *l = hub->all.next; l != &hub->all; l = l->next) {
      struct kz_green *g = kz__container_of(l, struct kz_green, all);
      if (g->sig.req && g->sig.req == g->sig.park && g->sig.intr && g->state == KZ_BLOCKED &&
          kz__wake(g, -EINTR))
        kz_shim_stats().eintr++;
      g->sig.req = 0;
    }
    return;
  }
  for (unsigned i = 0; i < n; i++) {
    struct kz_green *g = kz__green_get(ids[i]);
    if (!g)
      continue;
    if (g->sig.req && g->sig.req == g->sig.park && g->sig.intr && g->state == KZ_BLOCKED &&
        kz__wake(g, -EINTR)) {
      kz_shim_stats().eintr++;
      if (KZ_UNLIKELY(kz_shim.debug))
        kz__say("a signal handler ran: a green thread's blocked call fails with EINTR");
    }
    g->sig.req = 0;
  }
}

/* On the hub context: what the handlers left (note B). */
static void deliver(struct kz__post *p)
{
  struct kz__hub *hub = kz__container_of(p, struct kz__hub, sig.post);
  uint64_t all = ~0ull, old, d;
  kz_green_t ids[sizeof hub->sig.wake / sizeof *hub->sig.wake], to[64];
  siginfo_t info[64]; /* on the hub's stack */
  unsigned n;
  kz__syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof all);
  atomic_store(&hub->sig.posted, 0);
  n = hub->sig.nwake;
  memcpy(ids, hub->sig.wake, sizeof ids);
  hub->sig.nwake = 0;
  d = atomic_exchange(&hub->sig.deferred, 0);
  memcpy(to, hub->sig.deferred_to, sizeof to);
  for (uint64_t m = d; m; m &= m - 1)
    info[__builtin_ctzll(m)] = hub->sig.info[__builtin_ctzll(m)];
  kz__syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
  interrupt(hub, ids, n);
  deliver_deferred(hub, d, to, info);
}

/* In a handler: hold sig blocked until the hub context delivers it (rule
   4), for green thread to (0: any). */
static void defer(struct kz__hub *hub, int sig, const siginfo_t *si, ucontext_t *uc, kz_green_t to)
{
  hub->sig.info[sig - 1] = *si;
  hub->sig.deferred_to[sig - 1] = to;
  atomic_fetch_or(&hub->sig.deferred, bit(sig));
  if (uc)
    sigaddset(&uc->uc_sigmask, sig); /* blocked once the handler returns */
  post(hub);
}

/* After a handler ran for taker t: end its park with EINTR if the kernel
   would have, through the hub. */
static void after(struct kz__hub *hub, struct kz_green *t, int sig)
{
  unsigned n;
  t->sig.handled++;
  if (t == hub->current || !interrupts(t, sig))
    return;
  t->sig.req = t->sig.park;
  n = hub->sig.nwake;
  if (n < sizeof hub->sig.wake / sizeof *hub->sig.wake)
    hub->sig.wake[n] = t->id;
  hub->sig.nwake = n + 1;
  post(hub);
}

static void wrapper(int sig, siginfo_t *si, void *uc)
{
  struct sigaction *a = &user_act[sig];
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *t = NULL, *prev_for = kz_shim_handler_for;
  int saved = errno, pin = 0;
  if (hub && hub->handoff_ok && (pin = kz__handoff_pin(hub)) < 0)
    hub = NULL; /* its hub left this OS thread: a thread of its own (hub/handoff.c, note D) */
  if (hub && hub->main && kz_shim.ready && !kz_shim_in_handler) {
    if (!(t = taker_now(hub, sig, si))) {
      defer(hub, sig, si, uc, 0); /* rule 4 */
      errno = saved;
      return;
    }
    kz_shim_handler_for = t == hub->current ? NULL : t;
  }
  kz_shim_in_handler++;
  if (a->sa_flags & SA_SIGINFO)
    a->sa_sigaction(sig, si, uc);
  else
    a->sa_handler(sig);
  kz_shim_in_handler--;
  kz_shim_handler_for = prev_for;
  saved = errno; /* what the handler left is the program's business */
  if (t)
    after(hub, t, sig);
  if (pin > 0)
    kz__handoff_unpin(hub);
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
  if (act && sig == KZ__SIG_PREEMPT && kz__preempt_on()) { /* the slice timer's (hub/preempt.c, note F) */
    errno = EINVAL;
    return -1;
  }
  wrap = act && is_handler(act);
  prev_user = user_act[sig];
  if (wrap) {
    atomic_store(&any_wrapped, true);
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

/* ---- Masks ------------------------------------------------------------------- */

/* Deliver what was sent to g (the caller) that it no longer blocks: before
   the call that unblocked it returns, as natively (note H). */
static void deliver_pending(struct kz_green *g)
{
  uint64_t p;
  g = kz__sig_owner(g);
  p = g->sig.pend & ~g->sig.mask;
  for (; p; p &= p - 1) {
    int sig = __builtin_ctzll(p) + 1;
    g->sig.pend &= ~bit(sig);
    send_self(g->hub, g, sig, NULL, false);
  }
}

uint64_t kz_shim_sigmask_set(struct kz_green *g, uint64_t mask)
{
  uint64_t old = kz__sig_owner(g)->sig.mask;
  kz__sigmask_set(g, mask & ~unmaskable);
  deliver_pending(g);
  return old;
}

uint64_t kz_shim_sigmask_of(const sigset_t *set) { return set_bits(set); }

/* pthread_sigmask for green thread g: an error number. */
static int green_sigmask(struct kz_green *g, int how, const sigset_t *set, sigset_t *old)
{
  uint64_t cur = kz__sig_owner(g)->sig.mask, m;
  if (set) {
    m = set_bits(set);
    if (how == SIG_BLOCK)
      m |= cur;
    else if (how == SIG_UNBLOCK)
      m = cur & ~m;
    else if (how != SIG_SETMASK)
      return EINVAL;
  }
  if (old)
    bits_set(cur, old);
  if (set)
    kz_shim_sigmask_set(g, m);
  return 0;
}

/* The green thread whose mask a call changes: not in a handler, whose mask
   is the kernel's business until it returns. */
static struct kz_green *mask_owner(void)
{
  struct kz_green *g = kz__self();
  if (!g || KZ_UNLIKELY(kz_shim_in_handler) || KZ_UNLIKELY(!kz_shim.ready))
    return NULL;
  return g;
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
  struct kz_green *g = mask_owner();
  return g ? green_sigmask(g, how, set, old) : REAL(pthread_sigmask)(how, set, old);
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
  struct kz_green *g = mask_owner();
  int r;
  if (!g)
    return REAL(sigprocmask)(how, set, old);
  if ((r = green_sigmask(g, how, set, old)) != 0) {
    errno = r;
    return -1;
  }
  return 0;
}

/* Pending for the caller: for the process, for its OS thread (blocked by
   every green thread of the hub), and for it alone; among what it blocks. */
EXPORT int sigpending(sigset_t *set)
{
  struct kz_green *g = mask_owner();
  int r = REAL(sigpending)(set);
  if (r != 0 || !g)
    return r;
  g = kz__sig_owner(g);
  bits_set((set_bits(set) | g->sig.pend) & g->sig.mask, set);
  return 0;
}

/* ---- The older mask calls (note J) --------------------------------------------- */

/* The caller's mask as old BSD calls see it: signals 1 to 32. */
static int bsd_mask(struct kz_green *g) { return (int)(uint32_t)kz__sig_owner(g)->sig.mask; }

EXPORT int sigblock(int mask)
{
  struct kz_green *g = mask_owner();
  int old;
  if (!g)
    return REAL(sigblock)(mask);
  old = bsd_mask(g);
  kz_shim_sigmask_set(g, kz__sig_owner(g)->sig.mask | (uint32_t)mask);
  return old;
}

EXPORT int sigsetmask(int mask)
{
  struct kz_green *g = mask_owner();
  int old;
  if (!g)
    return REAL(sigsetmask)(mask);
  old = bsd_mask(g);
  kz_shim_sigmask_set(g, (uint32_t)mask);
  return old;
}

EXPORT int siggetmask(void)
{
  struct kz_green *g = mask_owner();
  return g ? bsd_mask(g) : REAL(siggetmask)();
}

/* sighold (how SIG_BLOCK) and sigrelse (SIG_UNBLOCK) for g: 0 or -1. */
static int one_signal(struct kz_green *g, int how, int sig)
{
  sigset_t set;
  if (sig <= 0 || sig >= _NSIG) {
    errno = EINVAL;
    return -1;
  }
  sigemptyset(&set);
  sigaddset(&set, sig);
  return green_sigmask(g, how, &set, NULL) == 0 ? 0 : -1;
}

EXPORT int sighold(int sig)
{
  struct kz_green *g = mask_owner();
  return g ? one_signal(g, SIG_BLOCK, sig) : REAL(sighold)(sig);
}

EXPORT int sigrelse(int sig)
{
  struct kz_green *g = mask_owner();
  return g ? one_signal(g, SIG_UNBLOCK, sig) : REAL(sigrelse)(sig);
}

/* sigsuspend with the caller's mask less sig (is_sig), or with the BSD
   mask sig_or_mask. */
static int green_sigpause(struct kz_green *g, int sig_or_mask, bool is_sig)
{
  uint64_t m = is_sig ? kz__sig_owner(g)->sig.mask : (uint32_t)sig_or_mask;
  sigset_t set;
  if (is_sig) {
    if (sig_or_mask <= 0 || sig_or_mask >= _NSIG) {
      errno = EINVAL;
      return -1;
    }
    m &= ~bit(sig_or_mask);
  }
  bits_set(m, &set);
  return sigsuspend(&set); /* the shim's (sigwait.c) */
}

EXPORT int __sigpause(int sig_or_mask, int is_sig)
{
  struct kz_green *g = mask_owner();
  return g ? green_sigpause(g, sig_or_mask, is_sig) : REAL(__sigpause)(sig_or_mask, is_sig);
}

/* glibc's own sigpause symbol is the BSD one; <signal.h> names the XSI one
   sigpause for programs like this file. */
EXPORT int bsd_sigpause(int mask) __asm__("sigpause");
EXPORT int bsd_sigpause(int mask)
{
  struct kz_green *g = mask_owner();
  return g ? green_sigpause(g, mask, false) : REAL(sigpause)(mask);
}

EXPORT int __xpg_sigpause(int sig)
{
  struct kz_green *g = mask_owner();
  return g ? green_sigpause(g, sig, true) : REAL(__xpg_sigpause)(sig);
}

/* ---- Sending (note H) ------------------------------------------------------------ */

/* Send sig to green thread g of the calling OS thread's hub, from a green
   thread of it or its hub context. */
static void kill_local(struct kz__hub *hub, struct kz_green *g, int sig)
{
  struct kz_green *cur = hub->current, *own = kz__sig_owner(g);
  if (own->sig.mask & bit(sig)) { /* pending for it alone */
    own->sig.pend |= bit(sig);
    if ((g->sig.waiting & bit(sig)) && g->state == KZ_BLOCKED)
      kz__wake(g, -EINTR); /* its sigwait takes it */
    return;
  }
  if (KZ_UNLIKELY(g->state == KZ__S_AWAY)) { /* in a call on another OS thread (hub/handoff.c, note F) */
    pid_t away = kz__handoff_away_tid(g);
    if (away > 0 && kz__syscall(SYS_tgkill, getpid(), away, sig) == 0)
      return;
  }
  if (cur && cur != g && !admits(cur, sig)) { /* not in the middle of the caller (note G) */
    siginfo_t si = {.si_signo = sig, .si_code = SI_TKILL};
    si.si_pid = getpid();
    si.si_uid = getuid();
    hub->sig.info[sig - 1] = si;
    hub->sig.deferred_to[sig - 1] = g->id;
    atomic_fetch_or(&hub->sig.deferred, bit(sig));
    post(hub);
    return;
  }
  send_self(hub, g, sig, NULL, false);
}

struct remote_kill {
  struct kz__post post;
  kz_green_t id;
  int sig;
};

static void remote_kill_run(struct kz__post *p)
{
  struct remote_kill *k = kz__container_of(p, struct remote_kill, post);
  struct kz_green *g = kz__green_get(k->id);
  if (g && alive(g))
    kill_local(g->hub, g, k->sig);
  free(k);
}

int kz_shim_kill(struct kz__hub *hub, kz_green_t id, int sig)
{
  struct kz_green *g;
  struct remote_kill *k;
  if (sig < 0 || sig >= _NSIG)
    return EINVAL;
  if (sig == 0)
    return 0;
  if (hub == kz__tls_hub) {
    if ((g = kz__green_get(id)) && alive(g))
      kill_local(hub, g, sig);
    return 0;
  }
  if (!(k = malloc(sizeof *k)))
    return EAGAIN;
  *k = (struct remote_kill){.post.fn = remote_kill_run, .id = id, .sig = sig};
  kz__hub_post(hub, &k->post);
  return 0;
}

/* A signal the OS thread of a green thread's call took as the call
   returned (hub/handoff.c, note F). */
static void away_signal(struct kz__hub *hub, kz_green_t id, int sig) { kz_shim_kill(hub, id, sig); }
__attribute__((constructor)) static void away_init(void) { kz__away_signal = away_signal; }

/* raise in a green thread: to itself (glibc's raise would send it to the
   OS thread, for whichever green thread takes it).  The handler has run
   when it returns, as natively, unless the caller blocks the signal. */
EXPORT int raise(int sig)
{
  struct kz_green *g = mask_owner();
  int r;
  if (!g)
    return REAL(raise)(sig);
  kz_shim_switch_point(); /* thread.c, note L */
  if ((r = kz_shim_kill(g->hub, g->id, sig)) != 0) {
    errno = r;
    return -1;
  }
  return 0;
}

/* ---- fork ------------------------------------------------------------------- */

/* Did the parent's handlers leave anything for the hub's green threads
   but a request to interrupt the forking thread?  Read only: a page the
   child writes is copied.  That request (its sig.req, an entry of
   sig.wake) is for a park of the parent's that has ended: the thread is
   running, it forked.  A pre-fork server's parent forks with one almost
   every time (a child's SIGUSR1 ended the park in which it waited for the
   next connection, and the hub had not run since). */
static bool signal_forked_clean(const struct kz__hub *hub)
{
  if (atomic_load(&hub->sig.deferred) || hub->sig.direct || hub->sig.keep)
    return false;
  for (size_t i = 0; i < sizeof hub->sig.held / sizeof *hub->sig.held; i++)
    if (hub->sig.held[i])
      return false;
  for (struct kz__link *l = hub->all.next; l != &hub->all; l = l->next) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    if (g->sig.pend || (g->sig.req && g != hub->current))
      return false;
  }
  return true;
}

void kz_shim_signal_forked(struct kz__hub *hub, bool left_behind)
{
  /* Nothing pending and nobody left behind: the counts are right as they
     are (thread.c, note K). */
  if (!left_behind && signal_forked_clean(hub))
    return; /* the forking thread's request stays, harmless (note K) */
  /* Natively a child starts with nothing pending: what the parent's
     handlers deferred or sent to its threads stays with the parent. */
  atomic_store(&hub->sig.deferred, 0);
  hub->sig.nwake = 0;
  hub->sig.direct = NULL;
  memset(hub->sig.held, 0, sizeof hub->sig.held); /* the forking thread waits for none */
  hub->sig.keep = 0;
  for (struct kz__link *l = hub->all.next; l != &hub->all; l = l->next) {
    struct kz_green *g = kz__container_of(l, struct kz_green, all);
    g->sig.pend = 0;
    g->sig.req = 0;
  }
  kz__sigmask_recount(hub);
}

/* ---- pause and sigsuspend (note F) ---------------------------------------------- */

int kz_shim_suspend(struct kz_green *g, uint32_t since)
{
  int r;
  if (g->sig.handled != since)
    return -EINTR; /* one ran as the mask changed */
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "a signal handler"};
  kz__hub_hold(g->hub); /* only a signal can end it: not a deadlock */
  kz_shim_stats().parks++;
  g->sig.park++;
  g->sig.intr = KZ_INTR_ALWAYS;
  r = kz__park(-1);
  g->sig.intr = 0;
  kz__hub_unhold(g->hub);
  return r == -ECANCELED ? r : -EINTR;
}

/* ---- Leaving a handler by a jump (note D) -------------------------------- */

EXPORT _Noreturn void siglongjmp(sigjmp_buf env, int val)
{
  struct kz__hub *hub = kz__tls_hub;
  kz_shim_in_handler = 0;
  kz_shim_handler_for = NULL;
  if (env->__mask_was_saved && hub && hub->main) /* note D */
    bits_set(hub->sig.os, &env->__saved_mask);
  REAL(siglongjmp)(env, val);
  __builtin_unreachable();
}

EXPORT _Noreturn void longjmp(jmp_buf env, int val)
{
  struct kz__hub *hub = kz__tls_hub;
  kz_shim_in_handler = 0;
  kz_shim_handler_for = NULL;
  if (env->__mask_was_saved && hub && hub->main) /* note D: glibc's longjmp is siglongjmp */
    bits_set(hub->sig.os, &env->__saved_mask);
  REAL(longjmp)(env, val);
  __builtin_unreachable();
}

EXPORT _Noreturn void _longjmp(jmp_buf env, int val)
{
  kz_shim_in_handler = 0;
  kz_shim_handler_for = NULL;
  REAL(_longjmp)(env, val);
  __builtin_unreachable();
}

EXPORT _Noreturn void __longjmp_chk(jmp_buf env, int val)
{
  kz_shim_in_handler = 0;
  kz_shim_handler_for = NULL;
  REAL(__longjmp_chk)(env, val);
  __builtin_unreachable();
}
