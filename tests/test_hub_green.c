/* test_hub_green.c: green thread lifecycle: spawn, join (results, errors,
 * timeouts, every misuse), detach, cancel, states, names, enumeration,
 * kz_run, kz_exit, delayed start, deadlock detection. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include "internal.h" /* kz__park: a park nothing can end */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static void *add_one(void *arg) { return (char *)arg + 1; }
static void *sleeper(void *arg)
{
  int r = kz_sleep(arg ? *(double *)arg : 10.0);
  return (void *)(intptr_t)(r == 0 ? 0 : errno);
}
static void *failer(void *arg) { kz_fail(EPIPE); }
static void *exiter(void *arg)
{
  kz_exit((void *)7);
}

Test(green, join_returns_result)
{
  void *r = NULL;
  kz_green_t g = kz_spawn(add_one, (void *)41);
  cr_assert_neq(g, 0);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 42);
}

Test(green, join_misuse)
{
  kz_green_t g = kz_spawn(add_one, NULL);
  errno = 0;
  cr_assert_eq(kz_join(0, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_join(12345, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EINVAL, "a made-up handle is rejected, not dereferenced");
  cr_assert_eq(kz_join(kz_self(), NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EDEADLK);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EINVAL, "joining twice");
  cr_assert_eq(kz_state(g), -1);
  cr_assert_eq(errno, EINVAL);
}

Test(green, join_detached_is_einval)
{
  struct kz_spawn_opts o = {.detached = 1};
  kz_green_t g = kz_spawn_with(add_one, NULL, &o);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EINVAL);
  kz_green_t h = kz_spawn(add_one, NULL);
  cr_assert_eq(kz_detach(h), 0);
  cr_assert_eq(kz_detach(h), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_join(h, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EINVAL);
  kz_yield(); /* both run and are released */
  cr_assert_eq(kz_state(h), -1, "a finished detached green thread's handle is stale");
  cr_assert_eq(kz_list(NULL, 0), 1u);
}

struct joiner {
  kz_green_t target;
  int r;
};

static void *join_it(void *a)
{
  struct joiner *j = a;
  j->r = kz_join(j->target, NULL, KZ_FOREVER);
  return NULL;
}

Test(green, join_while_another_joins_is_einval)
{
  double t = 0.05;
  kz_green_t s = kz_spawn(sleeper, &t);
  struct joiner j = {s, -5};
  kz_green_t first = kz_spawn(join_it, &j);
  kz_yield(); /* first is now joining s */
  cr_assert_eq(kz_join(s, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_join(first, NULL, KZ_FOREVER), 0);
  cr_assert_eq(j.r, 0);
}

Test(green, join_timeout_leaves_target_joinable)
{
  double t = 0.05;
  void *r = (void *)1;
  kz_green_t g = kz_spawn(sleeper, &t);
  double t0 = kz_now();
  cr_assert_eq(kz_join(g, &r, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_geq(kz_now() - t0, 0.01);
  cr_assert_eq(kz_join(g, &r, 0), -1, "polling join");
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0);
  cr_assert_null(r);
}

Test(green, failure_is_reported_by_join)
{
  cr_assert_eq(kz_join(kz_spawn(failer, NULL), NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, EPIPE);
}

Test(green, exit_sets_result)
{
  void *r;
  cr_assert_eq(kz_join(kz_spawn(exiter, NULL), &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 7);
}

Test(green, cancel_blocked_green_thread)
{
  void *r = NULL;
  kz_green_t g = kz_spawn(sleeper, NULL);
  kz_yield();
  cr_assert_eq(kz_state(g), KZ_BLOCKED);
  cr_assert_eq(kz_cancel(g), 0);
  cr_assert_eq(kz_cancel(g), 0, "cancelling twice is harmless");
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq((intptr_t)r, ECANCELED, "its kz_sleep failed with ECANCELED, and its result is kept");
}

static int ran;
static void *mark_ran(void *arg)
{
  ran = 1;
  return (void *)1;
}

Test(green, cancelled_before_start_never_runs)
{
  void *r = (void *)5;
  ran = 0;
  kz_green_t g = kz_spawn(mark_ran, NULL);
  cr_assert_eq(kz_state(g), KZ_PENDING);
  cr_assert_eq(kz_cancel(g), 0);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(ran, 0);
  cr_assert_null(r);
}

static void *cancel_checker(void *arg)
{
  kz_cancel(kz_self());
  int a = kz_sleep(0.001) == -1 && errno == ECANCELED;
  int b = kz_sleep(0.001) == -1 && errno == ECANCELED; /* and every later call */
  return (void *)(intptr_t)(a && b);
}

Test(green, cancellation_is_sticky)
{
  void *r;
  cr_assert_eq(kz_join(kz_spawn(cancel_checker, NULL), &r, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq((intptr_t)r, 1);
}

Test(green, cancel_finished_is_harmless)
{
  kz_green_t g = kz_spawn(add_one, NULL);
  kz_yield();
  cr_assert_eq(kz_state(g), KZ_DONE);
  cr_assert_eq(kz_cancel(g), 0);
  cr_assert_eq(kz_state(g), KZ_DONE);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(kz_cancel(g), -1);
  cr_assert_eq(errno, EINVAL);
}

Test(green, states)
{
  double t = 0.02;
  kz_green_t g = kz_spawn(sleeper, &t);
  cr_assert_eq(kz_state(g), KZ_PENDING);
  cr_assert_str_eq(kz_state_name(kz_state(g)), "pending");
  kz_yield();
  cr_assert_eq(kz_state(g), KZ_BLOCKED);
  cr_assert_eq(kz_state(kz_self()), KZ_RUNNING);
  kz_sleep(0.05);
  cr_assert_eq(kz_state(g), KZ_DONE);
  cr_assert_str_eq(kz_state_name(KZ_CANCELLED), "cancelled");
  cr_assert_str_eq(kz_state_name(99), "invalid");
  kz_join(g, NULL, KZ_FOREVER);
}

Test(green, names)
{
  char buf[32];
  struct kz_spawn_opts o = {.name = "a-very-long-name-indeed"};
  kz_green_t g = kz_spawn_with(add_one, NULL, &o);
  cr_assert_eq(kz_get_name(g, buf, sizeof buf), 0);
  cr_assert_str_eq(buf, "a-very-long-nam", "truncated to 15 bytes");
  cr_assert_eq(kz_set_name(g, "worker"), 0);
  cr_assert_eq(kz_get_name(g, buf, sizeof buf), 0);
  cr_assert_str_eq(buf, "worker");
  cr_assert_eq(kz_get_name(g, buf, 3), -1);
  cr_assert_eq(errno, ERANGE);
  cr_assert_str_eq(buf, "wo");
  kz_green_t h = kz_spawn(add_one, NULL);
  cr_assert_eq(kz_get_name(h, buf, sizeof buf), 0);
  cr_assert_eq(strncmp(buf, "green-", 6), 0, "default name %s", buf);
  cr_assert_eq(kz_get_name(kz_self(), buf, sizeof buf), 0);
  cr_assert_str_eq(buf, "main");
  kz_join(g, NULL, KZ_FOREVER);
  kz_join(h, NULL, KZ_FOREVER);
}

Test(green, list_live_green_threads)
{
  kz_green_t a = kz_spawn(sleeper, NULL), b = kz_spawn(sleeper, NULL), out[8];
  kz_yield();
  cr_assert_eq(kz_list(out, 8), 3u);
  cr_assert_eq(out[0], kz_self(), "main first");
  cr_assert(out[1] == a && out[2] == b);
  cr_assert_eq(kz_list(out, 1), 3u, "returns the full count even when max is smaller");
  kz_cancel(a);
  kz_cancel(b);
  kz_join(a, NULL, KZ_FOREVER);
  kz_join(b, NULL, KZ_FOREVER);
  cr_assert_eq(kz_list(NULL, 0), 1u);
}

static void *stamp(void *arg)
{
  *(double *)arg = kz_now();
  return NULL;
}

Test(green, delayed_start)
{
  double started = 0, t0 = kz_now();
  struct kz_spawn_opts o = {.delay = 0.03};
  kz_green_t g = kz_spawn_with(stamp, &started, &o);
  kz_yield();
  cr_assert_eq(kz_state(g), KZ_PENDING, "not started before its delay");
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_geq(started - t0, 0.03);
}

/* ---- kz_run ---- */

static kz_green_t leftover;
static void *run_main(void *arg)
{
  leftover = kz_spawn(sleeper, NULL); /* still sleeping when main returns */
  kz_yield();
  return (void *)(intptr_t)(kz_run(add_one, NULL, NULL) == -1 && errno == EBUSY);
}

static void *run_in_thread(void *arg)
{
  void *r = NULL;
  int rc = kz_run(run_main, NULL, &r);
  int *out = arg;
  out[0] = rc;
  out[1] = (int)(intptr_t)r;
  out[2] = kz_state(leftover) == -1; /* reaped: handle stale */
  out[3] = (int)kz_list(NULL, 0);    /* the hub kz_run created is gone */
  return NULL;
}

Test(green, run_cancels_leftovers_and_tears_down)
{
  int out[4] = {-5, -5, -5, -5};
  pthread_t t;
  pthread_create(&t, NULL, run_in_thread, out);
  pthread_join(t, NULL);
  cr_assert_eq(out[0], 0);
  cr_assert_eq(out[1], 1, "nested kz_run fails with EBUSY");
  cr_assert_eq(out[2], 1);
  cr_assert_eq(out[3], 0);
}

static void *run_fail(void *arg) { kz_fail(ENOENT); }

Test(green, run_reports_main_error)
{
  cr_assert_eq(kz_run(run_fail, NULL, NULL), -1);
  cr_assert_eq(errno, ENOENT);
}

/* ---- deadlock and misuse from callbacks ---- */

static kz_green_t peer_a, peer_b;
static void *join_peer_a(void *arg) { return (void *)(intptr_t)kz_join(peer_a, NULL, KZ_FOREVER); }
static void *join_peer_b(void *arg) { return (void *)(intptr_t)kz_join(peer_b, NULL, KZ_FOREVER); }

Test(green, deadlock_is_reported_not_hung, .timeout = 10)
{
  /* a and b join each other; main then parks with no way to be woken. */
  peer_a = kz_spawn(join_peer_b, NULL);
  peer_b = kz_spawn(join_peer_a, NULL);
  kz_yield();
  cr_assert_eq(kz_state(peer_a), KZ_BLOCKED);
  cr_assert_eq(kz_state(peer_b), KZ_BLOCKED);
  cr_assert_eq(kz__park(-1), -EDEADLK, "nothing can ever wake anyone");
  kz_cancel(peer_a);
  kz_cancel(peer_b);
  kz_yield(); /* let both see their cancellation */
  /* a finishes first and b, whose join then finds a finished, reaps it. */
  cr_assert_eq(kz_join(peer_b, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(kz_state(peer_a), -1);
}

static int cb_rc, cb_err;
static void blocking_in_callback(void *arg)
{
  cb_rc = kz_sleep(0.01);
  cb_err = errno;
  (void)!write(*(int *)arg, "x", 1); /* tell the main green thread it ran */
}

Test(green, blocking_in_hub_callback_is_eperm)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  kz_call_soon(blocking_in_callback, &p[1]);
  cr_assert_eq(kz_wait_fd(p[0], KZ_READ, 10.0), KZ_READ);
  cr_assert_eq(cb_rc, -1);
  cr_assert_eq(cb_err, EPERM);
}

Test(green, spawn_null_function_is_einval)
{
  errno = 0;
  cr_assert_eq(kz_spawn(NULL, NULL), 0);
  cr_assert_eq(errno, EINVAL);
}

/* ---- NaN and huge timeouts (kz__deadline) ---- */

Test(green, nan_timeouts_are_einval_when_a_call_waits)
{
  static double brief = 0.01;
  kz_green_t g = kz_spawn(sleeper, &brief);
  errno = 0;
  cr_assert_eq(kz_sleep(__builtin_nan("")), -1);
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_eq(kz_join(g, NULL, __builtin_nan("")), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0, "the green thread is still joinable");
}

Test(green, infinite_and_huge_timeouts_wait_without_limit)
{
  static double brief = 0.01;
  cr_assert_eq(kz_join(kz_spawn(sleeper, &brief), NULL, __builtin_inf()), 0);
  cr_assert_eq(kz_join(kz_spawn(sleeper, &brief), NULL, 1e300), 0);
}
