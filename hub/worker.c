/* worker.c: pools of worker OS threads that run blocking functions while the
 * calling green thread waits (run_in_executor), kz__worker_call for the shim,
 * and the OS-thread locks of libkudzu that bypass the shim.
 *
 * A job's states (job->state, an atomic; QUEUED leaves only under the pool's
 * lock):
 *
 *   QUEUED --a worker takes it--> RUNNING --fn returned--> DONE (posted to the hub)
 *     |                              |
 *     | the waiter gives up          | the waiter gives up
 *     v                              v
 *   (unqueued, discarded           ABANDONED (the worker discards and frees it
 *    by the waiter)                 when fn returns; nothing is posted)
 *
 * Notes.
 * A. RUNNING -> DONE (worker) and RUNNING -> ABANDONED (waiter) race; each
 *    side makes its move with one compare-and-swap, so exactly one wins.
 *    The worker writes job->result before its CAS (release); the waiter
 *    reads it after seeing the completion post (the mailbox's exchange is an
 *    acquire), so the result is visible.
 * B. When the worker wins, a completion is already on its way to the hub:
 *    the waiter must not leave (the post would touch freed memory, or a hub
 *    torn down), so it waits for the post with a shield up (internal.h).
 *    The wait is short: the worker is between its CAS and kz__hub_post.  The
 *    call then succeeds: fn did finish.
 * C. The waiter holds its hub (kz__hub_hold) from submission until it leaves,
 *    so the loop keeps polling for the completion instead of reporting a
 *    deadlock while the only thing that can happen is on another thread.
 * D. Under the preload shim, pthread_create and the mutex and condition calls
 *    made from a green thread are green operations.  The pool's threads must
 *    be real and its lock must be a real one (a worker's unlock cannot wake a
 *    green waiter of the shim), so libkudzu calls libc's functions directly,
 *    found once with dlsym(RTLD_NEXT): the next object after libkudzu is libc,
 *    whoever was preloaded before it.
 * E. Worker threads block every signal: handlers run on the program's own
 *    threads, and a worker's blocking call is never interrupted with EINTR.
 *    Worker threads have no hub, so the shim passes their calls through.
 * F. Threads start lazily, one per submission that finds no idle worker,
 *    up to the pool's size; they live until the pool is freed (the default
 *    pool, for the life of the process).
 */
#include "internal.h"

#include <dlfcn.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- libc's own pthread functions (note D) -------------------------------- */

static struct {
  int (*mutex_lock)(pthread_mutex_t *);
  int (*mutex_unlock)(pthread_mutex_t *);
  int (*cond_wait)(pthread_cond_t *, pthread_mutex_t *);
  int (*cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
  int (*cond_signal)(pthread_cond_t *);
  int (*cond_broadcast)(pthread_cond_t *);
  int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  int (*join)(pthread_t, void **);
} real;

/* Resolve name past libkudzu, or fall back to the symbol we link against. */
static void *real_sym(const char *name, void *fallback)
{
  void *p = dlsym(RTLD_NEXT, name);
  return p ? p : fallback;
}

__attribute__((constructor)) static void real_init(void)
{
  real.mutex_lock = real_sym("pthread_mutex_lock", (void *)pthread_mutex_lock);
  real.mutex_unlock = real_sym("pthread_mutex_unlock", (void *)pthread_mutex_unlock);
  real.cond_wait = real_sym("pthread_cond_wait", (void *)pthread_cond_wait);
  real.cond_timedwait = real_sym("pthread_cond_timedwait", (void *)pthread_cond_timedwait);
  real.cond_signal = real_sym("pthread_cond_signal", (void *)pthread_cond_signal);
  real.cond_broadcast = real_sym("pthread_cond_broadcast", (void *)pthread_cond_broadcast);
  real.create = real_sym("pthread_create", (void *)pthread_create);
  real.join = real_sym("pthread_join", (void *)pthread_join);
}

void kz__os_lock(pthread_mutex_t *m) { real.mutex_lock(m); }
void kz__os_unlock(pthread_mutex_t *m) { real.mutex_unlock(m); }
void kz__os_signal(pthread_cond_t *c) { real.cond_signal(c); }
void kz__os_broadcast(pthread_cond_t *c) { real.cond_broadcast(c); }

int kz__os_cond_init(pthread_cond_t *c)
{
  pthread_condattr_t a;
  int r;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  r = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return -r;
}

int kz__os_wait(pthread_cond_t *c, pthread_mutex_t *m, double deadline)
{
  struct timespec ts;
  double whole;
  if (deadline < 0)
    return -real.cond_wait(c, m);
  ts.tv_nsec = (long)(modf(deadline, &whole) * 1e9);
  ts.tv_sec = (time_t)whole;
  return real.cond_timedwait(c, m, &ts) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

int kz__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
  sigset_t all, old;
  int r;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* note E: the new thread inherits it */
  r = real.create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return -r;
}

int kz__os_thread_join(pthread_t t, void **result) { return -real.join(t, result); }

/* ---- Pools ------------------------------------------------------------------ */

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_ABANDONED };

