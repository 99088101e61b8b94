/* hubs.c: the hubs the shim's threads are spread over (KUDZU_HUBS), and
 * where a new thread goes.
 *
 * With one hub (the default for now) every thread the program creates is a
 * green thread on its creator's hub, as before.  With KUDZU_HUBS=N (or
 * --hubs N), the first pthread_create starts N-1 more hubs, each on an OS
 * thread of its own (the API's remote hubs, hub/remote.c), and from then on
 * each new thread is placed on the least loaded of the N (placement), for
 * life.  So a thread-per-connection server's connections, a pool's workers,
 * memcached's worker threads run on as many cores as there are hubs.
 *
 * Notes.
 * A. Placement.  Load is a hub's live green threads (hub->nlive) less
 *    those that are not the program's (an extra hub's kz_run and its main
 *    green thread, counted at its start: hubs.base), read without a lock
 *    from the creator's thread; the first hub with the fewest, looking from
 *    a position that moves on at each placement, so that equals take turns.
 *    A stale count costs balance, never correctness.
 * B. What works across hubs (the shim was built for threads that are not
 *    green or live on other OS threads): mutexes, condition variables,
 *    rwlocks, barriers and semaphores wait in the process-wide wait table
 *    and are woken through the waiter's hub's mailbox (pthread_sync.c);
 *    join, detach, cancel and pthread_kill of a thread on another hub are
 *    carried out on its hub (thread.c, note N and "remote_op"); a close
 *    wakes a waiter on any hub (hub/io.c, note F); the monitor and the dump
 *    signal cover every hub.  A new thread on another hub is made there, by
 *    a message to that hub, while its creator waits (thread.c, spawn_on).
 * C. Deadlock (EDEADLK): a thread on another hub may wake any thread of the
 *    main hub at any time, so the main hub is held (kz__hub_hold) from the
 *    start of the others, and no hub is deadlocked alone; the set is, when
 *    none of its hubs has anything to do but wait for another's post.  Its
 *    hubs join the set's count (kz__quiesce_join: the main hub with that
 *    hold, each other one with its kz_run's), and the main thread's blocking
 *    call then fails with EDEADLK, as with one hub (hub/hub.c, note J).
 * D. fork(): the child has only the forking thread, on its hub; the other
 *    hubs' OS threads do not exist there.  It starts afresh: one hub, and
 *    more at its first pthread_create, as its parent did.  If the forking
 *    thread was on an extra hub, that hub's kz_run (the remote hub's own
 *    green threads) is left behind as the other threads are, and its hold
 *    goes: the child's hub is then like a main hub.
 * E. The main thread's pthread_exit (or kz_exit) lets the process live on
 *    until every thread, on every hub, has finished (thread.c, main_exit);
 *    the other hubs' OS threads would keep it alive after that, so it then
 *    exits with status 0, as natively when the last thread ends: from
 *    main_exit, from the last thread's end (thr_exiting) or from the main
 *    thread's leaving (thr_main_left), whichever comes last.
 */
#include "shim.h"

#include <stdatomic.h>

static struct {
  unsigned want;                        /* KUDZU_HUBS (1: only the creator's) */
  pthread_mutex_t lock;                 /* starting the others */
  _Atomic unsigned n;                   /* hubs in hub[], 0 until started */
  struct kz__hub *hub[KZ_SHIM_HUBS_MAX]; /* [0]: the first creator's */
  size_t base[KZ_SHIM_HUBS_MAX];        /* their green threads that are not the program's */
  _Atomic unsigned turn;                /* where the next search starts (note A) */
} hubs = {.want = 1, .lock = PTHREAD_MUTEX_INITIALIZER};

void kz_shim_hubs_config(unsigned n) { hubs.want = n < 1 ? 1 : n > KZ_SHIM_HUBS_MAX ? KZ_SHIM_HUBS_MAX : n; }

/* Start the other hubs (once); here is the creator's. */
static void start(struct kz__hub *here)
{
  unsigned n = 1;
  kz__os_lock(&hubs.lock);
  if (atomic_load_explicit(&hubs.n, memory_order_relaxed) == 0) {
    hubs.hub[0] = here;
    for (; n < hubs.want; n++) {
      struct kz_remote *r = kz_remote_start();
      if (!r) {
        kz__say("cannot start hub %u of %u: %s; %u run the threads", n + 1, hubs.want,
                strerror(errno), n);
        break;
      }
      hubs.hub[n] = kz__remote_hub(r); /* never stopped: it lives as long as the process */
      hubs.base[n] = __atomic_load_n(&hubs.hub[n]->nlive, __ATOMIC_RELAXED); /* its kz_run's */
    }
    hubs.base[0] = 1; /* the creator's hub: its main green thread is the program's */
    if (n > 1) {
      kz__hub_hold(here); /* note C */
      for (unsigned k = 1; k < n; k++)
        kz__quiesce_join(hubs.hub[k], 1, false); /* held by its kz_run (hub/remote.c, note C) */
      kz__quiesce_join(here, 1, true);
    }
    atomic_store_explicit(&hubs.n, n, memory_order_release);
  }
  kz__os_unlock(&hubs.lock);
}

struct kz__hub *kz_shim_place(struct kz__hub *here)
{
  unsigned n, first, best;
  size_t least = SIZE_MAX;
  if (hubs.want <= 1)
    return here;
  if (!(n = atomic_load_explicit(&hubs.n, memory_order_acquire))) {
    start(here);
    n = atomic_load_explicit(&hubs.n, memory_order_acquire);
  }
  first = atomic_fetch_add_explicit(&hubs.turn, 1, memory_order_relaxed) % n;
  best = first;
  for (unsigned i = 0; i < n; i++) {
    unsigned k = (first + i) % n;
    size_t load = __atomic_load_n(&hubs.hub[k]->nlive, __ATOMIC_RELAXED) - hubs.base[k] + 1;
    if (load < least) {
      least = load;
      best = k;
    }
  }
  return hubs.hub[best];
}

bool kz_shim_hubs_many(void) { return atomic_load_explicit(&hubs.n, memory_order_acquire) > 1; }

/* Note D.  The hold of note C goes too: the child's hub is alone again,
   and its lone thread blocks in the kernel as natively (block.c note F). */
static void hubs_atfork_child(void)
{
  struct kz__hub *hub = kz__tls_hub;
  unsigned n = atomic_load(&hubs.n);
  if (n > 1 && hub == hubs.hub[0])
    kz__hub_unhold(hub);
  for (unsigned k = 1; k < n && hub; k++) {
    if (hub != hubs.hub[k])
      continue;
    /* the forking thread was on an extra hub: its kz_run is left behind
       with the OS thread that ran it, and the hub is the child's own */
    for (struct kz__link *l = hub->all.next, *next; l != &hub->all; l = next) {
      struct kz_green *g = kz__container_of(l, struct kz_green, all);
      next = l->next;
      if (g != hub->current && !g->ext)
        kz__green_forget(g);
    }
    kz__hub_unhold(hub); /* its kz_run's (hub/remote.c, note C) */
  }
  kz__quiesce_forked(hub);
  pthread_mutex_init(&hubs.lock, NULL);
  atomic_store(&hubs.n, 0);
}

__attribute__((constructor)) static void hubs_init(void) { pthread_atfork(NULL, NULL, hubs_atfork_child); }
