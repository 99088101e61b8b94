/* rel_client.c: the reliability suite's misbehaving clients
 * (tests/reliability/reliability.sh drives an echo server with them).  A
 * plain program, libc and pthreads only; it never runs under the launcher.
 *
 *   rel_client check PORT              one verified echo; exit 0
 *   rel_client abrupt PORT N           N each of: idle, never-reading,
 *                                      reset mid-message, half-closed; the
 *                                      server keeps answering meanwhile
 *   rel_client short PORT MAX SECONDS THREADS
 *                                      connect, one request, close, in a loop
 *   rel_client hold PORT N             open N connections, print "held",
 *                                      keep them until stdin ends
 *
 * Exit status 0 when every exchange verified; 1 with one line on stderr
 * saying what failed; 2 on a bad command line.
 *
 * Notes.
 * A. Every wait is bounded: sockets are waited on with poll() and a
 *    timeout (IO_TIMEOUT_MS), and an ITIMER_REAL alarm (DEADLINE_S, or the
 *    duration plus a margin) ends the program with a message whatever call
 *    it is stuck in, so no server state can hang the test.
 * B. Never-reading clients send, without reading, until the socket takes no
 *    more for NOREAD_STALL_MS (once NOREAD_LEAST bytes are in; before that
 *    the wait is IO_TIMEOUT_MS) or NOREAD_BYTES are sent: the server echoes
 *    into a connection whose receiver never reads, so its write blocks
 *    once the buffers on both sides are full (megabytes on loopback).  The
 *    server must still answer other connections meanwhile (checks run
 *    while they are stalled).  They end with a reset, which must wake the
 *    server's blocked write.
 * C. Reset mid-message: a client sends part of a large message and closes
 *    with SO_LINGER {1, 0}, so the kernel sends RST instead of FIN while the
 *    server is reading or writing it.
 * D. Short connections: each thread connects, sends MSG bytes, reads them
 *    back, and closes, until MAX connections in all or SECONDS have
 *    passed.  The client closes first, so its side holds TIME_WAIT; Linux
 *    reuses those ports for loopback connections (net.ipv4.tcp_tw_reuse=2,
 *    the default), and EADDRNOTAVAIL, should the ports run short anyway, is
 *    waited out and retried.
 * E. hold opens its connections without waiting for the server to accept
 *    them (they complete in the kernel's backlog, or stay in SYN_SENT when
 *    the backlog is full); each sends one small message.  It reports how
 *    many completed the handshake.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 20000        /* longest wait for one socket event (note A) */
#define DEADLINE_S 90              /* whole run, except short (note A) */
#define MSG 64                     /* bytes of a check or short request */
#define NOREAD_BYTES (8 << 20)     /* most a never-reading client sends (note B) */
#define NOREAD_LEAST (1 << 20)     /* a never-reading client sends at least this */
#define NOREAD_STALL_MS 300        /* the socket took nothing for this long: stalled */
#define RESET_BYTES (256 << 10)    /* the large message reset mid-way (note C) */
#define HALF_BYTES (200 << 10)     /* what a half-closed client sends */
#define MAX_THREADS 64

static struct sockaddr_in server;
static atomic_long done;           /* short: connections completed */
static atomic_int failed;          /* short: some thread failed */
static double until;               /* short: stop time */
static long max_conns;             /* short: MAX */

static void on_deadline(int sig)
{
  static const char msg[] = "rel_client: deadline passed: the server never answered\n";
  (void)sig;
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

static void set_deadline(int seconds)
{
  struct itimerval it = {.it_value = {.tv_sec = seconds}};
  signal(SIGALRM, on_deadline);
  setitimer(ITIMER_REAL, &it, NULL);
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
  va_list ap;
  int e = errno;
  va_start(ap, fmt);
  fputs("rel_client: ", stderr);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (errno %d %s)\n", e, strerror(e));
  va_end(ap);
  exit(1);
}

/* Waits (bounded) until fd has one of events; returns the revents, 0 on
 * timeout. */
static int wait_fd(int fd, short events, int ms)
{
  struct pollfd p = {.fd = fd, .events = events};
  for (;;) {
    int n = poll(&p, 1, ms);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die("poll");
    return n ? p.revents : 0;
  }
}

/* A non-blocking socket with connect() started; -1 with errno if the
 * connect failed at once (other than in progress). */
static int connect_start(void)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* A connected non-blocking socket, or -1 with errno after a bounded wait.
 * EADDRNOTAVAIL (ephemeral ports short, note D) is retried. */
static int connect_wait(void)
{
  for (int tries = 0;; tries++) {
    int fd = connect_start(), err = 0;
    socklen_t len = sizeof err;
    if (fd < 0 && errno == EADDRNOTAVAIL && tries < 200) {
      usleep(10000);
      continue;
    }
    if (fd < 0)
      return -1;
    if (!wait_fd(fd, POLLOUT, IO_TIMEOUT_MS)) {
      close(fd);
      errno = ETIMEDOUT;
      return -1;
    }
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      close(fd);
      errno = err;
      return -1;
    }
    return fd;
  }
}

