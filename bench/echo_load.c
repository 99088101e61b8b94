/* echo_load.c: the project's echo load generator.  Many connections play
 * ping-pong with an echo server; every reply is verified byte for byte; it
 * reports requests per second and round-trip latency percentiles.
 *
 *   echo_load -p PORT [-h HOST] [-c CONNS] [-d SECONDS] [-n REQUESTS]
 *             [-s SIZE] [-t THREADS] [--lines] [--tsv]
 *
 *   -p PORT      the server's port (required); -h HOST its IPv4 address
 *                (default 127.0.0.1)
 *   -c CONNS     connections (default 100), opened before the clock starts
 *   -d SECONDS   how long to run (default 5; fractions allowed)
 *   -n REQUESTS  stop after this many requests in all, if that comes first
 *   -s SIZE      bytes per message (default 64)
 *   -t THREADS   worker threads (default 1), the connections split among them
 *   --lines      each message is a line of text (note G), for servers that
 *                read lines (fgets) instead of bytes
 *   --tsv        print "key<TAB>value" lines instead of the one-line summary
 *
 * Each connection sends a SIZE-byte message (note A), reads exactly SIZE
 * bytes back, checks them, and sends the next: one request in flight per
 * connection.  When the time is up, or REQUESTS have been started, no new
 * requests are sent and the ones in flight are awaited and verified too, so
 * every request counted was answered and checked.
 *
 * Output: "conns=N requests=N errors=N rps=X p50_us=N p99_us=N max_us=N
 * verified_bytes=N", or with --tsv the lines conns, requests, rps, p50_us,
 * p90_us, p99_us, max_us, verified_bytes and errors.  rps is the requests
 * completed over the time from the first request to the last reply; the
 * latencies are round trips, send of the first byte to receipt of the last.
 * Exit status 0 only when every reply verified and at least one request
 * completed; 1 on any error, a wrong byte, a closed connection, or the hard
 * deadline; 2 on a bad command line.
 *
 * Notes.
 * A. A message is a pseudo-random stream seeded by (connection id, sequence
 *    number), with the id and the number themselves in its first 8 bytes
 *    when it has 8, so a reply that belongs to another connection or to an
 *    earlier request is caught, and the error says whose bytes came back.
 * B. Latencies go into a log-linear histogram per worker, merged at the end:
 *    nanoseconds, exact below 128 ns, then 128 buckets per power of two (at
 *    most 0.8% wide), up to 2^34 ns (17 s); anything longer lands in the top
 *    bucket, and the exact maximum is kept apart.  A percentile is the middle
 *    of its bucket.  Indexing is a count-leading-zeros and two shifts.
 * C. The hard deadline: an ITIMER_REAL alarm set at start for SECONDS + 10 s.
 *    Its handler says which phase was stuck and calls _exit(1), so no state
 *    of the server's (a full backlog, a connection that never answers) can
 *    make the tool hang, whatever call it is blocked in.
 * D. Connections are opened BATCH at a time with non-blocking connect() and
 *    poll(); ECONNREFUSED and EAGAIN (the server not listening yet, ephemeral
 *    ports briefly short) are retried CONNECT_TRIES times, 10 ms apart.
 * E. The sockets are level-triggered in epoll, and each event costs one
 *    recv(): a partial reply is picked up on the next epoll_wait.  EPOLLOUT
 *    is watched only while a request is partly sent.
 * F. The soft RLIMIT_NOFILE is raised to the hard limit first; if even that
 *    is too small for CONNS, the tool says so before opening anything.
 * G. With --lines every byte of the stream is mapped to printable ASCII
 *    (no newline, no NUL, which fputs would stop at) and the last one is a
 *    newline.  The header of note A is then text too: a wrong reply is
 *    still caught, but not named.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE (1 << 20)  /* largest -s */
#define MAX_THREADS 256     /* largest -t */
#define MAX_EVENTS 512      /* per epoll_wait */
#define WAIT_MS 100         /* longest epoll_wait, so a failure elsewhere is seen */
#define BATCH 256           /* connections opened at a time (note D) */
#define CONNECT_TRIES 50    /* attempts per batch on transient refusals */
#define GRACE_S 10          /* hard deadline past SECONDS (note C) */

