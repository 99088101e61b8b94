/* queue.c: queues between the green threads of one hub: FIFO, LIFO and
 * priority, bounded or not, with timeouts, try-variants and close.
 *
 * A queue's states: OPEN (put and get work) --kz_queue_close--> CLOSED (put
 * fails with EPIPE; get drains what is left, then fails with EPIPE).
 *
 * Notes.
 * A. Hand-off.  A put that finds a getter parked (so the queue is empty)
 *    gives it the item directly, without touching the buffer.  A get that
 *    makes room in a full queue moves the first parked putter's item into
 *    the buffer and wakes it.  Either way the woken side has nothing left to
 *    do but return, so a ping-pong through two queues costs one switch per
 *    hand-off, and order is kept: a putter's item enters the buffer in the
 *    order putters arrived.
 * B. Waiters that timed out or were cancelled are skipped by the hand-off
 *    (kz__waitq_first), so an item is never handed to someone who will not
 *    take it: a put or get that failed did not happen.
 * C. Storage is one array of slots (item, priority, sequence number): a ring
 *    for FIFO, a stack for LIFO, a binary min-heap on (priority, sequence)
 *    for the priority queue, so equal priorities come out in put order.
 *    Unbounded queues grow it by doubling.
 * D. The ping-pong of note A is the queue's hot path: a put that hands off
 *    and a get that parks, once per hand-off.  It makes no call it can avoid
 *    before kz__wake and kz__park: queue_put and queue_get are inlined into
 *    the public functions, a get links its waiter itself (as a put does)
 *    rather than through kz__waitq_wait, and KZ_FOREVER needs no
 *    kz__deadline.  Each call level a parked green thread returns through
 *    after its switch cost about 3 ns of a hand-off of 40 (bench_toolbox,
 *    queue_handoff_ns: 43 ns before, 37 after).
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
  struct kz__hub *hub;      /* owner hub */
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

/* The running green thread, if it may use q (sync.c's rules): NULL with
   -errno in *err. */
static struct kz_green *user(struct kz_queue *q, int *err)
{
  struct kz__hub *hub = kz__tls_hub;
  if (!q)
    *err = -EINVAL;
  else if (hub != q->hub)
    *err = -EXDEV;
  else if (!hub->current)
    *err = -EPERM;
  else
    return hub->current;
  return NULL;
}

/* Inlined into each public put (note D). */
static inline __attribute__((always_inline)) int queue_put(struct kz_queue *q, void *item, long prio,
                                                           double deadline)
{
  int err = 0;
  struct kz_green *g = user(q, &err);
  struct kz__waiter *w, me;
  struct slot s = {item, prio, 0};
  if (!g)
    return err;
  if (q->closed)
    return -EPIPE;
  if ((w = kz__waitq_first(&q->getters))) { /* note A */
    w->data = item;
    kz__list_remove(&w->link);
    kz__wake(w->g, 0);
    return 0;
  }
  if (!q->cap || q->n < q->cap)
    return push(q, item, prio);
  me.data = &s;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .arg2 = (uintptr_t)q, .what = "queue put"};
  w = &me;
  kz__list_push(&q->putters.head, &w->link);
  w->g = g;
  err = kz__park(deadline); /* 0: a getter moved our item in */
  kz__list_remove(&w->link);
  return err;
}

/* A get made room: move the first parked putter's item in (note A). */
static void admit_putter(struct kz_queue *q)
{
  struct kz__waiter *w = kz__waitq_first(&q->putters);
  struct slot *s;
  if (!w)
    return;
  s = w->data;
  if (push(q, s->item, s->prio) < 0)
    return; /* cannot happen: a get just freed a slot */
  kz__list_remove(&w->link);
  kz__wake(w->g, 0);
}

/* Inlined into each public get (note D). */
static inline __attribute__((always_inline)) int queue_get(struct kz_queue *q, void **item, double deadline)
{
  int err = 0;
  struct kz_green *g = user(q, &err);
  struct kz__waiter w;
  void *it;
  if (!g)
    return err;
  if (q->n) {
    it = pop(q);
    admit_putter(q);
  } else if (q->closed) {
    return -EPIPE;
  } else { /* kz__waitq_wait, inline (note D) */
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .arg2 = (uintptr_t)q, .what = "queue get"};
    kz__list_push(&q->getters.head, &w.link);
    w.g = g;
    w.data = NULL;
    err = kz__park(deadline); /* 0: a putter handed us w.data */
    kz__list_remove(&w.link);
    if (err < 0)
      return err;
    it = w.data;
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
  int err = 0;
  struct kz__hub *hub;
  struct kz_queue *q;
  if (kind != KZ_QUEUE_FIFO && kind != KZ_QUEUE_LIFO && kind != KZ_QUEUE_PRIORITY) {
    errno = EINVAL;
    return NULL;
  }
  if (!(hub = kz__hub_get(&err))) {
    errno = -err;
    return NULL;
  }
  if (!(q = calloc(1, sizeof *q))) {
    errno = ENOMEM;
    return NULL;
  }
  q->hub = hub;
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
  if (!q)
    return kz__fail_errno(-EINVAL);
  if (q->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  q->closed = true;
  kz__waitq_wake_all(&q->getters, -EPIPE);
  kz__waitq_wake_all(&q->putters, -EPIPE);
  return 0;
}

long kz_queue_size(struct kz_queue *q)
{
  if (!q)
    return kz__fail_errno(-EINVAL);
  if (q->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  return (long)q->n;
}

int kz_queue_free(struct kz_queue *q)
{
  if (!q)
    return kz__fail_errno(-EINVAL);
  if (q->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  if (!kz__waitq_empty(&q->getters) || !kz__waitq_empty(&q->putters))
    return kz__fail_errno(-EBUSY);
  free(q->slots);
  free(q);
  return 0;
}
