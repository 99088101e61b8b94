/* rel_signals.c: a signal storm on threads doing blocking I/O.  A child
 * process sends STORM signals to this one, alternately SIGUSR1 (handler
 * installed with SA_RESTART) and SIGUSR2 (handler without it), while:
 *  - PAIRS pairs of threads play ping-pong over blocking socketpairs;
 *  - two threads hand a counter back and forth under a mutex and a
 *    condition variable;
 *  - one thread sleeps in nanosleep(), 1 ms at a time;
 *  - the main thread waits for the child in waitpid().
 * Every blocked call either resumes or fails with EINTR and is retried, as a
 * careful program does; nothing may crash, every token must come back in
 * order, and no wake-up may be lost (a lost one hangs the run until the
 * deadline, which fails it with a message).  Each thread goes on until the
 * storm is over and it has done at least ROUNDS rounds, so the storm meets
 * the threads in every state.  Prints one line on stdout, the same natively
 * and under the launcher (counts, which differ, go to stderr with REL_REPORT
 * set).
 *
 * Notes.
 * A. No signal lost.  Standard signals coalesce while pending, so a burst
 *    proves only that the handler ran.  Two phases pin down more:
 *    lock-step (LOCKSTEP signals): the child sends one signal and waits,
 *    bounded, until the handler for it has run before sending the next, so
 *    nothing is pending when a signal is sent and every one must run its
 *    handler; burst (the rest): sent back to back, and then the handler of
 *    each kind must run once more after the last signal of its kind was
 *    sent.  The child numbers its signals in shared memory (seq) before
 *    each kill(); the handler records the number it sees, so a run that
 *    saw the last number happened after the last signal was sent.
 * B. Shared memory is a memfd page mapped MAP_SHARED by both, with
 *    lock-free atomics; the child polls it every 50 us, bounded.
 * C. The child is this program again (/proc/self/exe storm PID FD), started
 *    with posix_spawn() rather than fork(): glibc's posix_spawn runs the new
 *    process in a vfork-style clone that execs at once, so the storm's
 *    subject is signals alone.
 */
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define STORM 10000    /* signals sent */
#define PAIRS 4        /* socketpair ping-pong pairs */
#define ROUNDS 2000    /* least rounds per pair, hand-offs, sleeps / 10 */
#define DEADLINE_S 100 /* the whole run */

#define LOCKSTEP 2000  /* signals sent one at a time (note A) */
#define WAIT_S 20      /* longest the child waits for one handler run */

