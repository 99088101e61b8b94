/* pshared_sync: process-shared mutexes (normal, error-checking, robust),
 * read-write locks, barriers, semaphores and a condition variable, released
 * by another process.  Each wait ends when the other process releases (no
 * lost wake-up: a hang), timeouts end with ETIMEDOUT on the object's clock,
 * a robust mutex whose owner died comes back with EOWNERDEAD, and a signal
 * handler without SA_RESTART interrupts sem_wait with EINTR, and a waiter
 * cancelled by pthread_cancel takes nothing with it.
 *
 * Everything runs twice: the parent alone, then with a ticker thread beside
 * it, which must keep ticking while the parent waits for the mutex, the
 * read-write lock, the barrier and the semaphore (the waits must not stop
 * the parent's other threads).
 */
#include "check.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

struct shm {
  pthread_mutex_t mtx[3]; /* normal, error-checking, robust */
  pthread_rwlock_t rw;
  pthread_barrier_t bar;
  pthread_cond_t cond;
  sem_t go;   /* child -> parent: "I hold it now" */
  sem_t sem;  /* the semaphore under test */
  int flag;   /* the condition's predicate, under mtx[0] */
};

static struct shm *sh;
static atomic_long ticks;
static atomic_bool stop;

static void *ticker(void *arg)
{
  struct timespec t = {0, 1000 * 1000};
  (void)arg;
  while (!atomic_load(&stop)) {
    nanosleep(&t, NULL);
    atomic_fetch_add(&ticks, 1);
  }
  return NULL;
}

static void ms(long n)
{
  struct timespec t = {n / 1000, (n % 1000) * 1000000};
  while (nanosleep(&t, &t) != 0 && errno == EINTR)
    ;
}

static struct timespec in_ms(clockid_t clk, long n)
{
  struct timespec t;
  clock_gettime(clk, &t);
  t.tv_nsec += (n % 1000) * 1000000;
  t.tv_sec += n / 1000 + t.tv_nsec / 1000000000;
  t.tv_nsec %= 1000000000;
  return t;
}

/* Run child() in a child process; it must exit 0 (reaped by finish). */
static pid_t spawn(void (*child)(void))
{
  pid_t p = fork();
  CHECK(p >= 0);
  if (p == 0) {
    child();
    _exit(0);
  }
  return p;
}

static void finish(pid_t p)
{
  int status;
  CHECK(waitpid(p, &status, 0) == p);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* With a ticker running, it must have ticked during the wait that began at
   `before` ticks. */
static void ticked(bool with_ticker, long before, const char *what)
{
  if (with_ticker && atomic_load(&ticks) - before < 3) {
    fprintf(stderr, "the other thread stopped while waiting for %s\n", what);
    exit(1);
  }
}

/* ---- The children ------------------------------------------------------------ */

static int which; /* the mutex the next child uses */

static void hold_mutex(void)
{
  CHECK(pthread_mutex_lock(&sh->mtx[which]) == 0);
  CHECK(sem_post(&sh->go) == 0);
  ms(100);
  CHECK(pthread_mutex_unlock(&sh->mtx[which]) == 0);
}

static void hold_long(void)
{
  CHECK(pthread_mutex_lock(&sh->mtx[0]) == 0);
  CHECK(sem_post(&sh->go) == 0);
  ms(400);
  CHECK(pthread_mutex_unlock(&sh->mtx[0]) == 0);
}

static void die_holding(void)
{
  CHECK(pthread_mutex_lock(&sh->mtx[2]) == 0);
  CHECK(sem_post(&sh->go) == 0);
  ms(50);
  _exit(0); /* the kernel marks the robust mutex: its owner died */
}

static void hold_write(void)
{
  CHECK(pthread_rwlock_wrlock(&sh->rw) == 0);
  CHECK(sem_post(&sh->go) == 0);
  ms(100);
  CHECK(pthread_rwlock_unlock(&sh->rw) == 0);
}

static void hold_read(void)
{
  CHECK(pthread_rwlock_rdlock(&sh->rw) == 0);
  CHECK(sem_post(&sh->go) == 0);
  ms(100);
  CHECK(pthread_rwlock_unlock(&sh->rw) == 0);
}

static void meet(void)
{
  atomic_store(&stop, true); /* the ticker a fork copied ends: the parent's side is under test */
  ms(100);
  for (int i = 0; i < 50; i++) {
    int r = pthread_barrier_wait(&sh->bar);
    CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD);
  }
}

