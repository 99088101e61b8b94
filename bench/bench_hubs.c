/* bench_hubs.c: what crossing between hubs costs, and what a blocking call
 * handed to the blocking pool costs the other threads of its hub.  A plain
 * pthread program, built without kudzu; scripts/bench_hubs runs it
 * natively and under the launcher (--hubs 1, --hubs 2) and names the rows.
 *
 *   bench_hubs spawn N   N rounds of pthread_create + pthread_join, each
 *                        timed alone and sorted by whether the new thread
 *                        ran on the creator's OS thread (note A)
 *   bench_hubs burst N   rounds of N pthread_create in a row, then N joins:
 *                        the best round's time per thread, of the creates
 *                        alone and of the whole round
 *   bench_hubs wake N    two threads hand a turn back and forth N times each
 *                        through a mutex and two condition variables
 *   bench_hubs stall     a thread blocks in flock() on a file a child
 *                        process holds locked, while another thread ticks
 *                        every 1 ms (note C)
 *
 * Each mode prints "key value" lines:
 *   spawn: remote_ns, local_ns (mean spawn + join of a thread that ran on
 *          another OS thread / on the creator's), remote, local (counts)
 *   burst: create_ns, round_ns (per thread; the best of 50 rounds),
 *          spread (the OS threads the threads ran on)
 *   wake:  wake_ns (one one-way wake: the run's time over 2N hand-offs),
 *          same_os_thread (1 if both threads ran on one OS thread)
 *   stall: before_us (the latest tick of 100 before the call), during_us
 *          (the latest tick while the call was blocked), ticks (how many
 *          ticks fell in the call), same_os_thread (1 if the ticker and the
 *          thread in flock ran on one OS thread)
 * Exit status 0, or 1 with a message if the run was not what it measures.
 *
 * Notes.
 * A. The OS thread a thread runs on: the gettid system call made by the
 *    instruction itself, which no interposer sees (under the launcher the
 *    libc gettid, even syscall(SYS_gettid), names the green thread).  Under
 *    --hubs 2 the shim places new threads on the hub with the fewest live
 *    threads, in turn among equals, so rounds of spawn + join alternate
 *    between the creator's hub and the other: each round is counted by the
 *    OS thread its new thread really ran on, never by the expected turn.
 * B. Wake: the turn is handed over with the mutex held, and the condition
 *    variable signalled after the unlock, so the woken thread finds the
 *    mutex free.  Natively the two threads are on two OS threads; under
 *    --hubs 2 they are checked to be (the script fails the row otherwise).
 * C. Stall: the ticks sleep to absolute deadlines 1 ms apart
 *    (clock_nanosleep TIMER_ABSTIME), and a tick's lateness is when it woke
 *    past its deadline.  The child takes the lock before any thread starts;
 *    the ticker tells it to let go after 200 ticks inside the call, so the
 *    call blocks for about 200 ms; the call returning before that fails
 *    the run (it did not block).  Under the launcher with one hub both
 *    threads are green threads of the same hub, and flock() would stop the
 *    hub's OS thread: the shim hands it to a worker (preload/block.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIE(...) (fprintf(stderr, "bench_hubs: " __VA_ARGS__), fputc('\n', stderr), exit(1))

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The OS thread's id, from the system call itself (note A). */
static long os_tid(void)
{
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_gettid) : "rcx", "r11", "memory");
  return r;
}

/* ---- spawn ------------------------------------------------------------------------ */

static void *record_tid(void *arg)
{
  *(long *)arg = os_tid();
  return NULL;
}

