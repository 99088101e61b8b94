/* test_group.c: groups bounded at N (spawn waits, try-spawn fails with
 * EAGAIN), join all, cancel all, errors, and kz_map's ordered results and
 * fail-fast; and groups shared by green threads of several hubs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define P(i) ((void *)(intptr_t)(i))

static int running, peak, finished;

static void *member(void *arg)
{
  if (++running > peak)
    peak = running;
  kz_sleep((double)(intptr_t)arg / 1000.0);
  running--;
  finished++;
  return NULL;
}

Test(group, bounded_spawn_waits_and_join_waits_for_all)
{
  struct kz_group *grp = kz_group_new(3);
  for (int i = 0; i < 10; i++)
    cr_assert_neq(kz_group_spawn(grp, member, P(5), KZ_FOREVER), 0);
  cr_assert_leq(kz_group_size(grp), 3);
  cr_assert_eq(kz_group_join(grp, KZ_FOREVER), 0);
  cr_assert_eq(peak, 3, "never more than the limit at once");
  cr_assert_eq(finished, 10);
  cr_assert_eq(kz_group_size(grp), 0);
  cr_assert_eq(kz_group_free(grp), 0);
}

Test(group, try_spawn_and_spawn_timeout_when_full)
{
  struct kz_group *grp = kz_group_new(1);
  cr_assert_neq(kz_group_try_spawn(grp, member, P(50)), 0);
  cr_assert_eq(kz_group_try_spawn(grp, member, P(1)), 0);
  cr_assert_eq(errno, EAGAIN);
  cr_assert_eq(kz_group_spawn(grp, member, P(1), 0.01), 0);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_group_free(grp), -1);
  cr_assert_eq(errno, EBUSY);
  cr_assert_eq(kz_group_join(grp, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_group_join(grp, KZ_FOREVER), 0);
  kz_group_free(grp);
}

static int cancelled;
static void *sleeper(void *arg)
{
  if (kz_sleep(10) == -1 && errno == ECANCELED)
    cancelled++;
  return NULL;
}

Test(group, cancel_all)
{
  struct kz_group *grp = kz_group_new(0);
  for (int i = 0; i < 5; i++)
    kz_group_spawn(grp, sleeper, NULL, 0);
  kz_yield();
  double t0 = kz_now();
  cr_assert_eq(kz_group_cancel(grp), 0);
  cr_assert_eq(kz_group_join(grp, KZ_FOREVER), 0, "cancellations are not errors");
  cr_assert_lt(kz_now() - t0, 1.0);
  cr_assert_eq(cancelled, 5);
  kz_group_free(grp);
}

static void *failer(void *arg) { kz_fail(EPROTO); }

Test(group, join_reports_the_first_error)
{
  struct kz_group *grp = kz_group_new(0);
  kz_group_spawn(grp, member, P(1), 0);
  kz_group_spawn(grp, failer, NULL, 0);
  cr_assert_eq(kz_group_join(grp, KZ_FOREVER), -1);
  cr_assert_eq(errno, EPROTO);
  kz_group_free(grp);
}

static void *square(void *arg)
{
  intptr_t x = (intptr_t)arg;
  if (++running > peak)
    peak = running;
  kz_sleep((double)(x % 3) / 1000.0);
  running--;
  if (x == 13)
    kz_fail(EDOM);
  return P(x * x);
}

Test(group, map_returns_ordered_results_with_bounded_concurrency)
{
  void *args[20], *res[20];
  for (int i = 0; i < 20; i++)
    args[i] = P(i);
  cr_assert_eq(kz_map(square, args, res, 12, 4, KZ_FOREVER), 0);
  for (int i = 0; i < 12; i++)
    cr_assert_eq((intptr_t)res[i], i * i);
  cr_assert_eq(peak, 4);
  cr_assert_eq(kz_map(square, args, res, 20, 4, KZ_FOREVER), -1);
  cr_assert_eq(errno, EDOM, "the first error is returned and the rest cancelled");
  cr_assert_eq(kz_list(NULL, 0), 1u, "nothing left running");
}

Test(group, map_timeout)
{
  void *args[3] = {P(10000), P(10000), P(10000)}, *res[3];
  cr_assert_eq(kz_map(member, args, res, 3, 2, 0.02), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_list(NULL, 0), 1u, "the running ones were cancelled and waited for");
}

Test(group, misuse)
{
  cr_assert_eq(kz_group_spawn(NULL, member, NULL, 0), 0);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_map(NULL, NULL, NULL, 0, 0, 0), -1);
  cr_assert_eq(errno, EINVAL);
}

/* n so large that n times an item's size overflows: ENOMEM, not a heap
   overflow through a wrapped allocation. */
static void *identity(void *arg) { return arg; }

