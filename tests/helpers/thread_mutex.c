/* thread_mutex.c: mutex semantics between threads: a normal mutex held
 * across a blocking call excludes the others (and its trylock is EBUSY
 * from any other thread); a recursive mutex counts its owner's locks and
 * excludes other threads; an error-checking one says EDEADLK to its owner
 * and EPERM to others; timedlock times out; static initialisers work. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <unistd.h>

static pthread_mutex_t normal = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static pthread_mutex_t errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static long counter;
static int held[2], release[2]; /* "I hold it" / "let it go" */

static void *adder(void *arg)
{
  for (int i = 0; i < 200; i++) {
    CHECK(pthread_mutex_lock(&normal) == 0);
    long c = counter;
    if (i % 50 == 0)
      usleep(100); /* block while holding it */
    counter = c + 1;
    CHECK(pthread_mutex_unlock(&normal) == 0);
  }
  return NULL;
}

/* Holds m until told, reporting when it has it. */
static void *holder(void *arg)
{
  pthread_mutex_t *m = arg;
  char c;
  CHECK(pthread_mutex_lock(m) == 0);
  if (m == &recursive) {
    CHECK(pthread_mutex_lock(m) == 0); /* counts */
    CHECK(pthread_mutex_unlock(m) == 0);
  }
  if (m == &errorcheck)
    CHECK(pthread_mutex_lock(m) == EDEADLK);
  CHECK(write(held[1], "h", 1) == 1);
  CHECK(read(release[0], &c, 1) == 1);
  CHECK(pthread_mutex_unlock(m) == 0);
  return NULL;
}

/* With m held by a holder thread: check what another thread sees. */
static void contend(pthread_mutex_t *m)
{
  pthread_t t;
  char c;
  struct timespec ts;
  CHECK(pthread_create(&t, NULL, holder, m) == 0);
  CHECK(read(held[0], &c, 1) == 1);
  CHECK(pthread_mutex_trylock(m) == EBUSY);
  if (m == &errorcheck)
    CHECK(pthread_mutex_unlock(m) == EPERM);
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 10 * 1000 * 1000;
  if (ts.tv_nsec >= 1000000000L)
    ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  CHECK(pthread_mutex_timedlock(m, &ts) == ETIMEDOUT);
  CHECK(write(release[1], "r", 1) == 1);
  CHECK(pthread_mutex_lock(m) == 0); /* waits for the holder's unlock */
  CHECK(pthread_mutex_unlock(m) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

int main(void)
{
  pthread_t t[8];
  CHECK(pipe(held) == 0 && pipe(release) == 0);
  for (int i = 0; i < 8; i++)
    CHECK(pthread_create(&t[i], NULL, adder, NULL) == 0);
  for (int i = 0; i < 8; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(counter == 8 * 200);
  contend(&normal);
  contend(&recursive);
  contend(&errorcheck);
  CHECK(pthread_mutex_unlock(&errorcheck) == EPERM); /* not locked */
  puts("mutexes: ok");
  return 0;
}
