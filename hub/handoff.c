/* handoff.c: a hub handed to another OS thread while its own is blocked in
 * a system call, as Go hands a P to another M.
 *
 * A green thread that makes a system call the hub cannot wait for, on its
 * hub's OS thread, holds every other green thread of the hub until the
 * call returns.  The calls the shim knows to block (flock, F_SETLKW, System
 * V semaphores and messages, a raw futex wait) run on the blocking pool
 * instead (worker.c, note I): the call moves, the hub stays.  What is left
 * are the calls the shim cannot move or know: a raw syscall() it does not
 * translate (ppoll, pselect6, semop, msgrcv, ... by number), whose
 * arguments and meaning it does not know.  Such a call is made where it
 * was made, between kz__sys_enter and kz__sys_exit, and if it is still in
 * the kernel after a while, the hub moves: a spare OS thread takes the hub
 * over and runs its other green threads; when the call returns, its OS
 * thread gives the green thread back to the hub (queued as if woken) and
 * becomes a spare itself.
 *
 * Notes.
 * A. What moves.  A hub's context runs with its OS thread's thread pointer
 *    (hub->os_tp, the descriptor libc made for that thread), and so do its
 *    main green thread and the API's green threads; the shim's threads run
 *    with TLS areas of their own (tls.c).  Only a call made by a green
 *    thread with TLS of its own is handed off: its OS thread then runs with
 *    that green thread's TLS, and the OS thread's own descriptor is free.
 *    The spare loads it and resumes the hub context, so for everything on
 *    the hub nothing changes: the same TLS (errno, the runtime's per-thread
 *    state, malloc's cache), the same stacks, the same libev loop.  The
 *    returning OS thread loads the spare's descriptor instead, with the
 *    spare's stack: a spare is a context (a descriptor, a stack, a saved
 *    stack pointer) that any OS thread may run, as a hub is.  Descriptors
 *    thus change OS threads; what libc keeps in one about its kernel
 *    thread is put right on the way: the thread id (raise, abort), the
 *    signal mask and the alternate signal stack of each thread, the
 *    hub's slice timer (preempt.c), the monitor's thread id and the crash
 *    report's (debug.c).  A hub
 *    whose OS thread may be joined (kz_remote_stop) must keep its own
 *    descriptor, so only the shim's hubs, never joined, are handed off
 *    (kz__handoff_enable).  The main green thread runs with the hub
 *    context's descriptor, which it keeps: note G.
 * B. The word.  hub->sys names the green thread in such a call, set by
 *    kz__sys_enter and cleared by kz__sys_exit with a compare-and-swap.
 *    The spare takes the hub with a compare-and-swap from that green
 *    thread to it | KZ__SYS_AWAY, so exactly one of the two wins: the call
 *    returned first (the spare goes back to waiting), or the hub is the
 *    spare's (the returning thread finds the word changed, and rejoins).
 *    Until its compare-and-swap, the spare touches nothing of the hub.
 *    Once it has won, the green thread is KZ__S_AWAY: no wake makes it
 *    ready while its OS thread runs it; a cancellation or a signal for it
 *    waits for its return, as for a call that is not a cancellation point.
 * C. The watcher (sysmon).  One thread looks at the hubs, and takes over a
 *    hub whose call it saw on two looks in a row (the same call: sys and
 *    sys_seq unchanged).  Looks come PERIOD_MIN (20 us, Go's) apart after
 *    a look that took a hub over, then twice as far apart at each look
 *    that took nothing over, up to PERIOD_MAX (1 ms); after QUIET (2 ms)
 *    of looks that saw no call at all, it sleeps on a futex until
 *    kz__sys_enter wakes it.  The call that wakes it counts as seen once
 *    (kz__sysmon_wake records it, and when), and the watcher's first look
 *    comes PERIOD_MIN after the call began, or at once if its wake-up took
 *    longer: a call still there then is taken over.  Its timer slack is
 *    1 ns: with the default 50 us, a sleep of 20 us lasted 70.  So a call
 *    that blocks while the watcher sleeps, the usual case, is handed off
 *    after the longer of 20 us and the watcher's wake-up, plus the spare's
 *    wake-up (scripts/bench, handoff_stall_us).  (A spare woken at the watcher's first look, to
 *    watch for the hub without sleeping, made it worse on two CPUs: 200 us
 *    rather than 100.)  The registration for membarrier (below) waits for
 *    an RCU grace period, 10 to 20 ms: a thread of its own makes it, and
 *    until it is done the watcher looks every PERIOD_WAIT (100 us) rather
 *    than sleep; made by the watcher itself, it delayed a hand-off by as
 *    long.  In a program that makes such calls all the
 *    time and none blocks, the watcher looks 1,000 times a second and
 *    never takes anything over, and a call that then blocks is handed off
 *    within 1 to 2 ms.  Go's sysmon has the same shape (20 us after it
 *    found work, doubling to 10 ms while it finds none).  Why not sooner:
 *    most such calls return within microseconds and cost nothing but the
 *    atomic operations around them, and a take-over costs about two thread
 *    wake-ups; a watcher that looked every 20 us while short calls run
 *    would cost a tenth of a core.  An idle program has no watcher waking
 *    up.  Lost wake-ups: the watcher announces its sleep
 *    (kz__sysmon_sleeping), makes every thread of the process execute a
 *    memory barrier (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), an
 *    interrupt of the CPUs running them), looks once more, then sleeps;
 *    kz__sys_enter stores sys and then reads the announcement, with only
 *    the compiler kept from reordering the two.  One of the two sees the
 *    other, and the call's side pays no fence: a locked instruction there
 *    cost 15 to 20 ns here, on every call.  Without membarrier (before
 *    Linux 4.14), the watcher sleeps 1 s at most, so a missed call waits
 *    that long at worst.  Nothing is started before the first
 *    such call: the watcher starts then, and spares are made as hubs are
 *    taken over, at most KUDZU_MAX_THREADS (default 64; 0 turns hand-off
 *    off).
 * D. Signal handlers.  While the hub is here, a handler that interrupts
 *    the call runs as always (preload/signal.c), and keeps the hub here
 *    (kz__handoff_pin: the word gets KZ__SYS_PIN, so the spare's
 *    compare-and-swap fails).  Once the hub left, the green thread's
 *    kz__tls_hub reads NULL: to the shim it is a thread with no hub, whose
 *    calls pass straight through and whose handlers run as they do
 *    natively (the call is restarted or fails with EINTR, as the kernel
 *    decides).  It reads its hub again once back there.
 * F. A signal for a green thread that is away (pthread_kill, tgkill to its
 *    id) goes to the OS thread in its call (kz__handoff_away_tid), which
 *    runs the handler in it and ends the call as the kernel would for a
 *    thread of its own.  One that comes as the call returns stays pending
 *    on that OS thread, which now blocks everything (a spare); the spare
 *    takes it once the green thread is back on its hub (rejoined ran, on
 *    the hub's thread: a kill that found the green thread away was made
 *    before) and sends it to the green thread there (kz__away_signal, the
 *    shim's).
 * E. Identity.  A green thread's kernel thread id after a hand-off is
 *    another, as its hub's OS thread is: the shim's thread ids (gettid)
 *    are the green threads' own and do not change, but a process-shared
 *    priority-inheritance lock taken before a hand-off names the old OS
 *    thread as its owner in the kernel.
 * G. The main green thread.  It runs with the descriptor libc made for
 *    the hub's first OS thread (hub->home_tp), as the hub context and the
 *    API's green threads do, so the descriptor cannot go with the hub
 *    while the main green thread sits in its call on it.  So the hub
 *    context goes without it: the spare that takes such a call over runs
 *    the hub context on its own descriptor, which is a thread's of libc
 *    (hub->os_tp, hub->tp and hub->errnop point there, and its copy of
 *    kz__tls_os_tp at the home, so the runtime's per-OS-thread state, the
 *    handle allocator's slots among it, stays where it was; tls.c note
 *    D).  The green threads with TLS of their own run as after any
 *    hand-off; one made meanwhile binds to the home (kz__tls_bind: its
 *    tcache is the home's, shared as always, and only the hub's green
 *    threads use it while the main one is in its call).  The API's green
 *    threads would see another descriptor's __thread variables, so a call
 *    of the main green thread is handed off only while the hub has none
 *    (hub->nshared: kz__sys_enter); one spawned meanwhile sees the spare's
 *    until the main green thread is back.  When the call returns, the hub
 *    comes back to the main green thread's OS thread rather than that OS
 *    thread becoming a spare: it has no descriptor to run a spare with.
 *    It posts give_back to the hub and waits; give_back, in the hub
 *    context, switches to the spare (saving the hub context), the spare
 *    makes its OS thread a spare's again (spare_home: every signal
 *    blocked, its own descriptor's kz__tls_hub and kz__tls_os_tp cleared)
 *    and says so (s->gave); the returning OS thread points the hub at the
 *    home descriptor again and resumes the hub context, which finishes
 *    give_back there: the OS thread's signal mask, its id for the
 *    monitor, the slice timer (moved_here), and the main green thread
 *    woken.  A fork meanwhile (from one of the hub's green threads) runs
 *    libc's fork with the spare's descriptor, which the child keeps for
 *    its one thread, with the main green thread gone from it, as natively.
 */
