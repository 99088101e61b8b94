/* thread_real.c: a mutex, a condition variable and a join shared by the
 * program's threads and a thread the C library starts itself (the
 * notification thread of a SIGEV_THREAD timer: under the launcher a real
 * OS thread, not a green one), in both directions: the real thread waits
 * for a condition the other thread signals, and the other way round, and
 * the real thread joins a program thread. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int step; /* 1: the real thread runs; 2: main answered; 3: real done */
static pthread_t worker;
static void *joined;
static int release[2];

static void *worker_fn(void *arg)
{
  char c;
  CHECK(read(release[0], &c, 1) == 1);
  return (void *)17;
}

static void on_timer(union sigval v)
{
  CHECK(pthread_mutex_lock(&m) == 0); /* main holds it, then waits on cv */
  step = 1;
  CHECK(pthread_cond_signal(&cv) == 0);
  while (step != 2)
    CHECK(pthread_cond_wait(&cv, &m) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
  CHECK(write(release[1], "x", 1) == 1);
  CHECK(pthread_join(worker, &joined) == 0); /* a real thread joins */
  CHECK(pthread_mutex_lock(&m) == 0);
  step = 3;
  CHECK(pthread_cond_broadcast(&cv) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
}

int main(void)
{
  struct sigevent ev = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = on_timer};
  struct itimerspec its = {.it_value = {0, 1000000}};
  timer_t tm;
  CHECK(pipe(release) == 0);
  CHECK(pthread_create(&worker, NULL, worker_fn, NULL) == 0);
  CHECK(pthread_mutex_lock(&m) == 0);
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &tm) == 0);
  CHECK(timer_settime(tm, 0, &its, NULL) == 0);
  while (step != 1)
    CHECK(pthread_cond_wait(&cv, &m) == 0);
  step = 2;
  CHECK(pthread_cond_signal(&cv) == 0);
  while (step != 3)
    CHECK(pthread_cond_wait(&cv, &m) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
  CHECK(joined == (void *)17);
  CHECK(timer_delete(tm) == 0);
  puts("shared with a real thread: ok");
  return 0;
}
