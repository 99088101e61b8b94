/* queue.c: queues between green threads, on one hub or several: FIFO, LIFO
 * and priority, bounded or not, with timeouts, try-variants and close.
 *
 * A queue's states: OPEN (put and get work) --kz_queue_close--> CLOSED (put
 * fails with EPIPE; get drains what is left, then fails with EPIPE).
 *
 * Notes.
 * A. Hand-off.  A put that finds a getter queued (so the queue is empty)
 *    gives it the item directly, without touching the buffer.  A get that
 *    makes room in a full queue moves the first queued putter's item into
 *    the buffer and wakes it.  Either way the woken side has nothing left to
 *    do but return, so a ping-pong through two queues costs one switch per
 *    hand-off, and order is kept: a putter's item enters the buffer in the
 *    order putters arrived, whatever their hubs.
 * B. Waiters that timed out or were cancelled are skipped by the hand-off
 *    (they left the queue, or were woken on the waker's hub and have not
 *    run yet: sched.c note F), so an item is never handed to someone who
 *    will not take it: a put or get that failed did not happen.  A waiter
 *    of another hub that a waker claimed before its timeout took effect
 *    gets the item and returns 0.
 * C. Storage is one array of slots (item, priority, sequence number): a ring
 *    for FIFO, a stack for LIFO, a binary min-heap on (priority, sequence)
 *    for the priority queue, so equal priorities come out in put order.
 *    Unbounded queues grow it by doubling.
 * D. The ping-pong of note A is the queue's hot path: a put that hands off
 *    and a get that parks, once per hand-off.  It makes no call it can avoid
 *    before the wake and the park: queue_put and queue_get are inlined into
 *    the public functions, and KZ_FOREVER needs no kz__deadline.  Each call
 *    level a parked green thread returns through after its switch cost
 *    about 3 ns of a hand-off of 40 (bench_toolbox, queue_handoff_ns: 43 ns
 *    before, 37 after).  The lock of note E adds an atomic exchange to each
 *    put and each get: the best hand-off went from 30 to 41 ns, an
 *    uncontended put and get from 9.6 to 20.8 ns (2-core x86-64 VM).
 *    kz__xwake_claim tests for an empty wait queue inline, so a put or get
 *    that finds nobody waiting calls nothing.
 * E. A queue belongs to no hub: its lock (sched.c note F) guards the
 *    buffer and both wait queues, taken once per call and released before
 *    a wake is delivered or a waiter parks.  The try-variants never wait,
 *    so they also work in hub callbacks and threads without a hub (a plain
 *    thread may feed a queue); a waiting put or get needs a green thread
 *    (EPERM in a hub callback; a thread without a hub becomes one).  A
 *    realloc of an unbounded queue's buffer runs under the lock: rare,
 *    and amortised by doubling.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct slot {
  void *item;
  long prio;     /* priority queues: lowest first */
  uint64_t seq;  /* put order, to keep equal priorities FIFO */
};

struct kz_queue {
  struct kz__spin lock;     /* guards everything below (note E) */
  int kind;                 /* KZ_QUEUE_FIFO, _LIFO, _PRIORITY */
  bool closed;              /* see the states above */
  size_t cap;               /* at most this many items; 0: unbounded */
  struct slot *slots;       /* note C */
  size_t alloc;             /* slots allocated (a power of two) */
  size_t head;              /* FIFO: index of the oldest item */
  size_t n;                 /* items held */
  uint64_t seq;             /* next put's sequence number */
  struct kz__waitq getters; /* parked in get: the queue is empty */
  struct kz__waitq putters; /* parked in put: the queue is full; data = struct slot * */
};

/* ---- Storage (note C) ------------------------------------------------------------ */

static bool slot_less(const struct slot *a, const struct slot *b)
{
  return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

static void heap_up(struct slot *h, size_t i)
{
  while (i > 0) {
    size_t p = (i - 1) / 2;
    struct slot t;
    if (!slot_less(&h[i], &h[p]))
      break;
    t = h[i], h[i] = h[p], h[p] = t;
    i = p;
  }
}

static void heap_down(struct slot *h, size_t n, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    struct slot t;
    if (l < n && slot_less(&h[l], &h[m]))
      m = l;
    if (l + 1 < n && slot_less(&h[l + 1], &h[m]))
      m = l + 1;
    if (m == i)
      return;
    t = h[i], h[i] = h[m], h[m] = t;
    i = m;
  }
}

