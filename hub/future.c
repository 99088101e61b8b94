/* future.c: futures: one result or error set exactly once, waited on by green
 * threads of every hub and plain OS threads, with done callbacks run on the
 * owner hub; and the completion of every green thread as a future.
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
 * C. OS threads that wait without a hub block on one process-wide
 *    condition variable.  They count themselves in f->nos
 *    before testing the state; the completer stores the state before testing
 *    f->nos; both sequentially consistent, so either the waiter sees the
 *    state or the completer sees the waiter and broadcasts under the mutex
 *    the waiter tests the state under: no wake-up is lost.
 * D. Green threads of every hub wait in one queue, f->waiters, under the
 *    future's lock (sched.c note F): a waiter tests the state under the
 *    lock and queues, the completion stores the state and then claims every
 *    waiter under the lock, so none is missed; each is woken on its own hub
 *    (a post for those of other hubs), and no waiter occupies a worker
 *    thread or blocks its OS thread.  The lock also guards the watches and
 *    the callbacks, which any thread adds: watches run under it, on the
 *    owner hub, so a watcher that removes its watch (kz__future_unwatch)
 *    knows it is not running and never will; they must not block and take
 *    no lock but their own waiter's (combine.c), which is taken inside.
 * E. Lifetime: references are counted atomically; the handle stays valid
 *    until the last one goes, so callbacks and waiters always hold a valid
 *    handle.  kz_future_free drops the owner's reference once (a second call
 *    fails with EINVAL).  Green waiters, OS waiters, a bound green thread, a
 *    post in flight and a scheduled callback run each hold one.
 * F. Done callbacks run on the owner hub through kz_call_soon, in the order
 *    they were added, after the green waiters were woken; one added after
 *    completion is scheduled the same way, by a post to the owner hub when
 *    it is added on another thread (f->cb_post, one at a time: cb_scheduled).
 *    They run outside green threads: they must not block.
 * G. Cancellation from another thread: a plain future is completed
 *    cancelled as any setter completes it (note A); a green thread's must
 *    cancel the green thread, which only its own hub may do, so the request
 *    is posted there (f->cancel_post, at most one in flight, holding a
 *    reference).
 * H. The completion of a green thread of another hub (kz_spawn_future on
 *    another hub, a green thread handle of another hub in kz_green_future,
 *    gather, wait, as_completed): the future is the caller's hub's (its
 *    owner), the green thread is touched on its own hub only (green.c note
 *    D).  A round trip there (kz__hub_call, as green.c's kz_state), which
 *    spawns the green thread first for kz_spawn_future, looks the handle up
 *    and, if the green thread still runs, puts a done hook on it (holding a
 *    reference to f) and records its handle in f->remote.  The hook
 *    completes f as any setter from another thread does (note A: claimed
 *    there, completed by a post to the owner hub).  So:
 *    - the green thread cannot finish during the round trip (its hub runs
 *      the request): it is hooked, or found finished, or gone;
 *    - found finished (a zombie): its outcome comes back with the reply and
 *      the caller completes f at once, on its own hub, as locally; gone
 *      (released: joined, or detached and finished): EINVAL, as a stale
 *      handle is locally;
 *    - the hook takes no part in joining (it does not mark the green thread
 *      as being joined): a join or a detach, from any hub, works as usual,
 *      and a cross-hub join's hook, which runs first and makes the handle
 *      stale, leaves g's result and state for this one;
 *    - cancelling f posts to the green thread's hub (f->cancel_post, note
 *      G), where the handle is looked up again.  Once the hook ran, f is
 *      claimed: cancel fails with EALREADY (a stale handle implies that,
 *      the hook runs before the release).  A cancel that overtakes the
 *      claim but arrives after the finish does nothing and the future gets
 *      the green thread's outcome, as with a cancel posted for a green
 *      thread of f's own hub;
 *    - the owner hub must still be there when the completion's post
 *      arrives: the set's hubs live as long as the process; a hub outside
 *      it is as in green.c note J.
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
  struct kz__hub *hub;        /* owner: completes here, runs the callbacks */
  uint64_t id;                /* handle, freed with the last reference */
  struct kz__spin lock;       /* guards the four below (note D) */
  struct kz__waitq waiters;   /* green threads of any hub */
  struct kz__link watches;    /* struct kz__fwatch (gather, wait...) */
  struct kz__link callbacks;  /* struct fcb, FIFO */
  bool cb_scheduled;          /* a callback run is scheduled (or posted) on the hub */
  bool bound;                 /* the completion of a green thread: never set by hand */
  struct kz_green *task;      /* the green thread it is the completion of, while it runs */
  kz_green_t remote;          /* or the handle of one of another hub (note H) */
  struct kz__done_hook hook;  /* on task's (or remote's) done_hooks */
  struct kz__post post;       /* completion from another thread */
  struct kz__post cb_post;    /* callbacks added after completion on another thread (note F) */
  struct kz__post cancel_post; /* a green thread's cancellation from another thread (note G) */
  atomic_bool cancel_posted;  /* cancel_post is in flight */
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

