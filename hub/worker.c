/* worker.c: pools of worker OS threads that run blocking functions while the
 * calling green thread waits (run_in_executor), and kz__worker_call for the
 * shim.
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
 *    green waiter of the shim), so the pool reaches libc's own functions
 *    through the OS-call table (os.c).
 * E. Worker threads block every signal (kz__os_thread_start): handlers run on
 *    the program's own threads, and a worker's blocking call is never
 *    interrupted with EINTR.
 *    Worker threads have no hub, so the shim passes their calls through.
 * F. Threads start lazily, one per submission that finds no idle worker,
 *    up to the pool's size; they live until the pool is freed (the default
 *    pool, for the life of the process), or note G.
 * G. A process whose main thread calls pthread_exit (or kz_exit) ends when
 *    its last thread ends; the runtime's own threads must not keep it alive.
 *    A key whose value is set on the main thread (at load time) has a
 *    destructor, which glibc runs when the main thread leaves that way (not
 *    on exit()).  From then on a worker with nothing to do leaves instead of
 *    waiting, detached and struck from its pool's list, so the last program
 *    thread's end (or the last job's) ends the process, with status 0.  A
 *    job submitted later still starts a worker, which leaves when idle.
 * H. fork(): the child has only the forking thread, none of the pools'
 *    workers.  atfork handlers take every pool's lock around the fork (so
 *    the child's copy of each pool is consistent and no lock is left held
 *    by a thread that does not exist there), then the child forgets the
 *    workers and starts one for a pool that has queued jobs.  A job that
 *    was running in the parent does not run in the child: its waiter there
 *    waits for its timeout (a lookup in flight on another green thread of
 *    the forking thread's hub; rare).  The forking thread is the child's
 *    main thread for note G.  (While the workers were, wrongly, green
 *    threads, the child kept them: socat's forked children resolve names.)
 *    A process that never had a second thread (glibc's
 *    __libc_single_threaded, read in the prepare step) has no workers and
 *    nobody who could hold or change a pool during the fork: then no lock
 *    is taken, and neither parent nor child writes anything.  A pre-fork
 *    server's fork is such a fork, and each write after it costs a page
 *    copy (about 2 us) in the parent, the child, or both.
 * I. Calls that block in the kernel where the hub cannot wait (flock,
 *    F_SETLKW, System V semaphores and messages) run on a pool of their own
 *    (blocking_pool, up to KZ__BLOCKING_MAX threads, started as needed), so
 *    a lock held for minutes by another process never holds back a name
 *    lookup.  Such a call must not be abandoned like a lookup: had the
 *    worker taken the lock or the message after the waiter left, the
 *    program would have lost it.  So when the wait ends early (a
 *    cancellation, a deadline, a signal handler's EINTR), the waiter
 *    interrupts the worker's system call with KZ__SIG_INTERRUPT (unblocked
 *    on the worker only for that call, installed without SA_RESTART, its
 *    handler does nothing) and waits, shielded, until fn returns: either it
 *    was interrupted (EINTR: the call did nothing, the waiter reports why
 *    it stopped waiting) or it completed first (the waiter reports success,
 *    as natively when a signal comes a moment too late).  A signal sent
 *    just before the worker enters the system call would be lost, so it is
 *    sent again, 1 ms later, then 2, 4, ... 50 ms, until fn returns.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void main_mark(void);
static void pools_prepare(void);
static void pools_parent(void);
static void pools_child(void);

__attribute__((constructor)) static void worker_init(void)
{
  main_mark();                                              /* note G */
  pthread_atfork(pools_prepare, pools_parent, pools_child); /* note H */
}

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
  bool interruptible;     /* note I: fn blocks in the kernel, interrupt it */
  _Atomic pid_t tid;      /* the worker running it (interruptible jobs) */
};

struct kz_executor {
  pthread_mutex_t lock;   /* guards everything below */
  pthread_cond_t cond;    /* workers wait here for jobs */
  struct kz__link queue;  /* struct job, FIFO */
  size_t max;             /* pool size: at most this many threads */
  size_t nthreads;        /* threads started */
  size_t nidle;           /* threads waiting on cond */
  bool stopping;          /* kz_executor_free: finish the queue, then exit */
  pthread_t *threads;     /* the started ones still there (max entries) */
  struct kz__link pools;  /* on the list of every pool (notes G, H), under pools_lock */
};

