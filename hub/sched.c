/* sched.c: the run queue, switching, parking and waking, wait queues.
 *
 * Notes.
 * A. errno belongs to each green thread.  One with TLS of its own (tls.c)
 *    has its own errno there, and the switch loads its thread pointer.  For
 *    the contexts that share the OS thread's TLS (the hub, the main green
 *    thread, those spawned through the API) kz__switch_to saves errno on
 *    the way out and restores it on the way back in, through the OS
 *    thread's errno address cached in the hub (__errno_location() is a
 *    call into libc).  The thread pointer is loaded just before the stack
 *    switch, and no code in between touches TLS.
 * B. Wakes are idempotent: kz__wake() only acts on a parked green thread and
 *    makes it ready, so a timer, a cancel and an I/O readiness may all fire
 *    for the same park and only the first one counts.  The woken green thread
 *    tidies up the others (stops its timer, unlinks its waiters) when it
 *    runs.
 * C. A park's deadline is an ev_timer embedded in the green thread.  libev
 *    measures timers from the loop's cached time, which lags while green
 *    threads run, so a park refreshes it first (ev_now_update: one vDSO clock
 *    read): timers then expire in the order of their deadlines even when they
 *    were armed at different moments of one pass.  A timer that still fires
 *    a hair before its deadline on the real clock is re-armed for the rest,
 *    so no wait ever ends early.
 * D. A green thread that finished detached cannot free the stack it is still
 *    running on: it leaves itself in hub->dying, and whoever runs next frees
 *    it right after the switch.
 * E. With a thousand green threads, each one the hub resumes is cold: its
 *    struct and the top of its stack (the registers kz__switch pops and the
 *    frames of the calls that parked it) were last touched a whole batch
 *    ago, and the kernel's work for the other connections has evicted them
 *    since.  Resuming then waits on a chain of cache misses, one line after
 *    the other.  So popping a green thread prefetches the one behind it in
 *    the queue: the two lines of its struct that a resume touches
 *    (internal.h) and PREFETCH_LINES lines of its stack, whose top the queue
 *    keeps in the predecessor (run_next_sp, copied at push, when the queued
 *    thread is at hand anyway).  The lines arrive while the popped thread
 *    runs, and in parallel.  Only a long queue is worth it (PREFETCH_QUEUE).
 *    An echo server's own time per request at 1,000 connections went from
 *    about 1.2 us to 0.6 us with io.c's note G (utime in /proc under
 *    echo_load).  A stale copy (a thread that queued itself while running
 *    saves its sp only later) costs a useless prefetch, never a fault:
 *    prefetches do not trap.
 * F. Waiters any OS thread may wake.  The toolbox's objects (sync.c,
 *    queue.c, future.c, combine.c, group.c) are used by the green threads
 *    of every hub.  Each guards its state and its wait queues with a
 *    spinlock of its own (struct kz__spin: its critical sections are a few
 *    instructions and never switch; the runtime is never preempted inside
 *    them, preempt.c note C; a waiter whose OS thread the kernel took spins
 *    into sched_yield).  A waiter queues itself under the lock after
 *    testing the object, so a waker, which changes the object under the
 *    same lock, either finds it queued or it finds the change.  A waker
 *    takes the first waiter off the queue and claims it (KZ__W_CLAIMED,
 *    with the result and the hand-over in the record) under the lock, so
 *    exactly one wake wins, and FIFO order holds whatever hub each waiter
 *    is on.  Then it delivers the wake: kz__wake directly when the waiter's
 *    hub is its own, else a post to that hub (kz__hub_post) whose message
 *    is the waiter's own record (w->post), so a wake needs no allocation
 *    and cannot fail.  A waiter that ends its park for another reason (its
 *    deadline, a cancellation) takes the lock and leaves the queue if it
 *    is still there; if a waker claimed it first, the claim wins: what it
 *    was given (a lock, a permit, an item) is its own, so the wait
 *    succeeds, and it parks on with a shield (internal.h) until the posted
 *    wake has arrived, since that message lives on its stack: a wait never
 *    returns while a wake for it is in flight.  The wake sets
 *    KZ__W_WOKEN on the waiter's hub thread and then kz__wake's it with
 *    nothing in between, so it always lands on that park.  On its own hub a
 *    waker also sees what note B's idempotent wakes leave behind: a waiter
 *    that a timeout or a cancellation already woke but that has not run
 *    yet is skipped (KZ__W_LEFT, it returns its park's error), as one-hub
 *    objects always did (sync.c note A).  A waiter of another hub cannot be
 *    looked at safely, so one woken there and not yet gone is handed the
 *    object and keeps it.  While parked on such an object a green thread
 *    holds its hub (hub->xwaiters, hub.c note J): a waker on another OS
 *    thread must find the hub's loop still there, so a wait nobody ends
 *    lasts until its timeout rather than failing with EDEADLK.  The shim's
 *    pthread objects (preload/pthread_sync.c, struct waiter) follow the
 *    same protocol under a table's bucket locks, with real threads as
 *    waiters too; struct kz__waiter carries what a shared one would need
 *    but the real threads' futex word.
 * G. libev's epoll backend waits in whole milliseconds (epoll_wait's
 *    timeout, rounded up), so a park of 200 us lasted a millisecond, five
 *    times a native nanosleep.  A park shorter than KZ__FINE_WAIT records
 *    its deadline in hub->soonest (the earliest such one); the shim's
 *    epoll_wait, when libev polls for the hub (preload/poll.c), waits with
 *    epoll_pwait2 until that deadline instead when it comes before libev's
 *    rounded timeout, and forgets it once passed.  Several short parks at
 *    once: the earliest is exact, the later ones may wait for libev's
 *    millisecond as before.  Without the shim, libev's millisecond stays.
 * H. The runtime's own scope (kz__runtime_enter, internal.h).  The runtime
 *    calls libunwind from green threads: to tell who waits for a libc lock
 *    (preload/patch.c, note H) and for the monitor's backtraces
 *    (monitor.c).  libunwind calls libc through the PLT (pipe2, read and
 *    write to check that an address is readable, its own
 *    pthread_mutex_lock, sigprocmask, malloc), and under the shim those
 *    are the interposers: in a green thread they recorded its pipe's
 *    descriptors, told the other hubs (allocating), and took libunwind's
 *    mutex as a green wait, which parks.  The lock wait's walk runs where
 *    nothing may switch (libev growing an array meets an arena lock that
 *    fork() holds: another green thread of the hub then ran libev with
 *    the array half grown and crashed; the walk's own allocation met the
 *    same lock, walked again, and parked on the mutex its outer walk held,
 *    for good).  So the running green thread is hidden around such a call:
 *    every interposer sees the hub's own context and calls libc, as for
 *    libev, and whatever would park fails instead (kz__park: EPERM).
 */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>

