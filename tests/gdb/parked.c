/* parked.c: a program on the API whose green threads are parked in every
 * kind of wait, each in a function of its own and under a name of its own,
 * for tests/gdb/kz.sh to inspect with the gdb extension.
 *
 *   parked trap    once every green thread is parked, raise SIGTRAP (run
 *                  under gdb, which stops there)
 *   parked wait    once every green thread is parked, print "ready PID" and
 *                  sleep (gdb attaches; the test kills the program)
 *   parked abort   once every green thread is parked, abort() (a core dump)
 *
 * The green threads (name: function, what it waits on):
 *   sleeper: park_sleeper, kz_sleep (a timer)
 *   reader:  park_reader,  kz_wait_fd for reading on a pipe nobody writes
 *   holder:  park_holder,  kz_event_wait, holding the mutex
 *   locker:  park_locker,  kz_mutex_lock on the mutex holder holds
 *   joiner:  park_joiner,  kz_join of sleeper
 *   getter:  park_getter,  kz_queue_get on an empty queue
 *   napper-1, napper-2, napper-3: park_napper, kz_sleep (identical stacks)
 *   yielder: park_yielder, kz_yield in a loop: runnable, on the run queue
 *   fresh:   park_fresh,   spawned last, never started (pending)
 *   remote:  park_remote,  kz_sleep on a second hub, on an OS thread of its own
 */
#include <kudzu.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NGREEN 9

static int pipefd[2];
static struct kz_mutex *mutex;
static struct kz_event *event;
static struct kz_queue *queue;
static kz_green_t sleeper;
static int remote_pipe[2]; /* park_remote's hub says it has parked */

#define CHECK(x)                                                                              \
  do {                                                                                        \
    if (!(x)) {                                                                               \
      fprintf(stderr, "parked: %s failed (line %d)\n", #x, __LINE__);                         \
      exit(2);                                                                                \
    }                                                                                         \
  } while (0)

/* noinline: each function is a frame of its own in the backtraces. */
#define PARKER __attribute__((noinline)) static void *

PARKER park_sleeper(void *arg)
{
  kz_sleep(3600);
  return arg;
}

PARKER park_reader(void *arg)
{
  kz_wait_fd(pipefd[0], KZ_READ, -1);
  return arg;
}

PARKER park_holder(void *arg)
{
  CHECK(kz_mutex_lock(mutex, -1) == 0);
  kz_event_wait(event, -1);
  return arg;
}

PARKER park_locker(void *arg)
{
  kz_mutex_lock(mutex, -1);
  return arg;
}

PARKER park_joiner(void *arg)
{
  kz_join(sleeper, NULL, -1);
  return arg;
}

PARKER park_getter(void *arg)
{
  void *item;
  kz_queue_get(queue, &item, -1);
  return arg;
}

PARKER park_napper(void *arg)
{
  kz_sleep(3500); /* not 3600: identical functions may be folded into one */
  return arg;
}

PARKER park_yielder(void *arg)
{
  for (;;)
    kz_yield(); /* never runs again: main_green blocks its OS thread next */
  return arg;
}

PARKER park_fresh(void *arg) { return arg; }

/* On the remote hub's context, once park_remote has parked: it ran this
   green thread up to its park without yielding, and only then its hub. */
static void remote_parked(void *arg)
{
  (void)!write(remote_pipe[1], "p", 1);
}

PARKER park_remote(void *arg)
{
  kz_set_name(kz_self(), "remote");
  kz_call_soon(remote_parked, NULL);
  kz_sleep(3400);
  return arg;
}

static kz_green_t spawn(kz_fn fn, const char *name)
{
  struct kz_spawn_opts o = {.name = name};
  kz_green_t g = kz_spawn_with(fn, NULL, &o);
  CHECK(g != 0);
  return g;
}

static void *main_green(void *arg)
{
  const char *mode = arg;
  kz_green_t g[NGREEN];
  int parked = 0;
  struct kz_remote *r;
  char c;
  CHECK(pipe(pipefd) == 0 && pipe(remote_pipe) == 0);
  CHECK((r = kz_remote_start()) && kz_remote_spawn(r, park_remote, NULL));
  CHECK(kz_wait_fd(remote_pipe[0], KZ_READ, 30) == KZ_READ && read(remote_pipe[0], &c, 1) == 1);
  CHECK((mutex = kz_mutex_new()) && (event = kz_event_new()));
  CHECK((queue = kz_queue_new(KZ_QUEUE_FIFO, 0)));
  g[0] = sleeper = spawn(park_sleeper, "sleeper");
  g[1] = spawn(park_reader, "reader");
  g[2] = spawn(park_holder, "holder"); /* before locker: it takes the mutex first */
  g[3] = spawn(park_locker, "locker");
  g[4] = spawn(park_joiner, "joiner");
  g[5] = spawn(park_getter, "getter");
  g[6] = spawn(park_napper, "napper-1");
  g[7] = spawn(park_napper, "napper-2");
  g[8] = spawn(park_napper, "napper-3");
  /* Each runs until it parks when this one yields; bounded, no timing. */
  for (int round = 0; round < 1000 && parked < NGREEN; round++) {
    kz_yield();
    parked = 0;
    for (int i = 0; i < NGREEN; i++)
      parked += kz_state(g[i]) == KZ_BLOCKED;
  }
  CHECK(parked == NGREEN);
  spawn(park_yielder, "yielder");
  kz_yield(); /* the yielder yields back: it is on the run queue */
  spawn(park_fresh, "fresh"); /* queued, not started: nothing yields again */
  if (!strcmp(mode, "trap")) {
    raise(SIGTRAP);
  } else if (!strcmp(mode, "abort")) {
    abort();
  } else {
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    sleep(120); /* the OS thread blocks here: the test kills it first */
  }
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc != 2 || (strcmp(argv[1], "trap") && strcmp(argv[1], "wait") && strcmp(argv[1], "abort"))) {
    fprintf(stderr, "usage: parked trap|wait|abort\n");
    return 2;
  }
  return kz_run(main_green, argv[1], NULL);
}
