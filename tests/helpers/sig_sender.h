/* sig_sender.h: another process that sends signals, for the signal-mask
 * helpers.  A forked child sends sig to its parent every 20 ms until the
 * parent stops it (sender_stop), so a signal that lands before the parent
 * waits is followed by another; after 10 s it kills the parent instead,
 * so a signal that never arrives fails the test instead of hanging it
 * (the parent's own watchdog signals may be blocked). */
#ifndef HELPER_SIG_SENDER_H
#define HELPER_SIG_SENDER_H
#include "check.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

struct sender {
  pid_t pid;
  int stop_fd; /* the parent's end: closing it stops the child */
};

static void sender_start(struct sender *s, int sig)
{
  pid_t parent = getpid();
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK((s->pid = fork()) >= 0);
  if (s->pid == 0) {
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    close(p[1]);
    for (int i = 0; i < 500; i++) { /* 10 s */
      if (kill(parent, sig) != 0)
        _exit(1);
      if (poll(&pf, 1, 20) != 0)
        _exit(0); /* stopped (EOF) */
    }
    fprintf(stderr, "the signal never reached the program in 10 s\n");
    kill(parent, SIGKILL);
    _exit(1);
  }
  close(p[0]);
  s->stop_fd = p[1];
}

static void sender_stop(struct sender *s)
{
  int st;
  close(s->stop_fd);
  CHECK(waitpid(s->pid, &st, 0) == s->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
#endif