/* Run f's callbacks on its hub, also those added meanwhile (note F). */
static void run_callbacks(void *arg)
{
  struct kz__future *f = arg;
  for (;;) {
    struct fcb *c = NULL;
    kz__spin_lock(&f->lock);
    if (kz__list_empty(&f->callbacks))
      f->cb_scheduled = false;
    else
      kz__list_remove(&(c = kz__container_of(f->callbacks.next, struct fcb, link))->link);
    kz__spin_unlock(&f->lock);
    if (!c)
      break;
    c->cb(f->id, c->arg);
    free(c);
  }
  kz__future_unref(f);
}

static void posted_callbacks(struct kz__post *p)
{
  run_callbacks(kz__container_of(p, struct kz__future, cb_post));
}

/* With f's lock held and f complete: whether a callback run is to be
   scheduled now (note F); if so the caller calls schedule_callbacks after
   releasing the lock. */
static bool callbacks_due(struct kz__future *f)
{
  if (f->cb_scheduled || kz__list_empty(&f->callbacks))
    return false;
  f->cb_scheduled = true;
  return true;
}

/* Note F: run f's callbacks soon, on its hub. */
static void schedule_callbacks(struct kz__future *f)
{
  kz__future_ref(f);
  if (kz__tls_hub != f->hub) {
    f->cb_post.fn = posted_callbacks;
    kz__hub_post(f->hub, &f->cb_post);
  } else if (!kz_call_soon(run_callbacks, f)) {
    run_callbacks(f); /* out of memory: now rather than never */
  }
}

