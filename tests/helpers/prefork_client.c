/* prefork_client: the load for prefork_server (always run natively).
 *
 *   prefork_client PORT CLIENTS SECONDS
 *
 * CLIENTS threads each connect, send "ID\n", check that the reply is
 * "ID N\n" with N > 0, close, and start again, until SECONDS have passed.
 * A reply that is wrong, missing, or slower than 10 s (a stall) fails the
 * run.  Prints "requests R rps X slowest_ms M" and exits 0 if every request
 * was answered correctly.
 */
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;
static double until;
static atomic_long requests, next_id;
static _Atomic double slowest;
static atomic_int failed;

static int one_request(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct timeval tv = {10, 0};
  char out[32], buf[96];
  long id = atomic_fetch_add(&next_id, 1), rid, v;
  size_t got = 0;
  ssize_t n;
  double t0 = mono(), dt, old;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0)
    return -1;
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  n = snprintf(out, sizeof out, "%ld\n", id);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0 || write(s, out, (size_t)n) != n)
    goto fail;
  while (got < sizeof buf - 1 && (got == 0 || buf[got - 1] != '\n')) {
    if ((n = read(s, buf + got, sizeof buf - 1 - got)) <= 0)
      goto fail;
    got += (size_t)n;
  }
  buf[got] = 0;
  if (sscanf(buf, "%ld %ld", &rid, &v) != 2 || rid != id || v <= 0)
    goto fail;
  close(s);
  dt = mono() - t0;
  old = atomic_load(&slowest);
  while (dt > old && !atomic_compare_exchange_weak(&slowest, &old, dt))
    ;
  return 0;
fail:
  fprintf(stderr, "request %ld: bad or missing reply (%s) after %.3f s\n", id,
          got ? buf : strerror(errno), mono() - t0);
  close(s);
  return -1;
}

static void *client(void *arg)
{
  (void)arg;
  while (mono() < until && !atomic_load(&failed)) {
    if (one_request() != 0)
      atomic_store(&failed, 1);
    else
      atomic_fetch_add(&requests, 1);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t[512];
  int n;
  double secs, t0;
  CHECK(argc == 4);
  port = atoi(argv[1]);
  n = atoi(argv[2]);
  secs = atof(argv[3]);
  CHECK(port > 0 && n > 0 && n <= 512 && secs > 0);
  t0 = mono();
  until = t0 + secs;
  for (int i = 0; i < n; i++)
    CHECK(pthread_create(&t[i], NULL, client, NULL) == 0);
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  printf("requests %ld rps %.0f slowest_ms %.1f\n", atomic_load(&requests),
         (double)atomic_load(&requests) / (mono() - t0), atomic_load(&slowest) * 1e3);
  return atomic_load(&failed) || atomic_load(&requests) == 0;
}
