/* rel_reset_write.c: a blocking write to a peer that resets the connection
 * reports the reset as natively.  One thread writes 64 KiB at a time to a
 * TCP connection whose other end never reads; another thread, once a
 * megabyte is in, closes that end with SO_LINGER {1, 0} (a reset).  The
 * writer's blocked write returns what it moved, or fails; the first failure
 * must be ECONNRESET, with no SIGPIPE before it (the kernel reports the
 * reset once, as ECONNRESET; only later writes fail with EPIPE and raise
 * SIGPIPE).  A program that does not ignore SIGPIPE and stops writing at
 * its first error, as most servers do, must never get one.  Prints one
 * line, the same natively and under the launcher. */
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t pipes;
static atomic_long written;
static int peer;

static void on_pipe(int sig) { (void)sig; pipes++; }

static void *resetter(void *arg)
{
  struct linger l = {.l_onoff = 1, .l_linger = 0};
  struct timespec tick = {0, 1000000};
  (void)arg;
  while (atomic_load(&written) < (1 << 20))
    nanosleep(&tick, NULL);
  nanosleep(&tick, NULL);
  CHECK(setsockopt(peer, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
  CHECK(close(peer) == 0);
  return NULL;
}

int main(void)
{
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof sa;
  static char buf[64 << 10];
  pthread_t t;
  int l, s, first_errno = 0, pipes_before = -1;

  alarm(60);
  CHECK(signal(SIGPIPE, on_pipe) != SIG_ERR);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK((l = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
  CHECK(bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 1) == 0);
  CHECK(getsockname(l, (struct sockaddr *)&sa, &len) == 0);
  CHECK((peer = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
  CHECK(connect(peer, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK((s = accept(l, NULL, NULL)) >= 0);
  CHECK(pthread_create(&t, NULL, resetter, NULL) == 0);
  for (;;) {
    ssize_t n = write(s, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      first_errno = errno;
      pipes_before = pipes;
      break;
    }
    atomic_fetch_add(&written, n);
  }
  CHECK(pthread_join(t, NULL) == 0);
  if (first_errno != ECONNRESET || pipes_before != 0)
    fprintf(stderr, "rel_reset_write: the first failed write: %s, after %d SIGPIPE\n",
            strerror(first_errno), pipes_before);
  CHECK(first_errno == ECONNRESET);
  CHECK(pipes_before == 0);
  printf("a write to a reset peer: ECONNRESET first, no SIGPIPE\n");
  return 0;
}