#include "internal.h"

#include <limits.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_MIN_NS 20000L /* note C */
#define PERIOD_MAX_NS 1000000L
#define QUIET_NS 2000000L
#define PERIOD_WAIT_NS 100000L /* note C: while membarrier registers */
#define HUBS_MAX 1024
#define SPARES_DEFAULT 64
#define SPARES_MAX 4096

/* A spare context (note A). */
struct spare {
  void *tp;                 /* its TLS: the descriptor of the OS thread that made it */
  void *sp;                 /* saved while no OS thread runs it */
  _Atomic uint32_t go;      /* futex: a hub to take over was given */
  _Atomic uint32_t parked;  /* futex: sp is saved (the hub it left is set up) */
  _Atomic uint32_t posting; /* futex: post is in a hub's mailbox */
  struct kz__hub *job_hub;
  uintptr_t job_g;
  struct kz_green *back;    /* the green thread whose OS thread runs it now */
  pid_t away_tid;           /* that OS thread, while the green thread is away */
  struct kz__hub *back_hub; /* back's hub and handle, for what is left once it runs again */
  kz_green_t back_id;
  struct kz__post post;     /* back's return to its hub */
  bool home;                /* note G: back is the main green thread, and the hub
                               context runs on this spare's descriptor */
  _Atomic uint32_t gave;    /* futex: note G, the hub context is saved for the
                               main green thread's OS thread to resume */
  struct spare *next;       /* on the idle list */
};