/* The histogram's shape (note B). */
#define SUB_BITS 7
#define SUB_COUNT (1 << SUB_BITS)
#define TOP_EXP 34 /* values from 2^TOP_EXP ns share the top bucket */
#define NBUCKETS ((TOP_EXP - SUB_BITS + 1) * SUB_COUNT)

/* The run, as the command line set it; read-only once workers start. */
struct config {
  struct sockaddr_in addr; /* the server */
  int nconns;              /* -c */
  int nthreads;            /* -t, at most nconns */
  double duration;         /* -d, seconds */
  uint64_t limit;          /* -n, total requests; 0: none */
  size_t size;             /* -s, bytes per message */
  bool lines;              /* --lines (note G) */
  bool tsv;                /* --tsv */
};

/* One connection.  Owned by one worker once the run starts. */
struct conn {
  int fd;             /* non-blocking socket, owned; -1 until connected */
  uint32_t id;        /* its index among all connections (note A) */
  uint32_t seq;       /* sequence number of the current request, from 1 */
  size_t sent;        /* bytes of the current request sent */
  size_t got;         /* bytes of its reply received and verified */
  uint64_t t0;        /* when the current request started, ns */
  bool want_out;      /* epoll watches EPOLLOUT too: a request is partly sent */
  bool retired;       /* sends no more requests, and is out of the epoll set */
  unsigned char *msg; /* the current request, size bytes (in one shared block) */
};

/* One worker thread and what it measured. */
struct worker {
  pthread_t thread;
  struct conn *conns;      /* its share of the connections */
  int nconns;              /* how many */
  int active;              /* of them, not retired */
  int epfd;                /* its epoll instance, owned */
  unsigned char *scratch;  /* receive buffer, size bytes, owned */
  uint64_t requests;       /* replies completed and verified */
  uint64_t bytes;          /* their bytes */
  uint64_t errors;         /* failures it saw (any one ends the run) */
  uint64_t max_ns;         /* longest round trip */
  uint64_t hist[NBUCKETS]; /* round trips (note B) */
};

static struct config cfg;
static uint64_t stop_ns;                /* no request starts from then on */
static _Atomic uint64_t started;        /* requests started, counted only with -n */
static _Atomic bool failed;             /* some worker saw an error: all stop */
static volatile sig_atomic_t phase;     /* for the deadline's message (note C) */

enum { PHASE_CONNECTING, PHASE_RUNNING };

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Latency histogram (note B) ------------------------------------------ */

static int hist_bucket(uint64_t ns)
{
  int e;

  if (ns < SUB_COUNT)
    return (int)ns;
  if (ns >= (uint64_t)1 << TOP_EXP)
    return NBUCKETS - 1;
  e = 63 - __builtin_clzll(ns); /* SUB_BITS <= e < TOP_EXP */
  return (e - SUB_BITS + 1) * SUB_COUNT + (int)(ns >> (e - SUB_BITS)) - SUB_COUNT;
}

/* The middle of bucket b, in ns. */
static double hist_value(int b)
{
  int e;
  uint64_t mantissa;

  if (b < SUB_COUNT)
    return b;
  e = b / SUB_COUNT + SUB_BITS - 1;
  mantissa = (uint64_t)(b % SUB_COUNT + SUB_COUNT);
  return (double)(mantissa << (e - SUB_BITS)) + (double)((uint64_t)1 << (e - SUB_BITS)) / 2;
}

/* The p-quantile (0 < p <= 1) of total samples in h, in ns, at most max. */
static double hist_quantile(const uint64_t *h, uint64_t total, double p, uint64_t max)
{
  uint64_t rank = (uint64_t)(p * (double)total), seen = 0;

  if ((double)rank < p * (double)total || rank == 0)
    rank++;
  for (int b = 0; b < NBUCKETS; b++) {
    seen += h[b];
    if (seen >= rank)
      return hist_value(b) < (double)max ? hist_value(b) : (double)max;
  }
  return 0;
}

/* ---- Messages (note A) ------------------------------------------------------ */

