/* test_sync.c: mutex, condition, event, semaphore and bounded semaphore:
 * exclusion, FIFO hand-off, timeouts, try-variants, cancellation, the
 * condition's relock, over-release of a bounded semaphore, misuse; and the
 * same objects shared by green threads of several hubs (remote hubs), and
 * by plain OS threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

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

static void *release_elsewhere(void *arg)
{
  return (void *)(intptr_t)(kz_sem_release(arg) == -1 ? errno : 0);
}

Test(sync, a_plain_thread_releases_and_only_the_owner_unlocks)
{
  pthread_t t;
  void *r;
  mu = kz_mutex_new();
  kz_mutex_lock(mu, 1);
  cr_assert_eq(pthread_create(&t, NULL, unlock_elsewhere, mu), 0);
  pthread_join(t, &r);
  cr_assert_eq((intptr_t)r, EPERM, "another OS thread does not hold it");
  cr_assert_eq(kz_mutex_unlock(mu), 0);
  cr_assert_eq(kz_mutex_free(mu), 0);
  struct kz_sem *s = kz_sem_new(0);
  cr_assert_eq(pthread_create(&t, NULL, release_elsewhere, s), 0);
  cr_assert_eq(kz_sem_acquire(s, 10), 0, "woken by a thread with no hub");
  pthread_join(t, &r);
  cr_assert_eq((intptr_t)r, 0);
  cr_assert_eq(kz_sem_free(s), 0);
}

/* ---- Across hubs ---------------------------------------------------------------- */

#define MAXHUBS 4

/* Run fn(arg) in `per` green threads on each of n remote hubs and wait for
   them all (kz_future_wait from the test's own hub); every one must return
   NULL. */
static void on_hubs(int n, int per, kz_fn fn, void *arg)
{
  struct kz_remote *r[MAXHUBS];
  kz_future_t f[MAXHUBS * 8];
  for (int i = 0; i < n; i++)
    cr_assert_not_null(r[i] = kz_remote_start());
  for (int i = 0; i < n * per; i++)
    cr_assert_neq(f[i] = kz_remote_spawn(r[i % n], fn, arg), 0);
  for (int i = 0; i < n * per; i++) {
    void *res = (void *)1;
    cr_assert_eq(kz_future_wait(f[i], &res, 60), 0, "errno %d", errno);
    cr_assert_null(res);
    kz_future_free(f[i]);
  }
  for (int i = 0; i < n; i++)
    kz_remote_free(r[i]);
}

#define INCREMENTS 10000
static long counter;
static int nthreads;

static void *count_under_lock(void *arg)
{
  for (int i = 0; i < INCREMENTS / nthreads; i++) {
    if (kz_mutex_lock(mu, KZ_FOREVER) != 0)
      return (void *)1;
    long v = counter; /* a read-yield-write: only exclusion keeps it exact */
    if (i % 8 == 0)
      kz_yield();
    counter = v + 1;
    if (kz_mutex_unlock(mu) != 0)
      return (void *)2;
  }
  return NULL;
}

static void mutex_counter(int hubs)
{
  mu = kz_mutex_new();
  counter = 0;
  nthreads = hubs * 2;
  on_hubs(hubs, 2, count_under_lock, NULL);
  cr_assert_eq(counter, INCREMENTS, "%ld", counter);
  cr_assert_eq(kz_mutex_free(mu), 0);
}

Test(sync, mutex_counter_on_2_hubs) { mutex_counter(2); }
Test(sync, mutex_counter_on_4_hubs) { mutex_counter(4); }

static struct kz_cond *xcv;
static struct kz_event *xev;
static _Atomic int xwaiting, xwoken;
static int xready; /* under mu */

static void *cond_waiter_x(void *arg)
{
  kz_mutex_lock(mu, KZ_FOREVER);
  xwaiting++;
  while (!xready)
    if (kz_cond_wait(xcv, mu, 30) != 0)
      return (void *)1;
  xwoken++;
  kz_mutex_unlock(mu);
  return NULL;
}

static void *cond_broadcaster(void *arg)
{
  int n = (int)(intptr_t)arg;
  for (;;) {
    kz_mutex_lock(mu, KZ_FOREVER);
    int w = xwaiting;
    if (w == n) {
      xready = 1;
      kz_cond_broadcast(xcv);
    }
    kz_mutex_unlock(mu);
    if (w == n)
      return NULL;
    kz_sleep(0.001);
  }
}

static void *cond_or_broadcast(void *arg)
{
  static _Atomic int k;
  return k++ == 0 ? cond_broadcaster(arg) : cond_waiter_x(arg);
}

static void cond_across(int hubs)
{
  mu = kz_mutex_new();
  xcv = kz_cond_new();
  xready = 0;
  xwaiting = xwoken = 0;
  /* hubs * 2 green threads: one broadcasts, the others wait */
  on_hubs(hubs, 2, cond_or_broadcast, (void *)(intptr_t)(hubs * 2 - 1));
  cr_assert_eq(xwoken, hubs * 2 - 1);
  cr_assert_eq(kz_cond_free(xcv), 0);
  cr_assert_eq(kz_mutex_free(mu), 0);
}

