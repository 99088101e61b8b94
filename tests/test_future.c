/* test_future.c: futures: set exactly once, waits with timeouts, errors and
 * cancellation, done callbacks on the hub (also added after completion),
 * green threads' completions as futures, completion and waiting across OS
 * threads, misuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

Test(future, set_exactly_once)
{
  kz_future_t f = kz_future_new();
  void *r = NULL;
  cr_assert_neq(f, 0);
  cr_assert_eq(kz_future_state(f), KZ_PENDING);
  cr_assert_eq(kz_future_result(f, &r), -1);
  cr_assert_eq(errno, EAGAIN);
  cr_assert_eq(kz_future_set_result(f, (void *)5), 0);
  cr_assert_eq(kz_future_set_result(f, (void *)6), -1);
  cr_assert_eq(errno, EALREADY);
  cr_assert_eq(kz_future_set_error(f, EIO), -1);
  cr_assert_eq(errno, EALREADY);
  cr_assert_eq(kz_future_cancel(f), -1);
  cr_assert_eq(errno, EALREADY);
  cr_assert_eq(kz_future_state(f), KZ_DONE);
  cr_assert_eq(kz_future_wait(f, &r, 0), 0);
  cr_assert_eq((intptr_t)r, 5, "the first set wins");
  cr_assert_eq(kz_future_free(f), 0);
}

Test(future, wait_times_out)
{
  kz_future_t f = kz_future_new();
  double t0 = kz_now();
  cr_assert_eq(kz_future_wait(f, NULL, 0.05), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_geq(kz_now() - t0, 0.05);
  cr_assert_eq(kz_future_wait(f, NULL, 0), -1, "0 polls");
  cr_assert_eq(errno, ETIMEDOUT);
  kz_future_free(f);
}

static void *setter(void *arg)
{
  kz_sleep(0.01);
  kz_future_set_result(*(kz_future_t *)arg, (void *)9);
  return NULL;
}

Test(future, green_waiter_woken_by_another_green_thread)
{
  kz_future_t f = kz_future_new();
  void *r = NULL;
  kz_green_t g = kz_spawn(setter, &f);
  cr_assert_eq(kz_future_wait(f, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 9);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  kz_future_free(f);
}

Test(future, error_and_cancel_outcomes)
{
  kz_future_t f = kz_future_new(), c = kz_future_new();
  cr_assert_eq(kz_future_set_error(f, EPIPE), 0);
  cr_assert_eq(kz_future_wait(f, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EPIPE);
  cr_assert_eq(kz_future_state(f), KZ_DONE);
  cr_assert_eq(kz_future_cancel(c), 0);
  cr_assert_eq(kz_future_state(c), KZ_CANCELLED);
  cr_assert_eq(kz_future_wait(c, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  kz_future_free(f);
  kz_future_free(c);
}

struct cb_log {
  int n;
  int order[4];
  int in_green; /* a callback found itself in a green thread */
};

static struct cb_log cb_log;

static void log_cb(kz_future_t f, void *arg)
{
  void *r;
  if (kz_self() != 0 || errno != EPERM)
    cb_log.in_green = 1;
  cr_assert_eq(kz_future_result(f, &r), 0, "f is valid and complete in its callback");
  cb_log.order[cb_log.n++] = (int)(intptr_t)arg;
}

Test(future, done_callbacks_run_on_the_hub_in_order_also_when_added_late)
{
  kz_future_t f = kz_future_new();
  cr_assert_eq(kz_future_add_done_callback(f, log_cb, (void *)1), 0);
  cr_assert_eq(kz_future_add_done_callback(f, log_cb, (void *)2), 0);
  cr_assert_eq(kz_future_set_result(f, NULL), 0);
  cr_assert_eq(cb_log.n, 0, "callbacks are scheduled, not run inside set_result");
  cr_assert_eq(kz_future_add_done_callback(f, log_cb, (void *)3), 0);
  cr_assert_eq(kz_future_free(f), 0, "callbacks keep it alive");
  kz_sleep(0.001); /* lets the hub run its callbacks */
  cr_assert_eq(cb_log.n, 3);
  cr_assert_eq(cb_log.order[0], 1);
  cr_assert_eq(cb_log.order[1], 2);
  cr_assert_eq(cb_log.order[2], 3);
  cr_assert_eq(cb_log.in_green, 0, "callbacks run on the hub, outside green threads");
}

