/* raw_block: threads blocked in raw system calls that the shim does not
 * translate (syscall(SYS_ppoll), syscall(SYS_semop)) while the main thread
 * goes on ticking, then wakes them.  Natively each thread has its own OS
 * thread.  Under the launcher they share a hub (--hubs 1): the hub must go
 * on on another OS thread while such a call blocks (hub/handoff.c), or the
 * main thread never ticks again and alarm() ends the program.
 *
 *   raw_block ppoll   one thread in ppoll on a pipe; the main thread ticks
 *                     10 times, then writes the byte it waits for
 *   raw_block semop   the same with a System V semaphore
 *   raw_block many    6 threads, each in ppoll on a pipe of its own
 *   raw_block self    what a thread is stays with it across the call: its
 *                     __thread variable, errno, pthread_self(), gettid()
 *   raw_block signal  pthread_kill interrupts the blocked ppoll: the
 *                     handler runs in that thread, ppoll fails with EINTR
 *   raw_block again   one thread in ppoll 20 times in a row, each woken
 *                     after a tick of the main thread
 *   raw_block fork    one thread in ppoll while the main thread forks: the
 *                     child (which has only the forking thread) sleeps and
 *                     exits 0; the parent then wakes the thread
 *   raw_block main    the main thread in ppoll while a thread ticks 10 times
 *                     and wakes it: what the main thread is stays with it
 *                     (its __thread variable, errno, pthread_self(), gettid())
 *   raw_block main_again   the main thread in ppoll 20 times in a row
 *   raw_block main_signal  pthread_kill of the main thread interrupts its
 *                     ppoll: the handler runs in it, ppoll fails with EINTR
 *   raw_block main_many    the main thread and 3 threads in ppoll: the
 *                     ticking thread wakes one of the three, then the main
 *                     thread, which wakes the other two
 *   raw_block main_fork    a thread forks while the main thread is in ppoll:
 *                     the child (only the forking thread) exits 0, then the
 *                     parent's thread wakes the main thread
 *   raw_block stall   (a measurement, scripts/bench) a thread wakes the main
 *                     thread and enters a raw ppoll, 50 times, 3 ms apart:
 *                     prints the worst and the median time from its
 *                     entering to the main thread's running, in
 *                     microseconds (the stall a hand-off bounds)
 *   raw_block main_stall   the same with the roles turned: the main thread
 *                     wakes a thread and enters the raw ppoll
 */
#include "check.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define TICKS 10
#define MANY 6

static __thread long mine = 0;
static int pipes[MANY][2];
static int semid;
static volatile sig_atomic_t handled;
static __thread volatile sig_atomic_t handled_here;

/* A raw ppoll on fd for reading, without a timeout: 1, or -errno. */
static long raw_ppoll(int fd)
{
  struct pollfd p = {.fd = fd, .events = POLLIN};
  long r = syscall(SYS_ppoll, &p, 1, NULL, NULL, 8);
  return r < 0 ? -errno : r;
}

static void tick(void)
{
  struct timespec ts = {0, 10 * 1000 * 1000};
  for (int i = 0; i < TICKS; i++)
    CHECK(nanosleep(&ts, NULL) == 0);
}

static void *in_ppoll(void *arg)
{
  int k = (int)(intptr_t)arg;
  char c;
  CHECK(raw_ppoll(pipes[k][0]) == 1);
  CHECK(read(pipes[k][0], &c, 1) == 1 && c == 'x');
  return NULL;
}

static void *in_semop(void *arg)
{
  struct sembuf down = {.sem_num = 0, .sem_op = -1};
  long r;
  (void)arg;
  /* a stop signal (SIGSTOP, then SIGCONT) fails semop with EINTR, even
     with no handler: natively too (signal(7)) */
  while ((r = syscall(SYS_semop, semid, &down, 1)) < 0 && errno == EINTR)
    ;
  CHECK(r == 0);
  return NULL;
}

static pthread_t self_at_start;
static void *in_ppoll_self(void *arg)
{
  pid_t tid = gettid();
  char c;
  (void)arg;
  mine = 42;
  self_at_start = pthread_self();
  errno = 77;
  CHECK(raw_ppoll(pipes[0][0]) == 1);
  CHECK(errno == 77); /* a call that succeeds leaves errno alone */
  CHECK(mine == 42);
  CHECK(pthread_equal(pthread_self(), self_at_start));
  CHECK(gettid() == tid);
  CHECK(read(pipes[0][0], &c, 1) == 1);
  return NULL;
}

static void on_usr1(int sig)
{
  (void)sig;
  handled_here = 1;
  handled = 1;
}

static void *in_ppoll_signal(void *arg)
{
  (void)arg;
  mine = 7;
  CHECK(raw_ppoll(pipes[0][0]) == -EINTR);
  CHECK(handled_here == 1); /* the handler ran in this thread */
  CHECK(mine == 7);
  return NULL;
}