/* Make room for one more item: 0 or -ENOMEM. */
static int grow(struct kz_queue *q)
{
  size_t na = q->alloc ? q->alloc * 2 : 16;
  struct slot *s;
  if (q->n < q->alloc)
    return 0;
  if (!(s = calloc(na, sizeof *s))) /* calloc: na * size may overflow */
    return -ENOMEM;
  for (size_t i = 0; i < q->n; i++) /* unwrap the ring */
    s[i] = q->slots[(q->head + i) & (q->alloc - 1)];
  free(q->slots);
  q->slots = s;
  q->alloc = na;
  q->head = 0;
  return 0;
}

static int push(struct kz_queue *q, void *item, long prio)
{
  struct slot s = {item, prio, q->seq++};
  int r = grow(q);
  if (r)
    return r;
  if (q->kind == KZ_QUEUE_PRIORITY) {
    q->slots[q->n] = s;
    heap_up(q->slots, q->n++);
  } else if (q->kind == KZ_QUEUE_LIFO) {
    q->slots[q->n++] = s;
  } else {
    q->slots[(q->head + q->n++) & (q->alloc - 1)] = s;
  }
  return 0;
}

static void *pop(struct kz_queue *q)
{
  void *item;
  if (q->kind == KZ_QUEUE_PRIORITY) {
    item = q->slots[0].item;
    q->slots[0] = q->slots[--q->n];
    heap_down(q->slots, q->n, 0);
  } else if (q->kind == KZ_QUEUE_LIFO) {
    item = q->slots[--q->n].item;
  } else {
    item = q->slots[q->head].item;
    q->head = (q->head + 1) & (q->alloc - 1);
    q->n--;
  }
  return item;
}

/* ---- Put and get ---------------------------------------------------------------- */

/* Who may use q for a call with deadline (note E): the running green
   thread; NULL with *err = 0 for a try (deadline 0) outside one, or with
   -errno in *err. */
static inline struct kz_green *user(struct kz_queue *q, double deadline, int *err)
{
  struct kz__hub *hub = kz__tls_hub;
  if (KZ_UNLIKELY(!q)) {
    *err = -EINVAL;
    return NULL;
  }
  if (KZ_LIKELY(hub && hub->current))
    return hub->current;
  if (deadline == 0)
    return NULL; /* a try: never waits */
  if (!hub && !(hub = kz__hub_create(err)))
    return NULL;
  if (!hub->current)
    *err = -EPERM;
  return hub->current;
}

/* With q's lock held: queue g on ws with data, release the lock and park
   (sched.c note F). */
static int queue_wait(struct kz_queue *q, struct kz_green *g, struct kz__waitq *ws, void *data,
                      const char *what, double deadline, void **got)
{
  struct kz__waiter w;
  int r;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .arg2 = (uintptr_t)q, .what = what};
  kz__xwait_queue(ws, &w, g);
  w.data = data;
  kz__spin_unlock(&q->lock);
  r = kz__xwait_park(&w, &q->lock, deadline);
  if (got)
    *got = w.data;
  return r;
}

/* Inlined into each public put (note D). */
static inline __attribute__((always_inline)) int queue_put(struct kz_queue *q, void *item, long prio,
                                                           double deadline)
{
  int err = 0;
  struct kz_green *g = user(q, deadline, &err);
  struct kz__waiter *w;
  struct slot s = {item, prio, 0};
  if (!g && err)
    return err;
  kz__spin_lock(&q->lock);
  if (q->closed) {
    kz__spin_unlock(&q->lock);
    return -EPIPE;
  }
  if ((w = kz__xwake_claim(&q->getters, 0))) { /* note A */
    w->data = item;
    kz__spin_unlock(&q->lock);
    kz__xwake_deliver(w);
    return 0;
  }
  if (!q->cap || q->n < q->cap) {
    err = push(q, item, prio);
    kz__spin_unlock(&q->lock);
    return err;
  }
  if (!g) {
    kz__spin_unlock(&q->lock);
    return -ETIMEDOUT; /* a try outside a green thread: full */
  }
  return queue_wait(q, g, &q->putters, &s, "queue put", deadline, NULL); /* 0: a getter moved it in */
}

/* With q's lock held, a get made room: claim the first queued putter and
   move its item in (note A); its wake is delivered by the caller. */
