/* echo_libev.c: a hand-written libev echo server on one thread, with
 * callbacks and no threads of any kind: the reference for what one core can
 * do, the number kudzu's green threads are measured against.
 *
 *   echo_libev [-p PORT] [-h HOST]
 *
 * The command line, the "listening on HOST:PORT" line and the stop are those
 * of echo_threaded: HOST is an IPv4 address (default 127.0.0.1), PORT 0 picks
 * one, and SIGINT or SIGTERM makes it print "stopped" and exit 0.
 *
 * Each connection is a non-blocking socket with one ev_io and one buffer, in
 * one of two states:
 *   READING  watching EV_READ; the buffer is empty
 *   WRITING  watching EV_WRITE; the buffer holds bytes the socket's send
 *            buffer had no room for, and nothing more is read until they are
 *            out (so a peer that does not read cannot make us buffer more)
 *
 * Notes.
 * A. The loop is ev_default_loop(0): the program has exactly one loop, on its
 *    one thread, and the default loop is libev's loop for that case.  It also
 *    keeps the stop simple: ev_signal watchers on it turn SIGINT and SIGTERM
 *    into a callback that calls ev_break, with no handler of our own.  The
 *    backend is libev's choice, epoll on Linux, the same kernel interface the
 *    hub's own loops use.
 * B. One recv() per readiness callback, not a loop until EAGAIN.  libev's
 *    ev_io is level-triggered, so unread bytes make the callback fire again on
 *    the next loop pass; in a ping-pong load a second recv() would almost
 *    always just return EAGAIN, one wasted system call per request, and a
 *    busy connection could not starve the others.
 * C. The listening socket is drained in a loop until EAGAIN, as libev's
 *    manual recommends for epoll.  When accept() fails for lack of descriptors
 *    or memory the socket stays readable, so rather than spin the accept
 *    watcher pauses for ACCEPT_PAUSE seconds.  The pause timer is set again
 *    before each start: a one-shot ev_timer that has fired keeps what was
 *    left of its timeout, about zero, so restarting it as is fires at once.
 * D. Sends use MSG_NOSIGNAL: a vanished peer is an EPIPE for that connection,
 *    not a SIGPIPE for the process.
 * E. TCP_NODELAY on each connection, as in echo_threaded: replies go out at
 *    once, also when they go out in parts.
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

#define BUF_SIZE (16 * 1024) /* per connection */
#define BACKLOG 4096         /* the kernel caps it at net.core.somaxconn */
#define ACCEPT_PAUSE 0.1     /* seconds, after EMFILE and friends (note C) */

/* One connection; freed by conn_close(). */
struct conn {
  ev_io io;          /* first, so the callback's watcher is the conn */
  size_t off;        /* start of the bytes still to send back */
  size_t len;        /* how many bytes are still to send back */
  char buf[BUF_SIZE]; /* what was read, echoed from off */
};

/* The listening side. */
struct listener {
  ev_io io;          /* first, so the callback's watcher is the listener */
  ev_timer pause;    /* restarts io after an accept() shortage (note C);
                        its data points back here */
};

static void conn_close(struct ev_loop *loop, struct conn *c)
{
  ev_io_stop(loop, &c->io);
  close(c->io.fd);
  free(c);
}

/* Sends what the buffer holds until it is empty or the socket is full.
 * Returns 0 (c->len says whether bytes remain) or -1 on a fatal error. */
static int conn_send(struct conn *c)
{
  while (c->len > 0) {
    ssize_t w = send(c->io.fd, c->buf + c->off, c->len, MSG_NOSIGNAL);
    if (w < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    c->off += (size_t)w;
    c->len -= (size_t)w;
  }
  return 0;
}

/* Reads once (note B) and echoes it.  Returns 0, or -1 when the peer closed
 * or failed. */
static int conn_recv(struct conn *c)
{
  ssize_t n = recv(c->io.fd, c->buf, BUF_SIZE, 0);

  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  if (n == 0)
    return -1;
  c->off = 0;
  c->len = (size_t)n;
  return conn_send(c);
}

/* Watches what the connection's state needs: EV_WRITE while bytes wait to be
 * sent back, EV_READ otherwise.  A no-op unless the state changed. */
static void conn_watch(struct ev_loop *loop, struct conn *c)
{
  int want = c->len > 0 ? EV_WRITE : EV_READ;

  if ((c->io.events & (EV_READ | EV_WRITE)) == want)
    return;
  ev_io_stop(loop, &c->io);
  ev_io_set(&c->io, c->io.fd, want);
  ev_io_start(loop, &c->io);
}

/* A connection is readable (READING) or writable (WRITING). */
static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
  struct conn *c = (struct conn *)w;
  int ret = c->len > 0 ? conn_send(c) : conn_recv(c);

  (void)revents; /* the state says which event was watched */
  if (ret < 0)
    conn_close(loop, c);
  else
    conn_watch(loop, c);
}