static void *in_ppoll_again(void *arg)
{
  char c;
  (void)arg;
  for (int i = 0; i < 20; i++) {
    CHECK(raw_ppoll(pipes[0][0]) == 1);
    CHECK(read(pipes[0][0], &c, 1) == 1);
    CHECK(write(pipes[1][1], "y", 1) == 1);
  }
  return NULL;
}

static volatile double entered;
static void *in_ppoll_rounds(void *arg)
{
  char c;
  (void)arg;
  for (int i = 0; i < 50; i++) {
    entered = mono();
    CHECK(write(pipes[1][1], "r", 1) == 1);
    CHECK(raw_ppoll(pipes[0][0]) == 1);
    CHECK(read(pipes[0][0], &c, 1) == 1);
  }
  return NULL;
}

/* The main thread's side: one thread does what arg says while it waits. */
static pthread_t main_thread;
static const char *waker_mode;

static void *waker(void *arg)
{
  struct timespec ts = {0, 2 * 1000 * 1000};
  char c;
  (void)arg;
  mine = 9;
  if (!strcmp(waker_mode, "main")) {
    tick();
    CHECK(write(pipes[0][1], "x", 1) == 1);
  } else if (!strcmp(waker_mode, "main_again")) {
    for (int i = 0; i < 20; i++) {
      CHECK(nanosleep(&ts, NULL) == 0);
      CHECK(write(pipes[0][1], "x", 1) == 1);
      CHECK(read(pipes[1][0], &c, 1) == 1);
    }
  } else if (!strcmp(waker_mode, "main_signal")) {
    tick();
    CHECK(!handled);
    CHECK(pthread_kill(main_thread, SIGUSR1) == 0);
  } else if (!strcmp(waker_mode, "main_many")) {
    tick();
    CHECK(write(pipes[1][1], "x", 1) == 1); /* one of the three, while the main thread is away */
    tick();
    CHECK(write(pipes[0][1], "x", 1) == 1);
  } else if (!strcmp(waker_mode, "main_fork")) {
    pid_t child;
    int st;
    tick();
    CHECK((child = fork()) >= 0);
    if (child == 0) {
      ts.tv_nsec = 20 * 1000 * 1000;
      CHECK(nanosleep(&ts, NULL) == 0);
      _exit(mine == 9 ? 0 : 3);
    }
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(write(pipes[0][1], "x", 1) == 1);
  }
  CHECK(mine == 9);
  return NULL;
}

static void main_waits(const char *mode)
{
  pid_t tid = gettid();
  pthread_t t[MANY];
  char c;
  main_thread = pthread_self();
  waker_mode = mode;
  if (!strcmp(mode, "main_signal")) {
    struct sigaction sa = {.sa_handler = on_usr1};
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  }
  if (!strcmp(mode, "main_many"))
    for (int i = 1; i < 4; i++)
      CHECK(pthread_create(&t[i], NULL, in_ppoll, (void *)(intptr_t)i) == 0);
  CHECK(pthread_create(&t[0], NULL, waker, NULL) == 0);
  mine = 42;
  for (int i = 0; i < (!strcmp(mode, "main_again") ? 20 : 1); i++) {
    errno = 77;
    if (!strcmp(mode, "main_signal")) {
      CHECK(raw_ppoll(pipes[0][0]) == -EINTR);
      CHECK(handled_here == 1); /* the handler ran in the main thread */
    } else {
      CHECK(raw_ppoll(pipes[0][0]) == 1);
      CHECK(errno == 77);
      CHECK(read(pipes[0][0], &c, 1) == 1 && c == 'x');
    }
    CHECK(mine == 42);
    CHECK(pthread_equal(pthread_self(), main_thread));
    CHECK(gettid() == tid);
    if (!strcmp(mode, "main_again"))
      CHECK(write(pipes[1][1], "y", 1) == 1);
  }
  if (!strcmp(mode, "main_many")) {
    CHECK(write(pipes[2][1], "x", 1) == 1);
    CHECK(write(pipes[3][1], "x", 1) == 1);
    for (int i = 1; i < 4; i++)
      CHECK(pthread_join(t[i], NULL) == 0);
  }
  CHECK(pthread_join(t[0], NULL) == 0);
  mine = 1;
}

/* main_stall: the measuring side, in a thread. */
static double late_main[50];
static void *measure_main(void *arg)
{
  struct timespec ts = {0, 3 * 1000 * 1000};
  char c;
  (void)arg;
  for (int i = 0; i < 50; i++) {
    CHECK(read(pipes[1][0], &c, 1) == 1); /* it wrote, then entered ppoll */
    late_main[i] = mono() - entered;
    CHECK(nanosleep(&ts, NULL) == 0);
    CHECK(write(pipes[0][1], "x", 1) == 1);
  }
  return NULL;
}

