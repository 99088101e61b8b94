/* test_future.c: futures: set exactly once, waits with timeouts, errors and
 * cancellation, done callbacks on the hub (also added after completion),
 * green threads' completions as futures, completion and waiting across OS
 * threads, misuse; futures of one hub waited on, cancelled and given
 * callbacks by green threads of others and by plain threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

/* ---- Across hubs ---------------------------------------------------------------- */

static pthread_t owner_thread;
static _Atomic int cb_on_owner, cb_elsewhere;

static void where_cb(kz_future_t f, void *arg)
{
  if (pthread_equal(pthread_self(), owner_thread))
    cb_on_owner++;
  else
    cb_elsewhere++;
}

static void *cancel_and_add_callbacks(void *arg)
{
  kz_future_t f = *(kz_future_t *)arg;
  intptr_t r = 0;
  if (kz_future_add_done_callback(f, where_cb, NULL) != 0)
    r |= 1;
  if (kz_future_cancel(f) != 0)
    r |= 2;
  if (kz_future_cancel(f) != -1 || errno != EALREADY)
    r |= 4;
  if (kz_future_add_done_callback(f, where_cb, NULL) != 0) /* after completion */
    r |= 8;
  return (void *)r;
}

Test(future, another_thread_cancels_and_adds_callbacks_that_run_on_the_owner_hub)
{
  kz_future_t f = kz_future_new();
  pthread_t t;
  void *r;
  owner_thread = pthread_self();
  cr_assert_eq(pthread_create(&t, NULL, cancel_and_add_callbacks, &f), 0);
  cr_assert_eq(kz_future_wait(f, NULL, 30), -1);
  cr_assert_eq(errno, ECANCELED);
  pthread_join(t, &r);
  cr_assert_eq((intptr_t)r, 0, "failures %ld", (long)(intptr_t)r);
  for (int i = 0; i < 3000 && cb_on_owner < 2; i++)
    kz_sleep(0.001);
  cr_assert_eq(cb_on_owner, 2, "both ran on the owner hub's thread");
  cr_assert_eq(cb_elsewhere, 0);
  kz_future_free(f);
}

static int nthreads_now(void)
{
  FILE *st = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (st && fgets(line, sizeof line, st))
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  if (st)
    fclose(st);
  return n;
}

#define XWAITERS 40
static kz_future_t xf;
static _Atomic int xwaiting;

static void *wait_for_xf(void *arg)
{
  void *res;
  xwaiting++;
  if (kz_future_wait(xf, &res, 30) != 0)
    return (void *)1;
  return res == (void *)77 ? NULL : (void *)2;
}

static void *spawn_waiters(void *arg)
{
  kz_future_t g[XWAITERS];
  for (int i = 0; i < XWAITERS; i++)
    g[i] = kz_spawn_future(wait_for_xf, NULL, NULL);
  for (int i = 0; i < XWAITERS; i++) {
    void *res = (void *)1;
    if (kz_future_wait(g[i], &res, 30) != 0 || res != NULL)
      return (void *)1;
    kz_future_free(g[i]);
  }
  return NULL;
}

static void *make_xf(void *arg)
{
  owner_thread = pthread_self();
  xf = kz_future_new();
  return NULL;
}

static void *set_xf_with_callback(void *arg)
{
  if (kz_future_add_done_callback(xf, where_cb, NULL) != 0)
    return (void *)1;
  return kz_future_set_result(xf, (void *)77) == 0 ? NULL : (void *)2;
}

