/* tls_epoll.c: per-thread epoll descriptors in __thread variables, the
 * shape of an event-driven server run with several threads (a load
 * balancer's): four threads each make their own epoll instance, keep it and
 * their number in __thread variables, and serve the connections handed to
 * them (through a pipe of their own) until each has served four.  Every
 * reply names the thread that served it, which must be the one the
 * connection was handed to.  A client read that gets nothing within 10 s
 * fails instead of hanging. */
#include "check.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define N 4
#define PER 4

static __thread int epfd = -1;
static __thread int me = -1;
static __thread int served;
static int inbox[N][2];

static void add(int fd)
{
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0);
}

/* A request on fd: reply with this thread's number. */
static void serve(int fd)
{
  char buf[16], reply[32];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n <= 0) {
    CHECK(epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == 0);
    close(fd);
    return;
  }
  snprintf(reply, sizeof reply, "thread %d", me);
  CHECK(write(fd, reply, strlen(reply)) == (ssize_t)strlen(reply));
  served++;
}

static void *worker(void *arg)
{
  struct epoll_event evs[8];
  int mine = (int)(long)arg;
  me = mine;
  CHECK((epfd = epoll_create1(0)) >= 0);
  add(inbox[mine][0]);
  while (served < PER) {
    int n = epoll_wait(epfd, evs, 8, -1);
    if (n < 0 && errno == EINTR)
      continue; /* a stop signal ends it so, even without a handler */
    CHECK(n > 0 && me == mine);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == inbox[mine][0]) {
        CHECK(read(fd, &fd, sizeof fd) == sizeof fd);
        add(fd);
      } else {
        serve(fd);
      }
    }
  }
  close(epfd);
  return NULL;
}

int main(void)
{
  pthread_t t[N];
  int client[N * PER];
  struct timeval tv = {10, 0};
  for (int i = 0; i < N; i++) {
    CHECK(pipe(inbox[i]) == 0);
    CHECK(pthread_create(&t[i], NULL, worker, (void *)(long)i) == 0);
  }
  for (int c = 0; c < N * PER; c++) { /* hand connection c to thread c % N */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    client[c] = sv[0];
    CHECK(write(inbox[c % N][1], &sv[1], sizeof sv[1]) == sizeof sv[1]);
  }
  for (int c = 0; c < N * PER; c++) {
    char want[32], got[32] = {0};
    CHECK(write(client[c], "ping", 4) == 4);
    CHECK(read(client[c], got, sizeof got - 1) > 0);
    snprintf(want, sizeof want, "thread %d", c % N);
    CHECK(strcmp(got, want) == 0);
  }
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  puts("each thread served its own connections through its own epoll instance");
  return 0;
}
