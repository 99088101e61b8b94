/* sig_wait.c: sigwait and sigwaitinfo in one thread wait without stopping
 * the others, and each signal goes to exactly one waiter:
 *   - the main thread sigwait()s a signal every thread blocks while another
 *     thread ticks and then kill()s the process (CPython's
 *     test_sigwait_thread);
 *   - a thread sigwaitinfo()s while the main thread ticks and then sends
 *     the signal with pthread_kill; siginfo says who sent it and how;
 *   - two threads each wait for one queued real-time signal: each gets one
 *     of the two values, and nothing stays pending;
 *   - a thread waits for a signal nobody blocks, which has a handler: it
 *     takes it (sent to that thread), the handler does not run; once nobody
 *     waits, the same signal goes to the handler.
 * argv[1], if given: the most OS threads the process may have.
 */
#include "sig_ticker.h"
#include <sys/types.h>

static void send_kill(void *arg) { CHECK(kill(getpid(), *(int *)arg) == 0); }

static void cpython_shape(void)
{
  int sig = SIGUSR1, got = 0;
  sigset_t set;
  struct ticker t;
  sigemptyset(&set);
  sigaddset(&set, sig);
  CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0); /* blocked by every thread */
  ticker_start(&t, send_kill, &sig);
  CHECK(sigwait(&set, &got) == 0 && got == sig);
  ticker_join(&t);
  CHECK(pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0); /* nothing left pending to deliver */
  printf("sigwait in the main thread: the ticker ran, the signal came\n");
}

struct waiter {
  int sig;
  siginfo_t info;
  int got;
};

static void *waitinfo(void *arg)
{
  struct waiter *w = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, w->sig);
  do /* natively a waiter woken for a signal another waiter took fails with EINTR */
    w->got = sigwaitinfo(&set, &w->info);
  while (w->got < 0 && errno == EINTR);
  return NULL;
}

static void thread_waits(void)
{
  struct waiter w = {.sig = SIGUSR2};
  struct ticker t;
  pthread_t th;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
  CHECK(pthread_create(&th, NULL, waitinfo, &w) == 0);
  ticker_start(&t, NULL, NULL);
  ticker_join(&t);
  CHECK(pthread_kill(th, SIGUSR2) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(w.got == SIGUSR2 && w.info.si_signo == SIGUSR2 && w.info.si_pid == getpid());
  printf("sigwaitinfo in a thread: the main thread ticked, pthread_kill reached it\n");
}

static void exactly_once(void)
{
  struct waiter w[2] = {{.sig = SIGRTMIN}, {.sig = SIGRTMIN}};
  pthread_t th[2];
  struct ticker t;
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN);
  CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&th[i], NULL, waitinfo, &w[i]) == 0);
  ticker_start(&t, NULL, NULL);
  ticker_join(&t);
  CHECK(sigqueue(getpid(), SIGRTMIN, (union sigval){.sival_int = 1}) == 0);
  CHECK(sigqueue(getpid(), SIGRTMIN, (union sigval){.sival_int = 2}) == 0);
  for (int i = 0; i < 2; i++)
    CHECK(pthread_join(th[i], NULL) == 0);
  CHECK(w[0].got == SIGRTMIN && w[1].got == SIGRTMIN);
  CHECK(w[0].info.si_code == SI_QUEUE && w[1].info.si_code == SI_QUEUE);
  CHECK(w[0].info.si_value.sival_int + w[1].info.si_value.sival_int == 3);
  CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGRTMIN));
  printf("two waiters, two queued signals: one each\n");
}

static volatile sig_atomic_t handled;
static void on_signal(int sig) { handled = sig; }

static void unblocked(void)
{
  struct waiter w = {.sig = SIGURG};
  struct ticker t;
  pthread_t th;
  signal(SIGURG, on_signal);
  CHECK(pthread_create(&th, NULL, waitinfo, &w) == 0);
  ticker_start(&t, NULL, NULL);
  ticker_join(&t);
  CHECK(pthread_kill(th, SIGURG) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(w.got == SIGURG && handled == 0);
  CHECK(raise(SIGURG) == 0);
  CHECK(handled == SIGURG);
  printf("a waiter takes an unblocked signal; with no waiter, the handler does\n");
}

int main(int argc, char **argv)
{
  max_threads = argc > 1 ? atoi(argv[1]) : 0;
  watchdog(30);
  setvbuf(stdout, NULL, _IONBF, 0);
  cpython_shape();
  thread_waits();
  exactly_once();
  unblocked();
  return 0;
}
