/* test_remote.c: hubs on other OS threads: callbacks and green threads
 * submitted from plain OS threads, futures waited on with timeouts, stop
 * and join; a stress run (many threads, thousands of items: nothing lost,
 * nothing run twice); misuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define P(i) ((void *)(intptr_t)(i))

static pthread_t remote_thread;
static void note_thread(void *arg)
{
  remote_thread = pthread_self();
  kz_future_set_result(*(kz_future_t *)arg, NULL);
}

static void *add_one(void *arg)
{
  kz_sleep(0.001); /* a real green thread: it may block */
  return (char *)arg + 1;
}

Test(remote, callbacks_and_green_threads_run_on_the_remote_thread)
{
  struct kz_remote *r = kz_remote_start();
  kz_future_t done = kz_future_new(); /* owned by this (the test's) hub */
  void *res = NULL;
  cr_assert_not_null(r);
  cr_assert_eq(kz_remote_call_soon(r, note_thread, &done), 0);
  cr_assert_eq(kz_future_wait(done, NULL, 10), 0);
  cr_assert(!pthread_equal(remote_thread, pthread_self()));
  kz_future_t f = kz_remote_spawn(r, add_one, P(41));
  cr_assert_neq(f, 0);
  cr_assert_eq(kz_future_wait(f, &res, 10), 0);
  cr_assert_eq((intptr_t)res, 42);
  cr_assert_eq(kz_future_free(f), 0);
  cr_assert_eq(kz_remote_stop(r), 0);
  kz_remote_free(r);
  kz_future_free(done);
}

static void *sleepy(void *arg)
{
  kz_sleep(10);
  return NULL;
}

static void *plain_wait(void *arg)
{
  kz_future_t f = *(kz_future_t *)arg;
  intptr_t a = kz_future_wait(f, NULL, 0.02) == -1 ? errno : 0;
  return P(a);
}

Test(remote, plain_thread_waits_with_timeout_and_stop_cancels)
{
  struct kz_remote *r = kz_remote_start();
  kz_future_t f = kz_remote_spawn(r, sleepy, NULL);
  pthread_t t;
  void *err;
  cr_assert_eq(pthread_create(&t, NULL, plain_wait, &f), 0);
  pthread_join(t, &err);
  cr_assert_eq((intptr_t)err, ETIMEDOUT);
  double t0 = kz_now();
  cr_assert_eq(kz_remote_stop(r), 0);
  kz_remote_free(r);
  cr_assert_lt(kz_now() - t0, 5, "stop cancels the sleeper instead of waiting 10 s");
  cr_assert_eq(kz_future_state(f), KZ_CANCELLED);
  cr_assert_eq(kz_future_set_result(f, NULL), -1);
  cr_assert_eq(errno, EINVAL, "a green thread's future");
  kz_future_free(f);
}

#define THREADS 8
#define PER_THREAD 5000

static atomic_int hits[THREADS * PER_THREAD];
static atomic_int spawned_ok;
static struct kz_remote *stress_r;

static void hit(void *arg) { atomic_fetch_add(&hits[(intptr_t)arg], 1); }

static void *twice(void *arg) { return P((intptr_t)arg * 2); }

static void *submitter(void *arg)
{
  intptr_t base = (intptr_t)arg * PER_THREAD;
  kz_future_t f[16];
  for (intptr_t i = 0; i < PER_THREAD; i++)
    cr_assert_eq(kz_remote_call_soon(stress_r, hit, P(base + i)), 0);
  for (int i = 0; i < 16; i++)
    f[i] = kz_remote_spawn(stress_r, twice, P(base + i));
  for (int i = 0; i < 16; i++) {
    void *res = NULL;
    cr_assert_eq(kz_future_wait(f[i], &res, 30), 0);
    if ((intptr_t)res == (base + i) * 2)
      atomic_fetch_add(&spawned_ok, 1);
    kz_future_free(f[i]);
  }
  return NULL;
}

Test(remote, stress_nothing_lost_nothing_twice, .timeout = 120)
{
  pthread_t t[THREADS];
  stress_r = kz_remote_start();
  for (intptr_t i = 0; i < THREADS; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, submitter, P(i)), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  cr_assert_eq(kz_remote_stop(stress_r), 0, "stop runs every accepted callback first");
  kz_remote_free(stress_r);
  for (int i = 0; i < THREADS * PER_THREAD; i++)
    cr_assert_eq(atomic_load(&hits[i]), 1, "item %d ran %d times", i, atomic_load(&hits[i]));
  cr_assert_eq(atomic_load(&spawned_ok), THREADS * 16);
}

static atomic_int accepted, ran;
static void count_run(void *arg) { atomic_fetch_add(&ran, 1); }

static void *racer(void *arg)
{
  for (int i = 0; i < 20000; i++) {
    if (kz_remote_call_soon(stress_r, count_run, NULL) == 0)
      atomic_fetch_add(&accepted, 1);
    else {
      cr_assert_eq(errno, EPIPE);
      break;
    }
  }
  return NULL;
}

Test(remote, stop_racing_submitters_runs_exactly_what_was_accepted, .timeout = 120)
{
  pthread_t t[4];
  stress_r = kz_remote_start();
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, racer, NULL);
  while (atomic_load(&accepted) < 1000)
    sched_yield();
  cr_assert_eq(kz_remote_stop(stress_r), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL); /* they saw EPIPE on the stopped, still valid remote */
  kz_remote_free(stress_r);
  cr_assert_eq(atomic_load(&ran), atomic_load(&accepted));
}

static void try_stop_here(void *arg) { *(int *)arg = kz_remote_stop(stress_r) == -1 ? errno : 0; }

Test(remote, misuse)
{
  int err = -1;
  cr_assert_eq(kz_remote_call_soon(NULL, hit, NULL), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_remote_spawn(NULL, twice, NULL), 0);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_remote_stop(NULL), -1);
  cr_assert_eq(errno, EINVAL);
  stress_r = kz_remote_start();
  kz_remote_call_soon(stress_r, try_stop_here, &err);
  kz_future_t done = kz_remote_spawn(stress_r, add_one, NULL); /* runs after the callback */
  kz_future_wait(done, NULL, 10);
  cr_assert_eq(err, EDEADLK, "a hub cannot stop and join itself");
  cr_assert_eq(kz_remote_stop(stress_r), 0);
  cr_assert_eq(kz_remote_stop(stress_r), -1, "stopped already");
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_remote_call_soon(stress_r, hit, NULL), -1, "a stopped remote refuses");
  cr_assert_eq(errno, EPIPE);
  kz_remote_free(stress_r);
  kz_future_free(done);
}
