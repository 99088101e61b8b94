/* echo_threaded.c: a plain blocking TCP echo server, one thread per
 * connection, written with nothing but libc and pthreads.  It is the
 * "unmodified program" of the project: run natively it is the thread-per-
 * connection baseline, and run under the kudzu launcher every one of its
 * threads becomes a green thread without a line of it changing.
 *
 *   echo_threaded [-p PORT] [-h HOST] [--work US]
 *
 * HOST is an IPv4 address (default 127.0.0.1); PORT 0 (the default) lets the
 * kernel pick one.  --work US makes every request spend about US
 * microseconds of CPU before its echo (note F; default 0: none), so a
 * benchmark can load the server's cores and not only its system calls.
 * Once listening it prints exactly one line, "listening on HOST:PORT", and
 * flushes it, so a script can read the port.
 * SIGINT or SIGTERM stops it: it prints "stopped" and exits 0.  Exit status
 * 1 means it could not listen, 2 a bad command line.
 *
 * Notes.
 * A. Stopping.  The handler for SIGINT and SIGTERM is installed without
 *    SA_RESTART and only sets a flag, so the main thread's blocked accept()
 *    fails with EINTR and the loop sees the flag.  (Under the kudzu shim the
 *    same happens to the main green thread: see preload/signal.c.)
 * B. Which thread takes the signal.  A process-directed signal goes to any
 *    thread that does not block it, and only the main thread is in accept(),
 *    so connection threads are started with SIGINT and SIGTERM blocked: main
 *    blocks them around pthread_create() and the new thread inherits the mask.
 * C. The one race of this pattern: a signal that lands after the flag test
 *    and before accept() blocks is seen only at the next connection.  Closing
 *    it would take a self-pipe and poll(), which this program exists not to
 *    need; a second Ctrl-C, or any connection, completes the stop.
 * D. SIGPIPE is ignored, so a write to a peer that has gone fails with EPIPE
 *    and ends that connection instead of the process.
 * E. TCP_NODELAY on each connection: an echo answers at once and must not sit
 *    in Nagle's algorithm behind a delayed ACK when a reply goes out in parts.
 * F. --work is computation, not a sleep: FNV-1a over the request's bytes,
 *    again and again, for a number of bytes calibrated once at start-up
 *    (before listening) to take US microseconds on this machine.  FNV-1a is
 *    a chain of dependent multiplications the compiler cannot fold or
 *    vectorise, so its cost per byte is steady; the hash goes to a volatile
 *    sink so that it is not thrown away.  The echo itself is unchanged.
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
#include <time.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024) /* per connection thread */
#define BUF_SIZE (16 * 1024)   /* echo buffer, on that stack */
#define BACKLOG 4096           /* the kernel caps it at net.core.somaxconn */

/* Set by the signal handler; the accept loop ends when it is nonzero. */
static volatile sig_atomic_t stop_requested;

/* Bytes of FNV-1a each request hashes (note F); 0: no work.  Set before the
 * first connection thread starts, read-only after. */
static uint64_t work_bytes;

/* Where the work's hashes go, so that they are computed (note F). */
static volatile uint32_t work_sink;

/* FNV-1a over nbytes bytes, taken from buf[0..n) round and round (n > 0). */
static uint32_t fnv1a_cycle(const unsigned char *buf, size_t n, uint64_t nbytes)
{
  uint32_t h = 2166136261u;
  size_t i = 0;

  while (nbytes-- > 0) {
    h = (h ^ buf[i]) * 16777619u;
    if (++i == n)
      i = 0;
  }
  return h;
}

static uint64_t thread_cpu_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sets work_bytes to what takes us microseconds of this thread's CPU time
 * (note F): the best of a few timed runs of 2^20 bytes, so that a
 * preemption during one run does not inflate the count. */
static void calibrate_work(long us)
{
  static const unsigned char msg[64] = "calibrating the work of one request";
  const uint64_t probe = 1u << 20;
  uint64_t best = UINT64_MAX;

  if (us <= 0)
    return;
  for (int run = 0; run < 5; run++) {
    uint64_t t0 = thread_cpu_ns();
    work_sink = fnv1a_cycle(msg, sizeof msg, probe);
    uint64_t t = thread_cpu_ns() - t0;
    if (t > 0 && t < best)
      best = t;
  }
  work_bytes = (uint64_t)((double)probe * (double)us * 1e3 / (double)best);
  if (work_bytes == 0)
    work_bytes = 1;
}

