/* thread_tid: every thread has its own thread id, and the calls that take
 * one accept it.  Natively each thread's gettid() differs; under the
 * launcher, green threads share their OS thread and still must not share
 * an id (CPython's threading.get_native_id is syscall(SYS_gettid)).
 *
 * Checks, with NTHREADS threads alive at once: gettid() == syscall(SYS_gettid)
 * and is the process id on the main thread; the ids of all threads and the
 * main thread are distinct and positive; a thread's id is the same before
 * and after it blocks; tgkill(pid, id, 0), sched_getaffinity, setting the
 * same affinity back, sched_getscheduler and getpriority succeed for each
 * id, by name and through syscall(); tgkill(pid, id, SIGUSR1) runs the
 * handler once per thread; a forked child reaches each with
 * tgkill(parent, id, 0); after the threads are joined, tgkill(pid, id, 0)
 * fails with ESRCH for each of their ids. */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTHREADS 8

static pthread_barrier_t all_up, checked;
static pid_t ids[NTHREADS];
static _Atomic int handled;

static void on_usr1(int sig)
{
  (void)sig;
  atomic_fetch_add(&handled, 1);
}

static void *thread(void *arg)
{
  int i = (int)(long)arg;
  pid_t id = gettid();
  CHECK(id > 0);
  CHECK((pid_t)syscall(SYS_gettid) == id);
  ids[i] = id;
  pthread_barrier_wait(&all_up);
  usleep(1000); /* blocks: another thread runs meanwhile */
  CHECK(gettid() == id);
  pthread_barrier_wait(&checked);
  return NULL;
}

/* The calls that take a thread id, for a live thread's id. */
static void check_calls(pid_t id)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  CHECK(tgkill(getpid(), id, 0) == 0);
  CHECK(syscall(SYS_tgkill, getpid(), id, 0) == 0);
  CHECK(syscall(SYS_tkill, id, 0) == 0);
  CHECK(sched_getaffinity(id, sizeof set, &set) == 0);
  CHECK(CPU_COUNT(&set) > 0);
  CHECK(sched_setaffinity(id, sizeof set, &set) == 0);
  CHECK(syscall(SYS_sched_getaffinity, id, sizeof set, &set) > 0);
  CHECK(sched_getscheduler(id) >= 0);
  errno = 0;
  CHECK(getpriority(PRIO_PROCESS, (id_t)id) != -1 || errno == 0);
}

/* A forked child still reaches its parent's threads by id. */
static void child_checks(void)
{
  pid_t parent = getpid(), child;
  int st;
  CHECK((child = fork()) >= 0);
  if (child == 0) {
    for (int i = 0; i < NTHREADS; i++)
      if (tgkill(parent, ids[i], 0) != 0 || syscall(SYS_tgkill, parent, ids[i], 0) != 0)
        _exit(1);
    _exit(0);
  }
  CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
  pthread_t t[NTHREADS];
  pid_t me = gettid();
  struct sigaction sa = {.sa_handler = on_usr1};
  double end;
  CHECK(me == getpid());
  CHECK((pid_t)syscall(SYS_gettid) == me);
  sigaction(SIGUSR1, &sa, NULL);
  pthread_barrier_init(&all_up, NULL, NTHREADS + 1);
  pthread_barrier_init(&checked, NULL, NTHREADS + 1);
  for (int i = 0; i < NTHREADS; i++)
    CHECK(pthread_create(&t[i], NULL, thread, (void *)(long)i) == 0);
  pthread_barrier_wait(&all_up);

  for (int i = 0; i < NTHREADS; i++) {
    CHECK(ids[i] != me);
    for (int j = 0; j < i; j++)
      CHECK(ids[i] != ids[j]);
    check_calls(ids[i]);
  }
  child_checks();
  for (int i = 0; i < NTHREADS; i++)
    CHECK(tgkill(getpid(), ids[i], SIGUSR1) == 0);
  end = mono() + 10;
  while (atomic_load(&handled) < NTHREADS && mono() < end)
    usleep(1000);
  CHECK(atomic_load(&handled) == NTHREADS);

  pthread_barrier_wait(&checked);
  for (int i = 0; i < NTHREADS; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  for (int i = 0; i < NTHREADS; i++) {
    errno = 0;
    CHECK(tgkill(getpid(), ids[i], 0) == -1 && errno == ESRCH);
  }
  printf("%d threads and main: %d distinct thread ids, each signalled once\n", NTHREADS, NTHREADS + 1);
  return 0;
}