/* Starts serving fd, a new non-blocking connection.  On failure closes fd. */
static void conn_open(struct ev_loop *loop, int fd)
{
  struct conn *c = malloc(sizeof *c);
  int one = 1;

  if (!c) {
    close(fd);
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* note E */
  c->off = c->len = 0;
  ev_io_init(&c->io, conn_cb, fd, EV_READ);
  ev_io_start(loop, &c->io);
}

/* The listening socket is readable: accept until EAGAIN (note C). */
static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
  struct listener *l = (struct listener *)w;

  (void)revents;
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      conn_open(loop, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      ev_io_stop(loop, &l->io);
      ev_timer_set(&l->pause, ACCEPT_PAUSE, 0.); /* every time: note C */
      ev_timer_start(loop, &l->pause);
    }
    return; /* EAGAIN, a shortage, or an error the next readiness retries */
  }
}

/* The accept pause is over: listen again. */
static void pause_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
  struct listener *l = t->data;

  (void)revents;
  ev_io_start(loop, &l->io);
}

/* SIGINT or SIGTERM: leave ev_run. */
static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
  (void)w, (void)revents;
  ev_break(loop, EVBREAK_ALL);
}

/* Parses the command line into *host and *port.  Returns 0, or -1 after
 * printing the usage. */
static int parse_args(int argc, char **argv, const char **host, int *port)
{
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "-h") && i + 1 < argc) {
      *host = argv[++i];
    } else if (!strcmp(argv[i], "-p") && i + 1 < argc) {
      long p = strtol(argv[++i], &end, 10);
      if (*end || p < 0 || p > 65535)
        goto usage;
      *port = (int)p;
    } else {
      goto usage;
    }
  }
  return 0;
usage:
  fprintf(stderr, "usage: echo_libev [-p PORT] [-h IPV4-ADDRESS]\n");
  return -1;
}

/* Opens a non-blocking listening socket on host:port.  Returns it and stores
 * the port actually bound in *bound, or returns -1 after printing why. */
static int listen_on(const char *host, int port, int *bound)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  socklen_t len = sizeof sa;
  int one = 1, fd;

  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "echo_libev: %s is not an IPv4 address\n", host);
    return -1;
  }
  if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
    goto error1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, BACKLOG) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
    goto error2;
  *bound = ntohs(sa.sin_port);
  return fd;

error2:
  close(fd);
error1:
  fprintf(stderr, "echo_libev: listening on %s:%d: %s\n", host, port, strerror(errno));
  return -1;
}

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  int port = 0, bound, lfd;
  struct ev_loop *loop;
  struct listener l;
  ev_signal sigint, sigterm;

  if (parse_args(argc, argv, &host, &port) < 0)
    return 2;
  if (!(loop = ev_default_loop(0))) { /* note A */
    fprintf(stderr, "echo_libev: libev could not start a loop\n");
    return 1;
  }
  if ((lfd = listen_on(host, port, &bound)) < 0)
    return 1;

  ev_io_init(&l.io, accept_cb, lfd, EV_READ);
  ev_io_start(loop, &l.io);
  ev_init(&l.pause, pause_cb);
  l.pause.data = &l;
  ev_signal_init(&sigint, stop_cb, SIGINT);
  ev_signal_start(loop, &sigint);
  ev_signal_init(&sigterm, stop_cb, SIGTERM);
  ev_signal_start(loop, &sigterm);
  printf("listening on %s:%d\n", host, bound);
  fflush(stdout);

  ev_run(loop, 0);
  close(lfd);
  puts("stopped");
  fflush(stdout);
  return 0;
}
