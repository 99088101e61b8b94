/* sync.c: synchronisation among the green threads of one hub: mutex,
 * condition, event, semaphore and bounded semaphore, each with timeouts and
 * try-variants.
 *
 * Notes.
 * A. Hand-off: unlocking a mutex or releasing a semaphore with green threads
 *    waiting gives the lock or permit directly to the first one still parked
 *    (kz__waitq_first), which is woken with 0 and owns it when it runs.  So
 *    waiters are served in FIFO order, a newcomer cannot barge past them,
 *    and a waiter that timed out or was cancelled meanwhile is skipped
 *    rather than handed something it will never use.
 * B. A condition wait relocks its mutex with a shield up (internal.h), like
 *    pthread_cond_wait: it always returns with the mutex held, also when it
 *    times out or is cancelled.  The shielded relock cannot hang: the owner
 *    of the mutex is a green thread of the same hub that will unlock it.
 * C. Objects belong to the hub of the OS thread that made them; every
 *    operation from another OS thread fails with EXDEV, and blocking ones in
 *    a hub callback with EPERM.  Non-blocking ones (unlock aside, which needs
 *    an owner) also work from hub callbacks: setting an event or releasing a
 *    semaphore from a timer callback is fine.
 */
#include "internal.h"

#include <stdlib.h>

/* The running green thread, if it may block on an object of hub owner:
   NULL with -EINVAL (no object), -EXDEV or -EPERM in *err (note C). */
static struct kz_green *blocker(const void *obj, struct kz__hub *owner, int *err)
{
  struct kz__hub *hub = kz__tls_hub;
  if (!obj) {
    *err = -EINVAL;
    return NULL;
  }
  if (hub != owner) {
    *err = -EXDEV;
    return NULL;
  }
  if (!hub->current) {
    *err = -EPERM;
    return NULL;
  }
  return hub->current;
}

/* 0 if obj may be used from this thread without blocking (note C). */
static int usable(const void *obj, struct kz__hub *owner)
{
  return !obj ? -EINVAL : owner != kz__tls_hub ? -EXDEV : 0;
}

/* A new object of size bytes whose first field is its owner hub. */
static void *object_new(size_t size)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err);
  struct kz__hub **o;
  if (!hub) {
    errno = -err;
    return NULL;
  }
  if (!(o = calloc(1, size))) {
    errno = ENOMEM;
    return NULL;
  }
  *o = hub;
  return o;
}

/* Hand the first parked waiter of q a wake with 0 (note A); NULL if none. */
static struct kz_green *hand_off(struct kz__waitq *q)
{
  struct kz__waiter *w = kz__waitq_first(q);
  if (!w)
    return NULL;
  kz__list_remove(&w->link);
  kz__wake(w->g, 0);
  return w->g;
}

/* Park g on q, the wait queue of obj (recorded for diagnostics). */
static int sync_wait(struct kz_green *g, const void *obj, struct kz__waitq *q, const char *what,
                     double deadline)
{
  struct kz__waiter w;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .arg2 = (uintptr_t)obj, .what = what};
  return kz__waitq_wait(q, &w, deadline);
}

/* ---- Mutex ----------------------------------------------------------------------- */

struct kz_mutex {
  struct kz__hub *hub;     /* owner hub */
  struct kz_green *owner;  /* holder, or NULL */
  struct kz__waitq waiters;
};

struct kz_mutex *kz_mutex_new(void)
{
  struct kz_mutex *m = object_new(sizeof *m);
  if (m)
    kz__waitq_init(&m->waiters);
  return m;
}

static int mutex_lock(struct kz_mutex *m, double deadline)
{
  int err = 0;
  struct kz_green *g = blocker(m, m ? m->hub : NULL, &err);
  if (!g)
    return err;
  if (!m->owner) {
    m->owner = g;
    return 0;
  }
  if (m->owner == g)
    return -EDEADLK;
  return sync_wait(g, m, &m->waiters, "mutex", deadline); /* 0: handed over (note A) */
}

int kz_mutex_lock(struct kz_mutex *m, double timeout)
{
  int r = mutex_lock(m, kz__deadline(timeout));
  return r ? kz__fail_errno(r) : 0;
}

int kz_mutex_trylock(struct kz_mutex *m)
{
  int r = mutex_lock(m, 0); /* a deadline already past: never parks */
  return r == 0 ? 0 : kz__fail_errno(r == -ETIMEDOUT ? -EBUSY : r);
}

static int mutex_unlock(struct kz_mutex *m)
{
  int r = usable(m, m ? m->hub : NULL);
  if (r)
    return r;
  if (!m->owner || m->owner != m->hub->current)
    return -EPERM;
  m->owner = hand_off(&m->waiters);
  return 0;
}

int kz_mutex_unlock(struct kz_mutex *m)
{
  int r = mutex_unlock(m);
  return r ? kz__fail_errno(r) : 0;
}