_Atomic int kz__sysmon_sleeping = 1; /* not started: the first call starts it */
void (*kz__away_signal)(struct kz__hub *hub, kz_green_t id, int sig);

static struct {
  pthread_mutex_t lock;                /* what follows */
  unsigned max;                        /* KUDZU_MAX_THREADS */
  unsigned nspares;                    /* spares made */
  struct spare *idle;                  /* waiting for a hub to take over */
  struct kz__hub *hubs[HUBS_MAX];      /* kz__handoff_enable'd */
  unsigned nhubs;
  bool started;                        /* the watcher runs */
  double woken_at;                     /* when a call last woke it (note C) */
  _Atomic uint32_t word;               /* the watcher's futex */
} ho = {.lock = PTHREAD_MUTEX_INITIALIZER, .max = SPARES_DEFAULT};

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
  return kz__syscall(SYS_futex, w, op | FUTEX_PRIVATE_FLAG, val, ts);
}

static pid_t tid_now(void) { return (pid_t)kz__syscall(SYS_gettid); }

/* ---- The spares -------------------------------------------------------------- */

/* Signals sent to the OS thread for the green thread it ran (note F), now
   that the green thread is back on its hub: sent to it there. */
static void forward_signals(struct spare *s)
{
  uint64_t all = ~0ull;
  struct timespec now = {0, 0};
  siginfo_t si;
  int sig;
  while ((sig = (int)kz__syscall(SYS_rt_sigtimedwait, &all, &si, &now, sizeof all)) > 0)
    if (kz__away_signal && sig < KZ__SIG_PREEMPT && sig != KZ__SIG_INTERRUPT)
      kz__away_signal(s->back_hub, s->back_id, sig);
}

/* Back on the idle list, once its last return left the mailbox. */
static void spare_idle(struct spare *s)
{
  uint32_t p;
  while ((p = atomic_load(&s->posting)) != 0)
    futex(&s->posting, FUTEX_WAIT, p, NULL);
  if (s->back_hub)
    forward_signals(s);
  kz__os_lock(&ho.lock);
  s->next = ho.idle;
  ho.idle = s;
  kz__os_unlock(&ho.lock);
}

