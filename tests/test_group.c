/* test_group.c: groups bounded at N (spawn waits, try-spawn fails with
 * EAGAIN), join all, cancel all, errors, and kz_map's ordered results and
 * fail-fast. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <stdint.h>

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
