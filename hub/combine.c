/* combine.c: waiting on many green threads or futures at once: gather
 * (ordered results, two error modes), wait (FIRST_COMPLETED, FIRST_ERROR,
 * ALL_COMPLETED, with a done/pending split) and as_completed (completion
 * order).
 *
 * Every entry of an array of handles may be a future or a green thread, of
 * any hub (a green thread stands for its completion future,
 * kz_green_future; one of another hub's is made by a round trip there,
 * future.c note H).
 *
 * Notes.
 * A. The waiting green thread puts a watch (struct kz__fwatch) on each
 *    pending future and parks; a watch runs synchronously on its future's
 *    hub when the future completes, counts, and wakes the waiter once its
 *    condition holds.  The futures may be of several hubs, so the counts,
 *    the ready ring and the waiters are under the batch's lock, and the
 *    waiter waits as on any object of several hubs (sched.c note F).  The
 *    waiter re-checks the condition itself after every wake, so a stray
 *    wake costs a loop turn, never a wrong answer.  Watches are removed
 *    before returning (removing one that already ran is harmless; one that
 *    runs at that moment is waited for: future.c note D).
 * B. "An error" for FIRST_ERROR and for gather's fail-fast mode is a
 *    completion with an error; a cancellation counts as an error for gather
 *    (the result is missing) but not for FIRST_ERROR (asyncio's
 *    FIRST_EXCEPTION ignores cancelled futures too).
 */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>

/* One watched entry. */
struct entry {
  struct kz__fwatch w;    /* on the entry's future while watched */
  struct kz__future *f;   /* referenced */
  struct batch *b;
  size_t idx;             /* position in the caller's array */
};

/* A waiter's view of n futures. */
struct batch {
  struct kz__spin lock;   /* guards the counts, the ring and waiters (note A) */
  struct entry *e;        /* n entries */
  size_t n;
  size_t ndone;           /* completions seen so far */
  size_t nerror;          /* errors among them (gather: cancellations too) */
  bool cancel_counts;     /* count cancellations as errors (note B) */
  int first_error;        /* the first error seen, or 0 */
  int when;               /* KZ_FIRST_COMPLETED / _ERROR / KZ_ALL_COMPLETED, or -1: gather */
  bool fail_fast;         /* gather without KZ_GATHER_ERRORS */
  size_t *ready;          /* as_completed: indices in completion order (ring of n) */
  size_t rhead, rcount;
  size_t returned;        /* as_completed: entries handed out by next() */
  struct kz__waitq waiters; /* the waiter of gather and wait, or as_completed's next() */
};

static void count(struct batch *b, struct kz__future *f, size_t idx)
{
  int r = kz__future_outcome(f, NULL);
  b->ndone++;
  if (r < 0 && (r != -ECANCELED || b->cancel_counts)) {
    b->nerror++;
    if (!b->first_error)
      b->first_error = -r;
  }
  if (b->ready)
    b->ready[(b->rhead + b->rcount++) % b->n] = idx;
}

/* Has the waiter's condition come true? */
static bool satisfied(const struct batch *b)
{
  if (b->ndone == b->n)
    return true;
  if (b->when == KZ_FIRST_COMPLETED)
    return b->ndone > 0;
  if (b->when == KZ_FIRST_ERROR || b->fail_fast)
    return b->nerror > 0;
  return false;
}

/* On f's hub, under f's lock (note A). */
static void entry_done(struct kz__fwatch *w, struct kz__future *f)
{
  struct entry *e = kz__container_of(w, struct entry, w);
  struct batch *b = e->b;
  struct kz__waiter *waiter = NULL;
  kz__spin_lock(&b->lock);
  count(b, f, e->idx);
  if (b->ready || satisfied(b))
    waiter = kz__xwake_claim(&b->waiters, 0);
  kz__spin_unlock(&b->lock);
  if (waiter)
    kz__xwake_deliver(waiter);
}

/* Resolve the handles and watch the pending futures (note A).  0 or -errno
   (-EINVAL, -ENOMEM, -EPERM, or the error of creating the calling OS
   thread's hub); on failure nothing is left behind (the futures of green
   threads of other hubs made so far complete unwatched). */
static int batch_open(struct batch *b, const uint64_t *h, size_t n)
{
  int err = 0;
  if (!kz__hub_get(&err))
    return err; /* a thread without a hub waits as its hub's main green thread */
  if (n > INT_MAX || (n && !h))
    return -EINVAL;
  kz__waitq_init(&b->waiters);
  b->n = n;
  if (!(b->e = calloc(n ? n : 1, sizeof *b->e)))
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    struct entry *e = &b->e[i];
    if (!(e->f = kz__future_get(h[i], &err))) {
      while (i--)
        kz__future_unref(b->e[i].f);
      free(b->e);
      return err;
    }
    e->b = b;
    e->idx = i;
    kz__list_init(&e->w.link);
    e->w.fn = entry_done;
  }
  for (size_t i = 0; i < n; i++) {
    if (!kz__future_watch(b->e[i].f, &b->e[i].w)) { /* already complete */
      kz__spin_lock(&b->lock);
      count(b, b->e[i].f, i);
      kz__spin_unlock(&b->lock);
    }
  }
  return 0;
}

/* Remove the watches: no entry_done runs after this (note A). */
static void batch_close(struct batch *b)
{
  for (size_t i = 0; i < b->n; i++) {
    kz__future_unwatch(b->e[i].f, &b->e[i].w);
    kz__future_unref(b->e[i].f);
  }
  free(b->e);
}

/* Park the running green thread on b's waiters until the batch's condition
   holds, or (ready) until as_completed has an entry to return or has
   returned them all: 0, or -errno of the park. */