/* One call to run on a worker.  Heap-allocated by the waiter; freed by the
   waiter, or by the worker once abandoned. */
struct job {
  struct kz__link link;   /* in the pool's queue while QUEUED */
  struct kz__post post;   /* the completion, posted to hub (DONE) */
  _Atomic int state;      /* JOB_* (see the diagram above) */
  kz_fn fn;               /* the public form: returns a result */
  void (*vfn)(void *);    /* kz__worker_call's form, or NULL */
  void *arg;
  void *result;           /* fn's return value, written by the worker */
  void (*discard)(void *arg, void *result);  /* after abandonment, or NULL */
  void (*vdiscard)(void *arg);               /* kz__worker_call's form */
  struct kz__hub *hub;    /* the waiter's hub */
  struct kz_green *g;     /* the waiter */
  bool posted;            /* the completion post has run (hub thread only) */
};

struct kz_executor {
  pthread_mutex_t lock;   /* guards everything below */
  pthread_cond_t cond;    /* workers wait here for jobs */
  struct kz__link queue;  /* struct job, FIFO */
  size_t max;             /* pool size: at most this many threads */
  size_t nthreads;        /* threads started */
  size_t nidle;           /* threads waiting on cond */
  bool stopping;          /* kz_executor_free: finish the queue, then exit */
  pthread_t *threads;     /* the started ones (max entries) */
};

static struct kz_executor default_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
    .queue = {&default_pool.queue, &default_pool.queue},
};

/* The default pool's size: min(32, CPUs + 4), like Python's executor. */
static size_t default_size(void)
{
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n <= 0 ? 4 : n + 4 > 32 ? 32 : (size_t)n + 4;
}

static void job_discard(struct job *j)
{
  if (j->vdiscard)
    j->vdiscard(j->arg);
  else if (j->discard)
    j->discard(j->arg, j->result);
}

/* On the hub, once the worker posted the completion (DONE). */
static void job_posted(struct kz__post *p)
{
  struct job *j = kz__container_of(p, struct job, post);
  j->posted = true;
  kz__wake(j->g, 0);
}

/* Run one job on a worker and hand it back (note A). */
static void job_run(struct job *j)
{
  int expect = JOB_RUNNING;
  if (j->vfn)
    j->vfn(j->arg);
  else
    j->result = j->fn(j->arg);
  if (atomic_compare_exchange_strong_explicit(&j->state, &expect, JOB_DONE, memory_order_acq_rel,
                                              memory_order_acquire)) {
    kz__hub_post(j->hub, &j->post);
    return;
  }
  job_discard(j); /* ABANDONED: the waiter is gone */
  free(j);
}