/* splitmix64's output function: a good 64-bit mix in three multiplies. */
static uint64_t mix64(uint64_t x)
{
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/* Writes request seq of connection id into out[0..size). */
static void message_fill(unsigned char *out, size_t size, uint32_t id, uint32_t seq)
{
  uint64_t seed = (uint64_t)id << 32 | seq;

  for (size_t i = 0; i < size; i += 8) {
    uint64_t r = mix64(seed * 0x9e3779b97f4a7c15u + i);
    memcpy(out + i, &r, size - i < 8 ? size - i : 8);
  }
  if (size >= 8) {
    memcpy(out, &id, 4);
    memcpy(out + 4, &seq, 4);
  }
  if (cfg.lines) { /* note G */
    for (size_t i = 0; i + 1 < size; i++)
      out[i] = (unsigned char)(' ' + out[i] % 95);
    out[size - 1] = '\n';
  }
}

/* ---- Failing ---------------------------------------------------------------- */

/* Counts an error seen by w and ends the run; the run's first error is also
 * printed (printf-style), the ones it drags along are only counted.  Returns
 * -1, for the caller to pass on. */
static int __attribute__((format(printf, 2, 3))) fail(struct worker *w, const char *fmt, ...)
{
  va_list ap;

  w->errors++;
  if (atomic_exchange(&failed, true))
    return -1;
  va_start(ap, fmt);
  fputs("echo_load: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return -1;
}

/* Says where reply bytes got[0..n) first differ from want[0..n), which sit at
 * offset off of c's current request, and whose request the reply's header
 * names when it holds one.  Returns -1. */
static int fail_mismatch(struct worker *w, struct conn *c, size_t off, const unsigned char *got,
                         const unsigned char *want, size_t n)
{
  size_t i = 0;
  uint32_t id, seq;

  while (i < n && got[i] == want[i])
    i++;
  if (off > 0 || n < 8 || cfg.lines)
    return fail(w, "connection %u request %u: reply byte %zu is 0x%02x, expected 0x%02x", c->id,
                c->seq, off + i, got[i], want[i]);
  memcpy(&id, got, 4);
  memcpy(&seq, got + 4, 4);
  return fail(w, "connection %u request %u: reply byte %zu is 0x%02x, expected 0x%02x "
              "(the reply's header names connection %u request %u)",
              c->id, c->seq, i, got[i], want[i], id, seq);
}

/* ---- One connection's requests --------------------------------------------- */

/* Sets the epoll interest of c to EPOLLIN, plus EPOLLOUT when out is set. */
static int conn_watch_out(struct worker *w, struct conn *c, bool out)
{
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};

  if (c->want_out == out)
    return 0;
  c->want_out = out;
  if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    return fail(w, "epoll_ctl: %s", strerror(errno));
  return 0;
}

/* Sends what remains of c's request, as far as the socket takes it (note E).
 * Returns 0, or -1 after fail(). */
static int conn_send(struct worker *w, struct conn *c)
{
  while (c->sent < cfg.size) {
    ssize_t n = send(c->fd, c->msg + c->sent, cfg.size - c->sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return conn_watch_out(w, c, true);
    if (n < 0)
      return fail(w, "connection %u: send: %s", c->id, strerror(errno));
    c->sent += (size_t)n;
  }
  return conn_watch_out(w, c, false);
}

/* Takes a ticket for one more request: always granted without -n. */
static bool take_ticket(void)
{
  return !cfg.limit || atomic_fetch_add_explicit(&started, 1, memory_order_relaxed) < cfg.limit;
}

/* Retires c: the run is over for it. */
static void conn_retire(struct worker *w, struct conn *c)
{
  c->retired = true;
  w->active--;
  epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

/* At time t, starts c's next request, or retires c when the time is up or
 * the tickets are gone.  Returns 0, or -1 after fail(). */
static int conn_next(struct worker *w, struct conn *c, uint64_t t)
{
  if (t >= stop_ns || !take_ticket()) {
    conn_retire(w, c);
    return 0;
  }
  c->seq++;
  message_fill(c->msg, cfg.size, c->id, c->seq);
  c->sent = c->got = 0;
  c->t0 = t;
  return conn_send(w, c);
}

/* Counts a reply completed at time t. */
static void record(struct worker *w, struct conn *c, uint64_t t)
{
  uint64_t ns = t - c->t0;

  w->hist[hist_bucket(ns)]++;
  if (ns > w->max_ns)
    w->max_ns = ns;
  w->requests++;
  w->bytes += cfg.size;
}

/* Reads what has come of c's reply, once (note E), and verifies it; on the
 * last byte records the round trip and starts the next request.  Returns 0,
 * or -1 after fail(). */
static int conn_recv(struct worker *w, struct conn *c)
{
  ssize_t n = recv(c->fd, w->scratch, cfg.size - c->got, 0);
  uint64_t t;

  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  if (n < 0)
    return fail(w, "connection %u: recv: %s", c->id, strerror(errno));
  if (n == 0)
    return fail(w, "connection %u: closed by the server after %u replies", c->id, c->seq - 1);
  if (memcmp(w->scratch, c->msg + c->got, (size_t)n) != 0)
    return fail_mismatch(w, c, c->got, w->scratch, c->msg + c->got, (size_t)n);
  if ((c->got += (size_t)n) < cfg.size)
    return 0;
  t = now_ns();
  record(w, c, t);
  return conn_next(w, c, t);
}

/* Handles epoll's events for c. */
static void conn_event(struct worker *w, struct conn *c, uint32_t events)
{
  if (c->retired)
    return;
  if (c->sent < cfg.size && conn_send(w, c) < 0)
    return;
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
    conn_recv(w, c);
}

/* ---- Workers ---------------------------------------------------------------- */

/* How long epoll_wait may sleep at time t: until the stop time, and never
 * longer than WAIT_MS. */
static int wait_ms(uint64_t t)
{
  uint64_t ms = t < stop_ns ? (stop_ns - t + 999999) / 1000000 : WAIT_MS;

  return ms < WAIT_MS ? (int)ms : WAIT_MS;
}

/* Puts w's connections in its epoll set.  Returns 0, or -1 after fail(). */
static int worker_register(struct worker *w)
{
  if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
    return fail(w, "epoll_create1: %s", strerror(errno));
  for (int i = 0; i < w->nconns; i++) {
    struct conn *c = &w->conns[i];
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
      return fail(w, "epoll_ctl: %s", strerror(errno));
  }
  w->active = w->nconns;
  return 0;
}

/* Thread body: runs w's connections until all are retired or the run
 * failed. */
static void *worker_main(void *arg)
{
  struct worker *w = arg;
  struct epoll_event ev[MAX_EVENTS];
  uint64_t t = now_ns();

  if (worker_register(w) < 0)
    return NULL;
  for (int i = 0; i < w->nconns && !atomic_load(&failed); i++)
    conn_next(w, &w->conns[i], t);
  while (w->active > 0 && !atomic_load_explicit(&failed, memory_order_relaxed)) {
    int n = epoll_wait(w->epfd, ev, MAX_EVENTS, wait_ms(t));
    if (n < 0 && errno != EINTR) {
      fail(w, "epoll_wait: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n && !atomic_load_explicit(&failed, memory_order_relaxed); i++)
      conn_event(w, ev[i].data.ptr, ev[i].events);
    t = now_ns();
  }
  return NULL;
}

/* ---- Connecting (note D) --------------------------------------------------- */

enum conn_state { CS_NEW, CS_PENDING, CS_OPEN };

static bool transient(int err) { return err == ECONNREFUSED || err == EAGAIN || err == EINTR; }

/* Prints why connection c could not be opened.  Returns -1. */
static int connect_error(const struct conn *c, int err)
{
  char host[INET_ADDRSTRLEN];

  inet_ntop(AF_INET, &cfg.addr.sin_addr, host, sizeof host);
  fprintf(stderr, "echo_load: connection %u to %s:%d: %s%s\n", c->id, host,
          ntohs(cfg.addr.sin_port), strerror(err),
          err == EMFILE || err == ENFILE ? " (raise ulimit -n)"
          : transient(err)               ? " (is the server listening?)"
                                         : "");
  return -1;
}

/* Starts connecting c.  Returns its new state, or -1 with errno set (c->fd
 * is then -1). */
static int connect_start(struct conn *c)
{
  int one = 1, err;

  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    return -1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&cfg.addr, sizeof cfg.addr) == 0)
    return CS_OPEN;
  if (errno == EINPROGRESS)
    return CS_PENDING;
  err = errno;
  close(c->fd);
  c->fd = -1;
  errno = err;
  return -1;
}

/* Learns how c's pending connect ended.  Returns CS_OPEN, or -1 with errno
 * set and c->fd closed. */
static int connect_finish(struct conn *c)
{
  int err = 0;
  socklen_t len = sizeof err;

  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err == 0)
    return CS_OPEN;
  close(c->fd);
  c->fd = -1;
  errno = err;
  return -1;
}

/* Waits for the pending connects among c[0..n) and settles them: CS_OPEN, or
 * CS_NEW to retry, with the reason in *err.  Returns 0, or -1 after printing
 * a fatal error. */
static int connect_wait(struct conn *c, enum conn_state *state, int n, int *err)
{
  struct pollfd pfd[BATCH];
  int idx[BATCH], npoll = 0;

  for (int i = 0; i < n; i++) {
    if (state[i] != CS_PENDING)
      continue;
    pfd[npoll] = (struct pollfd){.fd = c[i].fd, .events = POLLOUT};
    idx[npoll++] = i;
  }
  while (npoll > 0) {
    int left = 0;
    if (poll(pfd, (nfds_t)npoll, -1) < 0 && errno != EINTR) /* bounded by note C */
      return connect_error(&c[idx[0]], errno);
    for (int k = 0; k < npoll; k++) {
      int i = idx[k];
      if (!pfd[k].revents) { /* still pending: keep it for the next poll */
        pfd[left] = pfd[k];
        idx[left++] = i;
        continue;
      }
      if (connect_finish(&c[i]) == CS_OPEN) {
        state[i] = CS_OPEN;
        continue;
      }
      if (!transient(errno))
        return connect_error(&c[i], errno);
      state[i] = CS_NEW;
      *err = errno;
    }
    npoll = left;
  }
  return 0;
}

/* Opens connections c[0..n), n <= BATCH, retrying transient refusals.
 * Returns 0, or -1 after printing why. */
static int connect_batch(struct conn *c, int n)
{
  enum conn_state state[BATCH];

  for (int i = 0; i < n; i++)
    state[i] = CS_NEW;
  for (int tries = 1;; tries++) {
    int err = 0, stuck = -1;
    for (int i = 0; i < n; i++) {
      int r;
      if (state[i] != CS_NEW)
        continue;
      if ((r = connect_start(&c[i])) >= 0)
        state[i] = (enum conn_state)r;
      else if (transient(errno))
        err = errno;
      else
        return connect_error(&c[i], errno);
    }
    if (connect_wait(c, state, n, &err) < 0)
      return -1;
    for (int i = 0; i < n && stuck < 0; i++)
      if (state[i] == CS_NEW)
        stuck = i;
    if (stuck < 0)
      return 0;
    if (tries >= CONNECT_TRIES)
      return connect_error(&c[stuck], err);
    usleep(10 * 1000);
  }
}

/* Opens all cfg.nconns connections, BATCH at a time.  Returns 0, or -1 after
 * printing why. */
static int connect_all(struct conn *conns)
{
  for (int i = 0; i < cfg.nconns; i += BATCH)
    if (connect_batch(conns + i, cfg.nconns - i < BATCH ? cfg.nconns - i : BATCH) < 0)
      return -1;
  return 0;
}

/* ---- Limits and the hard deadline (notes C, F) ----------------------------- */

/* Raises the descriptor limit as far as allowed.  Returns 0, or -1 after
 * printing that cfg.nconns connections cannot fit. */
static int raise_nofile(void)
{
  struct rlimit rl;
  rlim_t need = (rlim_t)cfg.nconns + 32; /* stdio, epoll sets, the odd extra */

  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    fprintf(stderr, "echo_load: %d connections need about %llu descriptors; the limit is %llu "
            "(raise the hard limit: ulimit -Hn)\n",
            cfg.nconns, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
    return -1;
  }
  return 0;
}

/* SIGALRM at the hard deadline: say what was stuck, and leave. */
static void on_deadline(int sig)
{
  static const char connecting[] =
    "echo_load: gave up at the hard deadline (SECONDS + 10 s) while connecting: "
    "the server is not accepting connections\n";
  static const char running[] =
    "echo_load: gave up at the hard deadline (SECONDS + 10 s) with replies missing: "
    "the server stopped answering\n";
  ssize_t ignored;

  (void)sig;
  if (phase == PHASE_CONNECTING)
    ignored = write(STDERR_FILENO, connecting, sizeof connecting - 1);
  else
    ignored = write(STDERR_FILENO, running, sizeof running - 1);
  (void)ignored;
  _exit(1);
}

/* Arms the hard deadline, cfg.duration + GRACE_S seconds from now. */
static void arm_deadline(void)
{
  double s = cfg.duration + GRACE_S;
  struct sigaction act = {.sa_handler = on_deadline};
  struct itimerval it = {
    .it_value = {.tv_sec = (time_t)s, .tv_usec = (suseconds_t)((s - (double)(time_t)s) * 1e6)}};

  sigemptyset(&act.sa_mask);
  sigaction(SIGALRM, &act, NULL);
  setitimer(ITIMER_REAL, &it, NULL);
}

/* ---- The command line ------------------------------------------------------- */

static int usage(void)
{
  fprintf(stderr, "usage: echo_load -p PORT [-h IPV4-ADDRESS] [-c CONNS] [-d SECONDS] "
                  "[-n REQUESTS] [-s SIZE] [-t THREADS] [--lines] [--tsv]\n");
  return -1;
}

/* Parses s as an integer in [min, max] into *out.  Returns true if it is one. */
static bool parse_int(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
  char *end;

  errno = 0;
  *out = strtoull(s, &end, 10);
  return *s && *s != '-' && !*end && !errno && *out >= min && *out <= max;
}

/* Fills cfg from the command line.  Returns 0, or -1 after printing the usage
 * or what is wrong. */
static int parse_args(int argc, char **argv)
{
  const char *host = "127.0.0.1";
  unsigned long long port = 0, conns = 100, size = 64, threads = 1, limit = 0;
  char *end;
  bool ok = true;

  cfg.duration = 5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--tsv")) {
      cfg.tsv = true;
      continue;
    }
    if (!strcmp(a, "--lines")) {
      cfg.lines = true;
      continue;
    }
    if (!v)
      return usage();
    i++;
    if (!strcmp(a, "-p"))
      ok = parse_int(v, 1, 65535, &port);
    else if (!strcmp(a, "-h"))
      host = v;
    else if (!strcmp(a, "-c"))
      ok = parse_int(v, 1, INT32_MAX, &conns);
    else if (!strcmp(a, "-n"))
      ok = parse_int(v, 1, UINT64_MAX, &limit);
    else if (!strcmp(a, "-s"))
      ok = parse_int(v, 1, MAX_SIZE, &size);
    else if (!strcmp(a, "-t"))
      ok = parse_int(v, 1, MAX_THREADS, &threads);
    else if (!strcmp(a, "-d"))
      ok = (cfg.duration = strtod(v, &end)) > 0 && cfg.duration < 1e6 && !*end;
    else
      ok = false;
    if (!ok)
      return usage();
  }
  if (!port)
    return usage();
  cfg.addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &cfg.addr.sin_addr) != 1) {
    fprintf(stderr, "echo_load: %s is not an IPv4 address\n", host);
    return -1;
  }
  cfg.nconns = (int)conns;
  cfg.nthreads = threads < conns ? (int)threads : (int)conns;
  cfg.size = size;
  cfg.limit = limit;
  return 0;
}