static struct kz__waiter *admit_putter(struct kz_queue *q)
{
  struct kz__waiter *w = kz__xwake_claim(&q->putters, 0);
  struct slot *s;
  if (w) {
    s = w->data;
    push(q, s->item, s->prio); /* cannot fail: a get just freed a slot */
  }
  return w;
}

/* Inlined into each public get (note D). */
static inline __attribute__((always_inline)) int queue_get(struct kz_queue *q, void **item, double deadline)
{
  int err = 0;
  struct kz_green *g = user(q, deadline, &err);
  struct kz__waiter *w;
  void *it;
  if (!g && err)
    return err;
  kz__spin_lock(&q->lock);
  if (q->n) {
    it = pop(q);
    w = admit_putter(q);
    kz__spin_unlock(&q->lock);
    if (w)
      kz__xwake_deliver(w);
  } else if (q->closed) {
    kz__spin_unlock(&q->lock);
    return -EPIPE;
  } else if (!g) {
    kz__spin_unlock(&q->lock);
    return -ETIMEDOUT; /* a try outside a green thread: empty */
  } else if ((err = queue_wait(q, g, &q->getters, NULL, "queue get", deadline, &it)) < 0) {
    return err; /* else a putter handed us it */
  }
  if (item)
    *item = it;
  return 0;
}

/* ---- Public API ------------------------------------------------------------------ */

/* kz__deadline(timeout), without leaving the file for the common "forever"
   (note D). */
static inline double deadline_of(double timeout)
{
  return timeout < 0 ? -1 : kz__deadline(timeout);
}

struct kz_queue *kz_queue_new(int kind, size_t capacity)
{
  struct kz_queue *q;
  if (kind != KZ_QUEUE_FIFO && kind != KZ_QUEUE_LIFO && kind != KZ_QUEUE_PRIORITY) {
    errno = EINVAL;
    return NULL;
  }
  if (!(q = calloc(1, sizeof *q))) {
    errno = ENOMEM;
    return NULL;
  }
  q->kind = kind;
  q->cap = capacity;
  kz__waitq_init(&q->getters);
  kz__waitq_init(&q->putters);
  return q;
}

int kz_queue_put(struct kz_queue *q, void *item, double timeout)
{
  int r = queue_put(q, item, 0, deadline_of(timeout));
  return r ? kz__fail_errno(r) : 0;
}

int kz_queue_put_prio(struct kz_queue *q, void *item, long priority, double timeout)
{
  int r = queue_put(q, item, priority, deadline_of(timeout));
  return r ? kz__fail_errno(r) : 0;
}

int kz_queue_try_put(struct kz_queue *q, void *item)
{
  int r = queue_put(q, item, 0, 0);
  return r == 0 ? 0 : kz__fail_errno(r == -ETIMEDOUT ? -EAGAIN : r);
}

int kz_queue_get(struct kz_queue *q, void **item, double timeout)
{
  int r = queue_get(q, item, deadline_of(timeout));
  return r ? kz__fail_errno(r) : 0;
}

int kz_queue_try_get(struct kz_queue *q, void **item)
{
  int r = queue_get(q, item, 0);
  return r == 0 ? 0 : kz__fail_errno(r == -ETIMEDOUT ? -EAGAIN : r);
}

int kz_queue_close(struct kz_queue *q)
{
  struct kz__link claimed;
  if (!q)
    return kz__fail_errno(-EINVAL);
  kz__list_init(&claimed);
  kz__spin_lock(&q->lock);
  q->closed = true;
  kz__xwake_claim_all(&q->getters, -EPIPE, &claimed);
  kz__xwake_claim_all(&q->putters, -EPIPE, &claimed);
  kz__spin_unlock(&q->lock);
  kz__xwake_deliver_all(&claimed);
  return 0;
}

long kz_queue_size(struct kz_queue *q)
{
  size_t n;
  if (!q)
    return kz__fail_errno(-EINVAL);
  kz__spin_lock(&q->lock);
  n = q->n;
  kz__spin_unlock(&q->lock);
  return (long)n;
}

int kz_queue_free(struct kz_queue *q)
{
  bool busy;
  if (!q)
    return kz__fail_errno(-EINVAL);
  kz__spin_lock(&q->lock);
  busy = !kz__waitq_empty(&q->getters) || !kz__waitq_empty(&q->putters);
  kz__spin_unlock(&q->lock);
  if (busy)
    return kz__fail_errno(-EBUSY);
  free(q->slots);
  free(q);
  return 0;
}