static int spawn(long n)
{
  long me = os_tid(), tid, counts[2] = {0, 0};
  uint64_t sums[2] = {0, 0};
  pthread_t t;

  for (long i = -n / 10; i < n; i++) { /* the first tenth warms the stacks up */
    uint64_t t0 = now_ns();
    if (pthread_create(&t, NULL, record_tid, &tid) != 0 || pthread_join(t, NULL) != 0)
      DIE("pthread_create or pthread_join failed");
    uint64_t dt = now_ns() - t0;
    if (i >= 0) {
      int remote = tid != me;
      sums[remote] += dt;
      counts[remote]++;
    }
  }
  printf("remote_ns %.1f\nlocal_ns %.1f\nremote %ld\nlocal %ld\n",
         counts[1] ? (double)sums[1] / (double)counts[1] : 0.0,
         counts[0] ? (double)sums[0] / (double)counts[0] : 0.0, counts[1], counts[0]);
  return 0;
}

/* ---- burst ------------------------------------------------------------------------ */

static void *record_tid_at(void *arg)
{
  *(long *)arg = os_tid();
  return NULL;
}

static int burst(long n)
{
  pthread_t *t = calloc((size_t)n, sizeof *t);
  long *tids = calloc((size_t)n, sizeof *tids), spread = 0;
  uint64_t best_create = UINT64_MAX, best_round = UINT64_MAX;
  if (!t || !tids)
    DIE("out of memory");
  for (int r = 0; r < 50; r++) {
    uint64_t t0 = now_ns(), t1, t2;
    for (long i = 0; i < n; i++)
      if (pthread_create(&t[i], NULL, record_tid_at, &tids[i]) != 0)
        DIE("pthread_create failed");
    t1 = now_ns();
    for (long i = 0; i < n; i++)
      if (pthread_join(t[i], NULL) != 0)
        DIE("pthread_join failed");
    t2 = now_ns();
    best_create = t1 - t0 < best_create ? t1 - t0 : best_create;
    best_round = t2 - t0 < best_round ? t2 - t0 : best_round;
  }
  for (long i = 0; i < n; i++) {
    long j = 0;
    while (j < i && tids[j] != tids[i])
      j++;
    spread += j == i;
  }
  printf("create_ns %.1f\nround_ns %.1f\nspread %ld\n", (double)best_create / (double)n,
         (double)best_round / (double)n, spread);
  free(t);
  free(tids);
  return 0;
}

/* ---- wake ------------------------------------------------------------------------- */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond[2]; /* [i]: thread i's turn has come */
  pthread_barrier_t start;
  int turn;               /* whose turn: 0 or 1 */
  long rounds;            /* hand-offs each thread makes */
  long tid[2];            /* their OS threads (note A) */
} pp = {.lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = {PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER}};

static void *ping(void *arg)
{
  int me = (int)(intptr_t)arg;
  pp.tid[me] = os_tid();
  pthread_barrier_wait(&pp.start);
  for (long k = 0; k < pp.rounds; k++) {
    pthread_mutex_lock(&pp.lock);
    while (pp.turn != me)
      pthread_cond_wait(&pp.cond[me], &pp.lock);
    pp.turn = !me;
    pthread_mutex_unlock(&pp.lock);
    pthread_cond_signal(&pp.cond[!me]); /* note B */
  }
  return NULL;
}

static int wake(long n)
{
  pthread_t t[2];
  uint64_t t0, t1;

  pp.rounds = n;
  if (pthread_barrier_init(&pp.start, NULL, 3) != 0)
    DIE("pthread_barrier_init failed");
  for (int i = 0; i < 2; i++)
    if (pthread_create(&t[i], NULL, ping, (void *)(intptr_t)i) != 0)
      DIE("pthread_create failed");
  pthread_barrier_wait(&pp.start);
  t0 = now_ns();
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  t1 = now_ns();
  printf("wake_ns %.1f\nsame_os_thread %d\n", (double)(t1 - t0) / (2.0 * (double)n),
         pp.tid[0] == pp.tid[1]);
  return 0;
}

/* ---- stall ------------------------------------------------------------------------ */

enum { BEFORE = 100, DURING = 200, TICK_NS = 1000000 };
enum { IDLE, IN_CALL, RETURNED }; /* the locker's states */

