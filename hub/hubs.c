/* hubs.c: the process's set of hubs (kz_set_hubs, KUDZU_HUBS), where a new
 * green thread goes (placement), and calls that cross from one hub to
 * another (kz__hub_call).
 *
 * The set has N hubs: one per CPU the process may run on by default (its
 * affinity mask, read when the first hub is made), or what kz_set_hubs,
 * KUDZU_HUBS=N or the launcher's --hubs N say (0: one per CPU; 1: only the
 * caller's, every green thread spawned on its caller's hub).  The first
 * placement (a spawn with KZ_HUB_ANY or KZ_HUB(k), or the shim's first
 * pthread_create) starts N-1 more hubs, each on an OS thread of its own (remote hubs, remote.c);
 * the caller's hub is hub 0.  From then on a spawn may ask for hub k, or
 * for the least loaded of the N (placement), and the green thread stays
 * there for life.  So a thread-per-connection server's connections, a
 * pool's workers, memcached's worker threads run on as many cores as there
 * are hubs.
 *
 * Notes.
 * A. Placement.  Load is a hub's live green threads (hub->nlive) less
 *    those that are not the program's (an extra hub's kz_run and its main
 *    green thread, counted at its start: set.base), plus those other hubs
 *    made for it that it has yet to adopt (green.c, note E: hub->sent, by
 *    their makers, less hub->taken, by the hub as it adopts them; read in
 *    that order, taken first, the difference is never negative: a thread
 *    taken was sent before), so that a
 *    burst of spawns does not all go to one hub; read without a lock
 *    from the creator's thread; the first hub with the fewest, looking from
 *    a position that moves on at each placement, so that equals take turns.
 *    A stale count costs balance, never correctness.
 * B. What works across hubs under the shim (it was built for threads that
 *    are not green or live on other OS threads): mutexes, condition
 *    variables, rwlocks, barriers and semaphores wait in the process-wide
 *    wait table and are woken through the waiter's hub's mailbox
 *    (preload/pthread_sync.c); join, detach, cancel and pthread_kill of a
 *    thread on another hub are carried out on its hub (preload/thread.c,
 *    note N and "remote_op"); a close wakes a waiter on any hub (io.c,
 *    note F); the monitor and the dump signal cover every hub.  A new
 *    thread on another hub is made there, by a message to that hub, while
 *    its creator waits (kz__hub_call).  Through the API, kz_join,
 *    kz_detach, kz_cancel, kz_state and the names work on any hub's green
 *    thread (green.c, notes D to J).
 * C. No hub of the set reports a deadlock (EDEADLK) alone: a green thread
 *    on another hub may wake any of its green threads at any time.  The set
 *    does, when none of its hubs has anything to do but wait for another's
 *    post (hub.c, note K): its hubs join that count (kz__quiesce_join).
 *    Under the shim the first hub is also held (kz__hub_hold) from the
 *    start of the others, and a deadlock of threads hangs as natively (the
 *    shim's waits hold their hubs: a real OS thread may be the waker).  The
 *    API's cross-hub waits hold their own hub while they wait, so an API
 *    program's first hub is not held (kz__hubs_config_hold).
 * D. fork(): the child has only the forking thread, on its hub; the other
 *    hubs' OS threads do not exist there.  It starts afresh: one hub, and
 *    more at its first placement, as its parent did.  If the forking
 *    thread was on an extra hub, that hub's kz_run (the remote hub's own
 *    green threads) is left behind as the other threads are, and its hold
 *    goes: the child's hub is then like a main hub.
 * E. Under the shim, the main thread's pthread_exit (or kz_exit) lets the
 *    process live on until every thread, on every hub, has finished
 *    (preload/thread.c, main_exit); the other hubs' OS threads would keep
 *    it alive after that, so it then exits with status 0, as natively when
 *    the last thread ends: from main_exit, from the last thread's end
 *    (thr_exiting) or from the main thread's leaving (thr_main_left),
 *    whichever comes last.
 * F. The hubs of the set live as long as the process: the extra ones are
 *    never stopped, and hub 0 is not torn down when the kz_run that
 *    created it returns, nor when its OS thread exits (kz__hubs_member):
 *    handles of their green threads, and placements, lead to a hub that is
 *    still there from any thread.  (Once hub 0's OS thread has exited,
 *    nothing runs that hub: what is placed there never starts.  Under the
 *    shim the main thread's exit waits for the last thread; an API program
 *    starts the set from a thread that stays.)  A green thread on a hub outside
 *    the set (a kz_remote_start hub, another OS thread's) is reached the
 *    same way while its hub lives; a hub is torn down only once every one
 *    of its green threads is released, so a call with a handle of one is
 *    a call with a stale handle, and must not race with the teardown.
 * G. kz__hub_call: the request lives on the caller's stack, which stays
 *    put until the reply: a green caller parks shielded (no cancellation,
 *    no deadline: a spawn or a state must not be half done) until the
 *    reply reaches its own hub through its mailbox (kz__wake_remote, whose
 *    arrival flag is written on the caller's own hub, after which nothing
 *    touches the request); a caller without a hub sleeps on a futex word,
 *    which the hub sets last (a wake of a word that is gone by then is a
 *    spurious wake of whatever lives there, which every futex waiter
 *    allows).  A hub's own context cannot wait (it would stop its hub, and
 *    two hub contexts calling each other would wait for ever): EPERM.
 */
