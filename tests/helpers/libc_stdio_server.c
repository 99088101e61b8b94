/* libc_stdio_server.c [MAX_OS_THREADS]: a thread-per-connection server that
 * reads lines with fgets on an fdopen'd socket and answers with fputs and
 * fflush.  A first client connects and stays idle, its server thread
 * waiting in fgets (in libc's own read); a second client must be answered
 * meanwhile, as it is natively.  With MAX_OS_THREADS given (under the
 * launcher: 3), the process may have at most that many OS threads while
 * both connections are open.  A hang fails by SIGALRM. */
#include "ticks.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener;

static void *serve(void *arg)
{
  int fd = (int)(intptr_t)arg;
  FILE *in = fdopen(fd, "r"), *out = fdopen(dup(fd), "w");
  char line[128];
  CHECK(in && out);
  while (fgets(line, sizeof line, in)) {
    CHECK(fputs("echo ", out) >= 0 && fputs(line, out) >= 0);
    CHECK(fflush(out) == 0);
  }
  fclose(out);
  fclose(in);
  return NULL;
}

static void *acceptor(void *arg)
{
  (void)arg;
  for (int i = 0; i < 2; i++) {
    pthread_t t;
    int fd = accept(listener, NULL, NULL);
    CHECK(fd >= 0);
    CHECK(pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) == 0);
    CHECK(pthread_detach(t) == 0);
  }
  return NULL;
}

static int dial(const struct sockaddr_in *addr)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK(connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0);
  return fd;
}

int main(int argc, char **argv)
{
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  pthread_t t;
  char reply[64];
  alarm(20);
  CHECK((listener = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
  CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK(listen(listener, 8) == 0);
  CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
  CHECK(pthread_create(&t, NULL, acceptor, NULL) == 0);

  /* The first client: its server thread answers one line, then waits in
     fgets for the next, which does not come while the second is served. */
  int idle = dial(&addr);
  FILE *first = fdopen(idle, "r+");
  CHECK(first && fputs("one\n", first) >= 0 && fflush(first) == 0);
  CHECK(fgets(reply, sizeof reply, first) && !strcmp(reply, "echo one\n"));

  /* The second client, answered while the first stays idle. */
  int busy = dial(&addr);
  struct pollfd p = {busy, POLLIN, 0};
  CHECK(write(busy, "two\n", 4) == 4);
  CHECK(poll(&p, 1, 5000) == 1);
  ssize_t n = read(busy, reply, sizeof reply - 1);
  CHECK(n == 9);
  reply[n] = 0;
  CHECK(!strcmp(reply, "echo two\n"));
  check_os_threads(argc, argv);

  CHECK(pthread_join(t, NULL) == 0);
  close(busy);
  fclose(first);
  puts("ok");
  return 0;
}