/* ---- Running and reporting -------------------------------------------------- */

/* Allocates the connections, each with its message buffer in one block.
 * Returns them, or NULL after printing why. */
static struct conn *conns_new(unsigned char **block)
{
  struct conn *conns = calloc((size_t)cfg.nconns, sizeof *conns);

  *block = malloc((size_t)cfg.nconns * cfg.size);
  if (!conns || !*block) {
    fprintf(stderr, "echo_load: out of memory for %d connections\n", cfg.nconns);
    free(conns);
    free(*block);
    return NULL;
  }
  for (int i = 0; i < cfg.nconns; i++)
    conns[i] = (struct conn){.fd = -1, .id = (uint32_t)i, .msg = *block + (size_t)i * cfg.size};
  return conns;
}

/* Starts the workers, each on its share of conns, and waits for them.
 * Returns 0, or -1 if a thread could not start (the run has then failed). */
static int run_workers(struct worker **ws, struct conn *conns)
{
  int started_threads = 0, ret = 0;

  for (int i = 0; i < cfg.nthreads; i++) {
    int lo = (int)((long long)cfg.nconns * i / cfg.nthreads);
    int hi = (int)((long long)cfg.nconns * (i + 1) / cfg.nthreads);
    ws[i]->conns = conns + lo;
    ws[i]->nconns = hi - lo;
    if ((errno = pthread_create(&ws[i]->thread, NULL, worker_main, ws[i])) != 0) {
      ret = fail(ws[i], "pthread_create: %s", strerror(errno));
      break;
    }
    started_threads++;
  }
  for (int i = 0; i < started_threads; i++)
    pthread_join(ws[i]->thread, NULL);
  return ret;
}