static void *add_one(void *arg) { return (char *)arg + 1; }
static void *failer(void *arg) { kz_fail(ENOTCONN); }
static void *sleeper(void *arg)
{
  kz_sleep(10);
  return (void *)1;
}

Test(future, spawn_future_is_a_task)
{
  kz_future_t a = kz_spawn_future(add_one, (void *)1, NULL);
  kz_future_t b = kz_spawn_future(failer, NULL, NULL);
  kz_future_t c = kz_spawn_future(sleeper, NULL, NULL);
  void *r = NULL;
  cr_assert_eq(kz_future_set_result(a, NULL), -1, "only the green thread completes it");
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_future_wait(a, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 2);
  cr_assert_eq(kz_future_wait(b, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, ENOTCONN);
  kz_yield();
  cr_assert_eq(kz_future_cancel(c), 0, "cancels the green thread");
  cr_assert_eq(kz_future_wait(c, NULL, 1), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(kz_future_state(c), KZ_CANCELLED);
  cr_assert_eq(kz_list(NULL, 0), 1u, "the spawned green threads were detached and released");
  kz_future_free(a);
  kz_future_free(b);
  kz_future_free(c);
}

Test(future, green_future_before_and_after_finish)
{
  kz_green_t g = kz_spawn(add_one, (void *)10);
  kz_future_t before = kz_green_future(g), after;
  void *r = NULL;
  cr_assert_neq(before, 0);
  cr_assert_eq(kz_future_wait(before, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 11);
  after = kz_green_future(g); /* g is a zombie: complete at once */
  cr_assert_eq(kz_future_state(after), KZ_DONE);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0, "g is still joined as usual");
  cr_assert_eq(kz_green_future(g), 0);
  cr_assert_eq(errno, EINVAL);
  kz_future_free(before);
  kz_future_free(after);
}

static void *set_from_thread(void *arg)
{
  usleep(20 * 1000);
  cr_assert_eq(kz_future_set_result(*(kz_future_t *)arg, (void *)77), 0);
  return NULL;
}

Test(future, set_from_another_os_thread_wakes_a_green_waiter)
{
  kz_future_t f = kz_future_new();
  pthread_t t;
  void *r = NULL;
  cr_assert_eq(pthread_create(&t, NULL, set_from_thread, &f), 0);
  cr_assert_eq(kz_future_wait(f, &r, 10), 0, "the hub stays alive for the remote set");
  cr_assert_eq((intptr_t)r, 77);
  pthread_join(t, NULL);
  kz_future_free(f);
}

struct os_waiter {
  kz_future_t f;
  double timeout;
  int r, err;
  void *result;
};

static void *wait_from_thread(void *arg)
{
  struct os_waiter *w = arg;
  w->r = kz_future_wait(w->f, &w->result, w->timeout);
  w->err = errno;
  return NULL;
}

Test(future, plain_os_thread_waits_with_timeout)
{
  kz_future_t f = kz_future_new();
  struct os_waiter w1 = {.f = f, .timeout = 0.02}, w2 = {.f = f, .timeout = 10};
  pthread_t t1, t2;
  cr_assert_eq(pthread_create(&t1, NULL, wait_from_thread, &w1), 0);
  pthread_join(t1, NULL);
  cr_assert_eq(w1.r, -1);
  cr_assert_eq(w1.err, ETIMEDOUT);
  cr_assert_eq(pthread_create(&t2, NULL, wait_from_thread, &w2), 0);
  kz_sleep(0.02);
  cr_assert_eq(kz_future_set_result(f, (void *)3), 0);
  pthread_join(t2, NULL);
  cr_assert_eq(w2.r, 0);
  cr_assert_eq((intptr_t)w2.result, 3);
  kz_future_free(f);
}

static void *green_of_another_hub(void *arg)
{
  struct os_waiter *w = arg;
  return kz_run(wait_from_thread, w, NULL) == 0 ? NULL : (void *)1;
}

Test(future, green_thread_of_another_hub_waits)
{
  kz_future_t f = kz_future_new();
  struct os_waiter w = {.f = f, .timeout = 10};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, green_of_another_hub, &w), 0);
  kz_sleep(0.02);
  cr_assert_eq(kz_future_set_result(f, (void *)4), 0);
  pthread_join(t, NULL);
  cr_assert_eq(w.r, 0);
  cr_assert_eq((intptr_t)w.result, 4);
  kz_future_free(f);
}

