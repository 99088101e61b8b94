/* future.c: futures: one result or error set exactly once, waited on by green
 * threads and plain OS threads, with done callbacks run on the hub; and the
 * completion of every green thread as a future.
 *
 * A future's states (f->state):
 *
 *   PENDING --set_result--> RESULT
 *      |----set_error-----> ERROR
 *      `----cancel--------> CANCELLED   (a green thread's future: when the
 *                                        cancelled green thread finishes)
 *
 * Notes.
 * A. Exactly once: every completion first claims the future (an atomic flag,
 *    f->claimed), from whichever thread it comes, so racing setters have one
 *    winner and the others fail with EALREADY.  The winner then completes it
 *    on its owner hub: directly when it runs there, else by posting to that
 *    hub (the post carries a reference).
 * B. Publication: the completing hub writes result and error, then stores the
 *    state with release; readers on any thread load it with acquire before
 *    reading them (kz__future_outcome).
 * C. OS threads that wait (no hub, or a hub other than the owner's) block on
 *    one process-wide condition variable.  They count themselves in f->nos
 *    before testing the state; the completer stores the state before testing
 *    f->nos; both sequentially consistent, so either the waiter sees the
 *    state or the completer sees the waiter and broadcasts under the mutex
 *    the waiter tests the state under: no wake-up is lost.
 * D. A green thread of another hub must not block its OS thread: it waits
 *    through kz__worker_call, a worker thread blocking on the condition for
 *    it.
 * E. Lifetime: references are counted atomically; the handle stays valid
 *    until the last one goes, so callbacks and waiters always hold a valid
 *    handle.  kz_future_free drops the owner's reference once (a second call
 *    fails with EINVAL).  Green waiters, OS waiters, a bound green thread, a
 *    post in flight and a scheduled callback run each hold one.
 * F. Done callbacks run on the owner hub through kz_call_soon, in the order
 *    they were added, after the green waiters were woken; one added after
 *    completion is scheduled the same way.  They run outside green threads:
 *    they must not block.
 */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { F_PENDING, F_RESULT, F_ERROR, F_CANCELLED };

/* A done callback, queued on its future. */
struct fcb {
  struct kz__link link;
  void (*cb)(kz_future_t f, void *arg);
  void *arg;
};

struct kz__future {
  _Atomic unsigned refs;      /* note E */
  _Atomic int state;          /* F_*, published with release (note B) */
  atomic_bool claimed;        /* the single completion is taken (note A) */
  atomic_bool user_freed;     /* kz_future_free was called */
  _Atomic int nos;            /* OS threads blocked waiting (note C) */
  void *result;               /* valid once state == F_RESULT */
  int error;                  /* valid once state == F_ERROR (> 0) */
  struct kz__hub *hub;        /* owner: completes here; lists below are its */
  uint64_t id;                /* handle, freed with the last reference */
  struct kz__waitq waiters;   /* green threads of hub */
  struct kz__link watches;    /* struct kz__fwatch (gather, wait...) */
  struct kz__link callbacks;  /* struct fcb, FIFO */
  bool cb_scheduled;          /* a callback run is scheduled on the hub */
  bool bound;                 /* the completion of a green thread: never set by hand */
  struct kz_green *task;      /* the green thread it is the completion of, while it runs */
  struct kz__done_hook hook;  /* on task's done_hooks */
  struct kz__post post;       /* completion from another thread */
};

static pthread_mutex_t os_lock = PTHREAD_MUTEX_INITIALIZER; /* note C */
static pthread_cond_t os_cond;

__attribute__((constructor)) static void future_init(void) { kz__os_cond_init(&os_cond); }

/* ---- Lifetime ------------------------------------------------------------------ */

struct kz__future *kz__future_new(struct kz__hub *hub, int *err)
{
  struct kz__future *f = calloc(1, sizeof *f);
  if (!f || !(f->id = kz__handle_new(KZ__H_FUTURE, f))) {
    free(f);
    *err = -ENOMEM;
    return NULL;
  }
  atomic_init(&f->refs, 1);
  atomic_init(&f->state, F_PENDING);
  f->hub = hub;
  kz__waitq_init(&f->waiters);
  kz__list_init(&f->watches);
  kz__list_init(&f->callbacks);
  kz__list_init(&f->hook.link);
  return f;
}