Test(future, completed_on_hub_a_waited_by_green_threads_of_b_and_c)
{
  struct kz_remote *a = kz_remote_start(), *b = kz_remote_start(), *c = kz_remote_start();
  void *res;
  kz_future_t made = kz_remote_spawn(a, make_xf, NULL);
  cr_assert_eq(kz_future_wait(made, NULL, 30), 0);
  kz_future_t wb = kz_remote_spawn(b, spawn_waiters, NULL);
  kz_future_t wc = kz_remote_spawn(c, spawn_waiters, NULL);
  int before = nthreads_now();
  while (xwaiting < 2 * XWAITERS)
    kz_sleep(0.001);
  kz_sleep(0.02);
  cr_assert_leq(nthreads_now(), before, "waiters park on their hubs: no thread is added for them");
  cr_assert_eq(kz_future_state(xf), KZ_PENDING);
  kz_future_t set = kz_remote_spawn(a, set_xf_with_callback, NULL); /* completes on its owner, a */
  cr_assert_eq(kz_future_wait(set, &res, 30), 0);
  cr_assert_null(res);
  cr_assert_eq(kz_future_wait(wb, &res, 30), 0);
  cr_assert_null(res, "every waiter on b got the result");
  cr_assert_eq(kz_future_wait(wc, &res, 30), 0);
  cr_assert_null(res, "every waiter on c got the result");
  for (int i = 0; i < 3000 && !cb_on_owner; i++)
    kz_sleep(0.001);
  cr_assert_eq(cb_on_owner, 1, "the callback ran on the owner hub, a");
  cr_assert_eq(cb_elsewhere, 0);
  kz_future_free(xf);
  kz_future_free(made);
  kz_future_free(wb);
  kz_future_free(wc);
  kz_future_free(set);
  kz_remote_free(a);
  kz_remote_free(b);
  kz_remote_free(c);
}

static void *wait_xf_briefly(void *arg)
{
  return (void *)(intptr_t)(kz_future_wait(xf, NULL, 0.05) == -1 ? errno : 0);
}

static _Atomic kz_green_t xwaiter_id;

static void *wait_xf_forever(void *arg)
{
  xwaiter_id = kz_self();
  return (void *)(intptr_t)(kz_future_wait(xf, NULL, KZ_FOREVER) == -1 ? errno : 0);
}

static void cancel_on_its_hub(void *arg) { kz_cancel(xwaiter_id); }

