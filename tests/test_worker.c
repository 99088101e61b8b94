/* test_worker.c: worker-thread pools (kz_run_in_executor, kz__worker_call):
 * results, the hub keeps running meanwhile, bounded concurrency, timeouts and
 * cancellation that abandon safely (discard runs exactly once, a queued call
 * never runs), misuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include "internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static void *whoami(void *arg)
{
  *(pthread_t *)arg = pthread_self();
  return (void *)42;
}

Test(worker, runs_on_another_thread_and_returns_result)
{
  pthread_t t = pthread_self();
  void *r = NULL;
  cr_assert_eq(kz_run_in_executor(NULL, whoami, &t, NULL, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 42);
  cr_assert(!pthread_equal(t, pthread_self()), "fn ran on a worker thread");
}

/* A blocking call that ends when its gate pipe is written. */
struct gate {
  int fds[2];     /* the worker blocks reading fds[0] */
  int done[2];    /* discard writes one byte to done[1] */
  atomic_int ran; /* fn entered */
  atomic_int discards;
  void *discarded_result;
};

static void gate_init(struct gate *g)
{
  cr_assert_eq(pipe(g->fds), 0);
  cr_assert_eq(pipe(g->done), 0);
  atomic_init(&g->ran, 0);
  atomic_init(&g->discards, 0);
}

static void gate_open(struct gate *g) { cr_assert_eq(write(g->fds[1], "x", 1), 1); }

static void *blocked(void *arg)
{
  struct gate *g = arg;
  char c;
  atomic_fetch_add(&g->ran, 1);
  cr_assert_eq(read(g->fds[0], &c, 1), 1);
  return (void *)7;
}

static void on_discard(void *arg, void *result)
{
  struct gate *g = arg;
  g->discarded_result = result;
  atomic_fetch_add(&g->discards, 1);
  cr_assert_eq(write(g->done[1], "d", 1), 1);
}

/* Wait (as a green thread) until discard has run once. */
static void await_discard(struct gate *g)
{
  char c;
  cr_assert_eq(kz_wait_fd(g->done[0], KZ_READ, 10), KZ_READ);
  cr_assert_eq(read(g->done[0], &c, 1), 1);
}

static atomic_int ticks;
static void *ticker(void *arg)
{
  struct gate *g = arg;
  while (!atomic_load(&g->ran) || atomic_load(&ticks) < 3) {
    atomic_fetch_add(&ticks, 1);
    kz_sleep(0.001);
  }
  gate_open(g);
  return NULL;
}

