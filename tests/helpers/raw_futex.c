/* raw_futex.c CASE: raw futex waits, syscall(SYS_futex, ...), as the locks
 * of Rust's standard library and of several C++ libraries make them.  Each
 * case runs the same natively and under the launcher, where a raw wait
 * used to hold the whole OS thread (preload/block.c, note E):
 *   lock     a futex lock held by a thread that sleeps, wanted by another:
 *            the holder wakes, unlocks, the waiter gets it (under the old
 *            launcher: the waiter held the hub, the holder never woke);
 *   ticker   a thread waits untimed on a word while main ticks five times,
 *            then sets the word and wakes it;
 *   timeout  relative FUTEX_WAIT and absolute FUTEX_WAIT_BITSET timeouts
 *            end with ETIMEDOUT, while another thread runs meanwhile;
 *   again    a word that differs: EAGAIN at once; a bad timeout: EINVAL;
 *   eintr    a handler without SA_RESTART ends an untimed wait with EINTR.
 */
#include "check.h"
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts,
                  uint32_t val3)
{
  return syscall(SYS_futex, word, op, val, ts, NULL, val3);
}

/* ---- lock: a three-state futex lock (0 free, 1 held, 2 held with waiters) */

static _Atomic uint32_t lockword;
static int held[2];

static void lock(void)
{
  uint32_t c = 0;
  if (atomic_compare_exchange_strong(&lockword, &c, 1))
    return;
  if (c != 2)
    c = atomic_exchange(&lockword, 2);
  while (c != 0) {
    futex(&lockword, FUTEX_WAIT_PRIVATE, 2, NULL, 0);
    c = atomic_exchange(&lockword, 2);
  }
}

static void unlock(void)
{
  if (atomic_exchange(&lockword, 0) == 2)
    futex(&lockword, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
}

static int order[2], done;

static void *holder(void *arg)
{
  (void)arg;
  lock();
  CHECK(write(held[1], "h", 1) == 1);
  usleep(100000); /* sleeps holding the lock: the waiter must not stop it */
  order[done++] = 'h';
  unlock();
  return NULL;
}

static void *taker(void *arg)
{
  (void)arg;
  lock();
  order[done++] = 't';
  unlock();
  return NULL;
}

static void case_lock(void)
{
  pthread_t h, t;
  char c;
  CHECK(pipe(held) == 0);
  CHECK(pthread_create(&h, NULL, holder, NULL) == 0);
  CHECK(read(held[0], &c, 1) == 1); /* the holder has the lock */
  CHECK(pthread_create(&t, NULL, taker, NULL) == 0);
  CHECK(pthread_join(h, NULL) == 0 && pthread_join(t, NULL) == 0);
  CHECK(done == 2 && order[0] == 'h' && order[1] == 't' && lockword == 0);
  puts("the waiter took the lock after the holder's sleep");
}

/* ---- ticker ------------------------------------------------------------ */

static _Atomic uint32_t word;
static _Atomic int ticks, ticks_seen;

static void *waiter(void *arg)
{
  (void)arg;
  while (atomic_load(&word) == 0) {
    long r = futex(&word, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    CHECK(r == 0 || errno == EAGAIN);
  }
  ticks_seen = ticks;
  return NULL;
}

static void case_ticker(void)
{
  pthread_t t;
  CHECK(pthread_create(&t, NULL, waiter, NULL) == 0);
  for (int i = 0; i < 5; i++) {
    usleep(20000);
    ticks++;
  }
  atomic_store(&word, 1);
  CHECK(futex(&word, FUTEX_WAKE_PRIVATE, 1, NULL, 0) >= 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(ticks_seen == 5);
  puts("5 ticks while a thread waited on a futex, then it woke");
}

/* ---- timeout ----------------------------------------------------------- */

static void *tick_briefly(void *arg)
{
  (void)arg;
  for (int i = 0; i < 3; i++) {
    usleep(1000);
    ticks++;
  }
  return NULL;
}

static void case_timeout(void)
{
  pthread_t t;
  struct timespec rel = {0, 200000000}, abs;
  double t0 = mono();
  int saved;
  CHECK(pthread_create(&t, NULL, tick_briefly, NULL) == 0);
  errno = 0;
  CHECK(futex(&word, FUTEX_WAIT_PRIVATE, 0, &rel, 0) == -1 && errno == ETIMEDOUT);
  saved = ticks;
  CHECK(mono() - t0 >= 0.2);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(saved == 3); /* the other thread ran while this one waited */
  clock_gettime(CLOCK_MONOTONIC, &abs);
  abs.tv_nsec += 50000000;
  if (abs.tv_nsec >= 1000000000) {
    abs.tv_sec++;
    abs.tv_nsec -= 1000000000;
  }
  t0 = mono();
  CHECK(futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 0, &abs, FUTEX_BITSET_MATCH_ANY) == -1 &&
        errno == ETIMEDOUT);
  CHECK(mono() - t0 >= 0.045);
  puts("relative and absolute timeouts: ETIMEDOUT, the other thread ran");
}

/* ---- again ------------------------------------------------------------- */

static void *check_again(void *arg)
{
  struct timespec bad = {0, 2000000000L};
  (void)arg;
  atomic_store(&word, 7);
  CHECK(futex(&word, FUTEX_WAIT_PRIVATE, 6, NULL, 0) == -1 && errno == EAGAIN);
  CHECK(futex(&word, FUTEX_WAIT_PRIVATE, 7, &bad, 0) == -1 && errno == EINVAL);
  errno = 1234;
  CHECK(futex(&word, FUTEX_WAKE_PRIVATE, 1, NULL, 0) == 0 && errno == 1234);
  return NULL;
}

static void case_again(void)
{
  pthread_t t;
  CHECK(pthread_create(&t, NULL, check_again, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  puts("EAGAIN for a changed word, EINVAL for a bad timeout, errno kept on success");
}

/* ---- eintr ------------------------------------------------------------- */

static _Atomic int interrupted, handled;

static void on_usr1(int sig)
{
  (void)sig;
  handled++;
}

static pthread_t main_thread;

static void *send_until_interrupted(void *arg)
{
  (void)arg;
  while (!interrupted) { /* some of these may arrive before the wait */
    CHECK(pthread_kill(main_thread, SIGUSR1) == 0);
    usleep(2000);
  }
  return NULL;
}

static void case_eintr(void)
{
  pthread_t t;
  struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  main_thread = pthread_self();
  CHECK(pthread_create(&t, NULL, send_until_interrupted, NULL) == 0);
  while (!interrupted) {
    long r = futex(&word, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    CHECK(r == -1);
    if (errno == EINTR)
      interrupted = 1;
    else
      CHECK(errno == EAGAIN);
  }
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(handled >= 1);
  puts("a handler without SA_RESTART ended the wait with EINTR");
}

int main(int argc, char **argv)
{
  static const struct {
    const char *name;
    void (*run)(void);
  } cases[] = {{"lock", case_lock},   {"ticker", case_ticker}, {"timeout", case_timeout},
               {"again", case_again}, {"eintr", case_eintr}};
  CHECK(argc == 2);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    if (!strcmp(argv[1], cases[i].name)) {
      cases[i].run();
      return 0;
    }
  fprintf(stderr, "raw_futex: unknown case %s\n", argv[1]);
  return 2;
}
