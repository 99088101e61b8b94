/* sig_mask_kill.c: a signal sent to one thread waits for that thread.
 *   - pthread_kill to a thread that blocks the signal: it stays pending for
 *     that thread alone (sigpending shows it there, not in the main thread,
 *     which blocks it too); no handler runs until the thread unblocks it,
 *     then the handler runs before pthread_sigmask returns, in that thread;
 *   - a thread's mask is its own: what one thread blocks or unblocks does
 *     not change what another one reads back;
 *   - once the one thread that did not block it has exited, a signal sent
 *     to the process stays pending until the main thread unblocks it;
 *   - raise in a thread that blocks the signal: pending for that thread,
 *     handled when it unblocks it;
 *   - sighold and sigrelse change the calling thread's mask alone.
 */
#include "check.h"
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>

static volatile sig_atomic_t runs;
static pthread_t ran_in;
static void on_usr1(int sig)
{
  (void)sig;
  ran_in = pthread_self();
  runs++;
}

static sem_t ready, sent;

static int pending(int sig)
{
  sigset_t p;
  CHECK(sigpending(&p) == 0);
  return sigismember(&p, sig);
}

static int blocked(int sig)
{
  sigset_t m;
  CHECK(pthread_sigmask(SIG_BLOCK, NULL, &m) == 0);
  return sigismember(&m, sig);
}

static void *target(void *arg)
{
  sigset_t usr1;
  (void)arg;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(blocked(SIGUSR1)); /* inherited */
  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
  CHECK(sem_post(&ready) == 0);
  CHECK(sem_wait(&sent) == 0);
  CHECK(runs == 0 && pending(SIGUSR1));
  printf("pthread_kill to a thread that blocks the signal: pending for it, no handler yet\n");
  CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
  CHECK(runs == 1 && pthread_equal(ran_in, pthread_self()) && !pending(SIGUSR1));
  printf("it unblocks the signal: the handler runs at once, in that thread\n");
  CHECK(!blocked(SIGUSR1));
  CHECK(sem_post(&ready) == 0);
  CHECK(sem_wait(&sent) == 0);
  return NULL;
}

/* The older calls act on the caller's mask too (deprecated: tested as
   programs still call them). */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void *holder(void *arg)
{
  (void)arg;
  CHECK(sighold(SIGUSR2) == 0 && blocked(SIGUSR2));
  CHECK(sigrelse(SIGUSR2) == 0 && !blocked(SIGUSR2));
  CHECK(sighold(SIGUSR2) == 0 && blocked(SIGUSR2));
  return NULL;
}

int main(void)
{
  struct sigaction sa;
  sigset_t usr1;
  pthread_t t;
  setvbuf(stdout, NULL, _IONBF, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(sem_init(&ready, 0, 0) == 0 && sem_init(&sent, 0, 0) == 0);
  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
  CHECK(pthread_create(&t, NULL, target, NULL) == 0);
  CHECK(sem_wait(&ready) == 0);
  CHECK(pthread_kill(t, SIGUSR1) == 0);
  CHECK(!pending(SIGUSR1));
  printf("the main thread, blocking it too, does not see it pending\n");
  CHECK(sem_post(&sent) == 0);
  CHECK(sem_wait(&ready) == 0);
  CHECK(blocked(SIGUSR1) && runs == 1);
  printf("the main thread still blocks it after the other thread unblocked it\n");
  CHECK(sem_post(&sent) == 0);
  CHECK(pthread_join(t, NULL) == 0);

  CHECK(kill(getpid(), SIGUSR1) == 0);
  CHECK(runs == 1 && pending(SIGUSR1));
  printf("the one thread that did not block it has exited: a signal to the process stays pending\n");
  CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
  CHECK(runs == 2 && pthread_equal(ran_in, pthread_self()) && !pending(SIGUSR1));
  printf("the main thread unblocks it: handled at once, in the main thread\n");

  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
  CHECK(raise(SIGUSR1) == 0);
  CHECK(runs == 2 && pending(SIGUSR1));
  CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
  CHECK(runs == 3 && pthread_equal(ran_in, pthread_self()) && !pending(SIGUSR1));
  printf("raise while blocked: pending, handled at the unblock\n");

  CHECK(!blocked(SIGUSR2));
  CHECK(pthread_create(&t, NULL, holder, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(!blocked(SIGUSR2));
  printf("sighold and sigrelse change the calling thread's mask alone\n");
  return 0;
}
