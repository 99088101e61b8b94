/* sig_suspend.c: pause and sigsuspend wait for a handler without stopping
 * the other threads:
 *   - the main thread pause()s while another thread ticks and then kill()s
 *     the process: pause fails with EINTR once the handler ran;
 *   - the main thread sigsuspend()s with a mask that unblocks a signal it
 *     blocks, in a loop until its handler ran, while another thread ticks
 *     and sends it; the mask is the old one again afterwards;
 *   - a signal already pending that the mask unblocks is handled at once;
 *   - a thread pause()s while the main thread ticks and then sends it a
 *     signal with pthread_kill.
 * argv[1], if given: the most OS threads the process may have.
 */
#include "sig_ticker.h"

static volatile sig_atomic_t usr1, usr2;
static void on_usr1(int sig) { usr1++; }
static void on_usr2(int sig) { usr2++; }

static void send(void *arg) { CHECK(kill(getpid(), *(int *)arg) == 0); }

static void main_pauses(void)
{
  static int sig = SIGUSR1;
  struct ticker t;
  ticker_start(&t, send, &sig);
  CHECK(pause() == -1 && errno == EINTR && usr1 == 1);
  ticker_join(&t);
  printf("pause: the ticker ran, the handler ended it with EINTR\n");
}

static void main_suspends(void)
{
  static int sig = SIGUSR2;
  sigset_t block, old, now;
  struct ticker t;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  CHECK(pthread_sigmask(SIG_BLOCK, &block, &old) == 0);
  ticker_start(&t, send, &sig);
  while (!usr2)
    CHECK(sigsuspend(&old) == -1 && errno == EINTR);
  ticker_join(&t);
  CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, SIGUSR2));
  CHECK(raise(SIGUSR2) == 0 && usr2 == 1); /* blocked: pending */
  CHECK(sigsuspend(&old) == -1 && errno == EINTR && usr2 == 2);
  CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
  printf("sigsuspend: waits with its mask, then the old mask is back; a pending signal ends it at once\n");
}

static void *pauser(void *arg)
{
  CHECK(pause() == -1 && errno == EINTR);
  return NULL;
}

static void thread_pauses(void)
{
  struct ticker t;
  pthread_t th;
  int before = usr1;
  CHECK(pthread_create(&th, NULL, pauser, NULL) == 0);
  ticker_start(&t, NULL, NULL);
  ticker_join(&t);
  CHECK(pthread_kill(th, SIGUSR1) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(usr1 == before + 1);
  printf("pause in a thread: the main thread ticked, pthread_kill ended it\n");
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  max_threads = argc > 1 ? atoi(argv[1]) : 0;
  watchdog(30);
  setvbuf(stdout, NULL, _IONBF, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sa.sa_handler = on_usr2;
  CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
  main_pauses();
  main_suspends();
  thread_pauses();
  return 0;
}