#ifdef KZ_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* Stack lines prefetched for the second thread in the run queue (note E):
   kz__switch's saved registers and the frames of a park from a wait in the
   shim's read path span about this many. */
#define PREFETCH_LINES 16
/* The shortest queue worth prefetching for: threads in a shorter one ran a
   moment ago and are still in the cache, and a tight loop of a few yielding
   threads would only pay for the prefetch instructions. */
#define PREFETCH_QUEUE 8

static inline void runq_push(struct kz__hub *hub, struct kz_green *g)
{
  g->run_next = NULL;
  hub->nready++;
  if (hub->run_tail) {
    hub->run_tail->run_next = g;
    hub->run_tail->run_next_sp = g->sp;
  } else {
    hub->run_head = g;
  }
  hub->run_tail = g;
}

static inline struct kz_green *runq_pop(struct kz__hub *hub)
{
  struct kz_green *g = hub->run_head, *after;
  if (!g)
    return NULL;
  hub->nready--;
  if (!(hub->run_head = after = g->run_next))
    hub->run_tail = NULL;
  else if (hub->nready >= PREFETCH_QUEUE) { /* note E */
    __builtin_prefetch(after, 1, 3);
    __builtin_prefetch((char *)after + 64, 1, 3);
    for (int i = 0; i < PREFETCH_LINES; i++)
      __builtin_prefetch((char *)g->run_next_sp + 64 * i, 1, 3);
  }
  return g;
}

void kz__green_forget(struct kz_green *g)
{
  struct kz__hub *hub = g->hub;
  struct kz_green *q = hub->run_head, *next;
  if (g == hub->current || g->state == KZ_DONE || g->state == KZ_CANCELLED || g->state == KZ__S_GONE)
    return;
  hub->run_head = hub->run_tail = NULL; /* the run queue without g */
  hub->nready = 0;
  for (; q; q = next) {
    next = q->run_next;
    if (q != g)
      runq_push(hub, q);
  }
  ev_timer_stop(hub->loop, &g->timer);
  g->state = KZ__S_GONE; /* kz__wake and the wait queues pass it by */
  if (g != hub->main && !kz__list_empty(&g->all)) { /* empty: made by another hub's thread, never adopted (green.c, note E) */
    kz__list_remove(&g->all);
    hub->nlive--;
    hub->nshared -= !g->tp;
  }
}