static int batch_wait(struct batch *b, bool ready, const char *what, double deadline)
{
  struct kz_green *g = kz__self();
  struct kz__waiter w;
  int r = 0;
  kz__spin_lock(&b->lock);
  while (r == 0 && !(ready ? b->rcount > 0 || b->returned == b->n : satisfied(b))) {
    if (!g) {
      r = -EPERM;
      break;
    }
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = what};
    kz__xwait_queue(&b->waiters, &w, g);
    kz__spin_unlock(&b->lock);
    r = kz__xwait_park(&w, &b->lock, deadline);
    kz__spin_lock(&b->lock);
  }
  kz__spin_unlock(&b->lock);
  return r;
}

/* ---- gather ---------------------------------------------------------------------- */

int kz_gather(const uint64_t *h, size_t n, void **results, int *errors, int flags, double timeout)
{
  struct batch b = {.when = -1, .fail_fast = !(flags & KZ_GATHER_ERRORS), .cancel_counts = true};
  int r = batch_open(&b, h, n);
  if (r)
    return kz__fail_errno(r);
  r = batch_wait(&b, false, "gather/wait", kz__deadline(timeout));
  for (size_t i = 0; i < n; i++) {
    void *res = NULL;
    int o = kz__future_outcome(b.e[i].f, &res);
    if (o == -EAGAIN) { /* failed fast, timed out or cancelled: stop the rest */
      kz__future_unwatch(b.e[i].f, &b.e[i].w);
      kz__future_cancel(b.e[i].f);
      o = -ECANCELED;
    }
    if (results)
      results[i] = o == 0 ? res : NULL;
    if (errors)
      errors[i] = -o;
  }
  batch_close(&b);
  if (r)
    return kz__fail_errno(r);
  if (b.fail_fast && b.first_error)
    return kz__fail_errno(-b.first_error);
  return (int)b.nerror;
}

/* ---- wait ------------------------------------------------------------------------ */

int kz_wait(uint64_t *h, size_t n, int when, double timeout)
{
  struct batch b = {.when = when};
  uint64_t *tmp;
  size_t nd = 0, np = 0;
  int r;
  if (when != KZ_FIRST_COMPLETED && when != KZ_FIRST_ERROR && when != KZ_ALL_COMPLETED)
    return kz__fail_errno(-EINVAL);
  if (!(tmp = malloc((n ? n : 1) * sizeof *tmp)))
    return kz__fail_errno(-ENOMEM);
  if ((r = batch_open(&b, h, n))) {
    free(tmp);
    return kz__fail_errno(r);
  }
  r = batch_wait(&b, false, "gather/wait", kz__deadline(timeout));
  if (r == -ETIMEDOUT)
    r = 0; /* like asyncio.wait: a timeout returns the split as it is */
  if (r == 0) { /* stable partition: done first, then pending */
    for (size_t i = 0; i < n; i++)
      if (kz__future_outcome(b.e[i].f, NULL) != -EAGAIN)
        tmp[nd++] = h[i];
    for (size_t i = 0; i < n; i++)
      if (kz__future_outcome(b.e[i].f, NULL) == -EAGAIN)
        tmp[nd + np++] = h[i];
    for (size_t i = 0; i < n; i++)
      h[i] = tmp[i];
  }
  batch_close(&b);
  free(tmp);
  return r ? kz__fail_errno(r) : (int)nd;
}

/* ---- as_completed ----------------------------------------------------------------- */

struct kz_as_completed {
  struct batch b;
};

struct kz_as_completed *kz_as_completed_new(const uint64_t *h, size_t n)
{
  struct kz_as_completed *it = calloc(1, sizeof *it);
  int r;
  if (!it) {
    errno = ENOMEM;
    return NULL;
  }
  it->b.when = KZ_ALL_COMPLETED;
  if (!(it->b.ready = calloc(n ? n : 1, sizeof *it->b.ready))) {
    free(it);
    errno = ENOMEM;
    return NULL;
  }
  if ((r = batch_open(&it->b, h, n))) {
    free(it->b.ready);
    free(it);
    errno = -r;
    return NULL;
  }
  return it;
}

int kz_as_completed_next(struct kz_as_completed *it, void **result, int *error, double timeout)
{
  size_t idx;
  int r, o;
  void *res = NULL;
  if (!it)
    return kz__fail_errno(-EINVAL);
  if ((r = batch_wait(&it->b, true, "as_completed", kz__deadline(timeout))) < 0)
    return kz__fail_errno(r);
  kz__spin_lock(&it->b.lock);
  if (!it->b.rcount) { /* every entry was returned */
    kz__spin_unlock(&it->b.lock);
    return kz__fail_errno(-ENOENT);
  }
  idx = it->b.ready[it->b.rhead];
  it->b.rhead = (it->b.rhead + 1) % it->b.n;
  it->b.rcount--;
  it->b.returned++;
  kz__spin_unlock(&it->b.lock);
  o = kz__future_outcome(it->b.e[idx].f, &res);
  if (result)
    *result = o == 0 ? res : NULL;
  if (error)
    *error = -o;
  return (int)idx;
}

int kz_as_completed_free(struct kz_as_completed *it)
{
  bool busy;
  if (!it)
    return kz__fail_errno(-EINVAL);
  kz__spin_lock(&it->b.lock);
  busy = !kz__waitq_empty(&it->b.waiters);
  kz__spin_unlock(&it->b.lock);
  if (busy)
    return kz__fail_errno(-EBUSY);
  batch_close(&it->b);
  free(it->b.ready);
  free(it);
  return 0;
}