void kz__future_ref(struct kz__future *f)
{
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void kz__future_unref(struct kz__future *f)
{
  /* acq_rel: the last owner sees every other owner's writes before freeing. */
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
    return;
  while (!kz__list_empty(&f->callbacks)) {
    struct fcb *c = kz__container_of(f->callbacks.next, struct fcb, link);
    kz__list_remove(&c->link);
    free(c);
  }
  kz__handle_free(f->id);
  free(f);
}

uint64_t kz__future_id(struct kz__future *f) { return f->id; }

/* ---- Completion ---------------------------------------------------------------- */

static void run_callbacks(void *arg)
{
  struct kz__future *f = arg;
  f->cb_scheduled = false;
  while (!kz__list_empty(&f->callbacks)) {
    struct fcb *c = kz__container_of(f->callbacks.next, struct fcb, link);
    kz__list_remove(&c->link);
    c->cb(f->id, c->arg);
    free(c);
  }
  kz__future_unref(f);
}

/* Note F: run f's callbacks soon (f is complete). */
static void schedule_callbacks(struct kz__future *f)
{
  if (f->cb_scheduled || kz__list_empty(&f->callbacks))
    return;
  f->cb_scheduled = true;
  kz__future_ref(f);
  if (!kz_call_soon(run_callbacks, f))
    run_callbacks(f); /* out of memory: now rather than never */
}

/* Complete a claimed f on its owner hub. */
static void complete(struct kz__future *f, void *result, int error)
{
  int st = error == 0 ? F_RESULT : error == ECANCELED ? F_CANCELLED : F_ERROR;
  f->result = error ? NULL : result;
  f->error = error;
  atomic_store_explicit(&f->state, st, memory_order_seq_cst); /* notes B, C */
  kz__waitq_wake_all(&f->waiters, 0);
  while (!kz__list_empty(&f->watches)) {
    struct kz__fwatch *w = kz__container_of(f->watches.next, struct kz__fwatch, link);
    kz__list_remove(&w->link);
    w->fn(w, f);
  }
  schedule_callbacks(f);
  if (atomic_load_explicit(&f->nos, memory_order_seq_cst) > 0) {
    kz__os_lock(&os_lock);
    kz__os_broadcast(&os_cond);
    kz__os_unlock(&os_lock);
  }
}

static bool claim(struct kz__future *f)
{
  return !atomic_exchange_explicit(&f->claimed, true, memory_order_acq_rel);
}

bool kz__future_complete(struct kz__future *f, void *result, int error)
{
  if (!claim(f))
    return false;
  complete(f, result, error);
  return true;
}

/* A completion posted by another thread (note A). */
static void posted_complete(struct kz__post *p)
{
  struct kz__future *f = kz__container_of(p, struct kz__future, post);
  complete(f, f->result, f->error);
  kz__future_unref(f);
}

/* Set f from any thread: 0 or -EALREADY. */
static int future_set(struct kz__future *f, void *result, int error)
{
  if (!claim(f))
    return -EALREADY;
  if (kz__tls_hub == f->hub) {
    complete(f, result, error);
    return 0;
  }
  f->result = result; /* read by posted_complete, after the mailbox's acquire */
  f->error = error;
  kz__future_ref(f);
  f->post.fn = posted_complete;
  kz__hub_post(f->hub, &f->post);
  return 0;
}

int kz__future_outcome(struct kz__future *f, void **result)
{
  switch (atomic_load_explicit(&f->state, memory_order_acquire)) {
  case F_RESULT:
    if (result)
      *result = f->result;
    return 0;
  case F_ERROR:
    return -f->error;
  case F_CANCELLED:
    return -ECANCELED;
  default:
    return -EAGAIN;
  }
}

/* ---- Green threads' futures ---------------------------------------------------- */

static int green_outcome(struct kz_green *g)
{
  if (g->state == KZ_CANCELLED)
    return ECANCELED;
  return (g->flags & KZ__G_FAILED) ? g->error : 0;
}

static void task_done(struct kz__done_hook *h, struct kz_green *g)
{
  struct kz__future *f = kz__container_of(h, struct kz__future, hook);
  f->task = NULL;
  kz__future_complete(f, g->result, green_outcome(g));
  kz__future_unref(f);
}

void kz__future_mark_bound(struct kz__future *f) { f->bound = true; }

void kz__future_bind(struct kz__future *f, struct kz_green *g)
{
  f->bound = true;
  if (g->state == KZ_DONE || g->state == KZ_CANCELLED) {
    kz__future_complete(f, g->result, green_outcome(g));
    return;
  }
  f->task = g;
  f->hook.fn = task_done;
  kz__future_ref(f);
  kz__list_push(&g->done_hooks, &f->hook.link);
}

struct kz__future *kz__future_get(uint64_t h, int *err)
{
  struct kz__future *f = kz__handle_get(h, KZ__H_FUTURE);
  struct kz_green *g;
  if (f) {
    kz__future_ref(f);
    return f;
  }
  if (!(g = kz__green_get(h))) {
    *err = -EINVAL;
    return NULL;
  }
  if (g->hub != kz__tls_hub) {
    *err = -EXDEV;
    return NULL;
  }
  if ((f = kz__future_new(g->hub, err)))
    kz__future_bind(f, g);
  return f;
}

bool kz__future_cancel(struct kz__future *f)
{
  if (atomic_load_explicit(&f->state, memory_order_acquire) != F_PENDING)
    return false;
  if (f->task) {
    kz__cancel(f->task);
    return true;
  }
  return kz__future_complete(f, NULL, ECANCELED);
}

void kz__future_watch(struct kz__future *f, struct kz__fwatch *w)
{
  kz__list_push(&f->watches, &w->link);
}

/* ---- Waiting --------------------------------------------------------------------- */

/* Note C: block this OS thread until f completes or the deadline passes. */
static void os_wait(struct kz__future *f, double deadline)
{
  atomic_fetch_add_explicit(&f->nos, 1, memory_order_seq_cst);
  kz__os_lock(&os_lock);
  while (atomic_load_explicit(&f->state, memory_order_seq_cst) == F_PENDING)
    if (kz__os_wait(&os_cond, &os_lock, deadline) == -ETIMEDOUT)
      break;
  kz__os_unlock(&os_lock);
  atomic_fetch_sub_explicit(&f->nos, 1, memory_order_relaxed);
}

/* Note D: a worker waits for a green thread of another hub. */
struct remote_wait {
  struct kz__future *f; /* referenced */
  double deadline;
};

static void remote_wait_run(void *arg)
{
  struct remote_wait *w = arg;
  os_wait(w->f, w->deadline);
}

static void remote_wait_free(void *arg)
{
  struct remote_wait *w = arg;
  kz__future_unref(w->f);
  free(w);
}

/* Park the running green thread of f's owner hub until f completes. */
static int green_wait(struct kz__future *f, double deadline)
{
  struct kz__waiter w;
  int r = 0;
  kz__hub_hold(f->hub); /* a setter may be another OS thread */
  kz__tls_hub->current->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "future"};
  while (r == 0 && atomic_load_explicit(&f->state, memory_order_relaxed) == F_PENDING)
    r = kz__waitq_wait(&f->waiters, &w, deadline);
  kz__hub_unhold(f->hub);
  return r;
}

