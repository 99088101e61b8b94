/* threads_parked.c: a plain pthread program, built without kudzu, whose
 * threads block in read, a mutex, a condition variable, nanosleep and a
 * join, and one computes for ever; run under the launcher, they are green
 * threads parked in the shim, and the computing one is preempted (it has to
 * be, for the main thread to run), which tests/gdb/kz.sh (mode launcher)
 * inspects with the gdb extension.
 *
 * Each thread names itself (pthread_setname_np) and blocks in a function of
 * its own.  Once all of them are parked (see main), the main thread raises
 * SIGTRAP: gdb, which started the program, stops there.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 6

static int pipefd[2];
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_t sleeper_thread;
static int started; /* under started_lock */
static pthread_mutex_t started_lock = PTHREAD_MUTEX_INITIALIZER;

static void about_to_block(const char *name)
{
  pthread_setname_np(pthread_self(), name);
  pthread_mutex_lock(&started_lock);
  started++;
  pthread_mutex_unlock(&started_lock);
}

#define BLOCKER __attribute__((noinline)) static void *

BLOCKER block_in_read(void *arg)
{
  char c;
  about_to_block("t-reader");
  (void)!read(pipefd[0], &c, 1);
  return arg;
}

BLOCKER block_in_lock(void *arg)
{
  about_to_block("t-locker");
  pthread_mutex_lock(&held);
  return arg;
}

BLOCKER block_in_wait(void *arg)
{
  about_to_block("t-waiter");
  pthread_mutex_lock(&cv_lock);
  pthread_cond_wait(&cv, &cv_lock);
  pthread_mutex_unlock(&cv_lock);
  return arg;
}

BLOCKER block_in_sleep(void *arg)
{
  struct timespec ts = {3600, 0};
  about_to_block("t-sleeper");
  nanosleep(&ts, NULL);
  return arg;
}

BLOCKER block_in_join(void *arg)
{
  about_to_block("t-joiner");
  pthread_join(sleeper_thread, NULL);
  return arg;
}

static volatile unsigned long spins;

BLOCKER spin_forever(void *arg)
{
  about_to_block("t-spinner");
  for (;;)
    spins++;
  return arg;
}

int main(void)
{
  void *(*fns[NTHREADS])(void *) = {block_in_read, block_in_lock, block_in_wait, block_in_sleep,
                                     block_in_join, spin_forever};
  pthread_t t;
  if (pipe(pipefd) != 0)
    return 2;
  pthread_mutex_lock(&held);
  for (int i = 0; i < NTHREADS; i++) {
    if (pthread_create(i == 3 ? &sleeper_thread : &t, NULL, fns[i], NULL) != 0)
      return 2;
  }
  /* Under the launcher every thread is a green thread.  Each one runs from
     its start to its blocking call without yielding, so on this thread's
     hub, once this thread's own sleep has let all of them say they are
     about to block, each has parked.  A thread on another hub runs at the
     same time as this one, on a CPU of its own: between its count and its
     park it makes no call that waits, so one more sleep of this thread,
     1 ms, is a thousand times the few microseconds it needs.  (Natively the
     trap may come a little early, which the program does not care
     about.) */
  for (int n = 0; n < NTHREADS;) {
    usleep(1000);
    pthread_mutex_lock(&started_lock);
    n = started;
    pthread_mutex_unlock(&started_lock);
  }
  usleep(1000);
  raise(SIGTRAP);
  return 0;
}
