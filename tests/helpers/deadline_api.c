/* deadline_api.c: the API's scoped deadlines and cancellation reach plain
 * libc calls under the shim: inside a scope, poll, epoll_wait, select, a
 * read and a recv (even one with a longer SO_RCVTIMEO) fail with ETIMEDOUT
 * when the scope expires, and a sleep ends early with EINTR and the time
 * left; a green thread blocked in recv fails with ECANCELED when
 * cancelled.  Green threads on the API, plain libc calls. */
#include <kudzu.h>

#include "check.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCOPE 0.1

static int sv[2];

/* Run one call inside a scope of SCOPE seconds; it must fail with err. */
#define IN_SCOPE(call, err)                                                   \
  do {                                                                        \
    double t0 = mono();                                                       \
    kz_scope_t s = kz_deadline_enter(SCOPE);                                  \
    CHECK(s != 0);                                                            \
    CHECK((call) == -1 && errno == (err));                                    \
    CHECK(kz_deadline_leave(s) == 1);                                         \
    CHECK(mono() - t0 >= SCOPE * 0.9 && mono() - t0 < 5);                     \
  } while (0)

static void *blocked_recv(void *arg)
{
  char c;
  return (void *)(long)(recv(sv[0], &c, 1, 0) == -1 ? errno : 0);
}

static void *run(void *arg)
{
  char c;
  struct pollfd p = {sv[0], POLLIN, 0};
  struct epoll_event ev = {.events = EPOLLIN}, out;
  struct timespec ts = {5, 0}, rem;
  struct timeval tv = {5, 0};
  fd_set rd;
  int ep = epoll_create1(0);
  CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) == 0);

  IN_SCOPE(poll(&p, 1, -1), ETIMEDOUT);
  IN_SCOPE(poll(&p, 1, 5000), ETIMEDOUT);
  IN_SCOPE(epoll_wait(ep, &out, 1, -1), ETIMEDOUT);
  FD_ZERO(&rd);
  FD_SET(sv[0], &rd);
  IN_SCOPE(select(sv[0] + 1, &rd, NULL, NULL, NULL), ETIMEDOUT);
  IN_SCOPE(read(sv[0], &c, 1), ETIMEDOUT);
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  IN_SCOPE(recv(sv[0], &c, 1, 0), ETIMEDOUT);
  IN_SCOPE(nanosleep(&ts, &rem), EINTR);
  CHECK(rem.tv_sec >= 4);

  kz_green_t g = kz_spawn(blocked_recv, NULL);
  void *r;
  kz_yield();
  CHECK(kz_state(g) == KZ_BLOCKED);
  CHECK(kz_cancel(g) == 0);
  CHECK(kz_join(g, &r, 5.0) == -1 && errno == ECANCELED);
  CHECK(r == (void *)(long)ECANCELED);
  return NULL;
}

int main(void)
{
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(kz_run(run, NULL, NULL) == 0);
  puts("ok");
  return 0;
}
