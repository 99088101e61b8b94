/* errno_sync: every blocking synchronisation call that succeeds after
 * having had to wait leaves errno as it was (POSIX sets errno only on
 * failure; programs that read it after a call that succeeded break).
 *
 * For each call, a thread presets errno to a sentinel, makes the call while
 * the object is taken, and checks the result and errno once another thread
 * (or another process, for the process-shared objects) has released it.
 * Then the case that first showed it: 20 threads wait on a semaphore posted
 * later; errno stays 0 in each of them and in the main thread.  (And
 * sem_clockwait refuses an unknown clock before it tries, as glibc does.)
 */
#include "check.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SENTINEL 12345

static sem_t sem;
static pthread_mutex_t mtx;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_barrier_t bar;
static int flag;

static struct timespec later(clockid_t clk)
{
  struct timespec t;
  clock_gettime(clk, &t);
  t.tv_sec += 30;
  return t;
}

/* ---- The waits: each returns 0 on success, as the call reports it ------------- */

static int w_sem_wait(void) { return sem_wait(&sem); }
static int w_sem_timedwait(void)
{
  struct timespec t = later(CLOCK_REALTIME);
  return sem_timedwait(&sem, &t);
}
static int w_sem_clockwait(void)
{
  struct timespec t = later(CLOCK_MONOTONIC);
  return sem_clockwait(&sem, CLOCK_MONOTONIC, &t);
}
static int w_mutex_lock(void) { return pthread_mutex_lock(&mtx) || pthread_mutex_unlock(&mtx); }
static int w_mutex_timedlock(void)
{
  struct timespec t = later(CLOCK_REALTIME);
  return pthread_mutex_timedlock(&mtx, &t) || pthread_mutex_unlock(&mtx);
}
static int w_mutex_clocklock(void)
{
  struct timespec t = later(CLOCK_MONOTONIC);
  return pthread_mutex_clocklock(&mtx, CLOCK_MONOTONIC, &t) || pthread_mutex_unlock(&mtx);
}
static int w_cond_wait(void)
{
  int r = 0;
  pthread_mutex_lock(&mtx);
  while (!flag && r == 0)
    r = pthread_cond_wait(&cond, &mtx);
  pthread_mutex_unlock(&mtx);
  return r;
}
static int w_cond_timedwait(void)
{
  struct timespec t = later(CLOCK_REALTIME);
  int r = 0;
  pthread_mutex_lock(&mtx);
  while (!flag && r == 0)
    r = pthread_cond_timedwait(&cond, &mtx, &t);
  pthread_mutex_unlock(&mtx);
  return r;
}
static int w_rdlock(void) { return pthread_rwlock_rdlock(&rw) || pthread_rwlock_unlock(&rw); }
static int w_wrlock(void) { return pthread_rwlock_wrlock(&rw) || pthread_rwlock_unlock(&rw); }
static int w_timedrdlock(void)
{
  struct timespec t = later(CLOCK_REALTIME);
  return pthread_rwlock_timedrdlock(&rw, &t) || pthread_rwlock_unlock(&rw);
}
static int w_barrier(void)
{
  int r = pthread_barrier_wait(&bar);
  return r == PTHREAD_BARRIER_SERIAL_THREAD ? 0 : r;
}

/* ---- Taking and releasing each object ------------------------------------------ */

static void take_none(void) {}
static void post_sem(void) { CHECK(sem_post(&sem) == 0); }
static void take_mutex(void) { CHECK(pthread_mutex_lock(&mtx) == 0); }
static void give_mutex(void) { CHECK(pthread_mutex_unlock(&mtx) == 0); }
static void signal_cond(void)
{
  pthread_mutex_lock(&mtx);
  flag = 1;
  pthread_cond_signal(&cond);
  pthread_mutex_unlock(&mtx);
}
static void take_wr(void) { CHECK(pthread_rwlock_wrlock(&rw) == 0); }
static void give_rw(void) { CHECK(pthread_rwlock_unlock(&rw) == 0); }
static void meet_barrier(void) { w_barrier(); }

struct call {
  const char *name;
  int (*wait)(void);
  void (*take)(void);    /* before the waiter starts */
  void (*release)(void); /* once it waits */
};

static void *waiter(void *arg)
{
  const struct call *c = arg;
  int r;
  errno = SENTINEL;
  r = c->wait();
  if (r != 0 || errno != SENTINEL) {
    fprintf(stderr, "%s: returned %d, errno %d after a wait (expected 0, %d)\n", c->name, r,
            errno, SENTINEL);
    exit(1);
  }
  return NULL;
}

