/* thread_cancel.c: pthread_cancel at blocking cancellation points
 * (pthread_cond_wait, sem_wait, read, pthread_testcancel) runs the cleanup
 * handlers, innermost first, with the mutex of a condition wait held again,
 * then key destructors; the join reports PTHREAD_CANCELED.  With
 * cancellation disabled the request waits until it is enabled again.
 * pthread_exit runs the handlers too. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static char trace[64];
static int ready[2];
static pthread_key_t key;

static void note(void *s) { strcat(trace, s); }
static void unlock(void *mp)
{
  CHECK(pthread_mutex_trylock(mp) == EBUSY); /* held again by the handler's time */
  strcat(trace, "U");
  CHECK(pthread_mutex_unlock(mp) == 0);
}
static void key_gone(void *v) { strcat(trace, "K"); }

static void *in_cond_wait(void *arg)
{
  CHECK(pthread_setspecific(key, (void *)1) == 0);
  pthread_cleanup_push(note, "A");
  CHECK(pthread_mutex_lock(&m) == 0);
  pthread_cleanup_push(unlock, &m);
  CHECK(write(ready[1], "r", 1) == 1);
  for (;;)
    pthread_cond_wait(&never, &m);
  pthread_cleanup_pop(0);
  pthread_cleanup_pop(0);
  return NULL;
}

static sem_t sem;
static void *in_sem_wait(void *arg)
{
  pthread_cleanup_push(note, "S");
  CHECK(write(ready[1], "r", 1) == 1);
  sem_wait(&sem);
  pthread_cleanup_pop(0);
  return NULL;
}

static int never_written[2];
static void *in_read(void *arg)
{
  char c;
  pthread_cleanup_push(note, "R");
  CHECK(write(ready[1], "r", 1) == 1);
  CHECK(read(never_written[0], &c, 1) == 1); /* never returns */
  pthread_cleanup_pop(0);
  return NULL;
}

static int go[2];
static void *disabled_then_test(void *arg)
{
  int old;
  char c;
  CHECK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old) == 0);
  pthread_cleanup_push(note, "D");
  CHECK(write(ready[1], "r", 1) == 1);
  CHECK(read(go[0], &c, 1) == 1); /* not cancelled here: disabled */
  strcat(trace, "d");
  CHECK(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old) == 0);
  pthread_testcancel();
  pthread_cleanup_pop(0);
  return NULL;
}

static void *exits(void *arg)
{
  pthread_cleanup_push(note, "E");
  pthread_exit((void *)42);
  pthread_cleanup_pop(0);
  return NULL;
}

static void run(void *(*fn)(void *), const char *want, void *want_ret)
{
  pthread_t t;
  void *r;
  char c;
  trace[0] = 0;
  CHECK(pthread_create(&t, NULL, fn, NULL) == 0);
  if (want_ret == PTHREAD_CANCELED) {
    CHECK(read(ready[0], &c, 1) == 1);
    CHECK(pthread_cancel(t) == 0);
    if (fn == disabled_then_test)
      CHECK(write(go[1], "g", 1) == 1);
  }
  CHECK(pthread_join(t, &r) == 0);
  if (strcmp(trace, want) || r != want_ret) {
    fprintf(stderr, "trace \"%s\", wanted \"%s\"; result %p\n", trace, want, r);
    exit(1);
  }
}

int main(void)
{
  CHECK(pipe(ready) == 0 && pipe(go) == 0);
  CHECK(pthread_key_create(&key, key_gone) == 0);
  CHECK(sem_init(&sem, 0, 0) == 0);
  run(in_cond_wait, "UAK", PTHREAD_CANCELED);
  CHECK(pthread_mutex_trylock(&m) == 0 && pthread_mutex_unlock(&m) == 0);
  run(in_sem_wait, "S", PTHREAD_CANCELED);
  CHECK(pipe(never_written) == 0);
  run(in_read, "R", PTHREAD_CANCELED);
  run(disabled_then_test, "dD", PTHREAD_CANCELED);
  run(exits, "E", (void *)42);
  puts("cancellation: ok");
  return 0;
}
