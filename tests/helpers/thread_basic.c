/* thread_basic.c: pthread_create/join with results, detach, the join
 * errors (EDEADLK, EINVAL, EBUSY, ETIMEDOUT), joins of threads that have
 * finished (a cancelled one too), self/equal, names, getattr_np,
 * keys with destructors, pthread_once with an init routine that blocks, and
 * errno per thread.  Threads order themselves through pipes, never sleeps. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static void *twice(void *arg) { return (void *)((intptr_t)arg * 2); }

/* Waits for a byte on the pipe it is given, then returns 7. */
static atomic_int bytes_read; /* by wait_byte, so far */

static void *wait_byte(void *arg)
{
  char c;
  CHECK(read(*(int *)arg, &c, 1) == 1);
  atomic_fetch_add(&bytes_read, 1);
  return (void *)7;
}

/* Give a waiting wait_byte its byte, and wait until it has read it: the
   next wait_byte must not take it (threads that truly run at once, on
   several cores or several hubs, race for a pipe's bytes). */
static void feed(int fd)
{
  int before = atomic_load(&bytes_read);
  CHECK(write(fd, "x", 1) == 1);
  while (atomic_load(&bytes_read) == before)
    usleep(1000);
}

static void *join_self(void *arg)
{
  return (void *)(intptr_t)pthread_join(pthread_self(), NULL);
}

/* ---- keys ---- */
static pthread_key_t key;
static atomic_int destroyed; /* destructor calls seen, by threads that may run at once */
static void destructor(void *v)
{
  atomic_fetch_add(&destroyed, 1);
  if (v == (void *)1) /* a destructor may set a new value: another round */
    CHECK(pthread_setspecific(key, (void *)2) == 0);
}

static void *use_key(void *arg)
{
  CHECK(pthread_getspecific(key) == NULL);
  CHECK(pthread_setspecific(key, arg) == 0);
  sched_yield();
  CHECK(pthread_getspecific(key) == arg); /* each thread its own value */
  return NULL;
}

/* ---- once ---- */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs, once_pipe[2];
static void once_init(void)
{
  char c;
  once_runs++;
  CHECK(read(once_pipe[0], &c, 1) == 1); /* blocks while the others arrive */
}
static void *call_once(void *arg)
{
  CHECK(pthread_once(&once, once_init) == 0);
  CHECK(once_runs == 1);
  return NULL;
}

/* ---- errno ---- */
static void *errno_keeper(void *arg)
{
  errno = 1234;
  for (int i = 0; i < 3; i++)
    sched_yield(); /* main sets its own errno meanwhile */
  CHECK(errno == 1234);
  return NULL;
}