/* Every pool, for notes G and H; taken before any pool's own lock. */
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kz__link pools;

static struct kz_executor blocking_pool;
static struct kz_executor default_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
    .queue = {&default_pool.queue, &default_pool.queue},
    .pools = {&blocking_pool.pools, &pools},
};
/* Note I. */
static struct kz_executor blocking_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
    .queue = {&blocking_pool.queue, &blocking_pool.queue},
    .max = KZ__BLOCKING_MAX,
    .pools = {&pools, &default_pool.pools},
};
static struct kz__link pools = {&default_pool.pools, &blocking_pool.pools};

/* ---- The main thread leaves (note G) ------------------------------------------ */

static pthread_key_t main_key;
static _Atomic bool main_marked; /* main_key exists */
static _Atomic bool main_gone;   /* the main thread has called pthread_exit */

/* main_key's destructor: the main thread leaves with pthread_exit.  Wake
   every pool's idle workers, which now leave. */
void (*kz__on_main_left)(void);

bool kz__main_gone(void) { return atomic_load(&main_gone); }

static void main_left(void *unused)
{
  struct kz__link *l;
  (void)unused;
  atomic_store(&main_gone, true);
  if (kz__on_main_left)
    kz__on_main_left(); /* the shim's extra hubs (hub/hubs.c, note E) */
  kz__monitor_main_left(); /* the other runtime thread (monitor.c, note G) */
  kz__os_lock(&pools_lock);
  for (l = pools.next; l != &pools; l = l->next) {
    struct kz_executor *ex = kz__container_of(l, struct kz_executor, pools);
    kz__os_lock(&ex->lock); /* a worker tests main_gone under it: no lost wake-up */
    kz__os_broadcast(&ex->cond);
    kz__os_unlock(&ex->lock);
  }
  kz__os_unlock(&pools_lock);
}

/* At load time, on the main thread (the one whose thread id is the process
   id): give it a value of main_key, so main_left runs when it leaves.  Only
   pthread_exit runs key destructors; exit() ends every thread anyway. */
static void main_mark(void)
{
  if (getpid() != (pid_t)kz__syscall(SYS_gettid))
    return; /* loaded by dlopen on another thread: workers stay until exit */
  if (kz__os_key_create(&main_key, main_left) == 0) {
    kz__os_setspecific(main_key, &main_key);
    atomic_store(&main_marked, true);
  }
}

/* ---- fork() (note H) ------------------------------------------------------------ */

static void *worker_main(void *arg);

/* Whether other threads existed at this fork: the pools' locks were taken
   (note H).  Set in the prepare step, read by every fork handler after it. */
static bool pools_held;

bool kz__fork_threaded(void) { return pools_held; }

static void pools_prepare(void)
{
  bool held = !__libc_single_threaded;
  if (pools_held != held) /* a write per fork would copy the page each time */
    pools_held = held;
  if (!held)
    return;
  kz__os_lock(&pools_lock);
  for (struct kz__link *l = pools.next; l != &pools; l = l->next)
    kz__os_lock(&kz__container_of(l, struct kz_executor, pools)->lock);
}

static void pools_parent(void)
{
  if (!pools_held)
    return;
  for (struct kz__link *l = pools.next; l != &pools; l = l->next)
    kz__os_unlock(&kz__container_of(l, struct kz_executor, pools)->lock);
  kz__os_unlock(&pools_lock);
}

static void pools_child(void)
{
  if (!pools_held)
    return; /* no thread but this one ever ran: nothing to forget or free */
  for (struct kz__link *l = pools.next; l != &pools; l = l->next) {
    struct kz_executor *ex = kz__container_of(l, struct kz_executor, pools);
    if (ex->nthreads != 0 || ex->nidle != 0) /* a page only read stays shared */
      ex->nthreads = ex->nidle = 0;
    if (!kz__list_empty(&ex->queue) && !ex->stopping && ex->threads &&
        kz__os_thread_start(&ex->threads[0], worker_main, ex) == 0)
      ex->nthreads = 1;
    kz__os_unlock(&ex->lock);
  }
  kz__os_unlock(&pools_lock);
  if (atomic_load(&main_marked))
    kz__os_setspecific(main_key, &main_key);
}

/* A worker of ex with nothing to do after the main thread left: strike it
   from ex's list, which kz_executor_free joins, and detach it, so nothing
   waits for it.  ex->lock held. */
