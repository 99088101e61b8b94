/* combine.c: waiting on many green threads or futures at once: gather
 * (ordered results, two error modes), wait (FIRST_COMPLETED, FIRST_ERROR,
 * ALL_COMPLETED, with a done/pending split) and as_completed (completion
 * order).
 *
 * Every entry of an array of handles may be a future or a green thread of
 * this hub (which stands for its completion future, kz_green_future).
 *
 * Notes.
 * A. The waiting green thread puts a watch (struct kz__fwatch) on each
 *    pending future and parks; a watch runs synchronously on the hub when
 *    its future completes, counts, and wakes the waiter once its condition
 *    holds.  The waiter re-checks the condition itself after every wake, so
 *    a stray wake costs a loop turn, never a wrong answer.  Watches are
 *    removed before returning (removing one that already ran is harmless).
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
  struct kz_green *g;     /* the waiter */
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
  struct kz__waitq waiters; /* as_completed's next() */
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

static void entry_done(struct kz__fwatch *w, struct kz__future *f)
{
  struct entry *e = kz__container_of(w, struct entry, w);
  struct batch *b = e->b;
  count(b, f, e->idx);
  if (b->ready)
    kz__waitq_wake_one(&b->waiters, 0, NULL);
  else if (satisfied(b))
    kz__wake(b->g, 0);
}

/* Resolve the handles and watch the pending futures (note A).  0 or -errno
   (-EINVAL, -EXDEV, -ENOMEM, -EPERM); on failure nothing is left behind. */
static int batch_open(struct batch *b, const uint64_t *h, size_t n)
{
  int err = 0;
  struct kz__hub *hub = kz__tls_hub;
  if (!hub)
    return -EINVAL; /* no hub: no green thread or future of it exists */
  if (n > INT_MAX || (n && !h))
    return -EINVAL;
  b->g = hub->current;
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
    if (kz__future_outcome(b->e[i].f, NULL) != -EAGAIN)
      count(b, b->e[i].f, i);
    else
      kz__future_watch(b->e[i].f, &b->e[i].w);
  }
  return 0;
}

static void batch_close(struct batch *b)
{
  for (size_t i = 0; i < b->n; i++) {
    kz__future_unwatch(&b->e[i].w);
    kz__future_unref(b->e[i].f);
  }
  free(b->e);
}

/* Park until the batch's condition holds: 0, or -errno of the park. */
static int batch_wait(struct batch *b, double deadline)
{
  int r = 0;
  if (!satisfied(b) && !b->g)
    return -EPERM;
  while (r == 0 && !satisfied(b)) {
    b->g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "gather/wait"};
    r = kz__park(deadline);
  }
  return r;
}

/* ---- gather ---------------------------------------------------------------------- */

int kz_gather(const uint64_t *h, size_t n, void **results, int *errors, int flags, double timeout)
{
  struct batch b = {.when = -1, .fail_fast = !(flags & KZ_GATHER_ERRORS), .cancel_counts = true};
  int r = batch_open(&b, h, n);
  if (r)
    return kz__fail_errno(r);
  r = batch_wait(&b, kz__deadline(timeout));
  for (size_t i = 0; i < n; i++) {
    void *res = NULL;
    int o = kz__future_outcome(b.e[i].f, &res);
    if (o == -EAGAIN) { /* failed fast, timed out or cancelled: stop the rest */
      kz__future_unwatch(&b.e[i].w);
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
  r = batch_wait(&b, kz__deadline(timeout));
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
  struct kz__hub *hub;
  struct batch b;
  size_t returned; /* entries handed out by next() */
};

struct kz_as_completed *kz_as_completed_new(const uint64_t *h, size_t n)
{
  struct kz_as_completed *it = calloc(1, sizeof *it);
  int r;
  if (!it) {
    errno = ENOMEM;
    return NULL;
  }
  it->hub = kz__tls_hub;
  it->b.when = KZ_ALL_COMPLETED;
  kz__waitq_init(&it->b.waiters);
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
  struct kz__hub *hub = kz__tls_hub;
  struct kz__waiter w;
  double deadline = kz__deadline(timeout);
  size_t idx;
  int r = 0, o;
  void *res = NULL;
  if (!it)
    return kz__fail_errno(-EINVAL);
  if (it->hub != hub)
    return kz__fail_errno(-EXDEV);
  if (it->returned == it->b.n)
    return kz__fail_errno(-ENOENT);
  while (!it->b.rcount && r == 0) {
    if (!hub->current)
      return kz__fail_errno(-EPERM);
    hub->current->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "as_completed"};
    r = kz__waitq_wait(&it->b.waiters, &w, deadline);
  }
  if (!it->b.rcount)
    return kz__fail_errno(r);
  idx = it->b.ready[it->b.rhead];
  it->b.rhead = (it->b.rhead + 1) % it->b.n;
  it->b.rcount--;
  it->returned++;
  o = kz__future_outcome(it->b.e[idx].f, &res);
  if (result)
    *result = o == 0 ? res : NULL;
  if (error)
    *error = -o;
  return (int)idx;
}

int kz_as_completed_free(struct kz_as_completed *it)
{
  if (!it)
    return kz__fail_errno(-EINVAL);
  if (it->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  if (!kz__waitq_empty(&it->b.waiters))
    return kz__fail_errno(-EBUSY);
  batch_close(&it->b);
  free(it->b.ready);
  free(it);
  return 0;
}