/* Wait for f until deadline: 0 once complete, or -errno of the wait. */
static int future_wait(struct kz__future *f, double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  struct remote_wait *rw;
  int r;
  if (atomic_load_explicit(&f->state, memory_order_acquire) != F_PENDING)
    return 0;
  if (isnan(deadline))
    return -EINVAL; /* a NaN timeout (kz__deadline) */
  if (!hub) {
    os_wait(f, deadline);
  } else if (!hub->current) {
    return -EPERM; /* a hub callback never blocks */
  } else if (hub == f->hub) {
    if ((r = green_wait(f, deadline)) < 0)
      return r;
  } else {
    if (!(rw = malloc(sizeof *rw)))
      return -ENOMEM;
    kz__future_ref(f);
    *rw = (struct remote_wait){f, deadline};
    if ((r = kz__worker_call(remote_wait_run, rw, remote_wait_free, deadline)) < 0)
      return r; /* rw is discarded by the worker */
    remote_wait_free(rw);
  }
  return atomic_load_explicit(&f->state, memory_order_acquire) == F_PENDING ? -ETIMEDOUT : 0;
}

/* ---- Public API ------------------------------------------------------------------ */

/* The future of handle h; one its owner freed is still found while others
   use it (note E). */
static struct kz__future *lookup(kz_future_t h) { return kz__handle_get(h, KZ__H_FUTURE); }