int kz_mutex_free(struct kz_mutex *m)
{
  int r = usable(m, m ? m->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  if (m->owner || !kz__waitq_empty(&m->waiters))
    return kz__fail_errno(-EBUSY);
  free(m);
  return 0;
}

/* ---- Condition ------------------------------------------------------------------- */

struct kz_cond {
  struct kz__hub *hub;
  struct kz__waitq waiters;
};

struct kz_cond *kz_cond_new(void)
{
  struct kz_cond *c = object_new(sizeof *c);
  if (c)
    kz__waitq_init(&c->waiters);
  return c;
}

int kz_cond_wait(struct kz_cond *c, struct kz_mutex *m, double timeout)
{
  int err = 0, r;
  struct kz_green *g = blocker(c, c ? c->hub : NULL, &err);
  struct kz__shield s;
  if (!g)
    return kz__fail_errno(err);
  if (!m || m->hub != c->hub || m->owner != g)
    return kz__fail_errno(-EPERM);
  m->owner = hand_off(&m->waiters);
  r = sync_wait(g, c, &c->waiters, "condition", kz__deadline(timeout));
  kz__shield_up(g, &s); /* note B */
  mutex_lock(m, -1);
  kz__shield_down(g, &s);
  return r ? kz__fail_errno(r) : 0;
}

int kz_cond_signal(struct kz_cond *c)
{
  int r = usable(c, c ? c->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  kz__waitq_wake_one(&c->waiters, 0, NULL);
  return 0;
}

int kz_cond_broadcast(struct kz_cond *c)
{
  int r = usable(c, c ? c->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  kz__waitq_wake_all(&c->waiters, 0);
  return 0;
}

int kz_cond_free(struct kz_cond *c)
{
  int r = usable(c, c ? c->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  if (!kz__waitq_empty(&c->waiters))
    return kz__fail_errno(-EBUSY);
  free(c);
  return 0;
}

/* ---- Event ----------------------------------------------------------------------- */

struct kz_event {
  struct kz__hub *hub;
  bool set;
  struct kz__waitq waiters;
};

struct kz_event *kz_event_new(void)
{
  struct kz_event *e = object_new(sizeof *e);
  if (e)
    kz__waitq_init(&e->waiters);
  return e;
}

int kz_event_set(struct kz_event *e)
{
  int r = usable(e, e ? e->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  e->set = true;
  kz__waitq_wake_all(&e->waiters, 0);
  return 0;
}

int kz_event_clear(struct kz_event *e)
{
  int r = usable(e, e ? e->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  e->set = false;
  return 0;
}

int kz_event_is_set(struct kz_event *e)
{
  int r = usable(e, e ? e->hub : NULL);
  return r ? kz__fail_errno(r) : e->set;
}

int kz_event_wait(struct kz_event *e, double timeout)
{
  int err = 0, r = 0;
  struct kz_green *g = blocker(e, e ? e->hub : NULL, &err);
  double deadline = kz__deadline(timeout);
  if (!g)
    return kz__fail_errno(err);
  while (!e->set && r == 0)
    r = sync_wait(g, e, &e->waiters, "event", deadline);
  return e->set ? 0 : kz__fail_errno(r);
}

int kz_event_free(struct kz_event *e)
{
  int r = usable(e, e ? e->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  if (!kz__waitq_empty(&e->waiters))
    return kz__fail_errno(-EBUSY);
  free(e);
  return 0;
}

/* ---- Semaphores -------------------------------------------------------------------- */

struct kz_sem {
  struct kz__hub *hub;
  unsigned value;    /* permits available */
  unsigned bound;    /* bounded: the initial value, never exceeded; 0: unbounded */
  struct kz__waitq waiters;
};

static struct kz_sem *sem_new(unsigned value, unsigned bound)
{
  struct kz_sem *s = object_new(sizeof *s);
  if (s) {
    s->value = value;
    s->bound = bound;
    kz__waitq_init(&s->waiters);
  }
  return s;
}

struct kz_sem *kz_sem_new(unsigned value) { return sem_new(value, 0); }

struct kz_sem *kz_sem_new_bounded(unsigned value)
{
  if (value == 0) {
    errno = EINVAL;
    return NULL;
  }
  return sem_new(value, value);
}

static int sem_acquire(struct kz_sem *s, double deadline)
{
  int err = 0;
  struct kz_green *g = blocker(s, s ? s->hub : NULL, &err);
  if (!g)
    return err;
  if (s->value > 0) { /* then nobody waits: releases hand off (note A) */
    s->value--;
    return 0;
  }
  return sync_wait(g, s, &s->waiters, "semaphore", deadline);
}

int kz_sem_acquire(struct kz_sem *s, double timeout)
{
  int r = sem_acquire(s, kz__deadline(timeout));
  return r ? kz__fail_errno(r) : 0;
}

int kz_sem_try_acquire(struct kz_sem *s)
{
  int r = sem_acquire(s, 0);
  return r == 0 ? 0 : kz__fail_errno(r == -ETIMEDOUT ? -EAGAIN : r);
}

int kz_sem_release(struct kz_sem *s)
{
  int r = usable(s, s ? s->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  if (hand_off(&s->waiters))
    return 0;
  if (s->bound ? s->value >= s->bound : s->value == UINT32_MAX)
    return kz__fail_errno(-EOVERFLOW);
  s->value++;
  return 0;
}

int kz_sem_value(struct kz_sem *s)
{
  int r = usable(s, s ? s->hub : NULL);
  return r ? kz__fail_errno(r) : (int)(s->value > INT32_MAX ? INT32_MAX : s->value);
}

int kz_sem_free(struct kz_sem *s)
{
  int r = usable(s, s ? s->hub : NULL);
  if (r)
    return kz__fail_errno(r);
  if (!kz__waitq_empty(&s->waiters))
    return kz__fail_errno(-EBUSY);
  free(s);
  return 0;
}
