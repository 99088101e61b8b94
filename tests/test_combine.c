/* test_combine.c: gather (ordered results; errors collected, or the first
 * error cancelling the rest; timeout), wait (FIRST_COMPLETED, FIRST_ERROR,
 * ALL_COMPLETED, timeout, the done/pending split), as_completed (completion
 * order, timeout, exhaustion), misuse; and each over the futures of
 * several hubs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define P(i) ((void *)(intptr_t)(i))

/* Sleep arg milliseconds, then return arg; a negative arg fails with EIO
   after -arg milliseconds. */
static void *nap(void *arg)
{
  intptr_t ms = (intptr_t)arg;
  kz_sleep((double)(ms < 0 ? -ms : ms) / 1000.0);
  if (ms < 0)
    kz_fail(EIO);
  return arg;
}

static kz_future_t task(intptr_t ms) { return kz_spawn_future(nap, P(ms), NULL); }

/* Let every task finish (cancelled ones included), then free the futures. */
static void free_all(uint64_t *h, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    kz_future_wait(h[i], NULL, 2);
    cr_assert_neq(kz_future_state(h[i]), KZ_PENDING);
    kz_future_free(h[i]);
  }
}

Test(combine, gather_results_in_argument_order)
{
  uint64_t h[3] = {task(100), task(50), task(80)};
  void *res[3];
  int err[3];
  double t0 = kz_now();
  cr_assert_eq(kz_gather(h, 3, res, err, 0, KZ_FOREVER), 0);
  cr_assert_lt(kz_now() - t0, 0.2, "concurrent: about the longest (0.1 s), not the sum (0.23 s)");
  for (int i = 0; i < 3; i++)
    cr_assert_eq(err[i], 0);
  cr_assert_eq((intptr_t)res[0], 100);
  cr_assert_eq((intptr_t)res[1], 50);
  cr_assert_eq((intptr_t)res[2], 80);
  free_all(h, 3);
}

Test(combine, gather_mixes_green_threads_and_futures)
{
  kz_green_t g = kz_spawn(nap, P(5));
  kz_future_t f = kz_future_new();
  uint64_t h[2] = {g, f};
  void *res[2];
  kz_future_set_result(f, P(8));
  cr_assert_eq(kz_gather(h, 2, res, NULL, 0, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)res[0], 5);
  cr_assert_eq((intptr_t)res[1], 8);
  cr_assert_eq(kz_join(g, NULL, 0), 0, "the green thread is still joined as usual");
  kz_future_free(f);
}

Test(combine, gather_collecting_errors)
{
  uint64_t h[3] = {task(10), task(-5), task(20)};
  void *res[3];
  int err[3];
  cr_assert_eq(kz_gather(h, 3, res, err, KZ_GATHER_ERRORS, KZ_FOREVER), 1, "one slot failed");
  cr_assert_eq(err[0], 0);
  cr_assert_eq(err[1], EIO);
  cr_assert_eq(err[2], 0);
  cr_assert_eq((intptr_t)res[0], 10);
  cr_assert_null(res[1]);
  cr_assert_eq((intptr_t)res[2], 20, "the others ran to completion");
  free_all(h, 3);
}

Test(combine, gather_first_error_cancels_the_rest)
{
  uint64_t h[3] = {task(1), task(-5), task(1000)};
  void *res[3];
  int err[3];
  double t0 = kz_now();
  cr_assert_eq(kz_gather(h, 3, res, err, 0, KZ_FOREVER), -1);
  cr_assert_eq(errno, EIO);
  cr_assert_lt(kz_now() - t0, 0.5, "returned at the error, not after the slow one");
  cr_assert_eq(err[0], 0);
  cr_assert_eq((intptr_t)res[0], 1);
  cr_assert_eq(err[1], EIO);
  cr_assert_eq(err[2], ECANCELED);
  cr_assert_eq(kz_future_wait(h[2], NULL, 1), -1);
  cr_assert_eq(errno, ECANCELED, "the slow one was cancelled");
  free_all(h, 3);
}

