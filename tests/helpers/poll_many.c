/* poll_many.c: poll, select and epoll_wait keep their timeout and readiness
 * contracts, and poll works with descriptors above 1024. */
#include "check.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

enum { N = 700 }; /* socket pairs: 1400 descriptors */

int main(void)
{
  static int sv[N][2];
  static struct pollfd pf[N];
  struct rlimit rl;
  double t;
  CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  for (int i = 0; i < N; i++) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) == 0);
    pf[i] = (struct pollfd){sv[i][0], POLLIN, 0};
  }
  CHECK(sv[N - 1][0] > 1024);
  /* Timeout with nothing ready. */
  t = mono();
  CHECK(poll(pf, N, 100) == 0);
  CHECK(mono() - t >= 0.099);
  /* One ready, above 1024. */
  CHECK(write(sv[N - 1][1], "a", 1) == 1);
  CHECK(poll(pf, N, 5000) == 1);
  CHECK(pf[N - 1].revents == POLLIN);
  for (int i = 0; i < N - 1; i++)
    CHECK(pf[i].revents == 0);
  /* Hang-up is reported. */
  CHECK(close(sv[3][1]) == 0);
  CHECK(poll(&pf[3], 1, 5000) == 1 && (pf[3].revents & POLLHUP));
  /* select: timeout, then readiness, on low descriptors. */
  int p[2];
  CHECK(pipe(p) == 0 && p[0] < 1024);
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(p[0], &rd);
  struct timeval tv = {0, 100000};
  t = mono();
  CHECK(select(p[0] + 1, &rd, NULL, NULL, &tv) == 0);
  CHECK(mono() - t >= 0.099);
  CHECK(write(p[1], "b", 1) == 1);
  FD_ZERO(&rd);
  FD_SET(p[0], &rd);
  CHECK(select(p[0] + 1, &rd, NULL, NULL, NULL) == 1 && FD_ISSET(p[0], &rd));
  /* epoll_wait: timeout, then readiness. */
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = sv[10][0]}, out[4];
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[10][0], &ev) == 0);
  t = mono();
  CHECK(epoll_wait(ep, out, 4, 100) == 0);
  CHECK(mono() - t >= 0.099);
  CHECK(write(sv[10][1], "c", 1) == 1);
  CHECK(epoll_wait(ep, out, 4, 5000) == 1 && out[0].data.fd == sv[10][0]);
  puts("ok");
  return 0;
}