static void run(const struct call *c)
{
  pthread_t t;
  struct timespec pause = {0, 20 * 1000 * 1000};
  flag = 0;
  c->take();
  CHECK(pthread_create(&t, NULL, waiter, (void *)c) == 0);
  nanosleep(&pause, NULL); /* let it block (the check holds either way) */
  c->release();
  CHECK(pthread_join(t, NULL) == 0);
}

/* ---- Process-shared objects, released by another process --------------------------- */

struct shm {
  sem_t sem;
  pthread_mutex_t mtx;
};

static void pshared_case(struct shm *s, bool use_sem)
{
  pid_t child;
  int status, r;
  struct timespec pause = {0, 20 * 1000 * 1000};
  child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    if (!use_sem) { /* take the mutex, say so, hold it a while */
      CHECK(pthread_mutex_lock(&s->mtx) == 0);
      CHECK(sem_post(&s->sem) == 0);
    }
    nanosleep(&pause, NULL);
    if (use_sem)
      CHECK(sem_post(&s->sem) == 0);
    else
      CHECK(pthread_mutex_unlock(&s->mtx) == 0);
    _exit(0);
  }
  if (!use_sem)
    CHECK(sem_wait(&s->sem) == 0);
  errno = SENTINEL;
  r = use_sem ? sem_wait(&s->sem) : pthread_mutex_lock(&s->mtx);
  CHECK(r == 0 && errno == SENTINEL);
  if (!use_sem)
    CHECK(pthread_mutex_unlock(&s->mtx) == 0);
  CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Another thread, waiting on sem for the end of the process-shared cases. */
static void *sleeper(void *arg)
{
  (void)arg;
  CHECK(sem_wait(&sem) == 0);
  return NULL;
}

/* ---- 20 threads on one semaphore --------------------------------------------------- */

static void *sem_twenty(void *arg)
{
  (void)arg;
  errno = 0;
  CHECK(sem_wait(&sem) == 0);
  CHECK(errno == 0);
  return NULL;
}

int main(void)
{
  static const struct call calls[] = {
      {"sem_wait", w_sem_wait, take_none, post_sem},
      {"sem_timedwait", w_sem_timedwait, take_none, post_sem},
      {"sem_clockwait", w_sem_clockwait, take_none, post_sem},
      {"pthread_mutex_lock", w_mutex_lock, take_mutex, give_mutex},
      {"pthread_mutex_timedlock", w_mutex_timedlock, take_mutex, give_mutex},
      {"pthread_mutex_clocklock", w_mutex_clocklock, take_mutex, give_mutex},
      {"pthread_cond_wait", w_cond_wait, take_none, signal_cond},
      {"pthread_cond_timedwait", w_cond_timedwait, take_none, signal_cond},
      {"pthread_rwlock_rdlock", w_rdlock, take_wr, give_rw},
      {"pthread_rwlock_wrlock", w_wrlock, take_wr, give_rw},
      {"pthread_rwlock_timedrdlock", w_timedrdlock, take_wr, give_rw},
      {"pthread_barrier_wait", w_barrier, take_none, meet_barrier},
  };
  static const int kinds[] = {PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_RECURSIVE,
                              PTHREAD_MUTEX_ERRORCHECK};
  pthread_mutexattr_t ma;
  pthread_t t[20];
  struct shm *s;
  struct timespec pause = {0, 20 * 1000 * 1000};

  CHECK(sem_init(&sem, 0, 1) == 0); /* an unknown clock fails even with a token there */
  CHECK(sem_clockwait(&sem, CLOCK_PROCESS_CPUTIME_ID, &pause) == -1 && errno == EINVAL);
  CHECK(sem_trywait(&sem) == 0);
  CHECK(pthread_barrier_init(&bar, NULL, 2) == 0);
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, kinds[k]);
    CHECK(pthread_mutex_init(&mtx, &ma) == 0);
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++)
      run(&calls[i]);
    pthread_mutex_destroy(&mtx);
  }

  s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(s != MAP_FAILED);
  CHECK(sem_init(&s->sem, 1, 0) == 0);
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_mutex_init(&s->mtx, &ma) == 0);
  pshared_case(s, true); /* alone: under the launcher, the wait is in the kernel */
  pshared_case(s, false);
  CHECK(pthread_create(&t[0], NULL, sleeper, NULL) == 0); /* beside another: a worker waits */
  pshared_case(s, true);
  pshared_case(s, false);
  CHECK(sem_post(&sem) == 0);
  CHECK(pthread_join(t[0], NULL) == 0);

  errno = 0;
  for (int i = 0; i < 20; i++)
    CHECK(pthread_create(&t[i], NULL, sem_twenty, NULL) == 0);
  nanosleep(&pause, NULL);
  for (int i = 0; i < 20; i++)
    CHECK(sem_post(&sem) == 0);
  for (int i = 0; i < 20; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(errno == 0);
  printf("errno kept by every synchronisation call that waited\n");
  return 0;
}