/* On the hub of s->back, which is back there: it is woken, and s is free
   to go idle. */
static void back_on_hub(struct spare *s)
{
  struct kz_green *g = s->back;
  struct kz__hub *hub = g->hub;
  g->handoff = NULL; /* for its next call */
  g->waiting.kind = KZ__WAIT_NONE;
  g->state = KZ_BLOCKED;
  hub->ho_away--;
  kz__wake(g, 0);
  kz__hub_unhold(hub);
  atomic_store(&s->posting, 0);
  futex(&s->posting, FUTEX_WAKE, 1, NULL);
}

/* On the hub of s->back, from its mailbox: the green thread is back. */
static void rejoined(struct kz__post *p)
{
  struct spare *s = kz__container_of(p, struct spare, post);
  struct kz_green *g = s->back;
  kz__tls_set_hub(g->tp, g->hub); /* note D */
  back_on_hub(s);
}

/* The OS thread running s now is a spare's: every signal blocked, no
   alternate stack, its thread id in s's descriptor (note A: the hub
   context may have moved it on); what is left of s->back, for the
   signals that came for it (note F). */
static void spare_again(struct spare *s)
{
  uint64_t all = ~0ull;
  stack_t off = {.ss_flags = SS_DISABLE};
  kz__syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof all);
  kz__syscall(SYS_sigaltstack, &off, NULL);
  kz__tls_set_tid(s->tp, tid_now());
  s->back_hub = s->back->hub;
  s->back_id = s->back->id;
}

/* The spare s now runs on the OS thread that g's call returned on: that
   thread's signals are a spare's (none), and g goes back to its hub. */
static void spare_back(struct spare *s)
{
  spare_again(s);
  s->post.fn = rejoined;
  atomic_store(&s->posting, 1);
  kz__hub_post(s->back->hub, &s->post);
}

static void moved_here(struct kz__hub *hub);

/* Note G: the hub context left this spare for the main green thread's OS
   thread (give_back), which waits for this to resume it.  This OS thread's
   signals are a spare's again, and its descriptor its own. */
static void spare_home(struct spare *s)
{
  kz__tls_hub = NULL;
  kz__tls_os_tp = NULL;
  spare_again(s);
  atomic_store(&s->posting, 1); /* until give_back has woken the main green thread */
  atomic_store(&s->gave, 1);
  futex(&s->gave, FUTEX_WAKE, 1, NULL);
}

/* Note G, on the hub context, from its mailbox: the main green thread's
   call returned.  The hub context goes to the main green thread's OS
   thread, which resumes it here, and wakes the main green thread. */
static void give_back(struct kz__post *p)
{
  struct spare *s = kz__container_of(p, struct spare, post);
  struct kz__hub *hub = s->job_hub;
  uint64_t mask;
  kz__switch(&hub->sp, s->sp); /* to spare_home, on this OS thread */
  /* on the main green thread's OS thread, with the home descriptor */
  mask = hub->sig.os;
  kz__syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof mask);
  moved_here(hub);
  back_on_hub(s);
}

/* Take the hub over (note B); returns when it was not needed, or when an
   OS thread whose call returned runs this spare again. */
static void take_over(struct spare *s)
{
  struct kz__hub *hub = s->job_hub;
  uintptr_t v = s->job_g;
  struct kz_green *g = (struct kz_green *)v;
  uint64_t mask;
  if (!atomic_compare_exchange_strong(&hub->sys, &v, v | KZ__SYS_AWAY))
    return;
  s->away_tid = hub->watch.tid; /* the OS thread in the call: the hub's until now */
  s->home = !g->tp; /* the main green thread, on the hub's own descriptor (note G) */
  atomic_store(&s->gave, 0);
  /* only the winner names itself: two spares may have been sent for one
     call, the watcher's second look racing the first one's start */
  __atomic_store_n(&g->handoff, s, __ATOMIC_RELEASE);
  kz__tls_set_hub(s->home ? hub->home_tp : g->tp, NULL); /* note D */
  g->state = KZ__S_AWAY;
  hub->ho_away++;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_REMOTE, .what = "a system call (hub handed off)"};
  hub->current = NULL;
  hub->ho_spare = s;
  hub->ho_moved = true;
  mask = hub->sig.os; /* stable: nothing of the hub runs meanwhile */
  kz__syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof mask);
  if (s->home) { /* note G: the hub context moves to this descriptor */
    kz__tls_hub = hub;
    kz__tls_os_tp = hub->home_tp; /* the runtime's state stays the home's (tls.c, note D) */
    hub->errnop = &errno;
    hub->os_tp = hub->tp = s->tp;
  } else {
    hub->tp = hub->os_tp;
    kz__tp_set(hub->os_tp);
  }
  kz__switch(&s->sp, hub->sp); /* the hub context resumes here: kz__handoff_moved */
  if (s->home)
    spare_home(s); /* the hub went back to the main green thread's OS thread */
  else
    spare_back(s); /* an OS thread whose call returned runs this spare now */
}

