/* sig_new_thread.c: a new thread's signal mask is in force for the signals
 * sent to the process from the moment it runs, and no longer once it ends.
 *   - a thread made while SIGUSR1 is not blocked computes, calling nothing
 *     that waits; the main thread blocks SIGUSR1 and sends it to the
 *     process: the handler runs, in that thread, while it computes;
 *   - threads made while SIGUSR2 (whose default action ends the process)
 *     is not blocked end, some at once, some after a sleep; the main
 *     thread then blocks it and sends it to the process: it stays pending
 *     (sigpending shows it) and sigwait takes it; the process lives.
 * Under the launcher the first thread may run on another hub, whose OS
 * thread blocked every signal before it came (hub/sigmask.c, note D).
 */
#include "check.h"
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static pthread_t ran_in;
static sem_t started;

static void on_usr1(int sig)
{
  (void)sig;
  ran_in = pthread_self();
  handled = 1;
}

static void *compute(void *arg)
{
  double deadline = mono() + 20;
  unsigned long spins = 0;
  (void)arg;
  CHECK(sem_post(&started) == 0);
  while (!handled) { /* nothing that waits: the handler must come in the middle */
    spins++;
    CHECK(mono() < deadline);
  }
  return (void *)spins;
}

static void *sleeper(void *arg)
{
  CHECK(sem_wait(arg) == 0);
  return NULL;
}

static void *quick(void *arg) { return arg; }

static void *nap(void *arg)
{
  struct timespec ts = {0, 1000000};
  CHECK(nanosleep(&ts, NULL) == 0);
  return arg;
}

static void mask(int how, int sig)
{
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  CHECK(pthread_sigmask(how, &s, NULL) == 0);
}

int main(void)
{
  struct sigaction sa = {.sa_handler = on_usr1};
  pthread_t t, idle;
  sem_t stop;
  sigset_t s, p;
  int got;

  CHECK(sem_init(&started, 0, 0) == 0 && sem_init(&stop, 0, 0) == 0);
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  /* a thread that waits, blocking the signal: under the launcher the next
     thread goes to another hub, the least loaded */
  mask(SIG_BLOCK, SIGUSR1);
  CHECK(pthread_create(&idle, NULL, sleeper, &stop) == 0);
  mask(SIG_UNBLOCK, SIGUSR1);
  CHECK(pthread_create(&t, NULL, compute, NULL) == 0);
  mask(SIG_BLOCK, SIGUSR1); /* the new thread alone admits it now */
  CHECK(sem_wait(&started) == 0);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(handled && pthread_equal(ran_in, t));
  CHECK(sem_post(&stop) == 0 && pthread_join(idle, NULL) == 0);
  printf("a new thread computing takes the signal sent to the process\n");

  for (int i = 0; i < 50; i++) {
    CHECK(pthread_create(&t, NULL, i % 10 == 9 ? nap : quick, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
  }
  mask(SIG_BLOCK, SIGUSR2);
  CHECK(kill(getpid(), SIGUSR2) == 0);
  CHECK(sigpending(&p) == 0 && sigismember(&p, SIGUSR2));
  sigemptyset(&s);
  sigaddset(&s, SIGUSR2);
  CHECK(sigwait(&s, &got) == 0 && got == SIGUSR2);
  printf("after the threads that admitted it ended, the signal stays pending\n");
  return 0;
}
