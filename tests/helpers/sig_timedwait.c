/* sig_timedwait.c: sigtimedwait's timeout and interruptions, while another
 * thread ticks:
 *   - nothing comes: -1 with EAGAIN after the timeout, not before, and the
 *     ticker kept ticking meanwhile; a zero timeout just polls;
 *   - a signal already pending is taken at once;
 *   - a handler of another signal (SIGALRM) interrupts sigwaitinfo and
 *     sigtimedwait in the main thread with EINTR, but not sigwait, which
 *     goes on to get its signal.
 * argv[1], if given: the most OS threads the process may have.
 */
#include "sig_ticker.h"

static sigset_t usr1;

static void timeout(void)
{
  struct timespec ts = {0, 300000000}, zero = {0, 0};
  struct ticker t;
  double start;
  int before = ticks;
  ticker_start(&t, NULL, NULL);
  start = mono();
  errno = 0;
  CHECK(sigtimedwait(&usr1, NULL, &ts) == -1 && errno == EAGAIN);
  CHECK(mono() - start >= 0.3);
  CHECK(ticks > before); /* at 100 and 200 ms, during the wait */
  ticker_join(&t);
  CHECK(sigtimedwait(&usr1, NULL, &zero) == -1 && errno == EAGAIN);
  printf("sigtimedwait: EAGAIN after its timeout, the ticker ticked meanwhile\n");
}

static void pending(void)
{
  struct timespec ts = {5, 0};
  siginfo_t si;
  int saved;
  CHECK(raise(SIGUSR1) == 0);
  errno = saved = 1234;
  CHECK(sigtimedwait(&usr1, &si, &ts) == SIGUSR1 && si.si_signo == SIGUSR1 && errno == saved);
  printf("sigtimedwait: a pending signal is taken at once, errno untouched\n");
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { alarms++; }

static void send_usr1(void *arg) { CHECK(kill(getpid(), SIGUSR1) == 0); }

static void interrupted(void)
{
  struct sigaction sa;
  struct timespec ts = {5, 0};
  struct ticker t;
  int got;
  alarm(0); /* the watchdog's alarm gives way to the handler's */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART; /* never restarted all the same (signal(7)) */
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  ualarm(200000, 0);
  CHECK(sigwaitinfo(&usr1, NULL) == -1 && errno == EINTR && alarms == 1);
  ualarm(200000, 0);
  CHECK(sigtimedwait(&usr1, NULL, &ts) == -1 && errno == EINTR && alarms == 2);
  ticker_start(&t, send_usr1, NULL);
  ualarm(200000, 0);
  CHECK(sigwait(&usr1, &got) == 0 && got == SIGUSR1 && alarms == 3);
  ticker_join(&t);
  printf("a handler interrupts sigwaitinfo and sigtimedwait (EINTR), sigwait goes on\n");
}

int main(int argc, char **argv)
{
  max_threads = argc > 1 ? atoi(argv[1]) : 0;
  watchdog(30);
  setvbuf(stdout, NULL, _IONBF, 0);
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
  timeout();
  pending();
  interrupted();
  return 0;
}
