/* test_hub_timer.c: sleeping, callbacks on the hub (soon/later/at) and their
 * ordering and cancellation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

static int log_[16], nlog;
static void note(void *arg) { log_[nlog++] = (int)(intptr_t)arg; }

static void signal_pipe(void *arg) { (void)!write(*(int *)arg, "x", 1); }

/* Park until every soon-callback scheduled so far has run: one more callback,
   scheduled last, writes to a pipe the caller waits on. */
static void run_soon_callbacks(void)
{
  static int p[2] = {-1, -1};
  char c;
  if (p[0] < 0)
    cr_assert_eq(pipe(p), 0);
  kz_call_soon(signal_pipe, &p[1]);
  cr_assert_eq(kz_wait_fd(p[0], KZ_READ, 10.0), KZ_READ);
  cr_assert_eq(read(p[0], &c, 1), 1);
}

Test(timer, call_soon_runs_in_order_after_ready_green_threads)
{
  nlog = 0;
  kz_call_soon(note, (void *)1);
  kz_call_soon(note, (void *)2);
  kz_call_soon(note, (void *)3);
  cr_assert_eq(nlog, 0, "nothing runs before the caller blocks or yields");
  run_soon_callbacks();
  cr_assert_eq(nlog, 3);
  cr_assert(log_[0] == 1 && log_[1] == 2 && log_[2] == 3);
}

static void note_and_signal(void *arg)
{
  note((void *)30);
  signal_pipe(arg);
}

/* The deadlines come from one clock reading: kz_call_later's count from
   each call, so three calls spaced 10 ms apart would order by time only if
   they were made within 10 ms of each other, which Valgrind does not
   promise (kz_call_at is kz_call_later from now to the given time). */
Test(timer, timed_calls_run_in_deadline_order)
{
  int p[2];
  double base = kz_now();
  cr_assert_eq(pipe(p), 0);
  nlog = 0;
  kz_call_at(base + 0.03, note_and_signal, &p[1]);
  kz_call_at(base + 0.01, note, (void *)10);
  kz_call_at(base + 0.02, note, (void *)20);
  cr_assert_eq(kz_wait_fd(p[0], KZ_READ, 10.0), KZ_READ);
  cr_assert_eq(nlog, 3);
  cr_assert(log_[0] == 10 && log_[1] == 20 && log_[2] == 30, "%d %d %d", log_[0], log_[1], log_[2]);
}

Test(timer, cancel)
{
  nlog = 0;
  kz_call_t a = kz_call_later(0.01, note, (void *)1);
  kz_call_t b = kz_call_soon(note, (void *)2);
  kz_call_t c = kz_call_soon(note, (void *)3);
  cr_assert_eq(kz_call_cancel(a), 0);
  cr_assert_eq(kz_call_cancel(b), 0);
  cr_assert_eq(kz_call_cancel(b), -1, "cancelled twice");
  cr_assert_eq(errno, EINVAL);
  kz_sleep(0.03); /* past a's time: it would have run */
  run_soon_callbacks();
  cr_assert_eq(nlog, 1);
  cr_assert_eq(log_[0], 3);
  cr_assert_eq(kz_call_cancel(c), -1, "already ran");
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_call_soon(NULL, NULL), 0);
  cr_assert_eq(errno, EINVAL);
}

static double woke_deadline[16];
static int nwoke;

static void *sleep_and_log(void *arg)
{
  int ms = (int)(intptr_t)arg;
  double t0 = kz_now();
  kz_sleep(ms / 1000.0);
  if (kz_now() - t0 < ms / 1000.0)
    return (void *)1; /* woke early */
  woke_deadline[nwoke++] = t0 + ms / 1000.0;
  return NULL;
}

Test(timer, a_time_that_is_not_a_number_is_refused)
{
  errno = 0;
  cr_assert_eq(kz_call_later(NAN, note, NULL), 0);
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_eq(kz_call_at(NAN, note, NULL), 0);
  cr_assert_eq(errno, EINVAL);
}

Test(timer, sleepers_wake_in_deadline_order_never_early)
{
  int ms[] = {300, 100, 200, 50, 250};
  kz_green_t g[5];
  nwoke = 0;
  for (int i = 0; i < 5; i++)
    g[i] = kz_spawn(sleep_and_log, (void *)(intptr_t)ms[i]);
  for (int i = 0; i < 5; i++) {
    void *r;
    cr_assert_eq(kz_join(g[i], &r, KZ_FOREVER), 0);
    cr_assert_null(r, "sleep of %d ms returned early", ms[i]);
  }
  cr_assert_eq(nwoke, 5);
  for (int i = 1; i < 5; i++)
    cr_assert_lt(woke_deadline[i - 1], woke_deadline[i], "woken out of deadline order at %d", i);
}

static void *busy_then_sleep(void *arg)
{
  volatile unsigned long x = 0;
  double t0 = kz_now();
  while (kz_now() - t0 < 0.02) /* hold the hub: libev's cached time goes stale */
    x++;
  t0 = kz_now();
  kz_sleep(0.01);
  return (void *)(intptr_t)(kz_now() - t0 >= 0.01);
}

Test(timer, sleep_after_long_run_is_not_short)
{
  void *r;
  cr_assert_eq(kz_join(kz_spawn(busy_then_sleep, NULL), &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 1);
}

static void *sleep_20ms(void *arg) { return (void *)(intptr_t)kz_sleep(0.02); }

Test(timer, concurrent_sleeps_take_the_longest_not_the_sum)
{
  kz_green_t g[100];
  double t0 = kz_now();
  for (int i = 0; i < 100; i++)
    g[i] = kz_spawn(sleep_20ms, NULL);
  for (int i = 0; i < 100; i++) {
    void *r;
    cr_assert_eq(kz_join(g[i], &r, KZ_FOREVER), 0);
    cr_assert_null(r);
  }
  double took = kz_now() - t0;
  cr_assert_geq(took, 0.02);
  cr_assert_lt(took, 1.0, "100 sleeps of 20 ms took %.3f s", took);
}

Test(timer, now_is_monotonic)
{
  double a = kz_now(), b = kz_now();
  cr_assert_geq(b, a);
  cr_assert_gt(a, 0);
}