Test(sync, condition_broadcast_on_2_hubs) { cond_across(2); }
Test(sync, condition_broadcast_on_4_hubs) { cond_across(4); }

static void *signalled_one_by_one(void *arg)
{
  kz_mutex_lock(mu, KZ_FOREVER);
  xwaiting++;
  int r = kz_cond_wait(xcv, mu, 30);
  xwoken++;
  kz_mutex_unlock(mu);
  return r == 0 ? NULL : (void *)1;
}

static void *signal_each(void *arg)
{
  struct kz_remote *r[MAXHUBS];
  kz_future_t f[MAXHUBS];
  for (int i = 0; i < 3; i++) {
    r[i] = kz_remote_start();
    f[i] = kz_remote_spawn(r[i], signalled_one_by_one, NULL);
  }
  while (xwaiting < 3)
    kz_sleep(0.001);
  for (int n = 1; n <= 3; n++) {
    kz_mutex_lock(mu, KZ_FOREVER);
    kz_cond_signal(xcv); /* exactly one waiter of some hub */
    kz_mutex_unlock(mu);
    while (xwoken < n)
      kz_sleep(0.001);
    kz_sleep(0.01);
    cr_assert_eq(xwoken, n, "one signal wakes one waiter");
  }
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(kz_future_wait(f[i], NULL, 30), 0);
    kz_future_free(f[i]);
    kz_remote_free(r[i]);
  }
  return NULL;
}

Test(sync, condition_signal_wakes_one_waiter_of_another_hub)
{
  mu = kz_mutex_new();
  xcv = kz_cond_new();
  xwaiting = xwoken = 0;
  kz_green_t g = kz_spawn(signal_each, NULL);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
}

static void *event_waiter_x(void *arg)
{
  xwaiting++;
  return kz_event_wait(xev, 30) == 0 ? NULL : (void *)1;
}

static void *set_when_all_wait(void *arg)
{
  while (xwaiting < 3)
    usleep(1000);
  kz_event_set(xev); /* a thread with no hub */
  return NULL;
}

static void event_across(int hubs)
{
  pthread_t t;
  xev = kz_event_new();
  xwaiting = 0;
  cr_assert_eq(pthread_create(&t, NULL, set_when_all_wait, NULL), 0);
  on_hubs(hubs, hubs == 2 ? 2 : 1, event_waiter_x, NULL); /* at least 3 waiters */
  pthread_join(t, NULL);
  cr_assert_eq(kz_event_is_set(xev), 1);
  cr_assert_eq(kz_event_free(xev), 0);
}

Test(sync, event_set_by_a_plain_thread_wakes_2_hubs) { event_across(2); }
Test(sync, event_set_by_a_plain_thread_wakes_4_hubs) { event_across(4); }

static struct kz_sem *xsem;
static _Atomic int xholders, max_holders_x;

static void *sem_user_x(void *arg)
{
  for (int i = 0; i < 300; i++) {
    if (kz_sem_acquire(xsem, KZ_FOREVER) != 0)
      return (void *)1;
    int h = ++xholders;
    int m = max_holders_x;
    while (h > m && !atomic_compare_exchange_weak(&max_holders_x, &m, h))
      ;
    if (i % 4 == 0)
      kz_yield();
    xholders--;
    if (kz_sem_release(xsem) != 0)
      return (void *)2;
  }
  return NULL;
}

static void sem_across(int hubs)
{
  xsem = kz_sem_new_bounded(3);
  xholders = max_holders_x = 0;
  on_hubs(hubs, 2, sem_user_x, NULL);
  cr_assert_leq(max_holders_x, 3, "never more holders than permits");
  cr_assert_eq(kz_sem_value(xsem), 3, "every permit came back");
  cr_assert_eq(kz_sem_free(xsem), 0);
}

Test(sync, semaphore_permits_conserved_on_2_hubs) { sem_across(2); }
Test(sync, semaphore_permits_conserved_on_4_hubs) { sem_across(4); }

static _Atomic kz_green_t xwaiter_id;

static void *lock_forever_x(void *arg)
{
  xwaiter_id = kz_self();
  return (void *)(intptr_t)(kz_mutex_lock(mu, KZ_FOREVER) == -1 ? errno : 0);
}

static void *lock_briefly_x(void *arg)
{
  return (void *)(intptr_t)(kz_mutex_lock(mu, 0.05) == -1 ? errno : 0);
}

static void cancel_on_its_hub(void *arg) { kz_cancel(xwaiter_id); }

