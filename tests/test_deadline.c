/* test_deadline.c: scoped deadlines (every blocking call in the scope fails
 * with ETIMEDOUT once it passes; nesting, the tightest winning; leave tells
 * whose deadline expired) and wait_for (a timeout cancels the target). */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <stdint.h>
#include <unistd.h>

Test(deadline, covers_every_blocking_call_in_the_scope)
{
  int fds[2];
  struct kz_event *ev = kz_event_new();
  cr_assert_eq(pipe(fds), 0);
  double t0 = kz_now();
  kz_scope_t s = kz_deadline_enter(0.03);
  cr_assert_neq(s, 0);
  cr_assert_eq(kz_event_wait(ev, KZ_FOREVER), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_geq(kz_now() - t0, 0.03);
  cr_assert_eq(kz_wait_fd(fds[0], KZ_READ, KZ_FOREVER), -1, "also descriptor waits");
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_sleep(1), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_deadline_leave(s), 1, "this scope's deadline expired");
  cr_assert_eq(kz_event_wait(ev, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_sleep(0.01), 0, "outside the scope, calls work again");
  kz_event_free(ev);
}

Test(deadline, nested_the_tightest_wins)
{
  kz_scope_t outer = kz_deadline_enter(0.02);
  kz_scope_t inner = kz_deadline_enter(10); /* looser: changes nothing */
  double t0 = kz_now();
  cr_assert_eq(kz_sleep(5), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_lt(kz_now() - t0, 1.0);
  cr_assert_eq(kz_deadline_leave(inner), 0, "not the inner scope's doing");
  cr_assert_eq(kz_deadline_leave(outer), 1);

  outer = kz_deadline_enter(10);
  inner = kz_deadline_enter(0.01);
  cr_assert_eq(kz_sleep(5), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_deadline_leave(inner), 1);
  cr_assert_gt(kz_deadline_left(), 5, "the outer deadline is back");
  cr_assert_eq(kz_sleep(0.001), 0);
  cr_assert_eq(kz_deadline_leave(outer), 0);
  cr_assert_eq(kz_deadline_left(), KZ_FOREVER);
}

Test(deadline, a_scope_that_does_not_expire)
{
  kz_scope_t s = kz_deadline_enter(10);
  cr_assert_eq(kz_sleep(0.001), 0);
  cr_assert_eq(kz_deadline_leave(s), 0);
  cr_assert_eq(kz_deadline_leave(0), -1);
  cr_assert_eq(errno, EINVAL);
}

static int cleaned;
static void *slow(void *arg)
{
  if (kz_sleep(10) == -1 && errno == ECANCELED)
    cleaned = 1;
  return (void *)1;
}

static void *quick(void *arg) { return (void *)5; }

Test(deadline, wait_for_cancels_the_target_on_timeout)
{
  kz_green_t g = kz_spawn(slow, NULL);
  void *r = NULL;
  cr_assert_eq(kz_wait_for(g, &r, 0.02), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(cleaned, 1, "the target saw its cancellation and finished");
  cr_assert_eq(kz_state(g), -1, "and was released");
  cr_assert_eq(errno, EINVAL);
  g = kz_spawn(quick, NULL);
  cr_assert_eq(kz_wait_for(g, &r, 1), 0);
  cr_assert_eq((intptr_t)r, 5);
}

Test(deadline, wait_for_a_future)
{
  kz_future_t f = kz_spawn_future(slow, NULL, NULL);
  cleaned = 0;
  cr_assert_eq(kz_wait_for(f, NULL, 0.02), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_future_state(f), KZ_CANCELLED);
  cr_assert_eq(cleaned, 1);
  kz_future_free(f);
}

static int cb_err;
static void in_callback(void *arg) { cb_err = kz_deadline_enter(1) == 0 ? errno : 0; }

Test(deadline, misuse)
{
  kz_call_soon(in_callback, NULL);
  kz_sleep(0.001);
  cr_assert_eq(cb_err, EPERM, "no scope on the hub itself");
}

static void *enter_nan(void *arg)
{
  (void)arg;
  errno = 0;
  return (void *)(intptr_t)(kz_deadline_enter(__builtin_nan("")) == 0 ? errno : 0);
}

Test(deadline, a_nan_timeout_is_einval)
{
  void *r;
  cr_assert_eq(kz_join(kz_spawn(enter_nan, NULL), &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, EINVAL);
}