int main(void)
{
  pthread_t t[8], self = pthread_self();
  void *r;
  int p[2];

  /* create/join with results */
  for (intptr_t i = 0; i < 8; i++)
    CHECK(pthread_create(&t[i], NULL, twice, (void *)i) == 0);
  for (intptr_t i = 0; i < 8; i++) {
    CHECK(pthread_join(t[i], &r) == 0);
    CHECK(r == (void *)(i * 2));
  }
  CHECK(pthread_equal(self, pthread_self()));

  /* threads joined once they have finished (tryjoin until it succeeds):
     their results, a cancelled one's PTHREAD_CANCELED, and a second join
     of one finds nothing to join */
  for (intptr_t i = 0; i < 8; i++)
    CHECK(pthread_create(&t[i], NULL, twice, (void *)(i + 10)) == 0);
  for (intptr_t i = 0; i < 8; i++) {
    int e;
    while ((e = pthread_tryjoin_np(t[i], &r)) == EBUSY)
      sched_yield();
    CHECK(e == 0 && r == (void *)((i + 10) * 2));
  }
  CHECK(pipe(p) == 0);
  CHECK(pthread_create(&t[0], NULL, wait_byte, &p[0]) == 0);
  CHECK(pthread_cancel(t[0]) == 0);
  {
    int e;
    while ((e = pthread_tryjoin_np(t[0], &r)) == EBUSY)
      sched_yield();
    CHECK(e == 0 && r == PTHREAD_CANCELED);
  }
  close(p[0]);
  close(p[1]);

  /* tryjoin, timedjoin, then the real join */
  CHECK(pipe(p) == 0);
  CHECK(pthread_create(&t[0], NULL, wait_byte, &p[0]) == 0);
  CHECK(!pthread_equal(t[0], self));
  CHECK(pthread_tryjoin_np(t[0], &r) == EBUSY);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 20 * 1000 * 1000;
  if (ts.tv_nsec >= 1000000000L)
    ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  CHECK(pthread_timedjoin_np(t[0], &r, &ts) == ETIMEDOUT);
  CHECK(write(p[1], "x", 1) == 1);
  CHECK(pthread_join(t[0], &r) == 0 && r == (void *)7);

  /* misuse */
  CHECK(pthread_create(&t[0], NULL, join_self, NULL) == 0);
  CHECK(pthread_join(t[0], &r) == 0 && r == (void *)(intptr_t)EDEADLK);
  pthread_attr_t a;
  CHECK(pthread_attr_init(&a) == 0);
  CHECK(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) == 0);
  CHECK(pthread_attr_setstacksize(&a, 256 * 1024) == 0);
  CHECK(pthread_create(&t[0], &a, wait_byte, &p[0]) == 0);
  CHECK(pthread_join(t[0], NULL) == EINVAL);
  feed(p[1]);
  CHECK(pthread_create(&t[0], NULL, wait_byte, &p[0]) == 0);
  CHECK(pthread_detach(t[0]) == 0);
  CHECK(pthread_join(t[0], NULL) == EINVAL);
  feed(p[1]);

  /* a stack the program supplies */
  static char stack[64 * 1024] __attribute__((aligned(16)));
  pthread_attr_t sa;
  CHECK(pthread_attr_init(&sa) == 0);
  CHECK(pthread_attr_setstack(&sa, stack, sizeof stack) == 0);
  CHECK(pthread_create(&t[0], &sa, twice, (void *)21) == 0);
  CHECK(pthread_join(t[0], &r) == 0 && r == (void *)42);
  pthread_attr_destroy(&sa);

  /* names and attributes */
  char name[16];
  CHECK(pthread_create(&t[0], NULL, wait_byte, &p[0]) == 0);
  CHECK(pthread_setname_np(t[0], "worker-1") == 0);
  CHECK(pthread_getname_np(t[0], name, sizeof name) == 0 && !strcmp(name, "worker-1"));
  CHECK(pthread_setname_np(t[0], "a-name-that-is-too-long") == ERANGE);
  CHECK(pthread_getname_np(t[0], name, 4) == ERANGE);
  CHECK(pthread_getattr_np(t[0], &a) == 0);
  void *base;
  size_t size;
  int ds;
  CHECK(pthread_attr_getstack(&a, &base, &size) == 0 && base && size >= 16 * 1024);
  CHECK(pthread_attr_getdetachstate(&a, &ds) == 0 && ds == PTHREAD_CREATE_JOINABLE);
  CHECK(pthread_kill(t[0], 0) == 0);
  CHECK(write(p[1], "x", 1) == 1);
  CHECK(pthread_join(t[0], NULL) == 0);

  /* keys: own values, destructors in rounds */
  CHECK(pthread_key_create(&key, destructor) == 0);
  CHECK(pthread_setspecific(key, (void *)99) == 0);
  CHECK(pthread_create(&t[0], NULL, use_key, (void *)1) == 0);
  CHECK(pthread_create(&t[1], NULL, use_key, (void *)3) == 0);
  CHECK(pthread_join(t[0], NULL) == 0 && pthread_join(t[1], NULL) == 0);
  CHECK(destroyed == 3); /* 1, then 2 set by the destructor, and 3 */
  CHECK(pthread_getspecific(key) == (void *)99);
  CHECK(pthread_key_delete(key) == 0);

  /* once: the init routine blocks while three more threads call it */
  CHECK(pipe(once_pipe) == 0);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_create(&t[i], NULL, call_once, NULL) == 0);
  CHECK(write(once_pipe[1], "x", 1) == 1);
  for (int i = 0; i < 4; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(pthread_once(&once, once_init) == 0 && once_runs == 1);

  /* errno belongs to each thread */
  CHECK(pthread_create(&t[0], NULL, errno_keeper, NULL) == 0);
  sched_yield();
  errno = 0;
  sched_yield();
  CHECK(errno == 0);
  CHECK(pthread_join(t[0], NULL) == 0);
  puts("threads: ok");
  return 0;
}