static void *spare_main(void *arg)
{
  struct spare *s = arg;
  s->tp = __builtin_thread_pointer();
  for (;;) {
    while (!atomic_exchange(&s->go, 0))
      futex(&s->go, FUTEX_WAIT, 0, NULL);
    take_over(s);
    spare_idle(s);
  }
  return NULL;
}

/* A spare for hub's call v: an idle one, or a new one (under ho.lock). */
static void dispatch(struct kz__hub *hub, uintptr_t v)
{
  struct spare *s = ho.idle;
  if (s) {
    ho.idle = s->next;
  } else {
    pthread_t t;
    if (ho.nspares >= ho.max || !(s = calloc(1, sizeof *s)))
      return;
    atomic_store(&s->go, 0);
    if (kz__os_thread_start(&t, spare_main, s) < 0) {
      free(s);
      return;
    }
    kz__os_thread_detach(t);
    ho.nspares++;
  }
  s->job_hub = hub;
  s->job_g = v;
  atomic_store(&s->go, 1);
  futex(&s->go, FUTEX_WAKE, 1, NULL);
}

/* ---- The watcher --------------------------------------------------------------- */

/* One look at every hub (note C): 0 if no green thread is in a call, 1
   if some is, 2 if a hub was taken over. */
static int look(bool act)
{
  int seen = 0;
  kz__os_lock(&ho.lock);
  for (unsigned i = 0; i < ho.nhubs; i++) {
    struct kz__hub *hub = ho.hubs[i];
    uintptr_t v = atomic_load(&hub->sys);
    unsigned long seq = __atomic_load_n(&hub->sys_seq, __ATOMIC_RELAXED);
    if (!v || (v & (KZ__SYS_AWAY | KZ__SYS_PIN)))
      continue;
    if (!seen)
      seen = 1;
    if (!act)
      continue;
    if (v == hub->ho_seen && seq == hub->ho_seen_seq &&
        __atomic_load_n(&hub->nlive, __ATOMIC_RELAXED) > 1) {
      dispatch(hub, v);
      v = 0; /* not twice for one call */
      seen = 2;
    }
    hub->ho_seen = v;
    hub->ho_seen_seq = seq;
  }
  kz__os_unlock(&ho.lock);
  return seen;
}

/* Note C: 1 once registered for membarrier, -1 if it cannot be. */
static _Atomic int fence;

static void *fence_register(void *arg)
{
  (void)arg;
  atomic_store(&fence, kz__syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1);
  return NULL;
}

/* Woken by a call (note C): its first look comes PERIOD_MIN after the
   call began, and takes it over if it is still there. */
static void first_look(void)
{
  double left;
  kz__os_lock(&ho.lock);
  left = ho.woken_at + PERIOD_MIN_NS * 1e-9 - kz__now();
  kz__os_unlock(&ho.lock);
  if (left > 0) {
    struct timespec ts = {0, (long)(left * 1e9)};
    kz__syscall(SYS_nanosleep, &ts, NULL);
  }
}