static void on_stop_signal(int sig) { stop_requested = sig; }

/* Writes all n bytes of buf to fd, retrying partial writes and EINTR.
 * Returns 0, or -1 with errno set by write(). */
static int write_all(int fd, const char *buf, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Thread body for one connection (arg is the descriptor): echoes until the
 * peer closes or an error, then closes the descriptor, which it owns. */
static void *serve_connection(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char buf[BUF_SIZE];

  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n > 0 && work_bytes > 0)
      work_sink = fnv1a_cycle((unsigned char *)buf, (size_t)n, work_bytes); /* note F */
    if (n <= 0 || write_all(fd, buf, (size_t)n) < 0)
      break;
  }
  close(fd);
  return NULL;
}

/* Parses the command line into *host, *port and *work (microseconds).
 * Returns 0, or -1 after printing the usage. */
static int parse_args(int argc, char **argv, const char **host, int *port, long *work)
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
    } else if (!strcmp(argv[i], "--work") && i + 1 < argc) {
      *work = strtol(argv[++i], &end, 10);
      if (*end || *work < 0 || *work > 1000000)
        goto usage;
    } else {
      goto usage;
    }
  }
  return 0;
usage:
  fprintf(stderr, "usage: echo_threaded [-p PORT] [-h IPV4-ADDRESS] [--work US]\n");
  return -1;
}

/* Opens a blocking listening socket on host:port.  Returns it and stores the
 * port actually bound in *bound, or returns -1 after printing why. */
static int listen_on(const char *host, int port, int *bound)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  socklen_t len = sizeof sa;
  int one = 1, fd;

  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "echo_threaded: %s is not an IPv4 address\n", host);
    return -1;
  }
  if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
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
  fprintf(stderr, "echo_threaded: listening on %s:%d: %s\n", host, port, strerror(errno));
  return -1;
}

/* Installs the stop handler for SIGINT and SIGTERM (notes A, D). */
static void install_signals(void)
{
  struct sigaction act;

  memset(&act, 0, sizeof act);
  act.sa_handler = on_stop_signal;
  sigemptyset(&act.sa_mask);
  act.sa_flags = 0; /* no SA_RESTART: the blocked accept() fails with EINTR */
  sigaction(SIGINT, &act, NULL);
  sigaction(SIGTERM, &act, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Starts a detached thread serving fd, with the stop signals blocked in it
 * (note B).  On failure it closes fd and says why; the server goes on. */
static void spawn_connection(const pthread_attr_t *attr, int fd)
{
  sigset_t stop, old;
  pthread_t t;
  int err;

  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, &old);
  err = pthread_create(&t, attr, serve_connection, (void *)(intptr_t)fd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    fprintf(stderr, "echo_threaded: pthread_create: %s\n", strerror(err));
    close(fd);
  }
}

/* Accepts connections until a stop signal, one thread each.  Returns 0 when
 * stopped by a signal, -1 on an accept() error it cannot wait out. */
static int accept_loop(int lfd)
{
  pthread_attr_t attr;
  int one = 1, ret = 0;

  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, STACK_SIZE);
  while (!stop_requested) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        usleep(10 * 1000); /* out of descriptors or memory: let some connections end */
        continue;
      }
      perror("echo_threaded: accept");
      ret = -1;
      break;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* note E */
    spawn_connection(&attr, fd);
  }
  pthread_attr_destroy(&attr);
  return ret;
}

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  int port = 0, bound, lfd, ret;
  long work = 0;

  if (parse_args(argc, argv, &host, &port, &work) < 0)
    return 2;
  calibrate_work(work);
  install_signals();
  if ((lfd = listen_on(host, port, &bound)) < 0)
    return 1;
  printf("listening on %s:%d\n", host, bound);
  fflush(stdout);

  ret = accept_loop(lfd);
  close(lfd);
  if (ret < 0)
    return 1;
  puts("stopped");
  fflush(stdout);
  return 0;
}