/* Shared with the child (note B). */
struct shared {
  atomic_long seq;      /* number of the signal being sent */
  atomic_long hits[2];  /* handler runs: [0] SIGUSR1, [1] SIGUSR2 */
  atomic_long seen[2];  /* seq as the latest run of each handler saw it */
};
static struct shared *sh;
static atomic_int storm_over;
static long eintr_seen; /* under lock: calls that failed with EINTR */
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int sig)
{
  int k = sig == SIGUSR2;
  atomic_store(&sh->seen[k], atomic_load(&sh->seq));
  atomic_fetch_add(&sh->hits[k], 1);
}
static void on_deadline(int sig)
{
  static const char msg[] = "rel_signals: deadline passed: a blocked call never woke up\n";
  (void)sig;
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

static void count_eintr(long n)
{
  pthread_mutex_lock(&count_lock);
  eintr_seen += n;
  pthread_mutex_unlock(&count_lock);
}

/* Moves exactly n bytes, retrying EINTR and short transfers; counts EINTRs. */
static void xfer(int fd, void *buf, size_t n, int writing, long *eintr)
{
  char *p = buf;
  while (n > 0) {
    ssize_t r = writing ? write(fd, p, n) : read(fd, p, n);
    if (r < 0 && errno == EINTR) {
      (*eintr)++;
      continue;
    }
    CHECK(r > 0);
    p += r;
    n -= (size_t)r;
  }
}

static int more(long round) { return round < ROUNDS || !atomic_load(&storm_over); }

/* Ping side: sends i, expects i + 1 back. */
static void *ping(void *arg)
{
  int fd = (int)(intptr_t)arg;
  long eintr = 0;
  uint32_t v, w;
  for (long i = 0; more(i); i++) {
    v = (uint32_t)i * 2;
    xfer(fd, &v, sizeof v, 1, &eintr);
    xfer(fd, &w, sizeof w, 0, &eintr);
    if (w != v + 1)
      fprintf(stderr, "rel_signals: ping %ld: sent %u, got %u back\n", i, v, w);
    CHECK(w == v + 1);
  }
  v = UINT32_MAX; /* the end */
  xfer(fd, &v, sizeof v, 1, &eintr);
  count_eintr(eintr);
  return NULL;
}

static void *pong(void *arg)
{
  int fd = (int)(intptr_t)arg;
  long eintr = 0;
  uint32_t v;
  for (;;) {
    xfer(fd, &v, sizeof v, 0, &eintr);
    if (v == UINT32_MAX)
      break;
    v++;
    xfer(fd, &v, sizeof v, 1, &eintr);
  }
  count_eintr(eintr);
  return NULL;
}

/* Two threads hand a counter back and forth: turn says whose it is. */
static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hand_cond = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn, hand_done;

static void *hand(void *arg)
{
  int me = (int)(intptr_t)arg;
  pthread_mutex_lock(&hand_lock);
  for (long i = 0;; i++) {
    while (turn != me && !hand_done)
      pthread_cond_wait(&hand_cond, &hand_lock);
    if (hand_done)
      break;
    CHECK(counter % 2 == me);
    counter++;
    if (me == 0 && !more(i))
      hand_done = 1;
    turn = !me;
    pthread_cond_broadcast(&hand_cond);
  }
  pthread_mutex_unlock(&hand_lock);
  return NULL;
}

static void *sleeper(void *arg)
{
  long eintr = 0;
  (void)arg;
  for (long i = 0; more(i * 10); i++) {
    struct timespec ts = {0, 1000000}, left;
    while (nanosleep(&ts, &left) < 0) {
      CHECK(errno == EINTR);
      eintr++;
      ts = left;
    }
  }
  count_eintr(eintr);
  return NULL;
}

/* Polls (bounded, note B) until *v >= want; 0 on time out. */
static int wait_at_least(atomic_long *v, long want, pid_t parent)
{
  struct timespec tick = {0, 50000};
  double end = mono() + WAIT_S;
  while (atomic_load(v) < want)
    if (mono() > end || nanosleep(&tick, NULL) < 0 || kill(parent, 0) < 0)
      return 0;
  return 1;
}

/* The child: sends the storm (note A).  Returns its exit status. */
static int storm(pid_t parent)
{
  for (long i = 1; i <= STORM; i++) {
    int k = (int)(i % 2);
    long before = atomic_load(&sh->hits[k]);
    atomic_store(&sh->seq, i);
    if (kill(parent, k ? SIGUSR2 : SIGUSR1) < 0)
      return 1;
    if (i <= LOCKSTEP && !wait_at_least(&sh->hits[k], before + 1, parent)) {
      fprintf(stderr, "rel_signals: signal %ld (SIG%s), sent with none pending, never ran its handler\n",
              i, k ? "USR2" : "USR1");
      return 1;
    }
  }
  for (int k = 0; k < 2; k++)
    if (!wait_at_least(&sh->seen[k], STORM - k, parent)) {
      fprintf(stderr, "rel_signals: SIG%s's handler did not run after the burst's last signal "
              "(the last run saw signal %ld of %d)\n", k ? "USR2" : "USR1", atomic_load(&sh->seen[k]), STORM);
      return 1;
    }
  return 0;
}

extern char **environ;

int main(int argc, char **argv)
{
  struct sigaction sa;
  pthread_t t[2 * PAIRS + 3];
  int nt = 0, st, mfd;
  pid_t child, parent = getpid();
  char pid_arg[32], fd_arg[32];

  if (argc == 4 && !strcmp(argv[1], "storm")) { /* the child (note C) */
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED, atoi(argv[3]), 0);
    CHECK(sh != MAP_FAILED);
    return storm(atoi(argv[2]));
  }
  memset(&sa, 0, sizeof sa);
  CHECK((mfd = memfd_create("rel_signals", 0)) >= 0 && ftruncate(mfd, sizeof *sh) == 0);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  CHECK(sh != MAP_FAILED);
  sa.sa_handler = on_deadline;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  alarm(DEADLINE_S);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sa.sa_handler = on_signal;
  sa.sa_flags = 0;
  CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);

  for (int i = 0; i < PAIRS; i++) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(pthread_create(&t[nt++], NULL, ping, (void *)(intptr_t)sv[0]) == 0);
    CHECK(pthread_create(&t[nt++], NULL, pong, (void *)(intptr_t)sv[1]) == 0);
  }
  CHECK(pthread_create(&t[nt++], NULL, hand, (void *)0) == 0);
  CHECK(pthread_create(&t[nt++], NULL, hand, (void *)1) == 0);
  CHECK(pthread_create(&t[nt++], NULL, sleeper, NULL) == 0);

  snprintf(pid_arg, sizeof pid_arg, "%d", (int)parent);
  snprintf(fd_arg, sizeof fd_arg, "%d", mfd);
  char *child_argv[] = {"rel_signals", "storm", pid_arg, fd_arg, NULL};
  CHECK(posix_spawn(&child, "/proc/self/exe", NULL, NULL, child_argv, environ) == 0);
  while (waitpid(child, &st, 0) < 0)
    CHECK(errno == EINTR);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  atomic_store(&storm_over, 1);
  for (int i = 0; i < nt; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(counter >= 2 * ROUNDS);
  if (getenv("REL_REPORT"))
    fprintf(stderr, "rel_signals: handlers ran %ld (SA_RESTART) and %ld (plain) times; %ld calls failed "
          "with EINTR and were retried\n", atomic_load(&sh->hits[0]), atomic_load(&sh->hits[1]), eintr_seen);
  printf("signal storm: %d signals (%d one at a time, each handled); %d socket pairs, a condition variable hand-off and a sleeper "
         "all completed\n", STORM, LOCKSTEP, PAIRS);
  return 0;
}