static void post_later(void)
{
  ms(100);
  CHECK(sem_post(&sh->sem) == 0);
}

static void wait_cond(void)
{
  CHECK(pthread_mutex_lock(&sh->mtx[0]) == 0);
  CHECK(sem_post(&sh->go) == 0);
  while (!sh->flag)
    CHECK(pthread_cond_wait(&sh->cond, &sh->mtx[0]) == 0);
  CHECK(pthread_mutex_unlock(&sh->mtx[0]) == 0);
  ms(100);
  CHECK(pthread_mutex_lock(&sh->mtx[0]) == 0);
  sh->flag = 2;
  CHECK(pthread_cond_signal(&sh->cond) == 0);
  CHECK(pthread_mutex_unlock(&sh->mtx[0]) == 0);
}

static void *sem_waiter(void *arg)
{
  (void)arg;
  sem_wait(&sh->sem);
  return NULL; /* not reached: cancelled */
}

/* ---- The parent's side ---------------------------------------------------------- */

static void on_alarm(int sig) { (void)sig; }

static void round_of(bool with_ticker)
{
  pthread_t w;
  void *res;
  pid_t p;
  long t0;
  double s0;
  struct timespec abs;
  struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
  struct itimerval it = {.it_value = {0, 100000}};

  for (which = 0; which < 3; which++) { /* each mutex kind: woken by the child's unlock */
    p = spawn(hold_mutex);
    CHECK(sem_wait(&sh->go) == 0);
    t0 = atomic_load(&ticks);
    CHECK(pthread_mutex_lock(&sh->mtx[which]) == 0);
    ticked(with_ticker, t0, "a mutex");
    CHECK(pthread_mutex_unlock(&sh->mtx[which]) == 0);
    finish(p);
  }

  p = spawn(hold_long); /* a timed lock times out on its clock */
  CHECK(sem_wait(&sh->go) == 0);
  s0 = mono();
  abs = in_ms(CLOCK_REALTIME, 100);
  CHECK(pthread_mutex_timedlock(&sh->mtx[0], &abs) == ETIMEDOUT);
  abs = in_ms(CLOCK_MONOTONIC, 50);
  CHECK(pthread_mutex_clocklock(&sh->mtx[0], CLOCK_MONOTONIC, &abs) == ETIMEDOUT);
  CHECK(mono() - s0 >= 0.149);
  CHECK(pthread_mutex_lock(&sh->mtx[0]) == 0); /* and then it gets it */
  CHECK(pthread_mutex_unlock(&sh->mtx[0]) == 0);
  finish(p);

  p = spawn(die_holding); /* the owner dies: EOWNERDEAD, then usable again */
  CHECK(sem_wait(&sh->go) == 0);
  CHECK(pthread_mutex_lock(&sh->mtx[2]) == EOWNERDEAD);
  CHECK(pthread_mutex_consistent(&sh->mtx[2]) == 0);
  CHECK(pthread_mutex_unlock(&sh->mtx[2]) == 0);
  finish(p);

  p = spawn(hold_write); /* a reader waits for the writer */
  CHECK(sem_wait(&sh->go) == 0);
  t0 = atomic_load(&ticks);
  CHECK(pthread_rwlock_rdlock(&sh->rw) == 0);
  ticked(with_ticker, t0, "a read lock");
  CHECK(pthread_rwlock_unlock(&sh->rw) == 0);
  finish(p);

  p = spawn(hold_read); /* a writer waits for the reader */
  CHECK(sem_wait(&sh->go) == 0);
  abs = in_ms(CLOCK_REALTIME, 10);
  CHECK(pthread_rwlock_timedwrlock(&sh->rw, &abs) == ETIMEDOUT);
  t0 = atomic_load(&ticks);
  CHECK(pthread_rwlock_wrlock(&sh->rw) == 0);
  ticked(with_ticker, t0, "a write lock");
  CHECK(pthread_rwlock_unlock(&sh->rw) == 0);
  finish(p);

  p = spawn(meet); /* a barrier between processes, 50 rounds */
  t0 = atomic_load(&ticks);
  for (int i = 0; i < 50; i++) {
    int r = pthread_barrier_wait(&sh->bar);
    CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD);
  }
  ticked(with_ticker, t0, "a barrier");
  finish(p);

  p = spawn(post_later); /* a semaphore posted later; a timed wait times out first */
  abs = in_ms(CLOCK_MONOTONIC, 20);
  CHECK(sem_clockwait(&sh->sem, CLOCK_MONOTONIC, &abs) == -1 && errno == ETIMEDOUT);
  t0 = atomic_load(&ticks);
  CHECK(sem_wait(&sh->sem) == 0);
  ticked(with_ticker, t0, "a semaphore");
  finish(p);

  CHECK(pthread_create(&w, NULL, sem_waiter, NULL) == 0); /* a cancelled waiter takes nothing */
  ms(50);
  CHECK(pthread_cancel(w) == 0);
  CHECK(pthread_join(w, &res) == 0 && res == PTHREAD_CANCELED);
  p = spawn(post_later);
  CHECK(sem_wait(&sh->sem) == 0);
  finish(p);

  CHECK(sigaction(SIGALRM, &sa, NULL) == 0); /* a handler without SA_RESTART: EINTR */
  CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
  CHECK(sem_wait(&sh->sem) == -1 && errno == EINTR);

  sh->flag = 0; /* a condition variable: each side signals the other */
  p = spawn(wait_cond);
  CHECK(sem_wait(&sh->go) == 0);
  CHECK(pthread_mutex_lock(&sh->mtx[0]) == 0);
  abs = in_ms(CLOCK_REALTIME, 20); /* nobody signals yet: it times out, the mutex held again */
  CHECK(pthread_cond_timedwait(&sh->cond, &sh->mtx[0], &abs) == ETIMEDOUT);
  CHECK(pthread_mutex_trylock(&sh->mtx[0]) == EBUSY);
  sh->flag = 1;
  CHECK(pthread_cond_signal(&sh->cond) == 0);
  t0 = atomic_load(&ticks);
  while (sh->flag != 2)
    CHECK(pthread_cond_wait(&sh->cond, &sh->mtx[0]) == 0);
  ticked(with_ticker, t0, "a condition variable");
  CHECK(pthread_mutex_unlock(&sh->mtx[0]) == 0);
  finish(p);
}

int main(void)
{
  pthread_mutexattr_t ma;
  pthread_rwlockattr_t ra;
  pthread_barrierattr_t ba;
  pthread_condattr_t ca;
  pthread_t t;

  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(sh != MAP_FAILED);
  for (int i = 0; i < 3; i++) {
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    if (i == 1)
      pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    if (i == 2)
      pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    CHECK(pthread_mutex_init(&sh->mtx[i], &ma) == 0);
  }
  pthread_rwlockattr_init(&ra);
  pthread_rwlockattr_setpshared(&ra, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_rwlock_init(&sh->rw, &ra) == 0);
  pthread_barrierattr_init(&ba);
  pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_barrier_init(&sh->bar, &ba, 2) == 0);
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_cond_init(&sh->cond, &ca) == 0);
  CHECK(sem_init(&sh->go, 1, 0) == 0 && sem_init(&sh->sem, 1, 0) == 0);

  round_of(false);
  CHECK(pthread_create(&t, NULL, ticker, NULL) == 0);
  round_of(true);
  atomic_store(&stop, true);
  CHECK(pthread_join(t, NULL) == 0);
  printf("process-shared objects woken by another process\n");
  return 0;
}