static void *sysmon(void *arg)
{
  long period = PERIOD_MIN_NS, quiet = 0;
  int fenced;
  bool woken = true; /* by the call that started it */
  pthread_t t;
  (void)arg;
  if (kz__os_thread_start(&t, fence_register, NULL) == 0) /* note C */
    kz__os_thread_detach(t);
  else
    fence_register(NULL);
  kz__syscall(SYS_prctl, PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* note C: sleeps of 20 us, not 70 */
  first_look();
  for (;;) {
    struct timespec ts = {0, period};
    int seen = look(true);
    if (seen == 2 || (seen && woken)) { /* note C */
      period = PERIOD_MIN_NS;
      quiet = 0;
    } else if (seen || (quiet += period) < QUIET_NS) {
      if (seen)
        quiet = 0;
      period = period * 2 > PERIOD_MAX_NS ? PERIOD_MAX_NS : period * 2;
    } else {
      uint32_t w = atomic_load(&ho.word);
      struct timespec limit = {1, 0};
      if (!(fenced = atomic_load(&fence))) { /* note C: not yet registered */
        period = PERIOD_WAIT_NS;
        ts.tv_nsec = period;
        kz__syscall(SYS_nanosleep, &ts, NULL);
        continue;
      }
      atomic_store(&kz__sysmon_sleeping, 1);
      if (fenced < 0 || kz__syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) < 0)
        fenced = -1; /* a miss is then possible: the sleep is bounded */
      if (!look(false))
        futex(&ho.word, FUTEX_WAIT, w, fenced > 0 ? NULL : &limit);
      atomic_store(&kz__sysmon_sleeping, 0);
      period = PERIOD_MIN_NS; /* woken by a call: look closely */
      quiet = 0;
      woken = true;
      first_look();
      continue;
    }
    woken = false;
    kz__syscall(SYS_nanosleep, &ts, NULL);
  }
  return NULL;
}

void kz__sysmon_wake(struct kz__hub *hub)
{
  if (!atomic_exchange(&kz__sysmon_sleeping, 0))
    return;
  kz__os_lock(&ho.lock);
  /* the watcher's first look counts as its second for this call (note C) */
  hub->ho_seen = atomic_load(&hub->sys);
  hub->ho_seen_seq = __atomic_load_n(&hub->sys_seq, __ATOMIC_RELAXED);
  ho.woken_at = kz__now();
  if (!ho.started) {
    pthread_t t;
    if (kz__os_thread_start(&t, sysmon, NULL) == 0) {
      kz__os_thread_detach(t);
      ho.started = true;
    } else {
      ho.max = 0; /* no watcher: no hand-off, as before */
    }
  }
  kz__os_unlock(&ho.lock);
  atomic_fetch_add(&ho.word, 1);
  futex(&ho.word, FUTEX_WAKE, 1, NULL);
}

void kz__handoff_enable(struct kz__hub *hub)
{
#ifdef KZ_ASAN
  (void)hub; /* the fiber annotations follow one OS thread per hub */
#else
  if (hub->handoff_ok) /* every spawn comes here: only the first takes the lock */
    return;
  kz__os_lock(&ho.lock);
  if (ho.max && !hub->handoff_ok && ho.nhubs < HUBS_MAX) {
    ho.hubs[ho.nhubs++] = hub;
    hub->handoff_ok = true;
  }
  kz__os_unlock(&ho.lock);
#endif
}

/* ---- The hub's side ------------------------------------------------------------- */

/* The hub context's first steps on another OS thread (note A). */
static void moved_here(struct kz__hub *hub)
{
  pid_t tid = tid_now();
  stack_t ss = {.ss_sp = hub->altstack, .ss_size = KZ__ALTSTACK_SIZE};
  kz__tls_set_tid(hub->os_tp, tid); /* note A */
  kz__debug_thread_moved(hub->watch.tid, tid);
  __atomic_store_n(&hub->watch.tid, tid, __ATOMIC_RELAXED);
  if (hub->altstack)
    kz__syscall(SYS_sigaltstack, &ss, NULL);
  if (hub->preempt_timer >= 0) { /* the slice timer counted the old OS thread's time */
    kz__preempt_disarm(hub);
    kz__preempt_arm(hub);
  }
  hub->handoffs++;
}

void kz__handoff_moved(struct kz__hub *hub)
{
  struct spare *s = hub->ho_spare;
  hub->ho_moved = false;
  moved_here(hub);
  kz__hub_hold(hub); /* the green thread in the call comes back through the mailbox */
  atomic_store(&s->parked, 1);
  futex(&s->parked, FUTEX_WAKE, 1, NULL);
}

/* Note G: the main green thread's call returned on its OS thread, whose
   descriptor the hub context left: the hub context comes back here. */