/* Sends all n bytes (bounded waits).  0, or -1 with errno. */
static int send_all(int fd, const unsigned char *buf, size_t n)
{
  while (n > 0) {
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, IO_TIMEOUT_MS)) {
        errno = ETIMEDOUT;
        return -1;
      }
      continue;
    }
    if (w < 0)
      return -1;
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads exactly n bytes into buf (bounded waits).  0, or -1 with errno
 * (ECONNRESET standing for an early end of stream). */
static int recv_all(int fd, unsigned char *buf, size_t n)
{
  while (n > 0) {
    ssize_t r = recv(fd, buf, n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLIN, IO_TIMEOUT_MS)) {
        errno = ETIMEDOUT;
        return -1;
      }
      continue;
    }
    if (r == 0)
      errno = ECONNRESET;
    if (r <= 0)
      return -1;
    buf += r;
    n -= (size_t)r;
  }
  return 0;
}

static void fill(unsigned char *buf, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)((i * 131 + seed * 7919) >> 3 ^ seed);
}

/* Closes fd with a reset rather than FIN (note C). */
static void close_reset(int fd)
{
  struct linger l = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

/* One verified request on a fresh connection, closed after.  0, or -1 with
 * errno; *what says which step failed. */
static int one_request(unsigned seed, const char **what)
{
  unsigned char out[MSG], in[MSG];
  int fd = connect_wait();
  if (fd < 0) {
    *what = "connect";
    return -1;
  }
  fill(out, sizeof out, seed);
  if (send_all(fd, out, sizeof out) < 0 || recv_all(fd, in, sizeof in) < 0) {
    int e = errno;
    *what = "echo";
    close(fd);
    errno = e;
    return -1;
  }
  close(fd);
  if (memcmp(in, out, sizeof out) != 0) {
    *what = "verify (the echo differs)";
    errno = 0;
    return -1;
  }
  return 0;
}

static void check_or_die(unsigned seed, const char *when)
{
  const char *what = "";
  if (one_request(seed, &what) < 0)
    die("%s: a check request failed at %s", when, what);
}

/* A half-closed client: sends HALF_BYTES, shuts its side, and must read all
 * of them back and then the end of the stream. */
static void half_close(unsigned seed)
{
  static unsigned char out[HALF_BYTES], in[HALF_BYTES];
  unsigned char extra;
  int fd = connect_wait();

  if (fd < 0)
    die("half-close: connect");
  fill(out, sizeof out, seed);
  /* The echo comes back while we send: read it in the same loop so neither
   * side's buffers fill up. */
  size_t sent = 0, got = 0;
  while (got < sizeof in) {
    short ev = POLLIN | (sent < sizeof out ? POLLOUT : 0);
    int re = wait_fd(fd, ev, IO_TIMEOUT_MS);
    if (!re)
      die("half-close: no progress (sent %zu, received %zu)", sent, got);
    if ((re & POLLOUT) && sent < sizeof out) {
      ssize_t w = send(fd, out + sent, sizeof out - sent, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR)
        die("half-close: send");
      if (w > 0 && (sent += (size_t)w) == sizeof out && shutdown(fd, SHUT_WR) < 0)
        die("half-close: shutdown");
    }
    if (re & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = recv(fd, in + got, sizeof in - got, 0);
      if (r == 0)
        die("half-close: end of stream after %zu of %zu bytes", got, sizeof in);
      if (r < 0 && errno != EAGAIN && errno != EINTR)
        die("half-close: recv");
      if (r > 0)
        got += (size_t)r;
    }
  }
  if (memcmp(in, out, sizeof in) != 0)
    die("half-close: the echo differs");
  if (!wait_fd(fd, POLLIN, IO_TIMEOUT_MS))
    die("half-close: the server did not close after the echo");
  if (recv(fd, &extra, 1, 0) != 0)
    die("half-close: data or an error instead of the end of stream");
  close(fd);
}

/* A client reset mid-message (note C). */
static void reset_mid(unsigned seed)
{
  static unsigned char out[RESET_BYTES];
  int fd = connect_wait();

  if (fd < 0)
    die("reset: connect");
  fill(out, sizeof out, seed);
  /* Part of it: as much as goes without waiting, at least one byte. */
  ssize_t w = send(fd, out, sizeof out / 2, MSG_NOSIGNAL);
  if (w <= 0)
    die("reset: send");
  close_reset(fd);
}

/* A never-reading client (note B): returns its socket, stalled. */
static int no_read(unsigned seed, size_t *sent_out)
{
  static unsigned char out[256 << 10];
  size_t sent = 0;
  int fd = connect_wait();

  if (fd < 0)
    die("never-reading: connect");
  fill(out, sizeof out, seed);
  while (sent < NOREAD_BYTES) {
    ssize_t w = send(fd, out, sizeof out, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN)
      die("never-reading: send after %zu bytes", sent);
    if (!wait_fd(fd, POLLOUT, sent < NOREAD_LEAST ? IO_TIMEOUT_MS : NOREAD_STALL_MS)) {
      if (sent < NOREAD_LEAST)
        die("never-reading: the server took only %zu bytes", sent);
      break; /* stalled: the server's write is blocked */
    }
  }
  *sent_out = sent;
  return fd;
}

static void abrupt(int n)
{
  int idle[n], stalled[n];
  size_t least = SIZE_MAX, bytes;

  for (int i = 0; i < n; i++)
    if ((idle[i] = connect_wait()) < 0)
      die("idle: connect");
  for (int i = 0; i < n; i++) {
    stalled[i] = no_read((unsigned)i, &bytes);
    if (bytes < least)
      least = bytes;
    check_or_die((unsigned)i, "with never-reading clients stalled");
  }
  for (int i = 0; i < n; i++) {
    reset_mid((unsigned)i);
    half_close((unsigned)i);
    check_or_die((unsigned)i, "after resets and half-closes");
  }
  for (int i = 0; i < n; i++) {
    close_reset(stalled[i]);
    close(idle[i]);
  }
  check_or_die(1, "after the stalled clients reset");
  printf("abrupt: %d idle, %d never-reading (each sent >= %zu KiB unread), %d reset, %d half-closed, "
         "%d checks: all verified\n",
         n, n, least >> 10, n, n, 2 * n + 1);
}

static void *short_thread(void *arg)
{
  unsigned seed = (unsigned)(intptr_t)arg;
  const char *what = "";

  while (!atomic_load(&failed) && now() < until) {
    if (atomic_fetch_add(&done, 1) >= max_conns) {
      atomic_fetch_sub(&done, 1);
      break;
    }
    if (one_request(seed++, &what) < 0) {
      int e = errno;
      if (!atomic_exchange(&failed, 1))
        fprintf(stderr, "rel_client: short connection %ld failed at %s: %s\n", atomic_load(&done),
                what, strerror(e));
      break;
    }
  }
  return NULL;
}

static void short_conns(long max, double seconds, int threads)
{
  pthread_t t[MAX_THREADS];
  double t0 = now();

  max_conns = max;
  until = t0 + seconds;
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, short_thread, (void *)(intptr_t)(i * 1000003)) != 0)
      die("pthread_create");
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  if (atomic_load(&failed))
    exit(1);
  printf("short: %ld connections in %.1f s, each one verified request\n", atomic_load(&done),
         now() - t0);
}