Test(group, map_of_an_impossible_size_is_enomem)
{
  static void *args[1], *results[1];
  errno = 0;
  cr_assert_eq(kz_map(identity, args, results, SIZE_MAX / 8 + 2, 0, KZ_FOREVER), -1);
  cr_assert_eq(errno, ENOMEM);
}

/* ---- Across hubs ---------------------------------------------------------------- */

#define MAXHUBS 4
#define LIMIT 3
static struct kz_group *xgrp;
static _Atomic int xrunning, xpeak, xfinished;

static void *xmember(void *arg)
{
  int n = ++xrunning, p = xpeak;
  while (n > p && !atomic_compare_exchange_weak(&xpeak, &p, n))
    ;
  kz_sleep(0.001);
  xrunning--;
  xfinished++;
  return NULL;
}

/* Each hub's spawner puts 20 members into the shared group. */
static void *spawner(void *arg)
{
  for (int i = 0; i < 20; i++)
    if (!kz_group_spawn(xgrp, xmember, NULL, 30))
      return P(1);
  return NULL;
}

static void group_across(int hubs)
{
  struct kz_remote *r[MAXHUBS];
  kz_future_t f[MAXHUBS];
  void *res;
  xgrp = kz_group_new(LIMIT);
  xrunning = xpeak = xfinished = 0;
  for (int i = 0; i < hubs; i++) {
    cr_assert_not_null(r[i] = kz_remote_start());
    f[i] = kz_remote_spawn(r[i], spawner, NULL);
  }
  for (int i = 0; i < hubs; i++) {
    cr_assert_eq(kz_future_wait(f[i], &res, 60), 0);
    cr_assert_null(res, "a spawn failed: %s", strerror(errno));
  }
  cr_assert_eq(kz_group_join(xgrp, 60), 0, "the test's hub joins members of every hub");
  cr_assert_eq(xfinished, 20 * hubs);
  cr_assert_leq(xpeak, LIMIT, "the bound holds across hubs");
  cr_assert_eq(kz_group_size(xgrp), 0);
  cr_assert_eq(kz_group_free(xgrp), 0);
  for (int i = 0; i < hubs; i++) {
    kz_future_free(f[i]);
    kz_remote_free(r[i]);
  }
}

Test(group, spawners_of_2_hubs_share_the_bound) { group_across(2); }
Test(group, spawners_of_4_hubs_share_the_bound) { group_across(4); }

static void *sleep_in_group(void *arg)
{
  xrunning++;
  kz_sleep(30);
  return NULL;
}

static void *spawn_sleepers(void *arg)
{
  for (int i = 0; i < 2; i++)
    if (!kz_group_spawn(xgrp, sleep_in_group, NULL, 30))
      return P(1);
  return NULL;
}

static void *fail_in_group(void *arg) { kz_fail(ENOTCONN); }

static void *spawn_failer(void *arg)
{
  return kz_group_spawn(xgrp, fail_in_group, NULL, 30) ? NULL : P(1);
}

static void *spawn_when_full(void *arg)
{
  return (void *)(intptr_t)(kz_group_spawn(xgrp, xmember, NULL, 0.05) ? 0 : errno);
}

Test(group, cancel_reaches_members_of_other_hubs_and_errors_come_back)
{
  struct kz_remote *a = kz_remote_start(), *b = kz_remote_start();
  void *res;
  xgrp = kz_group_new(4);
  xrunning = 0;
  kz_future_t fa = kz_remote_spawn(a, spawn_sleepers, NULL);
  kz_future_t fb = kz_remote_spawn(b, spawn_sleepers, NULL);
  cr_assert_eq(kz_future_wait(fa, &res, 30), 0);
  cr_assert_null(res);
  cr_assert_eq(kz_future_wait(fb, &res, 30), 0);
  cr_assert_null(res);
  while (xrunning < 4)
    kz_sleep(0.001);
  kz_future_t full = kz_remote_spawn(a, spawn_when_full, NULL);
  cr_assert_eq(kz_future_wait(full, &res, 30), 0);
  cr_assert_eq((intptr_t)res, ETIMEDOUT, "a spawner of another hub waits for room, then times out");
  cr_assert_eq(kz_group_size(xgrp), 4);
  cr_assert_eq(kz_group_cancel(xgrp), 0);
  cr_assert_eq(kz_group_join(xgrp, 10), 0, "members of both hubs were cancelled long before 30 s");
  cr_assert_eq(kz_group_size(xgrp), 0);
  kz_future_t fail = kz_remote_spawn(b, spawn_failer, NULL);
  cr_assert_eq(kz_future_wait(fail, &res, 30), 0);
  cr_assert_eq(kz_group_join(xgrp, 10), -1);
  cr_assert_eq(errno, ENOTCONN, "a member of another hub's error");
  cr_assert_eq(kz_group_free(xgrp), 0);
  kz_future_free(fa);
  kz_future_free(fb);
  kz_future_free(full);
  kz_future_free(fail);
  kz_remote_free(a);
  kz_remote_free(b);
}
