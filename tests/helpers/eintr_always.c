/* eintr_always.c: the calls signal(7) never restarts fail with EINTR even
 * after a handler installed with SA_RESTART: poll, select, epoll_wait,
 * nanosleep (with the time left), and a recv bounded by SO_RCVTIMEO; a
 * plain blocking read is restarted and gets its data. */
#include "check.h"
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_alarm(int sig) { handled++; }

/* A SIGALRM in 200 ms. */
static void arm(void) { ualarm(200000, 0); }

int main(void)
{
  struct sigaction sa;
  int sv[2], ep;
  char c;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);

  struct pollfd p = {sv[0], POLLIN, 0};
  arm();
  CHECK(poll(&p, 1, -1) == -1 && errno == EINTR);

  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(sv[0], &rd);
  arm();
  CHECK(select(sv[0] + 1, &rd, NULL, NULL, NULL) == -1 && errno == EINTR);

  struct epoll_event ev = {.events = EPOLLIN}, out;
  CHECK((ep = epoll_create1(0)) >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) == 0);
  arm();
  CHECK(epoll_wait(ep, &out, 1, -1) == -1 && errno == EINTR);

  struct timespec ts = {5, 0}, rem;
  arm();
  CHECK(nanosleep(&ts, &rem) == -1 && errno == EINTR);
  CHECK(rem.tv_sec >= 4 && rem.tv_sec <= 5);

  struct timeval tv = {5, 0};
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  arm();
  CHECK(recv(sv[0], &c, 1, 0) == -1 && errno == EINTR);

  /* Restarted: a read with no timeout goes on until a child writes. */
  int q[2];
  CHECK(pipe(q) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    struct timespec wait = {0, 500000000};
    nanosleep(&wait, NULL);
    _exit(write(q[1], "r", 1) == 1 ? 0 : 1);
  }
  arm();
  CHECK(read(q[0], &c, 1) == 1 && c == 'r');
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(handled == 6);
  puts("ok");
  return 0;
}