/* Merges the workers' counts into total (w's own histogram is the sum). */
static void merge(struct worker *total, struct worker **ws)
{
  for (int i = 0; i < cfg.nthreads; i++) {
    total->requests += ws[i]->requests;
    total->bytes += ws[i]->bytes;
    total->errors += ws[i]->errors;
    if (ws[i]->max_ns > total->max_ns)
      total->max_ns = ws[i]->max_ns;
    for (int b = 0; b < NBUCKETS; b++)
      total->hist[b] += ws[i]->hist[b];
  }
}

/* Prints the results of a run that took secs seconds. */
static void report(const struct worker *t, double secs)
{
  double rps = (double)t->requests / secs;
  double p50 = hist_quantile(t->hist, t->requests, 0.50, t->max_ns) / 1e3;
  double p90 = hist_quantile(t->hist, t->requests, 0.90, t->max_ns) / 1e3;
  double p99 = hist_quantile(t->hist, t->requests, 0.99, t->max_ns) / 1e3;
  double max = (double)t->max_ns / 1e3;
  unsigned long long req = t->requests, bytes = t->bytes, err = t->errors;

  if (cfg.tsv)
    printf("conns\t%d\nrequests\t%llu\nrps\t%.1f\np50_us\t%.0f\np90_us\t%.0f\np99_us\t%.0f\n"
           "max_us\t%.0f\nverified_bytes\t%llu\nerrors\t%llu\n",
           cfg.nconns, req, rps, p50, p90, p99, max, bytes, err);
  else
    printf("conns=%d requests=%llu errors=%llu rps=%.1f p50_us=%.0f p99_us=%.0f max_us=%.0f "
           "verified_bytes=%llu\n",
           cfg.nconns, req, err, rps, p50, p99, max, bytes);
  fflush(stdout);
}