Test(sync, a_waiter_of_another_hub_times_out_and_is_cancelled)
{
  struct kz_remote *r = kz_remote_start();
  void *res;
  mu = kz_mutex_new();
  xwaiter_id = 0;
  cr_assert_eq(kz_mutex_lock(mu, 1), 0);
  kz_future_t t = kz_remote_spawn(r, lock_briefly_x, NULL);
  cr_assert_eq(kz_future_wait(t, &res, 30), 0);
  cr_assert_eq((intptr_t)res, ETIMEDOUT);
  kz_future_t c = kz_remote_spawn(r, lock_forever_x, NULL);
  while (!xwaiter_id)
    kz_sleep(0.001);
  kz_sleep(0.01); /* it waits on the mutex by now, or soon: cancellation ends either */
  cr_assert_eq(kz_remote_call_soon(r, cancel_on_its_hub, NULL), 0);
  cr_assert_eq(kz_future_wait(c, &res, 30), -1);
  cr_assert_eq(errno, ECANCELED, "its green thread was cancelled (errno %d)", errno);
  cr_assert_eq(kz_mutex_unlock(mu), 0, "nothing was handed to the waiters that left");
  cr_assert_eq(kz_mutex_trylock(mu), 0, "the mutex is free");
  kz_mutex_unlock(mu);
  cr_assert_eq(kz_mutex_free(mu), 0, "no waiter is left queued");
  kz_future_free(t);
  kz_future_free(c);
  kz_remote_free(r);
}

/* A release races a timeout, many times over: each permit is either taken
   by a wait that returns 0 or left in the semaphore, never lost to a wait
   that timed out nor given twice. */
#define RACES 3000
static _Atomic int taken;

static void *acquire_racing(void *arg)
{
  while (taken < RACES) {
    if (kz_sem_acquire(xsem, 0.0001 * (taken % 3)) == 0)
      taken++;
    else if (errno != ETIMEDOUT)
      return (void *)1;
  }
  return NULL;
}

Test(sync, a_release_racing_a_timeout_is_never_lost_nor_doubled)
{
  struct kz_remote *r = kz_remote_start();
  xsem = kz_sem_new(0);
  taken = 0;
  kz_future_t f = kz_remote_spawn(r, acquire_racing, NULL);
  for (int i = 0; i < RACES; i++) {
    cr_assert_eq(kz_sem_release(xsem), 0);
    while (taken + kz_sem_value(xsem) <= i) /* until this permit is somewhere */
      kz_yield();
    if (i % 2)
      kz_sleep(0.00005 * (i % 4));
  }
  void *res;
  cr_assert_eq(kz_future_wait(f, &res, 60), 0);
  cr_assert_null(res);
  cr_assert_eq(taken, RACES);
  cr_assert_eq(kz_sem_value(xsem), 0, "no permit doubled");
  cr_assert_eq(kz_sem_free(xsem), 0);
  kz_future_free(f);
  kz_remote_free(r);
}

/* Unlocks race the timeouts of lockers of another hub: each lock that
   returns 0 owns the mutex alone (the counter stays exact), one that timed
   out owns nothing, and no waiter is left queued or woken twice. */
static _Atomic int xlocked;

static void *lock_with_timeouts(void *arg)
{
  for (int i = 0; i < 2000; i++) {
    if (kz_mutex_lock(mu, 0.0001 * (i % 3)) != 0) {
      if (errno != ETIMEDOUT)
        return (void *)1;
      continue;
    }
    long v = counter;
    if (i % 4 == 0)
      kz_yield();
    counter = v + 1;
    xlocked++;
    if (kz_mutex_unlock(mu) != 0)
      return (void *)2;
  }
  return NULL;
}

static void *lock_forever_briefly(void *arg)
{
  for (int i = 0; i < 2000; i++) {
    if (kz_mutex_lock(mu, KZ_FOREVER) != 0)
      return (void *)1;
    long v = counter;
    if (i % 2 == 0)
      kz_sleep(0.00002);
    counter = v + 1;
    xlocked++;
    if (kz_mutex_unlock(mu) != 0)
      return (void *)2;
  }
  return NULL;
}

static void *timeouts_or_forever(void *arg)
{
  static _Atomic int k;
  return k++ % 2 ? lock_with_timeouts(arg) : lock_forever_briefly(arg);
}

Test(sync, mutex_unlocks_racing_timeouts_of_other_hubs)
{
  mu = kz_mutex_new();
  counter = 0;
  xlocked = 0;
  on_hubs(2, 2, timeouts_or_forever, NULL); /* each hub: one of each kind */
  cr_assert_eq(counter, xlocked, "every lock that succeeded owned the mutex alone");
  cr_assert_geq(xlocked, 2 * 2000, "the lockers without a timeout all got it");
  cr_assert_eq(kz_mutex_trylock(mu), 0, "the mutex is free");
  cr_assert_eq(kz_mutex_unlock(mu), 0);
  cr_assert_eq(kz_mutex_free(mu), 0, "no waiter is left queued");
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