void kz__ready(struct kz_green *g)
{
  if (g->state != KZ_PENDING)
    g->state = KZ__S_READY;
  runq_push(g->hub, g);
}

#ifdef KZ_ASAN
static void asan_bounds(struct kz__hub *hub, struct kz_green *to, const void **bottom, size_t *size)
{
  if (!to) {
    *bottom = hub->hub_stack.base;
    *size = hub->hub_stack.size;
  } else if (to->flags & KZ__G_MAIN) {
    *bottom = to->asan_bottom;
    *size = to->asan_size;
  } else {
    *bottom = to->stack.base;
    *size = to->stack.size;
  }
}
#endif

/* The slow half of kz__switched: sanitizer bookkeeping and freeing. */
static void __attribute__((noinline)) switched_slow(struct kz__hub *hub, void *fake)
{
#ifdef KZ_ASAN
  const void *old_bottom;
  size_t old_size;
  __sanitizer_finish_switch_fiber(fake, &old_bottom, &old_size);
  if (hub->prev == hub->main && hub->main && !hub->main->asan_size) {
    hub->main->asan_bottom = old_bottom; /* the OS thread's own stack */
    hub->main->asan_size = old_size;
  }
#endif
  if (hub->dying) { /* note D */
    struct kz_green *dead = hub->dying;
    hub->dying = NULL;
    kz__green_release(dead);
  }
}

void kz__switched(struct kz__hub *hub, void *fake)
{
#ifdef KZ_ASAN
  switched_slow(hub, fake);
#else
  if (KZ_UNLIKELY(hub->dying != NULL))
    switched_slow(hub, fake);
#endif
}

/* What the resumed context does right after kz__switch returns into it.  It
   finds everything through the thread's hub again, so the compiler keeps
   nothing in callee-saved registers across the switch (kz__switch saves
   those already). */
static inline __attribute__((always_inline)) void resumed(void *fake)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *self = hub->current;
  kz__switched(hub, fake);
  if (!self)
    *hub->errnop = hub->err;
  else if (!self->tp) /* note A */
    *hub->errnop = self->err;
}

/* The switch itself, inlined into the scheduler's paths. */
static inline __attribute__((always_inline)) void switch_to(struct kz__hub *hub, struct kz_green *to)
{
  struct kz_green *from = hub->current;
  void **from_sp = from ? &from->sp : &hub->sp;
  void *tp = to && to->tp ? to->tp : hub->os_tp;
#ifdef KZ_ASAN
  const void *bottom;
  size_t size;
  void **fake = from ? &from->asan_fake : &hub->asan_fake;
  asan_bounds(hub, to, &bottom, &size);
#endif
  if (from) {
    if (KZ_UNLIKELY(atomic_load_explicit(&kz__stack_canaries, memory_order_relaxed)) &&
        from->stack.guard == KZ__GUARD_CANARY && !kz__stack_canary_ok(&from->stack))
      kz__overflow_die(from, from->stack.base);
    if (!from->tp) /* note A */
      from->err = *hub->errnop;
  } else {
    hub->err = *hub->errnop;
  }
  hub->current = to;
#ifdef KZ_ASAN
  hub->prev = from;
  __sanitizer_start_switch_fiber(from && from == hub->dying ? NULL : fake, bottom, size);
#endif
  if (KZ_UNLIKELY(tp != hub->tp)) { /* tls.c, note F */
    hub->tp = tp;
    kz__tp_set(tp);
  }
#ifdef KZ_ASAN
  kz__switch(from_sp, to ? to->sp : hub->sp);
  resumed(*fake);
#else
  kz__switch(from_sp, to ? to->sp : hub->sp);
  resumed(NULL);
#endif
}

void kz__switch_to(struct kz__hub *hub, struct kz_green *to) { switch_to(hub, to); }

void kz__schedule(struct kz__hub *hub)
{
  struct kz_green *next = hub->budget ? runq_pop(hub) : NULL;
  if (next) {
    hub->budget--;
    if (next->state == KZ__S_READY)
      next->state = KZ_RUNNING;
    if (next == hub->current) /* it queued itself and is next anyway */
      return;
  }
  switch_to(hub, next);
}

void kz__yield(void)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub->current;
  g->state = KZ__S_READY;
  runq_push(hub, g);
  kz__schedule(hub);
}

void kz__preempted_queue(struct kz__hub *hub)
{
  struct kz_green *g = hub->preempted;
  hub->preempted = NULL;
  if (g->state == KZ__S_READY) /* not forgotten meanwhile (a fork child) */
    runq_push(hub, g);
}

void kz__yield_poll(void)
{
  kz__tls_hub->budget = 0; /* kz__schedule then switches to the hub */
  kz__yield();
}

