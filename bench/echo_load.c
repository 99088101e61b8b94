/* echo_load.c: the echo load generator: ping-pong over many connections,
 * every reply verified byte for byte, requests per second and latency
 * percentiles.
 *
 *   echo_load -p PORT [-h HOST] [-c CONNS] [-d SECONDS] [-n REQUESTS]
 *             [-s SIZE] [-t THREADS] [--tsv]
 *
 * Each connection sends a SIZE-byte message that encodes its id and sequence
 * number, reads exactly SIZE bytes back, checks them, and sends the next.
 * Worker threads (default 1) each drive their share of the connections with
 * their own epoll instance and latency histogram (log-linear buckets, about
 * 1% apart, from 1 us to 10 s), merged at the end.  It stops after SECONDS
 * (default 5) or REQUESTS in all, and gives up with exit status 1 at
 * SECONDS + 10 whatever happens.  Exit 0 only if every reply verified and at
 * least one request completed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 1700 /* 1.01^1700 us > 10 s */
#define MAXSIZE 65536

struct conn {
  int fd;
  uint32_t id, seq;
  size_t sent, got;        /* progress of the current request */
  double t0;               /* when it was sent */
  unsigned char out[MAXSIZE], in[MAXSIZE];
};

struct worker {
  pthread_t th;
  struct conn *conns;
  int nconns;
  uint64_t requests, bytes, errors;
  uint64_t hist[NBUCKETS];
  double max_us;
};

static struct sockaddr_in addr;
static size_t msg_size = 64;
static double stop_at;
static uint64_t limit; /* total requests, 0: none */
static _Atomic uint64_t done_total;
static _Atomic bool failed;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bucket(double us)
{
  int b = us <= 1 ? 0 : (int)(log(us) / log(1.01));
  return b < NBUCKETS ? b : NBUCKETS - 1;
}

static void fill(struct conn *c)
{
  for (size_t i = 0; i < msg_size; i++)
    c->out[i] = (unsigned char)((c->id * 131u + c->seq * 31u + i) & 0xff);
  memcpy(c->out, &c->id, msg_size >= 4 ? 4 : msg_size);
  if (msg_size >= 8)
    memcpy(c->out + 4, &c->seq, 4);
}

/* Send the rest of the current request; false on error. */
static bool pump_out(struct conn *c)
{
  while (c->sent < msg_size) {
    ssize_t w = send(c->fd, c->out + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
    if (w < 0)
      return errno == EAGAIN || errno == EINTR;
    c->sent += (size_t)w;
  }
  return true;
}

static void start_request(struct conn *c)
{
  c->seq++;
  fill(c);
  c->sent = c->got = 0;
  c->t0 = now();
}

static int connect_one(void)
{
  for (int tries = 0; tries < 200; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
      return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    int err = errno;
    close(fd);
    if (err != ECONNREFUSED && err != EAGAIN && err != EINTR && err != ETIMEDOUT) {
      errno = err;
      return -1;
    }
    usleep(10000);
  }
  return -1;
}

static void *run_worker(void *arg)
{
  struct worker *w = arg;
  struct epoll_event evs[256];
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < w->nconns; i++) {
    struct conn *c = &w->conns[i];
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int fl = 1;
    ioctl(c->fd, FIONBIO, &fl);
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    start_request(c);
    if (!pump_out(c))
      w->errors++;
  }
  while (!atomic_load(&failed)) {
    double t = now();
    if (t >= stop_at || (limit && atomic_load(&done_total) >= limit))
      break;
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!pump_out(c)) {
        w->errors++;
        continue;
      }
      ssize_t r = recv(c->fd, c->in + c->got, msg_size - c->got, 0);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        fprintf(stderr, "echo_load: connection %u closed by the server\n", c->id);
        atomic_store(&failed, true);
        break;
      }
      if (r < 0)
        continue;
      c->got += (size_t)r;
      if (c->got < msg_size)
        continue;
      if (memcmp(c->in, c->out, msg_size) != 0) {
        fprintf(stderr, "echo_load: connection %u request %u: reply differs\n", c->id, c->seq);
        atomic_store(&failed, true);
        break;
      }
      double us = (now() - c->t0) * 1e6;
      w->hist[bucket(us)]++;
      if (us > w->max_us)
        w->max_us = us;
      w->requests++;
      w->bytes += msg_size;
      atomic_fetch_add(&done_total, 1);
      start_request(c);
      if (!pump_out(c))
        w->errors++;
    }
  }
  close(ep);
  return NULL;
}

