/* sig_signalfd.c: a blocking read on the program's own signalfd waits
 * without stopping the other threads: one thread reads it while another
 * ticks and then sends the signal; the read returns that signal.  A
 * non-blocking signalfd with nothing pending fails with EAGAIN at once.
 * argv[1], if given: the most OS threads the process may have.
 */
#include "sig_ticker.h"
#include <fcntl.h>
#include <sys/signalfd.h>

static void send_usr1(void *arg) { CHECK(kill(getpid(), SIGUSR1) == 0); }

int main(int argc, char **argv)
{
  struct signalfd_siginfo si;
  struct ticker t;
  sigset_t set;
  int fd, nb;
  max_threads = argc > 1 ? atoi(argv[1]) : 0;
  watchdog(30);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
  CHECK((fd = signalfd(-1, &set, SFD_CLOEXEC)) >= 0);
  CHECK((nb = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) >= 0);
  CHECK(read(nb, &si, sizeof si) == -1 && errno == EAGAIN);
  ticker_start(&t, send_usr1, NULL);
  CHECK(read(fd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1 && si.ssi_pid == (uint32_t)getpid());
  ticker_join(&t);
  CHECK(read(nb, &si, sizeof si) == -1 && errno == EAGAIN);
  printf("a read on a signalfd waits while another thread ticks, and gets the signal\n");
  return 0;
}