int kz_yield(void)
{
  struct kz__hub *hub = kz__tls_hub;
  if (KZ_UNLIKELY(!hub || !hub->current))
    return hub ? kz__fail_errno(-EPERM) : 0;
  kz__yield();
  return 0;
}

double kz__deadline(double timeout)
{
  if (isnan(timeout))
    return timeout; /* kz__park fails with EINVAL */
  if (timeout < 0 || timeout > KZ_TIMEOUT_MAX)
    return -1;
  return kz__now() + timeout;
}

static void park_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
  struct kz_green *g = kz__container_of(t, struct kz_green, timer);
  if (g->state == KZ_PENDING) { /* a delayed start (green.c) */
    kz__ready(g);
    return;
  }
  double left = g->until - kz__now(); /* note C */
  if (left > 0) {
    ev_timer_set(t, left, 0);
    ev_timer_start(loop, t);
    return;
  }
  kz__wake(g, -ETIMEDOUT);
}

void kz__park_timer_init(struct kz_green *g) { ev_init(&g->timer, park_timer_cb); }

int kz__park(double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  if (KZ_UNLIKELY(!g))
    return -EPERM;
  if ((g->flags & (KZ__G_CANCEL | KZ__G_NO_CANCEL)) == KZ__G_CANCEL)
    return -ECANCELED;
  if (KZ_UNLIKELY(isnan(deadline)))
    return -EINVAL; /* a NaN timeout (kz__deadline) */
  if (g->deadline > 0 && (deadline < 0 || g->deadline < deadline))
    deadline = g->deadline;
  if (deadline >= 0) {
    double left, now;
    ev_now_update(hub->loop);
    if ((left = deadline - (now = kz__now())) <= 0)
      return -ETIMEDOUT;
    ev_timer_set(&g->timer, left, 0);
    g->until = deadline;
    ev_timer_start(hub->loop, &g->timer);
    if (left < KZ__FINE_WAIT && (hub->soonest < now || deadline < hub->soonest)) /* note G */
      hub->soonest = deadline; /* one that passed counts as none */
  }
  g->state = KZ_BLOCKED;
  g->wake = 0;
  kz__schedule(hub);
  if (ev_is_active(&g->timer) || ev_is_pending(&g->timer))
    ev_timer_stop(hub->loop, &g->timer);
  g->waiting.kind = KZ__WAIT_NONE;
  return g->wake;
}

bool kz__wake(struct kz_green *g, int r)
{
  if (g->state != KZ_BLOCKED)
    return false;
  g->wake = (int16_t)r;
  g->state = KZ__S_READY;
  runq_push(g->hub, g);
  return true;
}

int kz__waitq_wait(struct kz__waitq *q, struct kz__waiter *w, double deadline)
{
  int r;
  w->g = kz__tls_hub->current;
  w->data = NULL;
  kz__list_push(&q->head, &w->link);
  r = kz__park(deadline);
  kz__list_remove(&w->link);
  return r;
}

bool kz__waitq_wake_one(struct kz__waitq *q, int r, void *data)
{
  while (!kz__list_empty(&q->head)) {
    struct kz__waiter *w = kz__container_of(q->head.next, struct kz__waiter, link);
    kz__list_remove(&w->link);
    if (w->g->state == KZ_BLOCKED) {
      w->data = data;
      kz__wake(w->g, r);
      return true;
    }
  }
  return false;
}

size_t kz__waitq_wake_all(struct kz__waitq *q, int r)
{
  size_t n = 0;
  while (kz__waitq_wake_one(q, r, NULL))
    n++;
  return n;
}

/* ---- Wakes across hubs ---------------------------------------------------------- */

/* kz__wake_remote and kz__wait_remote (internal.h): a wake-up for a green
   thread parked on any hub, which the waker may send from any thread.  The
   flag that lets the waiter go is written on the waiter's own hub, by the
   delivery itself, so a wake never touches a waiter that has left. */

static void remote_wake_run(struct kz__post *p)
{
  struct kz__remote_wake *w = kz__container_of(p, struct kz__remote_wake, post);
  struct kz_green *g = w->g;
  int r = w->r;
  w->arrived = true; /* the waiter may leave, and w with it, once it runs */
  kz__wake(g, r);
}

void kz__wake_remote(struct kz__remote_wake *w)
{
  /* g cannot leave before w->arrived: reading its hub is safe */
  struct kz__hub *hub = w->g->hub;
  w->post.fn = remote_wake_run;
  if (kz__tls_hub == hub)
    remote_wake_run(&w->post);
  else
    kz__hub_post(hub, &w->post);
}

