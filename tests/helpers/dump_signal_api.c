/* dump_signal_api.c: a program on the API turns the dump signal on with
 * kz_monitor() while it runs under the launcher, and the dump it then asks
 * for does not interrupt its own blocked poll().  The runtime's handler is
 * not the program's: installed through the shim's sigaction, it was wrapped
 * like one, and after it ran the main green thread's poll (which no
 * SA_RESTART restarts) failed with EINTR.
 *
 * A child process sends the signal 0.1 s into a 0.5 s poll on a pipe that
 * stays empty; the poll must time out (0), not fail. */
#define _GNU_SOURCE
#include <kudzu.h>

#include "check.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
  int p[2], status;
  pid_t child;
  CHECK(pipe(p) == 0);
  CHECK(kz_monitor(0, SIGUSR2) == 0);
  if ((child = fork()) == 0) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    kill(getppid(), SIGUSR2);
    _exit(0);
  }
  CHECK(child > 0);
  struct pollfd in = {.fd = p[0], .events = POLLIN};
  CHECK(poll(&in, 1, 500) == 0);
  CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status));
  return 0;
}
