/* sig_mask_eintr.c: a process-directed signal goes to a thread that does
 * not block it.  The main thread blocks SIGUSR1 and waits in pthread_join;
 * a worker, which does not block it, sleeps in nanosleep; another process
 * sends SIGUSR1 to the process.  The handler (installed without
 * SA_RESTART) runs in the worker and its sleep fails with EINTR; the main
 * thread's wait is not interrupted.  Then the other way round: a thread
 * that blocks the signal sends it to the process while the main thread
 * waits in pause: the handler runs in the main thread.
 */
#include "sig_sender.h"
#include <pthread.h>
#include <sched.h>

static volatile sig_atomic_t runs;
static pthread_t ran_in;
static void on_usr1(int sig)
{
  (void)sig;
  ran_in = pthread_self();
  runs++;
}

static void *sleeper(void *arg)
{
  struct timespec ts = {30, 0};
  int r;
  (void)arg;
  r = nanosleep(&ts, &ts); /* a signal before the call is followed by another */
  CHECK(r == -1 && errno == EINTR && runs >= 1);
  CHECK(pthread_equal(ran_in, pthread_self()));
  printf("the worker's nanosleep fails with EINTR, the handler ran in the worker\n");
  return NULL;
}

static volatile sig_atomic_t before;

/* Blocks SIGUSR1 (inherited), sends it to the process, and yields until
   some thread handled it. */
static void *sender_thread(void *arg)
{
  (void)arg;
  CHECK(kill(getpid(), SIGUSR1) == 0);
  while (runs == before)
    sched_yield();
  CHECK(!pthread_equal(ran_in, pthread_self()));
  return NULL;
}

int main(void)
{
  struct sigaction sa;
  struct sender s;
  sigset_t usr1;
  pthread_t t;
  setvbuf(stdout, NULL, _IONBF, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART */
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(pthread_create(&t, NULL, sleeper, NULL) == 0);
  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
  sender_start(&s, SIGUSR1);
  CHECK(pthread_join(t, NULL) == 0);
  sender_stop(&s);
  while (sigtimedwait(&usr1, NULL, &(struct timespec){0, 0}) == SIGUSR1)
    ; /* the sender's last ones, if they came while nobody took them */
  printf("the main thread, which blocks it, was not interrupted\n");

  /* The other way round: a thread that blocks it sends it to the process
     while the main thread, which does not, waits in pause. */
  before = runs;
  CHECK(pthread_create(&t, NULL, sender_thread, NULL) == 0);
  CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
  while (runs == before)
    CHECK(pause() == -1 && errno == EINTR);
  CHECK(pthread_equal(ran_in, pthread_self()));
  CHECK(pthread_join(t, NULL) == 0);
  printf("sent by a thread that blocks it: handled in the main thread, whose pause ends\n");
  return 0;
}