int kz__wait_remote(struct kz__remote_wake *w, const char *what)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub->current;
  struct kz__shield s;
  kz__hub_hold(hub); /* the wake comes through the mailbox */
  kz__shield_up(g, &s);
  while (!w->arrived) {
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_REMOTE, .what = what};
    kz__park(-1);
  }
  kz__shield_down(g, &s);
  kz__hub_unhold(hub);
  return 0;
}

/* ---- Waiters any OS thread may wake (note F) ---------------------------------- */

void kz__spin_wait(struct kz__spin *l)
{
  unsigned spins = 0;
  do {
    while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
      if (++spins % 64 == 0)
        kz__os_sched_yield(); /* the holder's OS thread was preempted */
      else
        __builtin_ia32_pause();
    }
  } while (atomic_exchange_explicit(&l->held, true, memory_order_acquire));
}

/* The wake of a waiter of this hub arrives (note F): nothing runs between
   the two steps, so it lands on the park that waits for it. */
static void xwake_arrive(struct kz__waiter *w)
{
  struct kz_green *g = w->g;
  atomic_store_explicit(&w->state, KZ__W_WOKEN, memory_order_release);
  kz__wake(g, 0);
}

static void xwake_posted(struct kz__post *p)
{
  xwake_arrive(kz__container_of(p, struct kz__waiter, post));
}

void kz__xwake_deliver(struct kz__waiter *w)
{
  struct kz__hub *hub = w->hub;
  if (hub == kz__tls_hub) {
    xwake_arrive(w);
  } else {
    w->post.fn = xwake_posted;
    kz__hub_post(hub, &w->post);
  }
}

/* A waiter of the caller's hub that something else woke and that has not
   run yet, or one a fork child forgot (note F). */
static bool gone_already(const struct kz__waiter *w)
{
  const struct kz_green *g = w->g;
  if (w->hub != kz__tls_hub)
    return false;
  return g->state == KZ__S_GONE || (g->state != KZ_BLOCKED && g->wake != 0);
}

struct kz__waiter *kz__xwake_claim_first(struct kz__waitq *q, int r)
{
  while (!kz__list_empty(&q->head)) {
    struct kz__waiter *w = kz__container_of(q->head.next, struct kz__waiter, link);
    kz__list_remove(&w->link);
    if (gone_already(w)) {
      atomic_store_explicit(&w->state, KZ__W_LEFT, memory_order_relaxed);
      continue;
    }
    w->r = r;
    atomic_store_explicit(&w->state, KZ__W_CLAIMED, memory_order_relaxed);
    return w;
  }
  return NULL;
}

size_t kz__xwake_claim_all(struct kz__waitq *q, int r, struct kz__link *out)
{
  struct kz__waiter *w;
  size_t n = 0;
  while ((w = kz__xwake_claim(q, r))) {
    kz__list_push(out, &w->link);
    n++;
  }
  return n;
}

void kz__xwake_deliver_all(struct kz__link *claimed)
{
  while (!kz__list_empty(claimed)) {
    struct kz__waiter *w = kz__container_of(claimed->next, struct kz__waiter, link);
    kz__list_remove(&w->link); /* before w can go away */
    kz__xwake_deliver(w);
  }
}

int kz__xwait_park(struct kz__waiter *w, struct kz__spin *l, double deadline)
{
  struct kz__hub *hub = w->hub;
  struct kz__shield s;
  int r, st;
  hub->xwaiters++; /* held by the loop's next poll (hub.c, note J) */
  for (;;) {
    r = kz__park(deadline);
    st = atomic_load_explicit(&w->state, memory_order_acquire);
    if (st != KZ__W_QUEUED || r == 0) {
      if (st == KZ__W_QUEUED)
        continue; /* a stray wake: still queued, park on */
      break;
    }
    kz__spin_lock(l);
    st = atomic_load_explicit(&w->state, memory_order_relaxed);
    if (st == KZ__W_QUEUED) {
      kz__list_remove(&w->link);
      atomic_store_explicit(&w->state, KZ__W_LEFT, memory_order_relaxed);
    }
    kz__spin_unlock(l);
    break;
  }
  if (st == KZ__W_CLAIMED) { /* the claim wins; its wake is in flight (note F) */
    kz__shield_up(w->g, &s);
    while (atomic_load_explicit(&w->state, memory_order_acquire) != KZ__W_WOKEN)
      kz__park(-1);
    kz__shield_down(w->g, &s);
    st = KZ__W_WOKEN;
  }
  hub->xwaiters--;
  return st == KZ__W_WOKEN ? w->r : r;
}