static void hold(int n)
{
  int *fds = calloc((size_t)n, sizeof *fds), connected = 0;
  unsigned char msg[MSG];
  char line[64];

  if (!fds)
    die("calloc");
  fill(msg, sizeof msg, 3);
  for (int i = 0; i < n; i++) {
    while ((fds[i] = connect_start()) < 0) {
      if (errno != EADDRNOTAVAIL && errno != EAGAIN)
        die("hold: connect %d", i);
      usleep(10000);
    }
  }
  /* Bounded: the handshakes the backlog takes complete at once. */
  double end = now() + 5;
  for (int i = 0; i < n; i++) {
    double left = end - now();
    int re = wait_fd(fds[i], POLLOUT, left > 0 ? (int)(left * 1000) : 0), err = 0;
    socklen_t len = sizeof err;
    if (!re)
      continue;
    getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len);
    if (!err && send(fds[i], msg, sizeof msg, MSG_NOSIGNAL) == (ssize_t)sizeof msg)
      connected++;
  }
  printf("held %d connections, %d connected\n", n, connected);
  fflush(stdout);
  /* Until the script closes our stdin (no deadline here: it has its own). */
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  while (fgets(line, sizeof line, stdin))
    ;
  for (int i = 0; i < n; i++)
    close(fds[i]);
  free(fds);
}

static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void usage(void)
{
  fprintf(stderr, "usage: rel_client check|abrupt N|short MAX SECONDS THREADS|hold N  (PORT after the mode)\n");
  exit(2);
}

int main(int argc, char **argv)
{
  if (argc < 3)
    usage();
  server.sin_family = AF_INET;
  server.sin_port = htons((uint16_t)atoi(argv[2]));
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (!strcmp(argv[1], "check") && argc == 3) {
    set_deadline(DEADLINE_S);
    check_or_die(0, "check");
    puts("check: verified");
  } else if (!strcmp(argv[1], "abrupt") && argc == 4) {
    set_deadline(DEADLINE_S);
    abrupt(atoi(argv[3]));
  } else if (!strcmp(argv[1], "short") && argc == 6) {
    double seconds = atof(argv[4]);
    int threads = atoi(argv[5]);
    if (seconds <= 0 || threads < 1 || threads > MAX_THREADS)
      usage();
    set_deadline((int)seconds + DEADLINE_S);
    short_conns(atol(argv[3]), seconds, threads);
  } else if (!strcmp(argv[1], "hold") && argc == 4) {
    set_deadline(DEADLINE_S);
    hold(atoi(argv[3]));
  } else {
    usage();
  }
  return 0;
}