Test(worker, hub_keeps_running_while_a_green_thread_waits)
{
  struct gate g;
  void *r = NULL;
  gate_init(&g);
  kz_green_t t = kz_spawn(ticker, &g);
  /* The worker blocks until the ticker (a green thread on this hub) opens the
     gate: this only finishes if the hub runs while we wait. */
  cr_assert_eq(kz_run_in_executor(NULL, blocked, &g, on_discard, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 7);
  cr_assert_geq(atomic_load(&ticks), 3);
  cr_assert_eq(kz_join(t, NULL, KZ_FOREVER), 0);
  cr_assert_eq(atomic_load(&g.discards), 0, "no discard after success");
}

Test(worker, timeout_abandons_a_running_call_and_discards_its_result)
{
  struct gate g;
  void *r = (void *)1;
  gate_init(&g);
  double t0 = kz_now();
  cr_assert_eq(kz_run_in_executor(NULL, blocked, &g, on_discard, &r, 0.05), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_geq(kz_now() - t0, 0.05);
  cr_assert_eq(r, (void *)1, "no result stored on failure");
  gate_open(&g); /* the worker finishes fn, then discards */
  await_discard(&g);
  cr_assert_eq(atomic_load(&g.discards), 1);
  cr_assert_eq(g.discarded_result, (void *)7);
}

struct call_arg {
  struct kz_executor *ex;
  struct gate *g;
  int r, err;
};

static void *call_blocked(void *arg)
{
  struct call_arg *a = arg;
  a->r = kz_run_in_executor(a->ex, blocked, a->g, on_discard, NULL, KZ_FOREVER);
  a->err = errno;
  return NULL;
}

/* Spawn a green thread that calls blocked() on ex, and wait until it runs. */
static kz_green_t start_blocked(struct call_arg *a)
{
  kz_green_t t = kz_spawn(call_blocked, a);
  while (!atomic_load(&a->g->ran))
    kz_sleep(0.001);
  return t;
}

Test(worker, cancelling_the_waiter_is_safe)
{
  struct gate g;
  struct call_arg a = {.g = &g};
  gate_init(&g);
  kz_green_t t = start_blocked(&a);
  cr_assert_eq(kz_cancel(t), 0);
  cr_assert_eq(kz_join(t, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(a.r, -1);
  cr_assert_eq(a.err, ECANCELED);
  gate_open(&g);
  await_discard(&g);
  cr_assert_eq(atomic_load(&g.discards), 1);
  cr_assert_eq(g.discarded_result, (void *)7);
}

static void *never(void *arg)
{
  atomic_fetch_add((atomic_int *)arg, 1);
  return NULL;
}

static atomic_int null_discards;
static void count_discard(void *arg, void *result)
{
  cr_assert_null(result, "a call that never ran discards a NULL result");
  atomic_fetch_add(&null_discards, 1);
}

Test(worker, an_abandoned_queued_call_never_runs)
{
  struct kz_executor *ex = kz_executor_new(1);
  struct gate g;
  struct call_arg a = {.ex = ex, .g = &g};
  atomic_int ran = 0;
  cr_assert_not_null(ex);
  gate_init(&g);
  kz_green_t t = start_blocked(&a); /* ex's only thread is now busy */
  cr_assert_eq(kz_run_in_executor(ex, never, &ran, count_discard, NULL, 0.02), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(atomic_load(&null_discards), 1, "discarded at once, by the waiter");
  gate_open(&g);
  cr_assert_eq(kz_join(t, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, 0);
  cr_assert_eq(kz_executor_free(ex), 0);
  cr_assert_eq(atomic_load(&ran), 0, "the abandoned queued call never ran");
}

static atomic_int running, peak;
static void *nap(void *arg)
{
  int now = atomic_fetch_add(&running, 1) + 1, p = atomic_load(&peak);
  while (now > p && !atomic_compare_exchange_weak(&peak, &p, now))
    ;
  usleep(100 * 1000);
  atomic_fetch_sub(&running, 1);
  return arg;
}

struct nap_arg {
  struct kz_executor *ex;
  intptr_t i;
  intptr_t r;
};

static void *call_nap(void *arg)
{
  struct nap_arg *a = arg;
  void *r = NULL;
  cr_assert_eq(kz_run_in_executor(a->ex, nap, (void *)a->i, NULL, &r, KZ_FOREVER), 0);
  a->r = (intptr_t)r;
  return NULL;
}

Test(worker, pool_size_bounds_concurrency)
{
  struct kz_executor *ex = kz_executor_new(5);
  struct nap_arg a[10];
  kz_green_t t[10];
  double t0 = kz_now();
  for (int i = 0; i < 10; i++) {
    a[i] = (struct nap_arg){.ex = ex, .i = i + 100};
    t[i] = kz_spawn(call_nap, &a[i]);
  }
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(kz_join(t[i], NULL, KZ_FOREVER), 0);
    cr_assert_eq(a[i].r, i + 100);
  }
  cr_assert_eq(atomic_load(&peak), 5, "at most (and here exactly) 5 calls at once");
  cr_assert_lt(kz_now() - t0, 1.0, "10 calls of 0.1 s on 5 threads: about 0.2 s, not 1 s");
  cr_assert_eq(kz_executor_free(ex), 0);
}

static void in_callback(void *arg)
{
  *(int *)arg = kz_run_in_executor(NULL, never, NULL, NULL, NULL, KZ_FOREVER) == -1 ? errno : 0;
}

Test(worker, misuse)
{
  int err = -1;
  cr_assert_eq(kz_run_in_executor(NULL, NULL, NULL, NULL, NULL, 1), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_null(kz_executor_new(0));
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_executor_free(NULL), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_executor_set_default_size(0), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_neq(kz_call_soon(in_callback, &err), 0);
  while (err == -1)
    kz_yield();
  cr_assert_eq(err, EPERM, "in a hub callback: the hub never blocks");
}

static void set_flag(void *arg) { atomic_store((atomic_int *)arg, 1); }
static void free_discard(void *arg) { free(arg); }

Test(worker, internal_worker_call)
{
  atomic_int flag = 0;
  cr_assert_eq(kz_self() != 0, 1);
  cr_assert_eq(kz__worker_call(set_flag, &flag, NULL, -1), 0);
  cr_assert_eq(atomic_load(&flag), 1);
  /* Expired deadline: the call never starts and its heap argument is discarded. */
  int *p = malloc(sizeof *p);
  int r = kz__worker_call(set_flag, p, free_discard, kz_now() - 1);
  cr_assert_eq(r, -ETIMEDOUT);
}