static double percentile(const uint64_t *hist, uint64_t total, double p)
{
  uint64_t want = (uint64_t)ceil(p * (double)total), seen = 0;
  for (int b = 0; b < NBUCKETS; b++) {
    seen += hist[b];
    if (seen >= want && seen > 0)
      return b == 0 ? 1 : pow(1.01, b + 1);
  }
  return 0;
}

int main(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  int port = 0, nconns = 100, nthreads = 1;
  double secs = 5;
  bool tsv = false;
  struct rlimit rl;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--tsv")) tsv = true;
    else if (!v) goto usage;
    else if (!strcmp(a, "-p")) port = atoi(v), i++;
    else if (!strcmp(a, "-h")) host = v, i++;
    else if (!strcmp(a, "-c")) nconns = atoi(v), i++;
    else if (!strcmp(a, "-d")) secs = atof(v), i++;
    else if (!strcmp(a, "-n")) limit = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "-s")) msg_size = (size_t)atol(v), i++;
    else if (!strcmp(a, "-t")) nthreads = atoi(v), i++;
    else goto usage;
  }
  if (port <= 0 || nconns <= 0 || nthreads <= 0 || msg_size < 1 || msg_size > MAXSIZE)
    goto usage;
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    goto usage;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  struct conn *conns = calloc((size_t)nconns, sizeof *conns);
  struct worker *ws = calloc((size_t)nthreads, sizeof *ws);
  if (!conns || !ws) {
    perror("echo_load");
    return 1;
  }
  for (int i = 0; i < nconns; i++) {
    conns[i].id = (uint32_t)i;
    if ((conns[i].fd = connect_one()) < 0) {
      fprintf(stderr, "echo_load: connection %d to %s:%d failed: %s\n", i, host, port, strerror(errno));
      return 1;
    }
  }
  double t0 = now();
  stop_at = t0 + secs;
  for (int i = 0; i < nthreads; i++) {
    ws[i].conns = conns + (size_t)nconns * (size_t)i / (size_t)nthreads;
    ws[i].nconns = (int)((size_t)nconns * (size_t)(i + 1) / (size_t)nthreads -
                         (size_t)nconns * (size_t)i / (size_t)nthreads);
    pthread_create(&ws[i].th, NULL, run_worker, &ws[i]);
  }
  /* The hard deadline: the workers stop themselves at stop_at; past
     SECONDS + 10 something is wrong (a server that stopped answering). */
  for (int i = 0; i < nthreads; i++) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(secs + 10);
    if (pthread_timedjoin_np(ws[i].th, NULL, &dl) != 0) {
      fprintf(stderr, "echo_load: gave up after %.0f s: the server stopped answering\n", secs + 10);
      return 1;
    }
  }
  double elapsed = now() - t0;

  static uint64_t hist[NBUCKETS];
  uint64_t requests = 0, bytes = 0, errors = 0;
  double max_us = 0;
  for (int i = 0; i < nthreads; i++) {
    requests += ws[i].requests;
    bytes += ws[i].bytes;
    errors += ws[i].errors;
    if (ws[i].max_us > max_us)
      max_us = ws[i].max_us;
    for (int b = 0; b < NBUCKETS; b++)
      hist[b] += ws[i].hist[b];
  }
  double rps = requests / elapsed;
  if (tsv)
    printf("conns\t%d\nrequests\t%llu\nrps\t%.1f\np50_us\t%.0f\np90_us\t%.0f\np99_us\t%.0f\n"
           "max_us\t%.0f\nverified_bytes\t%llu\nerrors\t%llu\n",
           nconns, (unsigned long long)requests, rps, percentile(hist, requests, 0.5),
           percentile(hist, requests, 0.9), percentile(hist, requests, 0.99), max_us,
           (unsigned long long)bytes, (unsigned long long)errors);
  else
    printf("conns=%d requests=%llu errors=%llu rps=%.1f p50_us=%.0f p99_us=%.0f max_us=%.0f "
           "verified_bytes=%llu\n",
           nconns, (unsigned long long)requests, (unsigned long long)errors, rps,
           percentile(hist, requests, 0.5), percentile(hist, requests, 0.99), max_us,
           (unsigned long long)bytes);
  return atomic_load(&failed) || requests == 0 || errors ? 1 : 0;

usage:
  fprintf(stderr, "usage: echo_load -p PORT [-h HOST] [-c CONNS] [-d SECONDS] [-n REQUESTS] "
                  "[-s SIZE] [-t THREADS] [--tsv]\n");
  return 2;
}