/* Complete a claimed f on its owner hub. */
static void complete(struct kz__future *f, void *result, int error)
{
  int st = error == 0 ? F_RESULT : error == ECANCELED ? F_CANCELLED : F_ERROR;
  f->result = error ? NULL : result;
  f->error = error;
  struct kz__link claimed;
  bool cbs;
  atomic_store_explicit(&f->state, st, memory_order_seq_cst); /* notes B, C */
  kz__list_init(&claimed);
  kz__spin_lock(&f->lock); /* note D */
  kz__xwake_claim_all(&f->waiters, 0, &claimed);
  while (!kz__list_empty(&f->watches)) {
    struct kz__fwatch *w = kz__container_of(f->watches.next, struct kz__fwatch, link);
    kz__list_remove(&w->link);
    w->fn(w, f);
  }
  cbs = callbacks_due(f);
  kz__spin_unlock(&f->lock);
  kz__xwake_deliver_all(&claimed);
  if (cbs)
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

/* ---- A green thread of another hub (note H) ----------------------------------- */

static int future_set(struct kz__future *f, void *result, int error);

/* Done hook: f's green thread, of another hub than f's, finishes. */
static void remote_done(struct kz__done_hook *h, struct kz_green *g)
{
  struct kz__future *f = kz__container_of(h, struct kz__future, hook);
  future_set(f, g->result, green_outcome(g)); /* posted to the owner hub */
  kz__future_unref(f);
}

/* The round trip of note H, run on the green thread's hub. */
struct xbind {
  struct kz__future *f;
  kz_fn fn;                         /* kz_spawn_future: spawn fn(arg) first */
  void *arg;
  const struct kz_spawn_opts *opts; /* hub field THIS */
  kz_green_t id;                    /* the green thread (out, for a spawn) */
  int r;                            /* out: 0 or -errno */
  bool finished;                    /* out: found finished, with its outcome: */
  void *result;
  int error;
};

static void xbind_run(void *arg)
{
  struct xbind *c = arg;
  struct kz_green *g;
  if (c->fn) {
    if (!(g = kz__spawn(kz__tls_hub, c->fn, c->arg, c->opts, NULL, 0, &c->r)))
      return;
    c->id = g->id;
  } else if (!(g = kz__green_get(c->id))) {
    c->r = -EINVAL;
    return;
  }
  if (g->state == KZ_DONE || g->state == KZ_CANCELLED) {
    c->finished = true;
    c->result = g->result;
    c->error = green_outcome(g);
    return;
  }
  c->f->remote = c->id;
  c->f->hook.fn = remote_done;
  kz__future_ref(c->f); /* the hook's */
  kz__list_push(&g->done_hooks, &c->f->hook.link);
}

/* A new future of the caller's hub bound to a green thread of hub there
   (c: its handle, or what to spawn there); NULL with -errno in *err. */
static struct kz__future *bind_remote(struct kz__hub *there, struct xbind *c, int *err)
{
  struct kz__hub *here = kz__hub_get(err);
  struct kz__future *f;
  int r;
  if (!here || !(f = kz__future_new(here, err)))
    return NULL;
  f->bound = true;
  c->f = f;
  if ((r = kz__hub_call(there, xbind_run, c)) < 0 || (r = c->r) < 0) {
    kz__future_unref(f); /* not hooked: the only reference */
    *err = r;
    return NULL;
  }
  if (c->finished)
    kz__future_complete(f, c->result, c->error);
  return f;
}

struct kz__future *kz__future_get(uint64_t h, int *err)
{
  struct kz__future *f = kz__handle_get(h, KZ__H_FUTURE);
  struct kz__hub *there;
  struct kz_green *g;
  if (f) {
    kz__future_ref(f);
    return f;
  }
  if (!(there = kz__handle_owner(h, KZ__H_GREEN))) {
    *err = -EINVAL;
    return NULL;
  }
  if (there != kz__tls_hub) {
    struct xbind c = {.id = h};
    return bind_remote(there, &c, err);
  }
  if (!(g = kz__green_get(h))) {
    *err = -EINVAL;
    return NULL;
  }
  if ((f = kz__future_new(g->hub, err)))
    kz__future_bind(f, g);
  return f;
}

/* Cancel bound f on its green thread's hub: its green thread, or f itself
   if the green thread is still to be spawned (remote.c).  One of another
   hub than f's is looked up again: it may have finished (note H). */
static void cancel_here(struct kz__future *f)
{
  struct kz_green *g = f->remote ? kz__green_get(f->remote) : f->task;
  if (g)
    kz__cancel(g);
  else if (!f->remote)
    kz__future_complete(f, NULL, ECANCELED);
}

/* A green thread's cancellation arrives on its hub (note G). */
static void posted_cancel(struct kz__post *p)
{
  struct kz__future *f = kz__container_of(p, struct kz__future, cancel_post);
  atomic_store_explicit(&f->cancel_posted, false, memory_order_relaxed);
  cancel_here(f);
  kz__future_unref(f);
}

bool kz__future_cancel(struct kz__future *f)
{
  struct kz__hub *at = f->hub; /* where the green thread is cancelled */
  if (atomic_load_explicit(&f->state, memory_order_acquire) != F_PENDING)
    return false;
  if (!f->bound)
    return future_set(f, NULL, ECANCELED) == 0;
  if (f->remote && (atomic_load_explicit(&f->claimed, memory_order_acquire) ||
                    !(at = kz__handle_owner(f->remote, KZ__H_GREEN))))
    return false; /* finished: its completion is on its way (note H) */
  if (kz__tls_hub == at) {
    cancel_here(f);
    return true;
  }
  if (!atomic_exchange_explicit(&f->cancel_posted, true, memory_order_relaxed)) { /* note G */
    kz__future_ref(f);
    f->cancel_post.fn = posted_cancel;
    kz__hub_post(at, &f->cancel_post);
  }
  return true;
}

bool kz__future_watch(struct kz__future *f, struct kz__fwatch *w)
{
  bool pending;
  kz__spin_lock(&f->lock);
  if ((pending = atomic_load_explicit(&f->state, memory_order_relaxed) == F_PENDING))
    kz__list_push(&f->watches, &w->link);
  kz__spin_unlock(&f->lock);
  return pending;
}

void kz__future_unwatch(struct kz__future *f, struct kz__fwatch *w)
{
  kz__spin_lock(&f->lock); /* waits for a watch that runs now (note D) */
  kz__list_remove(&w->link);
  kz__spin_unlock(&f->lock);
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

/* Park the running green thread, of any hub, until f completes (note D). */
static int green_wait(struct kz__future *f, struct kz_green *g, double deadline)
{
  struct kz__waiter w;
  kz__spin_lock(&f->lock);
  if (atomic_load_explicit(&f->state, memory_order_relaxed) != F_PENDING) {
    kz__spin_unlock(&f->lock);
    return 0;
  }
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "future"};
  kz__xwait_queue(&f->waiters, &w, g);
  kz__spin_unlock(&f->lock);
  return kz__xwait_park(&w, &f->lock, deadline); /* 0: complete */
}

/* Wait for f until deadline: 0 once complete, or -errno of the wait. */
static int future_wait(struct kz__future *f, double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  int r;
  if (atomic_load_explicit(&f->state, memory_order_acquire) != F_PENDING)
    return 0;
  if (isnan(deadline))
    return -EINVAL; /* a NaN timeout (kz__deadline) */
  if (!hub)
    os_wait(f, deadline);
  else if (!hub->current)
    return -EPERM; /* a hub callback never blocks */
  else if ((r = green_wait(f, hub->current, deadline)) < 0)
    return r;
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
  struct kz__hub *hub, *to;
  struct kz__future *f;
  struct kz_green *g;
  int err = 0;
  o.detached = 1;
  if (!(hub = kz__hub_get(&err)) || !(to = kz__spawn_target(hub, o.hub, &err)))
    goto error1;
  o.hub = KZ_HUB_THIS; /* placed */
  if (to != hub) { /* note H */
    struct xbind c = {.fn = fn, .arg = arg, .opts = &o};
    if (!(f = bind_remote(to, &c, &err)))
      goto error1;
    return f->id;
  }
  if (!(f = kz__future_new(hub, &err)))
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
  if (!kz__handle_owner(g, KZ__H_GREEN)) { /* of any hub: not a future's handle */
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
  bool due = false;
  if (!f || !cb)
    return kz__fail_errno(-EINVAL);
  if (!(c = malloc(sizeof *c)))
    return kz__fail_errno(-ENOMEM);
  c->cb = cb;
  c->arg = arg;
  kz__spin_lock(&f->lock);
  kz__list_push(&f->callbacks, &c->link);
  if (atomic_load_explicit(&f->state, memory_order_relaxed) != F_PENDING)
    due = callbacks_due(f);
  kz__spin_unlock(&f->lock);
  if (due)
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