static struct {
  int fd;               /* the locked file, the parent's own open */
  int release;          /* pipe to the child: a byte lets the lock go */
  _Atomic int state;    /* the locker's */
  _Atomic int released; /* the ticker has told the child */
  long tid[2];          /* ticker, locker (note A) */
  uint64_t before_max, during_max;
  long ticks;
} st;

static void *locker(void *arg)
{
  (void)arg;
  st.tid[1] = os_tid();
  atomic_store(&st.state, IN_CALL);
  if (flock(st.fd, LOCK_EX) != 0)
    DIE("flock: %s", strerror(errno));
  if (!atomic_load(&st.released))
    DIE("flock returned before the child let the lock go: it did not block");
  atomic_store(&st.state, RETURNED);
  return NULL;
}

static void *ticker(void *arg)
{
  pthread_t lk;
  uint64_t next = now_ns();
  long k = 0;

  (void)arg;
  st.tid[0] = os_tid();
  for (;;) {
    next += TICK_NS;
    struct timespec ts = {.tv_sec = (time_t)(next / 1000000000u), .tv_nsec = (long)(next % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
      ;
    uint64_t late = now_ns() - next;
    int state = atomic_load(&st.state);
    if (k < BEFORE) {
      if (late > st.before_max)
        st.before_max = late;
      if (++k == BEFORE && pthread_create(&lk, NULL, locker, NULL) != 0)
        DIE("pthread_create failed");
      continue;
    }
    if (state == RETURNED)
      break;
    if (state != IN_CALL)
      continue; /* the locker has not started yet */
    if (late > st.during_max)
      st.during_max = late;
    if (++st.ticks == DURING) {
      atomic_store(&st.released, 1);
      if (write(st.release, "x", 1) != 1)
        DIE("write to the child: %s", strerror(errno));
    }
  }
  pthread_join(lk, NULL);
  return NULL;
}

/* The child: takes the lock on its own open of path, says so on ready, and
 * holds it until a byte (or EOF) on release. */
static void hold_lock(const char *path, int ready, int release)
{
  char c;
  int fd = open(path, O_RDWR);
  if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(ready, "x", 1) != 1)
    _exit(1);
  if (read(release, &c, 1) < 0)
    _exit(1);
  _exit(0);
}

static int stall(void)
{
  char path[] = "/tmp/bench_hubs.XXXXXX", c;
  int ready[2], release[2], status;
  pthread_t t;
  pid_t child;

  if ((st.fd = mkstemp(path)) < 0 || pipe(ready) != 0 || pipe(release) != 0)
    DIE("setting up: %s", strerror(errno));
  if ((child = fork()) < 0)
    DIE("fork: %s", strerror(errno));
  if (child == 0) {
    close(ready[0]);
    close(release[1]);
    hold_lock(path, ready[1], release[0]);
  }
  close(ready[1]);
  close(release[0]);
  if (read(ready[0], &c, 1) != 1)
    DIE("the child could not take the lock");
  unlink(path);
  st.release = release[1];
  if (pthread_create(&t, NULL, ticker, NULL) != 0)
    DIE("pthread_create failed");
  pthread_join(t, NULL);
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    DIE("the child failed");
  printf("before_us %.1f\nduring_us %.1f\nticks %ld\nsame_os_thread %d\n",
         (double)st.before_max / 1e3, (double)st.during_max / 1e3, st.ticks, st.tid[0] == st.tid[1]);
  return 0;
}

int main(int argc, char **argv)
{
  long n = argc > 2 ? atol(argv[2]) : 0;

  if (argc >= 3 && !strcmp(argv[1], "spawn") && n > 0)
    return spawn(n);
  if (argc >= 3 && !strcmp(argv[1], "burst") && n > 0)
    return burst(n);
  if (argc >= 3 && !strcmp(argv[1], "wake") && n > 0)
    return wake(n);
  if (argc == 2 && !strcmp(argv[1], "stall"))
    return stall();
  fprintf(stderr, "usage: bench_hubs spawn N | burst N | wake N | stall\n");
  return 2;
}
