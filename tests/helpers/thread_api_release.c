/* thread_api_release.c: pthreads created under the launcher are green
 * threads with a record in the shim (preload/thread.c).  However a thread
 * ends up released, through the API (kz_join, kz_detach, kz_run reaping
 * what its main left behind) or through pthreads (pthread_join,
 * pthread_detach), its record goes with it exactly once: the heap does not
 * grow over many rounds, and the stale pthread_t is unknown afterwards
 * (pthread_kill(t, 0) == ESRCH).  Run under the launcher only. */
#include <kudzu.h>

#include "check.h"
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

enum { ROUNDS = 20000 };
#define MAX_GROWTH (256 * 1024) /* a leaked record is ~100 bytes: 2 MB over the rounds */

/* Threads entered and returned (or exited), of those start made: with
   several hubs a thread may run on another one, and a few yields here do
   not say it has run. */
static atomic_long made, entered, to_end, ended;

static void *ret_arg(void *arg)
{
  atomic_fetch_add(&entered, 1);
  atomic_fetch_add(&ended, 1);
  return arg;
}

static void *exits(void *arg)
{
  atomic_fetch_add(&entered, 1);
  atomic_fetch_add(&ended, 1);
  pthread_exit(arg);
}

static void *waits_cancelled(void *arg)
{
  (void)arg;
  atomic_fetch_add(&entered, 1);
  while (sleep(1000) == 0) /* a cancellation point: ends by cancellation */
    ;
  return NULL;
}

static pthread_key_t key;
static void make_key(void) { CHECK(pthread_key_create(&key, NULL) == 0); }

static void *sets_key(void *arg)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_key);
  atomic_fetch_add(&entered, 1);
  CHECK(pthread_setspecific(key, arg) == 0); /* the record grows key values */
  atomic_fetch_add(&ended, 1);
  return arg;
}

static pthread_t start(void *(*fn)(void *), void *arg)
{
  pthread_t t;
  atomic_fetch_add(&made, 1);
  if (fn != waits_cancelled)
    atomic_fetch_add(&to_end, 1);
  CHECK(pthread_create(&t, NULL, fn, arg) == 0);
  CHECK(((uint64_t)t >> 63) == 1); /* a green thread: run under the launcher */
  return t;
}

/* Until the threads started so far have entered their function, and those
   that end by themselves have left it (bounded: about 10 s). */
static void settle(void)
{
  double end = mono() + 10;
  while ((atomic_load(&entered) < atomic_load(&made) || atomic_load(&ended) < atomic_load(&to_end)) &&
         mono() < end)
    sched_yield();
  CHECK(atomic_load(&entered) == atomic_load(&made) && atomic_load(&ended) == atomic_load(&to_end));
}

/* Joined, or detached once finished: unknown at once. */
static void gone(pthread_t t) { CHECK(pthread_kill(t, 0) == ESRCH); }

/* Detached while it may still run: unknown once it has finished, on
   whichever hub (bounded: about 10 s). */
static void gone_soon(pthread_t t)
{
  double end = mono() + 10;
  while (pthread_kill(t, 0) != ESRCH && mono() < end)
    sched_yield();
  gone(t);
}

/* One round of each way to end. */
static void kz_join_finished(long i)
{
  pthread_t t = start(sets_key, (void *)i);
  void *r = NULL;
  settle();
  CHECK(kz_join((kz_green_t)t, &r, KZ_FOREVER) == 0 && r == (void *)i);
  gone(t);
}

static void kz_join_running(long i)
{
  pthread_t t = start(ret_arg, (void *)i);
  void *r = NULL;
  CHECK(kz_join((kz_green_t)t, &r, KZ_FOREVER) == 0 && r == (void *)i);
  gone(t);
}

static void kz_join_exited(long i)
{
  pthread_t t = start(exits, (void *)i);
  void *r = NULL;
  CHECK(kz_join((kz_green_t)t, &r, KZ_FOREVER) == 0 && r == (void *)i);
  gone(t);
}

static void kz_join_cancelled(long i)
{
  pthread_t t = start(waits_cancelled, NULL);
  (void)i;
  settle();
  CHECK(pthread_cancel(t) == 0);
  CHECK(kz_join((kz_green_t)t, NULL, KZ_FOREVER) == -1 && errno == ECANCELED);
  gone(t);
}

static void kz_detach_finished(long i)
{
  pthread_t t = start(sets_key, (void *)i);
  settle();
  CHECK(kz_detach((kz_green_t)t) == 0);
  gone_soon(t); /* its function has returned; the thread may be a step short of its end */
}

static void kz_detach_running(long i)
{
  pthread_t t = start(ret_arg, (void *)i);
  CHECK(kz_detach((kz_green_t)t) == 0);
  gone_soon(t);
}

static void pthread_join_finished(long i)
{
  pthread_t t = start(sets_key, (void *)i);
  void *r = NULL;
  settle();
  CHECK(pthread_join(t, &r) == 0 && r == (void *)i);
  gone(t);
}

static void pthread_detach_running(long i)
{
  pthread_t t = start(ret_arg, (void *)i);
  CHECK(pthread_detach(t) == 0);
  gone_soon(t);
}

/* kz_run's main leaves finished threads behind: kz_run reaps them. */
static pthread_t left_behind;

static void *leaves_one(void *arg)
{
  left_behind = start(sets_key, arg);
  settle();
  return NULL;
}

static void kz_run_reaped(long i)
{
  CHECK(kz_run(leaves_one, (void *)i, NULL) == 0);
  gone(left_behind);
}

static void rounds(const char *name, void (*round)(long))
{
  size_t before;
  for (long i = 1; i <= 100; i++) /* warm up the allocator and the stack cache */
    round(i);
  before = mallinfo2().uordblks;
  for (long i = 1; i <= ROUNDS; i++)
    round(i);
  size_t after = mallinfo2().uordblks;
  if (after > before + MAX_GROWTH) {
    fprintf(stderr, "%s: the heap grew by %zu bytes over %d rounds\n", name, after - before,
            ROUNDS);
    exit(1);
  }
  printf("%s: ok\n", name);
}

int main(void)
{
  rounds("kz_join of a finished pthread", kz_join_finished);
  rounds("kz_join of a running pthread", kz_join_running);
  rounds("kz_join after pthread_exit", kz_join_exited);
  rounds("kz_join after pthread_cancel", kz_join_cancelled);
  rounds("kz_detach of a finished pthread", kz_detach_finished);
  rounds("kz_detach of a running pthread", kz_detach_running);
  rounds("pthread_join", pthread_join_finished);
  rounds("pthread_detach", pthread_detach_running);
  rounds("kz_run reaping", kz_run_reaped);
  return 0;
}