static void *worker_main(void *arg)
{
  struct kz_executor *ex = arg;
  kz__os_lock(&ex->lock);
  for (;;) {
    struct job *j;
    while (kz__list_empty(&ex->queue) && !ex->stopping) {
      ex->nidle++;
      kz__os_wait(&ex->cond, &ex->lock, -1);
      ex->nidle--;
    }
    if (kz__list_empty(&ex->queue))
      break; /* stopping, and the queue is drained */
    j = kz__container_of(ex->queue.next, struct job, link);
    kz__list_remove(&j->link);
    atomic_store_explicit(&j->state, JOB_RUNNING, memory_order_relaxed); /* under the lock */
    kz__os_unlock(&ex->lock);
    job_run(j);
    kz__os_lock(&ex->lock);
  }
  kz__os_unlock(&ex->lock);
  return NULL;
}

/* Queue j on ex, starting a worker if none is idle (note F).  0, -EPIPE
   (the pool is being freed), or -EAGAIN (no thread could be started and
   none exists). */
static int pool_submit(struct kz_executor *ex, struct job *j)
{
  int r = 0;
  kz__os_lock(&ex->lock);
  if (ex->stopping) {
    r = -EPIPE;
  } else {
    if (!ex->max)
      ex->max = default_size();
    if (!ex->threads)
      ex->threads = calloc(ex->max, sizeof *ex->threads);
    if (ex->nidle == 0 && ex->nthreads < ex->max && ex->threads &&
        kz__os_thread_start(&ex->threads[ex->nthreads], worker_main, ex) == 0)
      ex->nthreads++;
    if (ex->nthreads == 0)
      r = -EAGAIN;
    else {
      kz__list_push(&ex->queue, &j->link);
      kz__os_signal(&ex->cond);
    }
  }
  kz__os_unlock(&ex->lock);
  return r;
}

/* The waiter gave up (timeout or cancellation).  Returns true if the job is
   disposed of (unqueued here, or left to its worker); false if its
   completion is already on its way (note B). */
static bool job_abandon(struct kz_executor *ex, struct job *j)
{
  int expect = JOB_RUNNING;
  kz__os_lock(&ex->lock);
  if (atomic_load_explicit(&j->state, memory_order_relaxed) == JOB_QUEUED) {
    kz__list_remove(&j->link);
    kz__os_unlock(&ex->lock);
    job_discard(j); /* fn never ran: the result is NULL */
    free(j);
    return true;
  }
  kz__os_unlock(&ex->lock);
  return atomic_compare_exchange_strong_explicit(&j->state, &expect, JOB_ABANDONED,
                                                 memory_order_acq_rel, memory_order_acquire);
}

/* Wait for the completion post that is on its way (note B). */
static void job_await_post(struct kz_green *g, struct job *j)
{
  struct kz__shield s;
  kz__shield_up(g, &s);
  while (!j->posted)
    kz__park(-1);
  kz__shield_down(g, &s);
}

/* Has deadline, or g's scoped deadline, already passed? */
static bool expired(struct kz_green *g, double deadline)
{
  double now = kz__now();
  return (deadline >= 0 && deadline <= now) || (g->deadline > 0 && g->deadline <= now);
}

/* Submit j to ex and park until it completes, the deadline passes or the
   caller is cancelled.  Returns 0 with *result = fn's result, or -errno.
   Consumes j: after a failure other than -EPERM, j's discard function has
   run or will run on the worker (so arg is never left ownerless). */
static int job_call(struct kz_executor *ex, struct job *j, double deadline, void **result)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  int r;
  if (!g) {
    free(j);
    return -EPERM;
  }
  j->hub = hub;
  j->g = g;
  j->post.fn = job_posted;
  atomic_init(&j->state, JOB_QUEUED);
  if ((g->flags & (KZ__G_CANCEL | KZ__G_NO_CANCEL)) == KZ__G_CANCEL)
    r = -ECANCELED;
  else if (expired(g, deadline))
    r = -ETIMEDOUT; /* do not start what nobody will wait for */
  else
    r = pool_submit(ex, j);
  if (r < 0) {
    job_discard(j);
    free(j);
    return r;
  }
  kz__hub_hold(hub); /* note C */
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_REMOTE};
  do
    r = kz__park(deadline);
  while (r == 0 && !j->posted); /* a stray wake */
  if (r < 0 && !j->posted) {
    if (job_abandon(ex, j)) {
      kz__hub_unhold(hub);
      return r; /* the job is no longer ours */
    }
    job_await_post(g, j); /* note B: it finished after all */
  }
  kz__hub_unhold(hub);
  if (result)
    *result = j->result;
  free(j);
  return 0;
}