Test(combine, gather_timeout_cancels_the_pending)
{
  uint64_t h[2] = {task(1), task(1000)};
  int err[2];
  cr_assert_eq(kz_gather(h, 2, NULL, err, KZ_GATHER_ERRORS, 0.03), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(err[0], 0);
  cr_assert_eq(err[1], ECANCELED);
  free_all(h, 2);
}

Test(combine, wait_first_completed_then_timeout_then_the_rest)
{
  kz_future_t a = task(10), b = task(300), c = task(400);
  uint64_t h[3] = {c, b, a};
  int n = kz_wait(h, 3, KZ_FIRST_COMPLETED, KZ_FOREVER);
  cr_assert_eq(n, 1);
  cr_assert_eq(h[0], a, "the done one first");
  cr_assert_eq(h[1], c, "then the pending ones, in their order");
  cr_assert_eq(h[2], b);
  n = kz_wait(h + 1, 2, KZ_ALL_COMPLETED, 0.01);
  cr_assert_eq(n, 0, "a timeout returns the split, not an error");
  n = kz_wait(h + 1, 2, KZ_ALL_COMPLETED, KZ_FOREVER);
  cr_assert_eq(n, 2);
  cr_assert_eq(kz_future_state(b), KZ_DONE);
  cr_assert_eq(kz_future_state(c), KZ_DONE);
  free_all(h, 3);
}

Test(combine, wait_first_error)
{
  uint64_t h[3] = {task(5), task(-20), task(1000)};
  kz_future_t failing = h[1], slow = h[2];
  int n = kz_wait(h, 3, KZ_FIRST_ERROR, KZ_FOREVER);
  cr_assert_eq(n, 2, "returned at the error");
  cr_assert_eq(h[1], failing);
  cr_assert_eq(h[2], slow);
  cr_assert_eq(kz_future_state(slow), KZ_PENDING, "wait cancels nothing");
  kz_future_cancel(slow);
  free_all(h, 3);
}

Test(combine, as_completed_in_completion_order)
{
  uint64_t h[4] = {task(40), task(10), task(-25), task(1)};
  struct kz_as_completed *it = kz_as_completed_new(h, 4);
  int expect[4] = {3, 1, 2, 0}, err;
  void *res;
  cr_assert_not_null(it);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(kz_as_completed_next(it, &res, &err, KZ_FOREVER), expect[i]);
    cr_assert_eq(err, expect[i] == 2 ? EIO : 0);
  }
  cr_assert_eq((intptr_t)res, 40);
  cr_assert_eq(kz_as_completed_next(it, NULL, NULL, 1), -1);
  cr_assert_eq(errno, ENOENT);
  cr_assert_eq(kz_as_completed_free(it), 0);
  free_all(h, 4);
}

