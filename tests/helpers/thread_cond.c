/* thread_cond.c: condition variables: a bounded producer/consumer queue
 * with signal, a broadcast that releases every waiter, timedwait timing
 * out on the realtime clock and on a monotonic-clock condition, and
 * clockwait. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <unistd.h>

enum { CAP = 4, ITEMS = 1000, CONSUMERS = 3 };
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER, not_empty = PTHREAD_COND_INITIALIZER;
static int queue[CAP], head, len;
static long sum;

static void *producer(void *arg)
{
  for (int i = 1; i <= ITEMS + CONSUMERS; i++) {
    CHECK(pthread_mutex_lock(&m) == 0);
    while (len == CAP)
      CHECK(pthread_cond_wait(&not_full, &m) == 0);
    queue[(head + len++) % CAP] = i <= ITEMS ? i : 0; /* 0: stop */
    CHECK(pthread_cond_signal(&not_empty) == 0);
    CHECK(pthread_mutex_unlock(&m) == 0);
  }
  return NULL;
}

static void *consumer(void *arg)
{
  for (;;) {
    CHECK(pthread_mutex_lock(&m) == 0);
    while (len == 0)
      CHECK(pthread_cond_wait(&not_empty, &m) == 0);
    int v = queue[head];
    head = (head + 1) % CAP, len--;
    sum += v;
    CHECK(pthread_cond_signal(&not_full) == 0);
    CHECK(pthread_mutex_unlock(&m) == 0);
    if (!v)
      return NULL;
  }
}

static pthread_cond_t go = PTHREAD_COND_INITIALIZER;
static int started, released;
static void *waiter(void *arg)
{
  CHECK(pthread_mutex_lock(&m) == 0);
  started++;
  CHECK(pthread_cond_broadcast(&not_full) == 0); /* tell main */
  while (!released)
    CHECK(pthread_cond_wait(&go, &m) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
  return NULL;
}

static struct timespec in_ms(clockid_t clk, long ms)
{
  struct timespec ts;
  clock_gettime(clk, &ts);
  ts.tv_nsec += ms * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  return ts;
}

int main(void)
{
  pthread_t p, c[CONSUMERS], w[5];
  CHECK(pthread_create(&p, NULL, producer, NULL) == 0);
  for (int i = 0; i < CONSUMERS; i++)
    CHECK(pthread_create(&c[i], NULL, consumer, NULL) == 0);
  CHECK(pthread_join(p, NULL) == 0);
  for (int i = 0; i < CONSUMERS; i++)
    CHECK(pthread_join(c[i], NULL) == 0);
  CHECK(sum == (long)ITEMS * (ITEMS + 1) / 2);

  for (int i = 0; i < 5; i++)
    CHECK(pthread_create(&w[i], NULL, waiter, NULL) == 0);
  CHECK(pthread_mutex_lock(&m) == 0);
  while (started < 5)
    CHECK(pthread_cond_wait(&not_full, &m) == 0);
  released = 1;
  CHECK(pthread_cond_broadcast(&go) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
  for (int i = 0; i < 5; i++)
    CHECK(pthread_join(w[i], NULL) == 0);

  /* timeouts: nobody signals */
  pthread_condattr_t a;
  pthread_cond_t monocv;
  CHECK(pthread_condattr_init(&a) == 0 && pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0);
  CHECK(pthread_cond_init(&monocv, &a) == 0);
  CHECK(pthread_mutex_lock(&m) == 0);
  double t0 = mono();
  struct timespec ts = in_ms(CLOCK_REALTIME, 30);
  CHECK(pthread_cond_timedwait(&go, &m, &ts) == ETIMEDOUT);
  ts = in_ms(CLOCK_MONOTONIC, 30);
  CHECK(pthread_cond_timedwait(&monocv, &m, &ts) == ETIMEDOUT);
  ts = in_ms(CLOCK_MONOTONIC, 30);
  CHECK(pthread_cond_clockwait(&go, &m, CLOCK_MONOTONIC, &ts) == ETIMEDOUT);
  CHECK(mono() - t0 >= 0.089);
  CHECK(pthread_mutex_trylock(&m) == EBUSY); /* held again after each */
  CHECK(pthread_mutex_unlock(&m) == 0);
  puts("condition variables: ok");
  return 0;
}