Test(future, a_waiter_of_another_hub_times_out_and_is_cancelled)
{
  struct kz_remote *r = kz_remote_start();
  void *res;
  xf = kz_future_new();
  kz_future_t t = kz_remote_spawn(r, wait_xf_briefly, NULL);
  cr_assert_eq(kz_future_wait(t, &res, 30), 0);
  cr_assert_eq((intptr_t)res, ETIMEDOUT);
  kz_future_t c = kz_remote_spawn(r, wait_xf_forever, NULL);
  while (!xwaiter_id)
    kz_sleep(0.001);
  kz_sleep(0.01);
  cr_assert_eq(kz_remote_call_soon(r, cancel_on_its_hub, NULL), 0);
  cr_assert_eq(kz_future_wait(c, &res, 30), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(kz_future_state(xf), KZ_PENDING, "the waiters' ends leave the future alone");
  cr_assert_eq(kz_future_set_result(xf, NULL), 0);
  kz_future_free(xf);
  kz_future_free(t);
  kz_future_free(c);
  kz_remote_free(r);
}

/* A completion racing a waiter's timeout, many times over: the wait either
   returns the result or times out while the future is still pending. */
#define RACES 2000
static kz_future_t race_f[RACES];
static _Atomic int race_done;

static void *wait_racing(void *arg)
{
  for (int i = 0; i < RACES; i++) {
    void *res;
    while (!race_f[i])
      kz_yield();
    int r = kz_future_wait(race_f[i], &res, 0.0001 * (i % 3));
    if (r == 0 && res != (void *)(intptr_t)(i + 1))
      return (void *)1;
    if (r == -1 && errno != ETIMEDOUT)
      return (void *)2;
    race_done = i + 1;
  }
  return NULL;
}

Test(future, a_completion_racing_a_timeout)
{
  struct kz_remote *r = kz_remote_start();
  void *res;
  kz_future_t w = kz_remote_spawn(r, wait_racing, NULL);
  for (int i = 0; i < RACES; i++) {
    kz_future_t f = kz_future_new();
    race_f[i] = f;
    if (i % 2)
      kz_sleep(0.00005 * (i % 4));
    cr_assert_eq(kz_future_set_result(f, (void *)(intptr_t)(i + 1)), 0);
    while (race_done <= i)
      kz_yield();
    kz_future_free(f);
  }
  cr_assert_eq(kz_future_wait(w, &res, 60), 0);
  cr_assert_null(res);
  kz_future_free(w);
  kz_remote_free(r);
}

/* ---- Green threads of other hubs: each body with 2 hubs and with 4 -------------- */

#define HUBS(name)                                                                                \
  static void name(unsigned n);                                                                   \
  Test(future, name##_2_hubs) { name(2); }                                                        \
  Test(future, name##_4_hubs) { name(4); }                                                        \
  static void name(unsigned n)

static long tid(void) { return syscall(SYS_gettid); }

static void *my_tid(void *arg)
{
  (void)arg;
  return (void *)(intptr_t)tid();
}

/* The OS thread of hub k (hub 0: the test's own, which starts the set). */
static long tid_of_hub(unsigned k)
{
  struct kz_spawn_opts o = {.hub = KZ_HUB(k)};
  kz_green_t g = kz_spawn_with(my_tid, NULL, &o);
  void *r = NULL;
  cr_assert_neq(g, 0, "spawn on hub %u: %s", k, strerror(errno));
  cr_assert_eq(kz_join(g, &r, 10), 0);
  return (long)(intptr_t)r;
}

static _Atomic long cb_tid;

static void note_tid(kz_future_t f, void *arg)
{
  (void)f;
  (void)arg;
  cb_tid = tid();
}

HUBS(spawn_future_on_another_hub_result_error_cancellation)
{
  cr_assert_eq(kz_set_hubs(n), 0);
  for (unsigned k = 1; k < n; k++) {
    struct kz_spawn_opts o = {.hub = KZ_HUB(k), .name = "elsewhere"};
    long there = tid_of_hub(k);
    void *r = NULL;
    kz_future_t a = kz_spawn_future(my_tid, NULL, &o);
    cr_assert_neq(a, 0, "hub %u: %s", k, strerror(errno));
    cr_assert_eq(kz_future_set_result(a, NULL), -1, "only the green thread completes it");
    cr_assert_eq(errno, EINVAL);
    cb_tid = 0;
    cr_assert_eq(kz_future_add_done_callback(a, note_tid, NULL), 0);
    cr_assert_eq(kz_future_wait(a, &r, 10), 0, "hub %u: %s", k, strerror(errno));
    cr_assert_eq((long)(intptr_t)r, there, "it ran on hub %u's OS thread", k);
    cr_assert_neq((long)(intptr_t)r, tid());
    for (int i = 0; i < 100000 && !cb_tid; i++)
      kz_sleep(0.0001);
    cr_assert_eq(cb_tid, tid(), "callbacks run on the owner hub, the caller's");

    kz_future_t b = kz_spawn_future(failer, NULL, &o);
    cr_assert_neq(b, 0);
    cr_assert_eq(kz_future_wait(b, NULL, 10), -1);
    cr_assert_eq(errno, ENOTCONN);
    cr_assert_eq(kz_future_state(b), KZ_DONE);

    kz_future_t c = kz_spawn_future(sleeper, NULL, &o);
    cr_assert_neq(c, 0);
    cr_assert_eq(kz_future_cancel(c), 0, "cancels the green thread on its hub");
    cr_assert_eq(kz_future_wait(c, NULL, 5), -1, "long before the sleeper's 10 s");
    cr_assert_eq(errno, ECANCELED);
    cr_assert_eq(kz_future_state(c), KZ_CANCELLED);
    cr_assert_eq(kz_future_cancel(c), -1);
    cr_assert_eq(errno, EALREADY);
    kz_future_free(a);
    kz_future_free(b);
    kz_future_free(c);
  }
}

HUBS(spawn_future_anywhere_and_wait_for_cancels_on_another_hub)
{
  struct kz_spawn_opts any = {.hub = KZ_HUB_ANY}, last = {.hub = KZ_HUB(n - 1)};
  kz_future_t f[8];
  void *r = NULL;
  cr_assert_eq(kz_set_hubs(n), 0);
  for (unsigned i = 0; i < 2 * n; i++)
    cr_assert_neq(f[i] = kz_spawn_future(add_one, (void *)(intptr_t)i, &any), 0, "%s", strerror(errno));
  for (unsigned i = 0; i < 2 * n; i++) {
    cr_assert_eq(kz_future_wait(f[i], &r, 10), 0);
    cr_assert_eq((intptr_t)r, (intptr_t)i + 1);
    kz_future_free(f[i]);
  }
  f[0] = kz_spawn_future(sleeper, NULL, &last);
  cr_assert_neq(f[0], 0);
  cr_assert_eq(kz_wait_for(f[0], NULL, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_future_state(f[0]), KZ_CANCELLED, "cancelled on its hub and waited for");
  kz_future_free(f[0]);
}

HUBS(green_future_of_another_hubs_green_thread)
{
  cr_assert_eq(kz_set_hubs(n), 0);
  for (unsigned k = 1; k < n; k++) {
    struct kz_spawn_opts o = {.hub = KZ_HUB(k)};
    kz_green_t done = kz_spawn_with(add_one, (void *)20, &o), running = kz_spawn_with(sleeper, NULL, &o);
    kz_future_t f, g;
    void *r = NULL;
    cr_assert_neq(done, 0);
    cr_assert_neq(running, 0);
    for (int i = 0; i < 100000 && kz_state(done) != KZ_DONE; i++)
      kz_sleep(0.0001);
    cr_assert_eq(kz_state(done), KZ_DONE);
    f = kz_green_future(done); /* finished: complete at once */
    cr_assert_neq(f, 0, "hub %u: %s", k, strerror(errno));
    cr_assert_eq(kz_future_state(f), KZ_DONE);
    cr_assert_eq(kz_future_result(f, &r), 0);
    cr_assert_eq((intptr_t)r, 21);
    cr_assert_eq(kz_join(done, &r, 10), 0, "still joined as usual");
    cr_assert_eq(kz_green_future(done), 0);
    cr_assert_eq(errno, EINVAL, "released: stale");

    g = kz_green_future(running);
    cr_assert_neq(g, 0);
    cr_assert_eq(kz_future_state(g), KZ_PENDING);
    cr_assert_eq(kz_future_cancel(g), 0);
    cr_assert_eq(kz_future_wait(g, NULL, 5), -1);
    cr_assert_eq(errno, ECANCELED);
    cr_assert_eq(kz_join(running, NULL, 10), -1, "joinable as usual");
    cr_assert_eq(errno, ECANCELED);
    kz_future_free(f);
    kz_future_free(g);
  }
}

/* A cancel racing the green thread's finish on its hub: the future gets
   one outcome or the other, and a cancel that comes too late says so. */
HUBS(cancel_racing_the_finish_on_another_hub)
{
  struct kz_spawn_opts o = {.hub = KZ_HUB(n - 1)};
  int done = 0, cancelled = 0;
  cr_assert_eq(kz_set_hubs(n), 0);
  for (int i = 0; i < 300; i++) {
    kz_future_t f = kz_spawn_future(add_one, (void *)(intptr_t)i, &o);
    void *r = NULL;
    int c, w;
    cr_assert_neq(f, 0);
    if (i & 1)
      kz_sleep(0.00001 * (i % 7));
    c = kz_future_cancel(f);
    cr_assert(c == 0 || errno == EALREADY, "%s", strerror(errno));
    w = kz_future_wait(f, &r, 10);
    if (w == 0) {
      cr_assert_eq((intptr_t)r, i + 1);
      done++;
    } else {
      cr_assert_eq(errno, ECANCELED);
      cr_assert_eq(c, 0, "cancelled only when asked");
      cancelled++;
    }
    kz_future_free(f);
  }
  cr_assert_eq(done + cancelled, 300);
}
