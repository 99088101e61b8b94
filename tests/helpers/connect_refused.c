/* connect_refused.c: a blocking connect reports the socket's error as errno
 * (ECONNREFUSED), and a non-blocking one returns EINPROGRESS or succeeds; a
 * blocking connect to a Unix listener whose backlog is full waits until the
 * listener accepts, instead of failing with EAGAIN. */
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void unix_backlog(void)
{
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  int l = socket(AF_UNIX, SOCK_STREAM, 0), s, st, n = 0;
  snprintf(un.sun_path, sizeof un.sun_path, "/tmp/kudzu-connect-%d", (int)getpid());
  unlink(un.sun_path);
  CHECK(l >= 0 && bind(l, (struct sockaddr *)&un, sizeof un) == 0 && listen(l, 1) == 0);
  for (;;) { /* fill the backlog */
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect(s, (struct sockaddr *)&un, sizeof un) < 0) {
      CHECK(errno == EAGAIN);
      close(s);
      break;
    }
    n++;
  }
  pid_t pid = fork();
  if (pid == 0) { /* accepts everything, after a while */
    usleep(200000);
    for (int i = 0; i <= n; i++)
      if (accept(l, NULL, NULL) < 0)
        _exit(1);
    _exit(0);
  }
  s = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(s, (struct sockaddr *)&un, sizeof un) == 0);
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  unlink(un.sun_path);
}

int main(void)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int l = socket(AF_INET, SOCK_STREAM, 0), s;
  CHECK(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(getsockname(l, (struct sockaddr *)&sa, &len) == 0);
  CHECK(close(l) == 0); /* nobody listens on that port now */
  s = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(s, (struct sockaddr *)&sa, sizeof sa) == -1 && errno == ECONNREFUSED);
  CHECK(!(fcntl(s, F_GETFL) & O_NONBLOCK));
  close(s);
  /* A listener: blocking connect succeeds; non-blocking gives EINPROGRESS or 0. */
  l = socket(AF_INET, SOCK_STREAM, 0);
  sa.sin_port = 0;
  CHECK(bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 8) == 0);
  len = sizeof sa;
  CHECK(getsockname(l, (struct sockaddr *)&sa, &len) == 0);
  s = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(s, (struct sockaddr *)&sa, sizeof sa) == 0);
  int a = accept(l, NULL, NULL);
  CHECK(a >= 0);
  CHECK(write(s, "ping", 4) == 4);
  char buf[4];
  CHECK(read(a, buf, 4) == 4 && !memcmp(buf, "ping", 4));
  int n = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int r = connect(n, (struct sockaddr *)&sa, sizeof sa);
  CHECK(r == 0 || errno == EINPROGRESS);
  unix_backlog();
  puts("ok");
  return 0;
}