kz_future_t kz_future_new(void)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err);
  struct kz__future *f = hub ? kz__future_new(hub, &err) : NULL;
  if (!f) {
    errno = -err;
    return 0;
  }
  return f->id;
}

kz_future_t kz_spawn_future(kz_fn fn, void *arg, const struct kz_spawn_opts *opts)
{
  struct kz_spawn_opts o = opts ? *opts : (struct kz_spawn_opts){0};
  struct kz__hub *hub;
  struct kz__future *f;
  struct kz_green *g;
  int err = 0;
  o.detached = 1;
  if (!(hub = kz__hub_get(&err)) || !(f = kz__future_new(hub, &err)))
    goto error1;
  if (!(g = kz__spawn(hub, fn, arg, &o, NULL, 0, &err)))
    goto error2;
  kz__future_bind(f, g);
  return f->id;

error2:
  kz__future_unref(f);
error1:
  errno = -err;
  return 0;
}

kz_future_t kz_green_future(kz_green_t g)
{
  int err = 0;
  struct kz__future *f;
  if (!kz__green_get(g)) {
    errno = EINVAL;
    return 0;
  }
  if (!(f = kz__future_get(g, &err))) {
    errno = -err;
    return 0;
  }
  return f->id;
}

int kz_future_set_result(kz_future_t h, void *result)
{
  struct kz__future *f = lookup(h);
  if (!f || f->bound)
    return kz__fail_errno(-EINVAL);
  int r = future_set(f, result, 0);
  return r ? kz__fail_errno(r) : 0;
}

int kz_future_set_error(kz_future_t h, int err)
{
  struct kz__future *f = lookup(h);
  if (!f || f->bound || err <= 0)
    return kz__fail_errno(-EINVAL);
  int r = future_set(f, NULL, err);
  return r ? kz__fail_errno(r) : 0;
}

int kz_future_cancel(kz_future_t h)
{
  struct kz__future *f = lookup(h);
  if (!f)
    return kz__fail_errno(-EINVAL);
  if (f->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  return kz__future_cancel(f) ? 0 : kz__fail_errno(-EALREADY);
}

int kz_future_result(kz_future_t h, void **result)
{
  struct kz__future *f = lookup(h);
  int r;
  if (!f)
    return kz__fail_errno(-EINVAL);
  r = kz__future_outcome(f, result);
  return r ? kz__fail_errno(r) : 0;
}

int kz_future_state(kz_future_t h)
{
  struct kz__future *f = lookup(h);
  if (!f)
    return kz__fail_errno(-EINVAL);
  switch (atomic_load_explicit(&f->state, memory_order_acquire)) {
  case F_PENDING:
    return KZ_PENDING;
  case F_CANCELLED:
    return KZ_CANCELLED;
  default:
    return KZ_DONE;
  }
}

int kz_future_wait(kz_future_t h, void **result, double timeout)
{
  struct kz__future *f = lookup(h);
  int r;
  if (!f)
    return kz__fail_errno(-EINVAL);
  kz__future_ref(f);
  r = future_wait(f, kz__deadline(timeout));
  if (r == 0)
    r = kz__future_outcome(f, result);
  kz__future_unref(f);
  return r ? kz__fail_errno(r) : 0;
}

int kz_future_add_done_callback(kz_future_t h, void (*cb)(kz_future_t f, void *arg), void *arg)
{
  struct kz__future *f = lookup(h);
  struct fcb *c;
  if (!f || !cb)
    return kz__fail_errno(-EINVAL);
  if (f->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  if (!(c = malloc(sizeof *c)))
    return kz__fail_errno(-ENOMEM);
  c->cb = cb;
  c->arg = arg;
  kz__list_push(&f->callbacks, &c->link);
  if (atomic_load_explicit(&f->state, memory_order_relaxed) != F_PENDING)
    schedule_callbacks(f);
  return 0;
}

int kz_future_free(kz_future_t h)
{
  struct kz__future *f = kz__handle_get(h, KZ__H_FUTURE);
  if (!f || atomic_exchange_explicit(&f->user_freed, true, memory_order_relaxed))
    return kz__fail_errno(-EINVAL);
  kz__future_unref(f);
  return 0;
}
