/* sig_mask_calls.c: the calls that take a signal mask hold it for their
 * whole wait.  Every thread blocks SIGUSR1; the main thread waits in
 * ppoll, pselect or epoll_pwait with a mask that unblocks it, and another
 * thread sends SIGUSR1 to the process once the main thread waits (it
 * ticks first; a signal that comes before the wait stays pending and ends
 * it as it starts): the call fails with EINTR after the handler ran in the
 * main thread, and the mask is the old one again afterwards.
 */
#include "sig_ticker.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

static volatile sig_atomic_t runs;
static pthread_t ran_in;
static void on_usr1(int sig)
{
  (void)sig;
  ran_in = pthread_self();
  runs++;
}

static void send(void *arg)
{
  (void)arg;
  CHECK(kill(getpid(), SIGUSR1) == 0);
}

static void check_after(const char *call, int r, int before)
{
  sigset_t now;
  CHECK(r == -1 && errno == EINTR);
  CHECK(runs == before + 1 && pthread_equal(ran_in, pthread_self()));
  CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, SIGUSR1));
  printf("%s: its mask held while it waited; EINTR after the handler ran in the caller\n", call);
}

int main(void)
{
  struct sigaction sa;
  struct timespec ts = {10, 0};
  sigset_t usr1, wait_mask;
  struct ticker t;
  int p[2], ep, before, r;
  struct epoll_event ev;
  setvbuf(stdout, NULL, _IONBF, 0);
  watchdog(60);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  CHECK(pthread_sigmask(SIG_BLOCK, &usr1, &wait_mask) == 0);
  sigdelset(&wait_mask, SIGUSR1);
  sigdelset(&wait_mask, SIGALRM);
  CHECK(pipe(p) == 0); /* never written: only the signal ends the waits */

  before = runs;
  ticker_start(&t, send, NULL);
  struct pollfd pf = {.fd = p[0], .events = POLLIN};
  r = ppoll(&pf, 1, &ts, &wait_mask);
  check_after("ppoll", r, before);
  ticker_join(&t);

  before = runs;
  ticker_start(&t, send, NULL);
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(p[0], &rd);
  r = pselect(p[0] + 1, &rd, NULL, NULL, &ts, &wait_mask);
  check_after("pselect", r, before);
  ticker_join(&t);

  before = runs;
  CHECK((ep = epoll_create1(0)) >= 0);
  ev.events = EPOLLIN;
  ev.data.fd = p[0];
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
  ticker_start(&t, send, NULL);
  r = epoll_pwait(ep, &ev, 1, 10000, &wait_mask);
  check_after("epoll_pwait", r, before);
  ticker_join(&t);
  return 0;
}
