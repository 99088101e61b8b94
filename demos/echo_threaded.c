/* echo_threaded.c: a plain blocking thread-per-connection TCP echo server,
 * using only libc and pthreads: the unmodified program kudzu runs.
 *
 *   echo_threaded [-p PORT] [-h HOST]
 *
 * Prints "listening on HOST:PORT" once it listens (port 0 picks one).  On
 * SIGINT or SIGTERM (a handler without SA_RESTART sets a flag, and the
 * blocked accept fails with EINTR) it prints "stopped" and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { stopping = sig; }

/* One connection: echo until the peer closes. */
static void *serve(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf), off = 0;
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    while (off < n) {
      ssize_t w = write(fd, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        goto done;
      off += w;
    }
  }
done:
  close(fd);
  return NULL;
}

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  int port = 0, one = 1, lfd;
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof sa;
  struct sigaction act;
  pthread_attr_t attr;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-p") && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-h") && i + 1 < argc)
      host = argv[++i];
    else {
      fprintf(stderr, "usage: echo_threaded [-p PORT] [-h HOST]\n");
      return 2;
    }
  }
  memset(&act, 0, sizeof act);
  act.sa_handler = on_signal; /* no SA_RESTART: accept fails with EINTR */
  sigaction(SIGINT, &act, NULL);
  sigaction(SIGTERM, &act, NULL);
  signal(SIGPIPE, SIG_IGN);

  sa.sin_port = htons((uint16_t)port);
  if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
      inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
      setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
    perror("echo_threaded");
    return 1;
  }
  printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
  fflush(stdout);

  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  while (!stopping) {
    pthread_t t;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), err;
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE) {
        usleep(10000);
        continue;
      }
      perror("accept");
      break;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if ((err = pthread_create(&t, &attr, serve, (void *)(intptr_t)fd)) != 0) {
      fprintf(stderr, "pthread_create: %s\n", strerror(err));
      close(fd);
    }
  }
  close(lfd);
  puts("stopped");
  return 0;
}
