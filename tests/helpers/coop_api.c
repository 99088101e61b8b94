/* coop_api.c: 1,000 green threads on the API each call plain libc usleep,
 * poll (which times out) and recv (answered by a writer after 3 waits);
 * under the shim they wait together, so the whole program takes about three
 * waits, not thousands.  Prints the time taken. */
#include <kudzu.h>

#include "check.h"
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { N = 1000 };
#define WAIT_S 0.2

static int sv[N][2];

static void *body(void *arg)
{
  long i = (long)arg;
  char c;
  struct pollfd p = {sv[i][0], POLLIN, 0};
  if (usleep((useconds_t)(WAIT_S * 1e6)) != 0)
    return (void *)1;
  if (poll(&p, 1, (int)(WAIT_S * 1000)) != 0) /* nothing arrives: times out */
    return (void *)2;
  if (recv(sv[i][0], &c, 1, 0) != 1 || c != 'x') /* the peer writes after a wait */
    return (void *)3;
  return NULL;
}

static void *writer(void *arg)
{
  usleep((useconds_t)(3 * WAIT_S * 1e6)); /* after every poll timed out */
  for (int i = 0; i < N; i++)
    if (write(sv[i][1], "x", 1) != 1)
      return (void *)1;
  return NULL;
}

static void *run(void *arg)
{
  static kz_green_t g[N];
  double t = mono();
  for (int i = 0; i < N; i++)
    CHECK((g[i] = kz_spawn(body, (void *)(long)i)) != 0);
  kz_green_t w = kz_spawn(writer, NULL);
  for (int i = 0; i < N; i++) {
    void *r = (void *)-1;
    CHECK(kz_join(g[i], &r, KZ_FOREVER) == 0);
    CHECK(r == NULL);
  }
  CHECK(kz_join(w, NULL, KZ_FOREVER) == 0);
  t = mono() - t;
  printf("%d green threads, each usleep + poll + recv of %.1f s: %.2f s in all\n", N, WAIT_S, t);
  /* Together: about 3 * WAIT_S.  One after another: N * 2 * WAIT_S = 400 s. */
  CHECK(t < 15 * WAIT_S);
  return NULL;
}

int main(void)
{
  for (int i = 0; i < N; i++)
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) == 0);
  CHECK(kz_run(run, NULL, NULL) == 0);
  return 0;
}