int kz__worker_call(void (*fn)(void *), void *arg, void (*discard)(void *), double deadline)
{
  struct job *j;
  if (!kz__self())
    return -EPERM;
  if (!(j = calloc(1, sizeof *j))) {
    if (discard)
      discard(arg);
    return -ENOMEM;
  }
  j->vfn = fn;
  j->arg = arg;
  j->vdiscard = discard;
  return job_call(&default_pool, j, deadline, NULL);
}

/* ---- Public API --------------------------------------------------------------- */

struct kz_executor *kz_executor_new(size_t nthreads)
{
  struct kz_executor *ex;
  if (nthreads == 0 || nthreads > 1024) {
    errno = EINVAL;
    return NULL;
  }
  if (!(ex = calloc(1, sizeof *ex)) || !(ex->threads = calloc(nthreads, sizeof *ex->threads)))
    goto error1;
  if (pthread_mutex_init(&ex->lock, NULL) != 0)
    goto error1;
  if (kz__os_cond_init(&ex->cond) < 0)
    goto error2;
  kz__list_init(&ex->queue);
  ex->max = nthreads;
  return ex;

error2:
  pthread_mutex_destroy(&ex->lock);
error1:
  if (ex)
    free(ex->threads);
  free(ex);
  errno = ENOMEM;
  return NULL;
}

int kz_executor_free(struct kz_executor *ex)
{
  if (!ex || ex == &default_pool)
    return kz__fail_errno(-EINVAL);
  kz__os_lock(&ex->lock);
  if (ex->stopping) {
    kz__os_unlock(&ex->lock);
    return kz__fail_errno(-EINVAL);
  }
  ex->stopping = true;
  kz__os_broadcast(&ex->cond);
  kz__os_unlock(&ex->lock);
  for (size_t i = 0; i < ex->nthreads; i++)
    kz__os_thread_join(ex->threads[i], NULL);
  pthread_cond_destroy(&ex->cond);
  pthread_mutex_destroy(&ex->lock);
  free(ex->threads);
  free(ex);
  return 0;
}

int kz_executor_set_default_size(size_t nthreads)
{
  int r = 0;
  if (nthreads == 0 || nthreads > 1024)
    return kz__fail_errno(-EINVAL);
  kz__os_lock(&default_pool.lock);
  if (default_pool.threads && nthreads > default_pool.max) {
    pthread_t *t = realloc(default_pool.threads, nthreads * sizeof *t);
    if (t)
      default_pool.threads = t;
    else
      r = -ENOMEM;
  }
  if (r == 0 && (!default_pool.threads || nthreads >= default_pool.nthreads))
    default_pool.max = nthreads;
  else if (r == 0)
    r = -EBUSY; /* more threads than that already run */
  kz__os_unlock(&default_pool.lock);
  return r ? kz__fail_errno(r) : 0;
}

int kz_run_in_executor(struct kz_executor *ex, kz_fn fn, void *arg,
                       void (*discard)(void *arg, void *result), void **result, double timeout)
{
  struct job *j;
  int r = 0;
  if (!fn)
    return kz__fail_errno(-EINVAL);
  if (!kz__hub_get(&r))
    return kz__fail_errno(r);
  if (!kz__self())
    return kz__fail_errno(-EPERM);
  if (!(j = calloc(1, sizeof *j))) {
    if (discard)
      discard(arg, NULL);
    return kz__fail_errno(-ENOMEM);
  }
  j->fn = fn;
  j->arg = arg;
  j->discard = discard;
  r = job_call(ex ? ex : &default_pool, j, kz__deadline(timeout), result);
  return r ? kz__fail_errno(r) : 0;
}