/* The worst and the median of n stalls, in microseconds. */
static void print_stalls(double *late, int n)
{
  double worst = 0;
  for (int i = 0; i < n; i++)
    if (late[i] > worst)
      worst = late[i];
  for (int i = 1; i < n; i++) /* insertion sort for the median */
    for (int k = i; k > 0 && late[k - 1] > late[k]; k--) {
      double x = late[k];
      late[k] = late[k - 1];
      late[k - 1] = x;
    }
  printf("stall_worst_us %.0f\nstall_median_us %.0f\n", worst * 1e6, late[n / 2] * 1e6);
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "ppoll";
  pthread_t t[MANY];
  alarm(getenv("RB_ALARM") ? (unsigned)atoi(getenv("RB_ALARM")) : 20); /* a hub left waiting never ticks again */
  for (int i = 0; i < MANY; i++)
    CHECK(pipe(pipes[i]) == 0);
  mine = 1;
  if (!strcmp(mode, "ppoll") || !strcmp(mode, "self")) {
    CHECK(pthread_create(&t[0], NULL, !strcmp(mode, "ppoll") ? in_ppoll : in_ppoll_self, NULL) == 0);
    tick();
    CHECK(write(pipes[0][1], "x", 1) == 1);
    CHECK(pthread_join(t[0], NULL) == 0);
  } else if (!strcmp(mode, "semop")) {
    struct sembuf up = {.sem_num = 0, .sem_op = 1};
    CHECK((semid = semget(IPC_PRIVATE, 1, 0600)) >= 0);
    CHECK(pthread_create(&t[0], NULL, in_semop, NULL) == 0);
    tick();
    CHECK(semop(semid, &up, 1) == 0);
    CHECK(pthread_join(t[0], NULL) == 0);
    CHECK(semctl(semid, 0, IPC_RMID) == 0);
  } else if (!strcmp(mode, "many")) {
    for (int i = 0; i < MANY; i++)
      CHECK(pthread_create(&t[i], NULL, in_ppoll, (void *)(intptr_t)i) == 0);
    tick();
    for (int i = 0; i < MANY; i++)
      CHECK(write(pipes[i][1], "x", 1) == 1);
    for (int i = 0; i < MANY; i++)
      CHECK(pthread_join(t[i], NULL) == 0);
  } else if (!strcmp(mode, "signal")) {
    struct sigaction sa = {.sa_handler = on_usr1}; /* ppoll is never restarted anyway */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(pthread_create(&t[0], NULL, in_ppoll_signal, NULL) == 0);
    tick();
    CHECK(!handled);
    CHECK(pthread_kill(t[0], SIGUSR1) == 0);
    CHECK(pthread_join(t[0], NULL) == 0);
    CHECK(handled);
  } else if (!strcmp(mode, "again")) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    char c;
    CHECK(pthread_create(&t[0], NULL, in_ppoll_again, NULL) == 0);
    for (int i = 0; i < 20; i++) {
      CHECK(nanosleep(&ts, NULL) == 0);
      CHECK(write(pipes[0][1], "x", 1) == 1);
      CHECK(read(pipes[1][0], &c, 1) == 1);
    }
    CHECK(pthread_join(t[0], NULL) == 0);
  } else if (!strcmp(mode, "fork")) {
    pid_t child;
    int st;
    CHECK(pthread_create(&t[0], NULL, in_ppoll, NULL) == 0);
    tick();
    CHECK((child = fork()) >= 0);
    if (child == 0) {
      struct timespec ts = {0, 20 * 1000 * 1000};
      CHECK(nanosleep(&ts, NULL) == 0);
      _exit(mine == 1 ? 0 : 3);
    }
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(write(pipes[0][1], "x", 1) == 1);
    CHECK(pthread_join(t[0], NULL) == 0);
  } else if (!strcmp(mode, "main_stall")) {
    char c;
    CHECK(pthread_create(&t[0], NULL, measure_main, NULL) == 0);
    for (int i = 0; i < 50; i++) {
      entered = mono();
      CHECK(write(pipes[1][1], "r", 1) == 1);
      CHECK(raw_ppoll(pipes[0][0]) == 1);
      CHECK(read(pipes[0][0], &c, 1) == 1);
    }
    CHECK(pthread_join(t[0], NULL) == 0);
    print_stalls(late_main, 50);
    return 0;
  } else if (!strncmp(mode, "main", 4)) {
    main_waits(mode);
  } else if (!strcmp(mode, "stall")) {
    enum { ROUNDS = 50 };
    struct timespec ts = {0, 3 * 1000 * 1000};
    double late[ROUNDS];
    char c;
    CHECK(pthread_create(&t[0], NULL, in_ppoll_rounds, NULL) == 0);
    for (int i = 0; i < ROUNDS; i++) {
      CHECK(read(pipes[1][0], &c, 1) == 1); /* it wrote, then entered ppoll */
      late[i] = mono() - entered;
      CHECK(nanosleep(&ts, NULL) == 0);
      CHECK(write(pipes[0][1], "x", 1) == 1);
    }
    CHECK(pthread_join(t[0], NULL) == 0);
    print_stalls(late, ROUNDS);
    return 0;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  CHECK(mine == 1); /* the main thread's own, untouched */
  printf("%s: ok\n", mode);
  return 0;
}
