/* test_sync.c: mutex, condition, event, semaphore and bounded semaphore:
 * exclusion, FIFO hand-off, timeouts, try-variants, cancellation, the
 * condition's relock, over-release of a bounded semaphore, misuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdint.h>

static struct kz_mutex *mu;
static int inside, max_inside, order[8], norder;

static void *locker(void *arg)
{
  cr_assert_eq(kz_mutex_lock(mu, KZ_FOREVER), 0);
  if (++inside > max_inside)
    max_inside = inside;
  order[norder++] = (int)(intptr_t)arg;
  kz_sleep(0.001);
  inside--;
  cr_assert_eq(kz_mutex_unlock(mu), 0);
  return NULL;
}

Test(sync, mutex_excludes_and_hands_off_in_fifo_order)
{
  kz_green_t g[5];
  mu = kz_mutex_new();
  cr_assert_not_null(mu);
  for (int i = 0; i < 5; i++)
    g[i] = kz_spawn(locker, (void *)(intptr_t)i);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(kz_join(g[i], NULL, KZ_FOREVER), 0);
  cr_assert_eq(max_inside, 1);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(order[i], i, "waiters served in arrival order");
  cr_assert_eq(kz_mutex_free(mu), 0);
}

static void *try_then_timeout(void *arg)
{
  intptr_t r1 = kz_mutex_trylock(mu) == -1 ? errno : 0;
  intptr_t r2 = kz_mutex_lock(mu, 0.02) == -1 ? errno : 0;
  return (void *)(r1 * 1000 + r2);
}

Test(sync, mutex_trylock_timeout_and_misuse)
{
  void *r;
  mu = kz_mutex_new();
  cr_assert_eq(kz_mutex_unlock(mu), -1);
  cr_assert_eq(errno, EPERM, "unlocking an unheld mutex");
  cr_assert_eq(kz_mutex_trylock(mu), 0);
  cr_assert_eq(kz_mutex_lock(mu, 1), -1);
  cr_assert_eq(errno, EDEADLK);
  kz_green_t g = kz_spawn(try_then_timeout, NULL);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, EBUSY * 1000 + ETIMEDOUT);
  cr_assert_eq(kz_mutex_free(mu), -1);
  cr_assert_eq(errno, EBUSY);
  cr_assert_eq(kz_mutex_unlock(mu), 0);
  cr_assert_eq(kz_mutex_lock(NULL, 1), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_mutex_free(mu), 0);
}

static void *unlock_elsewhere(void *arg)
{
  return (void *)(intptr_t)(kz_mutex_unlock(arg) == -1 ? errno : 0);
}

Test(sync, objects_of_another_hub_are_exdev)
{
  pthread_t t;
  void *r;
  mu = kz_mutex_new();
  kz_mutex_lock(mu, 1);
  cr_assert_eq(pthread_create(&t, NULL, unlock_elsewhere, mu), 0);
  pthread_join(t, &r);
  cr_assert_eq((intptr_t)r, EXDEV);
  kz_mutex_unlock(mu);
  kz_mutex_free(mu);
}

static void *cancelled_locker(void *arg)
{
  return (void *)(intptr_t)(kz_mutex_lock(mu, KZ_FOREVER) == -1 ? errno : 0);
}

Test(sync, a_cancelled_waiter_is_skipped_by_the_hand_off)
{
  void *r;
  mu = kz_mutex_new();
  kz_mutex_lock(mu, 1);
  kz_green_t a = kz_spawn(cancelled_locker, NULL), b = kz_spawn(locker, (void *)9);
  kz_yield(); /* both wait */
  kz_cancel(a);
  cr_assert_eq(kz_mutex_unlock(mu), 0);
  cr_assert_eq(kz_join(a, &r, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq((intptr_t)r, ECANCELED);
  cr_assert_eq(kz_join(b, NULL, KZ_FOREVER), 0, "the lock went to the live waiter");
  cr_assert_eq(order[0], 9);
  cr_assert_eq(kz_mutex_trylock(mu), 0, "and is free again");
}

static struct kz_cond *cv;
static int ready;

static void *cond_waiter(void *arg)
{
  int r = 0;
  kz_mutex_lock(mu, KZ_FOREVER);
  while (!ready && r == 0)
    r = kz_cond_wait(cv, mu, *(double *)arg);
  int err = r ? errno : 0;
  cr_assert_eq(kz_mutex_unlock(mu), 0, "the mutex is held again, also after a timeout");
  return (void *)(intptr_t)err;
}

Test(sync, condition_signal_broadcast_timeout)
{
  double forever = KZ_FOREVER, short_t = 0.02;
  void *r;
  mu = kz_mutex_new();
  cv = kz_cond_new();
  kz_green_t a = kz_spawn(cond_waiter, &forever), b = kz_spawn(cond_waiter, &forever);
  kz_yield();
  kz_mutex_lock(mu, 1);
  ready = 1;
  cr_assert_eq(kz_cond_broadcast(cv), 0);
  kz_mutex_unlock(mu);
  cr_assert_eq(kz_join(a, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 0);
  cr_assert_eq(kz_join(b, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, 0);
  ready = 0;
  kz_green_t c = kz_spawn(cond_waiter, &short_t);
  kz_yield();
  kz_mutex_lock(mu, 1); /* hold the mutex across c's timeout: its relock waits */
  kz_sleep(0.05);
  kz_mutex_unlock(mu);
  cr_assert_eq(kz_join(c, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, ETIMEDOUT);
  cr_assert_eq(kz_cond_wait(cv, mu, 1), -1);
  cr_assert_eq(errno, EPERM, "waiting without holding the mutex");
  cr_assert_eq(kz_cond_free(cv), 0);
}

static struct kz_event *ev;
static void *event_waiter(void *arg)
{
  return (void *)(intptr_t)(kz_event_wait(ev, KZ_FOREVER) == 0);
}
static void set_later(void *arg) { kz_event_set(arg); }

Test(sync, event_wakes_all_and_stays_set)
{
  kz_green_t g[3];
  void *r;
  ev = kz_event_new();
  cr_assert_eq(kz_event_is_set(ev), 0);
  cr_assert_eq(kz_event_wait(ev, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  for (int i = 0; i < 3; i++)
    g[i] = kz_spawn(event_waiter, NULL);
  kz_call_later(0.01, set_later, ev); /* set from a hub callback */
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(kz_join(g[i], &r, KZ_FOREVER), 0);
    cr_assert_eq((intptr_t)r, 1);
  }
  cr_assert_eq(kz_event_is_set(ev), 1);
  cr_assert_eq(kz_event_wait(ev, 0), 0, "no wait once set");
  kz_event_clear(ev);
  cr_assert_eq(kz_event_wait(ev, 0), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_event_free(ev), 0);
}

static struct kz_sem *sem;
static int holders, max_holders;
static void *sem_user(void *arg)
{
  cr_assert_eq(kz_sem_acquire(sem, KZ_FOREVER), 0);
  if (++holders > max_holders)
    max_holders = holders;
  kz_sleep(0.005);
  holders--;
  cr_assert_eq(kz_sem_release(sem), 0);
  return NULL;
}

Test(sync, semaphore_bounds_concurrency)
{
  kz_green_t g[20];
  sem = kz_sem_new(3);
  for (int i = 0; i < 20; i++)
    g[i] = kz_spawn(sem_user, NULL);
  for (int i = 0; i < 20; i++)
    kz_join(g[i], NULL, KZ_FOREVER);
  cr_assert_eq(max_holders, 3);
  cr_assert_eq(kz_sem_value(sem), 3);
  cr_assert_eq(kz_sem_release(sem), 0, "an unbounded semaphore may grow");
  cr_assert_eq(kz_sem_value(sem), 4);
  kz_sem_free(sem);
}

Test(sync, bounded_semaphore_refuses_over_release)
{
  sem = kz_sem_new_bounded(2);
  cr_assert_eq(kz_sem_try_acquire(sem), 0);
  cr_assert_eq(kz_sem_try_acquire(sem), 0);
  cr_assert_eq(kz_sem_try_acquire(sem), -1);
  cr_assert_eq(errno, EAGAIN);
  cr_assert_eq(kz_sem_acquire(sem, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_sem_release(sem), 0);
  cr_assert_eq(kz_sem_release(sem), 0);
  cr_assert_eq(kz_sem_release(sem), -1);
  cr_assert_eq(errno, EOVERFLOW, "released more than acquired");
  cr_assert_eq(kz_sem_value(sem), 2);
  cr_assert_null(kz_sem_new_bounded(0));
  cr_assert_eq(errno, EINVAL);
  kz_sem_free(sem);
}