/* Allocates the workers, none started.  Returns 0, or -1 after printing why
 * (what was allocated is in ws, for workers_free). */
static int workers_new(struct worker **ws)
{
  for (int i = 0; i < cfg.nthreads; i++) {
    if (!(ws[i] = calloc(1, sizeof **ws)) || !(ws[i]->scratch = malloc(cfg.size))) {
      fprintf(stderr, "echo_load: out of memory for %d workers\n", cfg.nthreads);
      return -1;
    }
    ws[i]->epfd = -1;
  }
  return 0;
}

static void workers_free(struct worker **ws)
{
  for (int i = 0; i < cfg.nthreads && ws[i]; i++) {
    if (ws[i]->epfd >= 0)
      close(ws[i]->epfd);
    free(ws[i]->scratch);
    free(ws[i]);
  }
}

static void conns_free(struct conn *conns, unsigned char *block)
{
  for (int i = 0; i < cfg.nconns; i++)
    if (conns[i].fd >= 0)
      close(conns[i].fd);
  free(block);
  free(conns);
}

int main(int argc, char **argv)
{
  static struct worker total;
  struct worker *ws[MAX_THREADS] = {0};
  struct conn *conns;
  unsigned char *block;
  uint64_t t0;
  int ret = 1;

  if (parse_args(argc, argv) < 0)
    return 2;
  arm_deadline();
  if (raise_nofile() < 0 || !(conns = conns_new(&block)))
    return 1;
  if (workers_new(ws) < 0 || connect_all(conns) < 0)
    goto error1;

  phase = PHASE_RUNNING;
  t0 = now_ns();
  stop_ns = t0 + (uint64_t)(cfg.duration * 1e9);
  run_workers(ws, conns);
  merge(&total, ws);
  report(&total, (double)(now_ns() - t0) / 1e9);
  if (total.requests == 0 && !atomic_load(&failed))
    fprintf(stderr, "echo_load: no request completed\n");
  ret = atomic_load(&failed) || total.errors || total.requests == 0;

error1:
  workers_free(ws);
  conns_free(conns, block);
  return ret;
}
