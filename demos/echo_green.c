/* echo_green.c: a TCP echo server on the kudzu API, one green thread per
 * connection, like gevent's StreamServer.
 *
 *   echo_green [-p PORT] [-h HOST] [--libc]
 *
 * Prints "listening on HOST:PORT" once it listens (port 0 picks one), and
 * "stopped" after SIGINT or SIGTERM, then exits 0.
 *
 * Two ways to do the I/O, same structure:
 *   default  non-blocking sockets and kz_wait_fd: the API alone, no shim;
 *   --libc   plain blocking accept/read/write, as in a threaded server: run it
 *            under the preload shim (build/bin/kudzu), which turns each
 *            blocking call into a wait on the hub.
 *
 * Stopping: SIGINT/SIGTERM are blocked and read from a signalfd by a green
 * thread, which cancels the acceptor: its blocking call fails with
 * ECANCELED, and the connection green threads are cancelled by kz_run on its
 * way out.
 */
#define _GNU_SOURCE
#include <kudzu.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

static bool use_libc;    /* --libc: blocking libc calls, for the shim */
static kz_green_t acceptor;

/* Read up to len bytes; 0 at end of stream, -1 with errno on error.
   *drained says the previous read came back short, so the socket's queue
   was empty then: in a request-response exchange the next request is not
   there yet, and waiting first saves a read that would fail with EAGAIN
   (readiness is level-triggered: if it did arrive, the wait ends at once). */
static ssize_t conn_read(int fd, char *buf, size_t len, bool *drained)
{
  if (*drained && !use_libc && kz_wait_fd(fd, KZ_READ, KZ_FOREVER) < 0)
    return -1;
  for (;;) {
    ssize_t n = read(fd, buf, len);
    *drained = n > 0 && (size_t)n < len;
    if (n >= 0 || use_libc || errno != EAGAIN)
      return n;
    if (kz_wait_fd(fd, KZ_READ, KZ_FOREVER) < 0)
      return -1;
  }
}

/* Write all of buf; -1 with errno on error. */
static int conn_write_all(int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
    } else if (n < 0 && !use_libc && errno == EAGAIN) {
      if (kz_wait_fd(fd, KZ_WRITE, KZ_FOREVER) < 0)
        return -1;
    } else if (n < 0 && errno != EINTR) {
      return -1;
    }
  }
  return 0;
}

static void *serve(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char buf[16384];
  bool drained = false;
  ssize_t n;
  while ((n = conn_read(fd, buf, sizeof buf, &drained)) > 0)
    if (conn_write_all(fd, buf, (size_t)n) < 0)
      break;
  kz_close(fd);
  return NULL;
}

static int accept_one(int lfd)
{
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | (use_libc ? 0 : SOCK_NONBLOCK));
    if (fd >= 0 || use_libc || errno != EAGAIN)
      return fd;
    if (kz_wait_fd(lfd, KZ_READ, KZ_FOREVER) < 0)
      return -1;
  }
}

static void *accept_loop(void *arg)
{
  int lfd = (int)(intptr_t)arg, one = 1;
  struct kz_spawn_opts opts = {.name = "conn", .detached = 1, .stack_size = 64 * 1024};
  for (;;) {
    int fd = accept_one(lfd);
    if (fd < 0) {
      if (errno == ECANCELED)
        return NULL;
      if (errno == EMFILE || errno == ENFILE || errno == EINTR || errno == ECONNABORTED) {
        kz_sleep(0.01);
        continue;
      }
      perror("accept");
      return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!kz_spawn_with(serve, (void *)(intptr_t)fd, &opts)) {
      perror("kz_spawn");
      close(fd);
    }
  }
}

/* Waits for SIGINT/SIGTERM on a signalfd, then stops the acceptor. */
static void *watch_signals(void *arg)
{
  int sfd = (int)(intptr_t)arg;
  struct signalfd_siginfo si;
  for (;;) {
    if (kz_wait_fd(sfd, KZ_READ, KZ_FOREVER) < 0)
      return NULL;
    if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
      break;
  }
  kz_cancel(acceptor);
  return NULL;
}

static int listen_on(const char *host, int port)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  socklen_t len = sizeof sa;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (use_libc ? 0 : SOCK_NONBLOCK), 0);
  if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    close(fd);
    return -1;
  }
  printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
  fflush(stdout);
  return fd;
}

struct config {
  const char *host;
  int port;
};

static void *server_main(void *arg)
{
  struct config *c = arg;
  struct kz_spawn_opts named = {.name = "acceptor"};
  sigset_t set;
  int lfd, sfd;

  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  if ((sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
      (lfd = listen_on(c->host, c->port)) < 0) {
    perror("echo_green");
    return (void *)1;
  }
  acceptor = kz_spawn_with(accept_loop, (void *)(intptr_t)lfd, &named);
  named.name = "signals";
  named.detached = 1;
  kz_spawn_with(watch_signals, (void *)(intptr_t)sfd, &named);
  kz_join(acceptor, NULL, KZ_FOREVER);
  kz_close(lfd);
  puts("stopped");
  fflush(stdout);
  return NULL;
}

int main(int argc, char **argv)
{
  struct config c = {"127.0.0.1", 0};
  void *r = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-p") && i + 1 < argc)
      c.port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-h") && i + 1 < argc)
      c.host = argv[++i];
    else if (!strcmp(argv[i], "--libc"))
      use_libc = true;
    else {
      fprintf(stderr, "usage: echo_green [-p PORT] [-h HOST] [--libc]\n");
      return 2;
    }
  }
  if (kz_run(server_main, &c, &r) != 0 && errno != ECANCELED) {
    perror("kz_run");
    return 1;
  }
  return r ? 1 : 0;
}