#include "internal.h"

#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

static struct {
  unsigned want;                     /* hubs wanted (1: only the caller's; one per CPU
                                        once the environment was read) */
  bool set_by_program;               /* kz_set_hubs was called: KUDZU_HUBS is not read */
  bool hold;                         /* hold hub 0 once others run (note C) */
  pthread_mutex_t lock;              /* starting the others, kz_set_hubs */
  _Atomic unsigned forks;            /* fork children this process descends from (green.c, note E):
                                        here, where the child writes anyway (no page copied for it) */
  unsigned started_want;             /* want when they were started */
  _Atomic unsigned n;                /* hubs in hub[], 0 until started */
  struct kz__hub *hub[KZ__HUBS_MAX]; /* [0]: the first placer's */
  struct kz_remote *remote[KZ__HUBS_MAX]; /* [k > 0]: hub k's remote hub, kept for good */
  size_t base[KZ__HUBS_MAX];         /* their green threads that are not the program's */
  _Atomic unsigned turn;             /* where the next search starts (note A) */
} set = {.want = 1, .lock = PTHREAD_MUTEX_INITIALIZER};

/* CPUs in the process's affinity mask (1 if it cannot be read).  A raw
   system call: the shim interposes sched_getaffinity (internal.h). */
static unsigned cpus(void)
{
  cpu_set_t mask;
  long r = kz__syscall(SYS_sched_getaffinity, 0, sizeof mask, &mask);
  int n = r > 0 ? CPU_COUNT_S((size_t)r, &mask) : 0;
  return n > 0 ? (unsigned)n : 1;
}

static unsigned resolve(unsigned n)
{
  unsigned c = n ? n : cpus();
  return c > KZ__HUBS_MAX ? KZ__HUBS_MAX : c;
}

void kz__hubs_config_env(void)
{
  const char *v = secure_getenv("KUDZU_HUBS"), *why;
  unsigned n = 0; /* the default: one hub per CPU the process may run on */
  if (v && *v && (why = kz__parse_hubs(v, &n))) {
    kz__say("ignoring KUDZU_HUBS=%s: %s (accepted: " KZ__HUBS_FORM ")", v, why);
    n = 0;
  }
  kz__os_lock(&set.lock);
  if (!set.set_by_program && !atomic_load(&set.n))
    set.want = resolve(n);
  kz__os_unlock(&set.lock);
}

void kz__hubs_config_hold(bool hold) { set.hold = hold; }

/* Start the other hubs (once); here is the placer's, hub 0. */
static void start(struct kz__hub *here)
{
  unsigned n = 1;
  kz__os_lock(&set.lock);
  if (atomic_load_explicit(&set.n, memory_order_relaxed) == 0) {
    set.hub[0] = here;
    set.started_want = set.want;
    for (; n < set.want; n++) {
      struct kz_remote *r = kz_remote_start();
      if (!r) {
        kz__say("cannot start hub %u of %u: %s; %u run the green threads", n + 1, set.want,
                strerror(errno), n);
        break;
      }
      set.remote[n] = r;
      set.hub[n] = kz__remote_hub(r); /* never stopped: it lives as long as the process */
      set.base[n] = __atomic_load_n(&set.hub[n]->nlive, __ATOMIC_RELAXED); /* its kz_run's */
    }
    set.base[0] = 1; /* the placer's hub: its main green thread is the program's */
    if (n > 1 && set.hold)
      kz__hub_hold(here); /* note C */
    if (n > 1) { /* note C: the set is deadlocked, never one of its hubs */
      for (unsigned k = 1; k < n; k++)
        kz__quiesce_join(set.hub[k], 1, false); /* held by its kz_run (remote.c, note C) */
      kz__quiesce_join(here, set.hold ? 1 : 0, true);
    }
    atomic_store_explicit(&set.n, n, memory_order_release);
  }
  kz__os_unlock(&set.lock);
}

/* The hubs in the set, starting them if several are wanted. */
static unsigned started(struct kz__hub *here)
{
  unsigned n = atomic_load_explicit(&set.n, memory_order_acquire);
  if (!n && set.want > 1) {
    start(here);
    n = atomic_load_explicit(&set.n, memory_order_acquire);
  }
  return n;
}