Test(combine, as_completed_timeout)
{
  uint64_t h[1] = {task(1000)};
  struct kz_as_completed *it = kz_as_completed_new(h, 1);
  cr_assert_eq(kz_as_completed_next(it, NULL, NULL, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  kz_as_completed_free(it);
  kz_future_cancel(h[0]);
  free_all(h, 1);
}

Test(combine, misuse)
{
  uint64_t bad[2] = {task(1), 12345};
  cr_assert_eq(kz_gather(bad, 2, NULL, NULL, 0, 1), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_wait(bad, 1, 99, 1), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_null(kz_as_completed_new(bad, 2));
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_as_completed_next(NULL, NULL, NULL, 1), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_gather(NULL, 0, NULL, NULL, 0, 1), 0, "nothing to wait for");
  free_all(bad, 1);
}

/* ---- Across hubs ---------------------------------------------------------------- */

#define NHUBS 3
static struct kz_remote *hubs[NHUBS];

static void start_hubs(void)
{
  for (int i = 0; i < NHUBS; i++)
    cr_assert_not_null(hubs[i] = kz_remote_start());
}

static void free_hubs(void)
{
  for (int i = 0; i < NHUBS; i++)
    kz_remote_free(hubs[i]);
}

/* A task of ms milliseconds (nap) on hub i: its future is that hub's. */
static kz_future_t remote_task(int i, intptr_t ms) { return kz_remote_spawn(hubs[i % NHUBS], nap, P(ms)); }

Test(combine, gather_over_futures_of_3_hubs)
{
  uint64_t h[6];
  void *res[6];
  int err[6];
  start_hubs();
  for (int i = 0; i < 6; i++)
    h[i] = remote_task(i, 30 - 5 * i);
  cr_assert_eq(kz_gather(h, 6, res, err, 0, 30), 0);
  for (int i = 0; i < 6; i++) {
    cr_assert_eq((intptr_t)res[i], 30 - 5 * i, "in argument order");
    cr_assert_eq(err[i], 0);
  }
  free_all(h, 6);
  free_hubs();
}

struct gather_job {
  uint64_t h[NHUBS];
  void *res[NHUBS];
  int r;
};

static void *gather_elsewhere(void *arg)
{
  struct gather_job *j = arg;
  j->r = kz_gather(j->h, NHUBS, j->res, NULL, KZ_GATHER_ERRORS, 30);
  return NULL;
}

Test(combine, a_green_thread_of_a_fourth_hub_gathers_with_errors)
{
  struct kz_remote *d = kz_remote_start();
  struct gather_job j;
  start_hubs();
  j.h[0] = remote_task(0, 20);
  j.h[1] = remote_task(1, -10);
  j.h[2] = remote_task(2, 5);
  kz_future_t f = kz_remote_spawn(d, gather_elsewhere, &j);
  cr_assert_eq(kz_future_wait(f, NULL, 30), 0);
  cr_assert_eq(j.r, 1, "one slot holds an error");
  cr_assert_eq((intptr_t)j.res[0], 20);
  cr_assert_null(j.res[1]);
  cr_assert_eq((intptr_t)j.res[2], 5);
  free_all(j.h, NHUBS);
  kz_future_free(f);
  kz_remote_free(d);
  free_hubs();
}

Test(combine, gather_timeout_cancels_the_tasks_of_other_hubs)
{
  uint64_t h[NHUBS];
  int err[NHUBS];
  start_hubs();
  h[0] = remote_task(0, 1);
  h[1] = remote_task(1, 20000);
  h[2] = remote_task(2, 20000);
  cr_assert_eq(kz_gather(h, NHUBS, NULL, err, 0, 0.1), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(err[0], 0);
  cr_assert_eq(err[1], ECANCELED);
  cr_assert_eq(err[2], ECANCELED);
  for (int i = 1; i < NHUBS; i++) {
    cr_assert_eq(kz_future_wait(h[i], NULL, 10), -1, "cancelled on its own hub, long before 20 s");
    cr_assert_eq(errno, ECANCELED);
  }
  free_all(h, NHUBS);
  free_hubs();
}

/* Return what gate (a future of the test's hub) gives, once it does. */
static void *gated(void *gate)
{
  void *res = NULL;
  kz_future_wait((kz_future_t)(uintptr_t)gate, &res, 30);
  return res;
}

Test(combine, wait_and_as_completed_over_futures_of_3_hubs)
{
  uint64_t h[NHUBS];
  kz_future_t gate[NHUBS];
  int idx;
  void *res;
  start_hubs();
  for (int i = 0; i < NHUBS; i++) {
    gate[i] = kz_future_new();
    h[i] = kz_remote_spawn(hubs[i], gated, (void *)(uintptr_t)gate[i]);
  }
  uint64_t second = h[1];
  cr_assert_eq(kz_wait(h, NHUBS, KZ_FIRST_COMPLETED, 0.05), 0, "a timeout returns the split");
  kz_future_set_result(gate[1], P(11));
  cr_assert_eq(kz_wait(h, NHUBS, KZ_FIRST_COMPLETED, 30), 1);
  cr_assert_eq(h[0], second, "the second hub's task completed first");
  struct kz_as_completed *it = kz_as_completed_new(h, NHUBS); /* h: second, first, third */
  cr_assert_not_null(it);
  cr_assert_eq(kz_as_completed_next(it, &res, NULL, 30), 0);
  cr_assert_eq((intptr_t)res, 11);
  kz_future_set_result(gate[2], P(12));
  cr_assert_eq(idx = kz_as_completed_next(it, &res, NULL, 30), 2);
  cr_assert_eq((intptr_t)res, 12);
  kz_future_set_result(gate[0], P(10));
  cr_assert_eq(idx = kz_as_completed_next(it, &res, NULL, 30), 1);
  cr_assert_eq((intptr_t)res, 10);
  cr_assert_eq(kz_as_completed_next(it, &res, NULL, 30), -1);
  cr_assert_eq(errno, ENOENT);
  cr_assert_eq(kz_as_completed_free(it), 0);
  free_all(h, NHUBS);
  for (int i = 0; i < NHUBS; i++)
    kz_future_free(gate[i]);
  free_hubs();
}

static _Atomic kz_green_t remote_green;

static void *report_self(void *arg)
{
  remote_green = kz_self();
  kz_sleep(30);
  return NULL;
}

Test(combine, a_green_thread_handle_of_a_remote_hub)
{
  void *res = NULL;
  start_hubs();
  kz_future_t f = kz_remote_spawn(hubs[0], report_self, NULL);
  while (!remote_green)
    kz_sleep(0.001);
  uint64_t h[1] = {remote_green};
  cr_assert_eq(kz_wait(h, 1, KZ_FIRST_COMPLETED, 0), 0, "stands for its completion: pending");
  struct kz_as_completed *it = kz_as_completed_new(h, 1); /* before it can finish and go */
  int err = 0;
  cr_assert_not_null(it, "%s", strerror(errno));
  kz_future_cancel(f);
  cr_assert_eq(kz_as_completed_next(it, &res, &err, 10), 0);
  cr_assert_eq(err, ECANCELED);
  cr_assert_eq(kz_as_completed_free(it), 0);
  kz_future_wait(f, NULL, 10);
  kz_future_free(f);
  free_hubs();
}

/* ---- Green threads of the set's other hubs: with 2 hubs and with 4 ---------- */

#define HUBS(name)                                                                                \
  static void name(unsigned n);                                                                   \
  Test(combine, name##_2_hubs) { name(2); }                                                       \
  Test(combine, name##_4_hubs) { name(4); }                                                       \
  static void name(unsigned n)

/* Spawn gated(gate[i]) on hub i + 1, for i < n - 1: the green threads of
   every hub but the caller's. */
static void spawn_gated(unsigned n, kz_green_t *g, kz_future_t *gate)
{
  for (unsigned i = 0; i + 1 < n; i++) {
    struct kz_spawn_opts o = {.hub = KZ_HUB(i + 1)};
    gate[i] = kz_future_new();
    cr_assert_neq(g[i] = kz_spawn_with(gated, (void *)(uintptr_t)gate[i], &o), 0);
  }
}

static void join_gated(unsigned n, kz_green_t *g, kz_future_t *gate)
{
  for (unsigned i = 0; i + 1 < n; i++) {
    cr_assert_eq(kz_join(g[i], NULL, 10), 0, "still joined as usual");
    kz_future_free(gate[i]);
  }
}

HUBS(gather_over_green_threads_of_other_hubs)
{
  kz_green_t g[4];
  kz_future_t gate[4];
  void *res[4];
  cr_assert_eq(kz_set_hubs(n), 0);
  spawn_gated(n, g, gate);
  for (unsigned i = n - 1; i-- > 0;) /* the last first: order is the array's */
    kz_future_set_result(gate[i], P(10 + i));
  cr_assert_eq(kz_gather(g, n - 1, res, NULL, 0, 10), 0, "%s", strerror(errno));
  for (unsigned i = 0; i + 1 < n; i++)
    cr_assert_eq((intptr_t)res[i], 10 + (intptr_t)i);
  join_gated(n, g, gate);
}

HUBS(wait_and_as_completed_over_green_threads_of_other_hubs)
{
  kz_green_t g[4];
  uint64_t h[4];
  kz_future_t gate[4];
  void *res;
  unsigned m = n - 1;
  cr_assert_eq(kz_set_hubs(n), 0);
  spawn_gated(n, g, gate);
  for (unsigned i = 0; i < m; i++)
    h[i] = g[i];
  cr_assert_eq(kz_wait(h, m, KZ_FIRST_COMPLETED, 0.01), 0, "a timeout returns the split");
  kz_future_set_result(gate[m - 1], P(20));
  cr_assert_eq(kz_wait(h, m, KZ_FIRST_COMPLETED, 10), 1, "%s", strerror(errno));
  cr_assert_eq(h[0], g[m - 1], "the last hub's green thread completed first");
  struct kz_as_completed *it = kz_as_completed_new(g, m);
  cr_assert_not_null(it, "%s", strerror(errno));
  cr_assert_eq(kz_as_completed_next(it, &res, NULL, 10), (int)m - 1);
  cr_assert_eq((intptr_t)res, 20);
  for (unsigned i = 0; i + 1 < m; i++) {
    kz_future_set_result(gate[i], P(30 + i));
    cr_assert_eq(kz_as_completed_next(it, &res, NULL, 10), (int)i);
    cr_assert_eq((intptr_t)res, 30 + (intptr_t)i);
  }
  cr_assert_eq(kz_as_completed_next(it, &res, NULL, 10), -1);
  cr_assert_eq(errno, ENOENT);
  cr_assert_eq(kz_as_completed_free(it), 0);
  join_gated(n, g, gate);
}