static void worker_retire(struct kz_executor *ex)
{
  pthread_t self = kz__os_thread_self();
  for (size_t i = 0; i < ex->nthreads; i++) {
    if (ex->threads[i] == self) {
      ex->threads[i] = ex->threads[--ex->nthreads];
      break;
    }
  }
  kz__os_thread_detach(self);
}

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

/* Note I: the interrupting signal's handler; its only effect is the EINTR. */
static void interrupt_handler(int sig) { (void)sig; }

static void interrupt_install(void)
{
  struct sigaction sa = {.sa_handler = interrupt_handler}; /* no SA_RESTART */
  sigfillset(&sa.sa_mask);
  kz__os_sigaction(KZ__SIG_INTERRUPT, &sa, NULL);
}

/* Run an interruptible job's fn with KZ__SIG_INTERRUPT unblocked (raw
   system calls: the mask is the worker's, never the shim's business). */
static void job_run_interruptible(struct job *j)
{
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, KZ__SIG_INTERRUPT);
  atomic_store(&j->tid, (pid_t)kz__syscall(SYS_gettid));
  kz__syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &one, NULL, _NSIG / 8);
  j->vfn(j->arg);
  kz__syscall(SYS_rt_sigprocmask, SIG_BLOCK, &one, NULL, _NSIG / 8);
}

/* Run one job on a worker and hand it back (note A). */
static void job_run(struct job *j)
{
  int expect = JOB_RUNNING;
  if (j->interruptible)
    job_run_interruptible(j);
  else if (j->vfn)
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
      if (atomic_load(&main_gone)) { /* note G */
        worker_retire(ex);
        kz__os_unlock(&ex->lock);
        return NULL;
      }
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

/* Submit j to ex for green thread g of hub, unless g is cancelled or its
   deadline has passed; then hold the hub (note C) and mark g's wait.
   0 or -errno (j not submitted). */
static int job_start(struct kz_executor *ex, struct job *j, struct kz__hub *hub, struct kz_green *g,
                     double deadline)
{
  int r;
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
  if (r < 0)
    return r;
  kz__hub_hold(hub);
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_REMOTE};
  return 0;
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
  if ((r = job_start(ex, j, hub, g, deadline)) < 0) {
    job_discard(j);
    free(j);
    return r;
  }
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

/* Note I: interrupt the worker running j until fn has returned.  On the
   waiter's hub, shielded. */
static void job_interrupt(struct kz_green *g, struct job *j)
{
  struct kz__shield s;
  double backoff = 1e-3;
  pid_t tid;
  kz__shield_up(g, &s);
  while (!j->posted) {
    if ((tid = atomic_load(&j->tid)) > 0)
      kz__syscall(SYS_tgkill, getpid(), tid, KZ__SIG_INTERRUPT);
    kz__park(kz__now() + backoff);
    backoff = backoff * 2 > 0.05 ? 0.05 : backoff * 2;
  }
  kz__shield_down(g, &s);
}

int kz__worker_call_blocking(void (*fn)(void *), void *arg, double deadline, int *cut)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  struct job *j;
  int r;
  *cut = 0;
  if (!g)
    return -EPERM;
  if (!(j = calloc(1, sizeof *j)))
    return -ENOMEM;
  kz__os_once(&once, interrupt_install);
  j->vfn = fn;
  j->arg = arg;
  j->interruptible = true;
  if ((r = job_start(&blocking_pool, j, hub, g, deadline)) < 0) {
    free(j);
    return r;
  }
  do
    r = kz__park(deadline);
  while (r == 0 && !j->posted);
  if (r < 0 && !j->posted) {
    kz__os_lock(&blocking_pool.lock);
    if (atomic_load_explicit(&j->state, memory_order_relaxed) == JOB_QUEUED) {
      kz__list_remove(&j->link); /* fn never ran */
      kz__os_unlock(&blocking_pool.lock);
      kz__hub_unhold(hub);
      free(j);
      return r;
    }
    kz__os_unlock(&blocking_pool.lock);
    *cut = r;
    job_interrupt(g, j);
  }
  kz__hub_unhold(hub);
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
  kz__os_lock(&pools_lock);
  kz__list_push(&pools, &ex->pools);
  kz__os_unlock(&pools_lock);
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
  kz__os_lock(&pools_lock);
  kz__list_remove(&ex->pools);
  kz__os_unlock(&pools_lock);
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