static void *cross_misuse(void *arg)
{
  kz_future_t f = *(kz_future_t *)arg;
  int *errs = calloc(2, sizeof *errs);
  errs[0] = kz_future_cancel(f) == -1 ? errno : 0;
  errs[1] = kz_future_add_done_callback(f, log_cb, NULL) == -1 ? errno : 0;
  return errs;
}

static int cb_err = -1;
static void wait_in_callback(void *arg)
{
  cb_err = kz_future_wait(*(kz_future_t *)arg, NULL, 1) == -1 ? errno : 0;
}

Test(future, misuse)
{
  kz_future_t f = kz_future_new();
  kz_green_t g = kz_spawn(add_one, NULL);
  kz_future_t gf = kz_green_future(g);
  pthread_t t;
  int *errs;
  cr_assert_eq(kz_future_wait(0, NULL, 1), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_future_set_result(12345, NULL), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_future_set_error(f, 0), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_future_set_result(gf, NULL), -1);
  cr_assert_eq(errno, EINVAL, "a green thread's future is set by it alone");
  cr_assert_eq(kz_future_add_done_callback(f, NULL, NULL), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(pthread_create(&t, NULL, cross_misuse, &f), 0);
  pthread_join(t, (void **)&errs);
  cr_assert_eq(errs[0], EXDEV);
  cr_assert_eq(errs[1], EXDEV);
  free(errs);
  kz_call_soon(wait_in_callback, &f);
  kz_sleep(0.001);
  cr_assert_eq(cb_err, EPERM, "a hub callback never blocks");
  cr_assert_eq(kz_future_free(f), 0);
  cr_assert_eq(kz_future_free(f), -1);
  cr_assert_eq(errno, EINVAL, "freeing twice");
  cr_assert_eq(kz_future_state(f), -1);
  cr_assert_eq(errno, EINVAL);
  kz_join(g, NULL, KZ_FOREVER);
  kz_future_free(gf);
}

/* A NaN timeout is EINVAL when the wait would block, on a plain OS thread
   as in a green thread; a huge or infinite one waits without limit. */
Test(future, nan_timeout_is_einval_and_a_huge_one_waits)
{
  kz_future_t f = kz_future_new();
  struct os_waiter nan = {.f = f, .timeout = __builtin_nan("")};
  struct os_waiter huge = {.f = f, .timeout = 1e300}, inf = {.f = f, .timeout = __builtin_inf()};
  pthread_t t1, t2, t3;
  cr_assert_eq(pthread_create(&t1, NULL, wait_from_thread, &nan), 0);
  pthread_join(t1, NULL);
  cr_assert_eq(nan.r, -1);
  cr_assert_eq(nan.err, EINVAL);
  errno = 0;
  cr_assert_eq(kz_future_wait(f, NULL, __builtin_nan("")), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(pthread_create(&t2, NULL, wait_from_thread, &huge), 0);
  cr_assert_eq(pthread_create(&t3, NULL, wait_from_thread, &inf), 0);
  kz_sleep(0.02);
  cr_assert_eq(kz_future_set_result(f, (void *)5), 0);
  pthread_join(t2, NULL);
  pthread_join(t3, NULL);
  cr_assert_eq(huge.r, 0, "errno %d", huge.err);
  cr_assert_eq(inf.r, 0, "errno %d", inf.err);
  cr_assert_eq((intptr_t)huge.result, 5);
  cr_assert_eq(kz_future_wait(f, NULL, __builtin_nan("")), 0, "a complete future needs no wait");
  kz_future_free(f);
}