static void rejoin_home(struct kz_green *g, struct spare *s)
{
  struct kz__hub *hub = g->hub;
  s->post.fn = give_back;
  kz__hub_post(hub, &s->post);
  while (!atomic_load(&s->gave))
    futex(&s->gave, FUTEX_WAIT, 0, NULL);
  /* the hub context is saved, and nothing of the hub runs */
  kz__tls_hub = hub;
  hub->os_tp = hub->tp = hub->home_tp;
  hub->errnop = &errno;
  kz__switch(&g->sp, hub->sp); /* to give_back, which wakes g */
  kz__switched(g->hub, NULL);
}

void kz__sys_rejoin(struct kz_green *g)
{
  struct spare *s;
  int err = errno; /* g's own TLS: errno stays with it */
  while (!(s = __atomic_load_n(&g->handoff, __ATOMIC_ACQUIRE)))
    kz__os_sched_yield(); /* the spare won and is about to say so (take_over) */
  while (!atomic_load(&s->parked))
    futex(&s->parked, FUTEX_WAIT, 0, NULL);
  atomic_store(&s->parked, 0);
  s->back = g;
  if (s->home) { /* note G */
    rejoin_home(g, s);
    errno = err;
    return;
  }
  kz__tp_set(s->tp); /* this OS thread runs the spare from here (note A) */
  kz__switch(&g->sp, s->sp);
  /* on the hub again, on whichever OS thread runs it: the switch loaded g's TLS */
  kz__switched(g->hub, NULL);
  errno = err;
}

int kz__handoff_pin(struct kz__hub *hub)
{
  void *me = __builtin_thread_pointer();
  for (;;) {
    uintptr_t v = atomic_load(&hub->sys);
    struct kz_green *g = (struct kz_green *)(v & ~(KZ__SYS_AWAY | KZ__SYS_PIN));
    if (!g || (g->tp ? g->tp : hub->home_tp) != me || (v & KZ__SYS_PIN)) /* note G: the main one's */
      return 0; /* not in such a call, or pinned by the handler it interrupted */
    if (v & KZ__SYS_AWAY) {
      while (__atomic_load_n(&kz__tls_hub, __ATOMIC_ACQUIRE) != NULL)
        kz__os_sched_yield(); /* the spare is between its two stores (take_over) */
      return -1;
    }
    if (atomic_compare_exchange_strong(&hub->sys, &v, v | KZ__SYS_PIN))
      return 1;
  }
}

pid_t kz__handoff_away_tid(struct kz_green *g)
{
  struct spare *s = __atomic_load_n(&g->handoff, __ATOMIC_ACQUIRE);
  return g->state == KZ__S_AWAY && s ? s->away_tid : 0;
}

void kz__handoff_unpin(struct kz__hub *hub)
{
  atomic_fetch_and(&hub->sys, ~KZ__SYS_PIN);
}

void kz__handoff_forked(struct kz__hub *hub)
{
  pthread_mutex_init(&ho.lock, NULL);
  ho.idle = NULL;
  ho.nspares = 0;
  ho.started = false;
  ho.nhubs = 0;
  atomic_store(&fence, 0); /* a child is a process of its own: its watcher registers anew */
  atomic_store(&kz__sysmon_sleeping, 1);
  if (!hub || !hub->handoff_ok)
    return;
  ho.hubs[ho.nhubs++] = hub;
  hub->ho_seen = 0;
  if (hub->ho_away) { /* their calls' OS threads are not in the child */
    hub->ho_away = 0;
    for (struct kz__link *l = hub->all.next, *next; l != &hub->all; l = next) {
      struct kz_green *g = kz__container_of(l, struct kz_green, all);
      next = l->next;
      if (g->state == KZ__S_AWAY) {
        kz__green_forget(g);
        kz__hub_unhold(hub);
      }
    }
  }
  atomic_store(&hub->sys, 0);
}

static void handoff_atfork_child(void)
{
  if (kz__fork_threaded()) /* else no watcher, spare or hand-off ever existed */
    kz__handoff_forked(kz__tls_hub);
}

__attribute__((constructor)) static void handoff_init(void)
{
  const char *v = getenv("KUDZU_MAX_THREADS");
  char *end;
  unsigned long n;
  pthread_atfork(NULL, NULL, handoff_atfork_child);
  if (!v)
    return;
  errno = 0;
  n = strtoul(v, &end, 10);
  if (!*v || *end || errno || n > SPARES_MAX || v[0] == '-')
    kz__say("ignoring KUDZU_MAX_THREADS=%s: not a number from 0 to %d", v, SPARES_MAX);
  else
    ho.max = (unsigned)n;
}
