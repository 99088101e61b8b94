/* thread_sync.c: read-write locks (readers together, a writer alone, try
 * and timed forms), a barrier reused over rounds, an unnamed semaphore
 * (wait, trywait, timedwait, post, getvalue), and a spinlock held across a
 * blocking call while other threads contend for it. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <unistd.h>

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static atomic_int readers_in, max_readers;
static int rd_go[2];

static void *reader(void *arg)
{
  char c;
  CHECK(pthread_rwlock_rdlock(&rw) == 0);
  int n = atomic_fetch_add(&readers_in, 1) + 1;
  if (n > atomic_load(&max_readers))
    atomic_store(&max_readers, n);
  CHECK(read(rd_go[0], &c, 1) == 1); /* every reader holds it at once */
  atomic_fetch_sub(&readers_in, 1);
  CHECK(pthread_rwlock_unlock(&rw) == 0);
  return NULL;
}

static void *writer(void *arg)
{
  CHECK(pthread_rwlock_wrlock(&rw) == 0);
  CHECK(atomic_load(&readers_in) == 0);
  CHECK(pthread_rwlock_unlock(&rw) == 0);
  return NULL;
}

enum { NB = 4, ROUNDS = 5 };
static pthread_barrier_t bar;
static atomic_int arrivals[ROUNDS], serials;
static void *at_barrier(void *arg)
{
  for (int r = 0; r < ROUNDS; r++) {
    atomic_fetch_add(&arrivals[r], 1);
    int s = pthread_barrier_wait(&bar);
    CHECK(s == 0 || s == PTHREAD_BARRIER_SERIAL_THREAD);
    if (s)
      atomic_fetch_add(&serials, 1);
    CHECK(atomic_load(&arrivals[r]) == NB); /* nobody passed early */
  }
  return NULL;
}

static sem_t sem;
static void *sem_taker(void *arg)
{
  CHECK(sem_wait(&sem) == 0);
  return NULL;
}

static pthread_spinlock_t spin;
static long spun;
static void *spinner(void *arg)
{
  for (int i = 0; i < 100; i++) {
    CHECK(pthread_spin_lock(&spin) == 0);
    long v = spun;
    if (i == 50)
      usleep(1000); /* the holder blocks: contenders must not spin forever */
    spun = v + 1;
    CHECK(pthread_spin_unlock(&spin) == 0);
  }
  return NULL;
}

int main(void)
{
  pthread_t t[8];
  struct timespec ts;

  /* rwlock */
  CHECK(pipe(rd_go) == 0);
  for (int i = 0; i < 3; i++)
    CHECK(pthread_create(&t[i], NULL, reader, NULL) == 0);
  while (atomic_load(&readers_in) < 3)
    sched_yield();
  CHECK(pthread_rwlock_trywrlock(&rw) == EBUSY);
  CHECK(pthread_rwlock_tryrdlock(&rw) == 0 && pthread_rwlock_unlock(&rw) == 0);
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec = 0, ts.tv_sec += 0; /* already past */
  CHECK(pthread_rwlock_timedwrlock(&rw, &ts) == ETIMEDOUT);
  CHECK(pthread_create(&t[3], NULL, writer, NULL) == 0);
  CHECK(write(rd_go[1], "xxx", 3) == 3);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(max_readers == 3);
  CHECK(pthread_rwlock_wrlock(&rw) == 0);
  CHECK(pthread_rwlock_tryrdlock(&rw) == EBUSY);
  CHECK(pthread_rwlock_unlock(&rw) == 0);

  /* barrier */
  CHECK(pthread_barrier_init(&bar, NULL, NB) == 0);
  for (int i = 0; i < NB; i++)
    CHECK(pthread_create(&t[i], NULL, at_barrier, NULL) == 0);
  for (int i = 0; i < NB; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(serials == ROUNDS);
  CHECK(pthread_barrier_destroy(&bar) == 0);

  /* semaphore */
  int v;
  CHECK(sem_init(&sem, 0, 0) == 0);
  CHECK(sem_trywait(&sem) == -1 && errno == EAGAIN);
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 20 * 1000 * 1000;
  ts.tv_sec += ts.tv_nsec / 1000000000L, ts.tv_nsec %= 1000000000L;
  CHECK(sem_timedwait(&sem, &ts) == -1 && errno == ETIMEDOUT);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_create(&t[i], NULL, sem_taker, NULL) == 0);
  for (int i = 0; i < 5; i++)
    CHECK(sem_post(&sem) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(sem_getvalue(&sem, &v) == 0 && v == 1);
  CHECK(sem_destroy(&sem) == 0);

  /* spinlock */
  CHECK(pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_create(&t[i], NULL, spinner, NULL) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(spun == 400);
  puts("rwlocks, barriers, semaphores, spinlocks: ok");
  return 0;
}
