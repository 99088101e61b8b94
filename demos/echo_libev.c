/* echo_libev.c: a hand-written libev callback echo server on one thread: the
 * reference for what one core can do, with no green threads at all.
 *
 *   echo_libev [-p PORT] [-h HOST]
 *
 * Same command line, "listening on" line and clean stop on SIGINT/SIGTERM as
 * echo_threaded.  Non-blocking sockets, one ev_io per connection, reading
 * until EAGAIN and writing what was read; when the socket's send buffer is
 * full it watches for writability instead until the backlog is out.  It uses
 * libev's default loop, the one ev_signal works with.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384

/* One connection. */
struct conn {
  ev_io io;        /* read, or write while pending > 0 */
  size_t pending;  /* bytes read and not yet written back */
  size_t off;      /* where the unwritten bytes start */
  char buf[BUF];
};

static void conn_close(struct ev_loop *loop, struct conn *c)
{
  ev_io_stop(loop, &c->io);
  close(c->io.fd);
  free(c);
}

/* Write what is pending; false on a fatal error. */
static int conn_flush(struct conn *c)
{
  while (c->pending > 0) {
    ssize_t w = send(c->io.fd, c->buf + c->off, c->pending, MSG_NOSIGNAL);
    if (w < 0)
      return errno == EAGAIN || errno == EINTR;
    c->off += (size_t)w;
    c->pending -= (size_t)w;
  }
  return 1;
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = (struct conn *)w;
  if (!conn_flush(c)) {
    conn_close(loop, c);
    return;
  }
  while (c->pending == 0) {
    ssize_t n = recv(c->io.fd, c->buf, BUF, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      conn_close(loop, c);
      return;
    }
    if (n < 0)
      break;
    c->off = 0;
    c->pending = (size_t)n;
    if (!conn_flush(c)) {
      conn_close(loop, c);
      return;
    }
  }
  int want = c->pending ? EV_WRITE : EV_READ;
  if ((c->io.events & (EV_READ | EV_WRITE)) != want) {
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->io.fd, want);
    ev_io_start(loop, &c->io);
  }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
  int one = 1;
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct conn *c;
    if (fd < 0)
      return; /* EAGAIN, or a transient error: the watcher fires again */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!(c = malloc(sizeof *c))) {
      close(fd);
      continue;
    }
    c->pending = c->off = 0;
    ev_io_init(&c->io, conn_cb, fd, EV_READ);
    ev_io_start(loop, &c->io);
  }
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents) { ev_break(loop, EVBREAK_ALL); }

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  int port = 0, one = 1, lfd;
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof sa;
  struct ev_loop *loop = ev_default_loop(0);
  ev_io lw;
  ev_signal sint, sterm;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-p") && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-h") && i + 1 < argc)
      host = argv[++i];
    else {
      fprintf(stderr, "usage: echo_libev [-p PORT] [-h HOST]\n");
      return 2;
    }
  }
  sa.sin_port = htons((uint16_t)port);
  if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
      inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
      setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
    perror("echo_libev");
    return 1;
  }
  printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
  fflush(stdout);
  ev_io_init(&lw, accept_cb, lfd, EV_READ);
  ev_io_start(loop, &lw);
  ev_signal_init(&sint, stop_cb, SIGINT);
  ev_signal_start(loop, &sint);
  ev_signal_init(&sterm, stop_cb, SIGTERM);
  ev_signal_start(loop, &sterm);
  ev_run(loop, 0);
  close(lfd);
  puts("stopped");
  return 0;
}