struct kz__hub *kz__hubs_place(struct kz__hub *here)
{
  unsigned n, first, best;
  size_t least = SIZE_MAX;
  if ((n = started(here)) <= 1)
    return here;
  first = atomic_fetch_add_explicit(&set.turn, 1, memory_order_relaxed) % n;
  best = first;
  for (unsigned i = 0; i < n; i++) {
    unsigned k = (first + i) % n;
    struct kz__hub *h = set.hub[k];
    size_t taken = atomic_load_explicit(&h->taken, memory_order_acquire); /* first (green.c, adopt_run) */
    size_t live = __atomic_load_n(&h->nlive, __ATOMIC_RELAXED);
    size_t coming = atomic_load_explicit(&h->sent, memory_order_relaxed) - taken;
    size_t load = live - set.base[k] + 1 + coming;
    if (load < least) {
      least = load;
      best = k;
    }
  }
  return set.hub[best];
}

struct kz__hub *kz__hubs_at(struct kz__hub *here, unsigned k)
{
  unsigned n = started(here);
  if (n <= 1)
    return k == 0 ? here : NULL; /* one hub: every caller's own */
  return k < n ? set.hub[k] : NULL;
}

unsigned kz__hubs_forks(void) { return atomic_load_explicit(&set.forks, memory_order_relaxed); }

bool kz__hubs_many(void) { return atomic_load_explicit(&set.n, memory_order_acquire) > 1; }

bool kz__hubs_member(const struct kz__hub *hub)
{
  unsigned n = atomic_load_explicit(&set.n, memory_order_acquire);
  for (unsigned k = 0; k < n; k++)
    if (set.hub[k] == hub)
      return true;
  return false;
}

/* ---- Calls on another hub (note G) ------------------------------------------------ */

struct call {
  struct kz__post post;         /* the request, to the hub that runs fn */
  void (*fn)(void *arg);
  void *arg;
  struct kz__remote_wake reply; /* back to a green caller's hub */
  _Atomic int done;             /* a caller without a hub: futex word, 1 once fn ran */
};

static void call_run(struct kz__post *p)
{
  struct call *c = kz__container_of(p, struct call, post);
  c->fn(c->arg);
  if (c->reply.g) {
    kz__wake_remote(&c->reply); /* last touch of c */
  } else {
    atomic_store_explicit(&c->done, 1, memory_order_release);
    kz__syscall(SYS_futex, &c->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  }
}

int kz__hub_call(struct kz__hub *hub, void (*fn)(void *arg), void *arg)
{
  struct kz__hub *home = kz__tls_hub;
  struct call c = {.post.fn = call_run, .fn = fn, .arg = arg};
  if (home == hub) {
    fn(arg);
    return 0;
  }
  if (home && !home->current)
    return -EPERM;
  c.reply.g = home ? home->current : NULL;
  kz__hub_post(hub, &c.post);
  if (c.reply.g)
    return kz__wait_remote(&c.reply, "a call on another hub");
  while (!atomic_load_explicit(&c.done, memory_order_acquire))
    kz__syscall(SYS_futex, &c.done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  return 0;
}

/* ---- Fork (note D) ------------------------------------------------------------------ */

/* The hold of note C goes too: the child's hub is alone again, and under
   the shim its lone thread blocks in the kernel as natively
   (preload/block.c, note F). */
static void hubs_atfork_child(void)
{
  struct kz__hub *hub = kz__tls_hub;
  unsigned n = atomic_load(&set.n);
  if (n > 1 && hub == set.hub[0] && set.hold)
    kz__hub_unhold(hub);
  for (unsigned k = 1; k < n && hub; k++) {
    if (hub != set.hub[k])
      continue;
    /* the forking thread was on an extra hub: its kz_run is left behind
       with the OS thread that ran it, and the hub is the child's own */
    for (struct kz__link *l = hub->all.next, *next; l != &hub->all; l = next) {
      struct kz_green *g = kz__container_of(l, struct kz_green, all);
      next = l->next;
      if (g != hub->current && !g->ext)
        kz__green_forget(g);
    }
    kz__hub_unhold(hub); /* its kz_run's (remote.c, note C) */
  }
  kz__quiesce_forked(hub);
  atomic_fetch_add(&set.forks, 1); /* green.c, note E */
  kz__stack_forked();
  kz__tls_forked(hub);
  kz__handle_forked();
  pthread_mutex_init(&set.lock, NULL);
  atomic_store(&set.n, 0);
}

__attribute__((constructor)) static void hubs_init(void) { pthread_atfork(NULL, NULL, hubs_atfork_child); }

/* ---- Public API -------------------------------------------------------------------- */

int kz_set_hubs(unsigned n)
{
  int r = 0;
  if (n > KZ__HUBS_MAX)
    return kz__fail_errno(-EINVAL);
  n = resolve(n);
  kz__os_lock(&set.lock);
  if (atomic_load(&set.n) && n != set.started_want) {
    r = -EBUSY;
  } else {
    set.want = n;
    set.set_by_program = true;
  }
  kz__os_unlock(&set.lock);
  return r ? kz__fail_errno(r) : 0;
}

size_t kz_hub_count(void)
{
  unsigned n = atomic_load_explicit(&set.n, memory_order_acquire);
  return n ? n : 1;
}
