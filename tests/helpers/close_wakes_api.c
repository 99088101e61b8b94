/* close_wakes_api.c: close() of a descriptor another green thread is blocked
 * reading makes that read fail with EBADF, and the number, reused at once,
 * works for a new file; dup2() over it and close_range() do the same.  Green
 * threads on the API, plain libc calls. */
#define _GNU_SOURCE
#include <kudzu.h>

#include "check.h"
#include <sys/socket.h>
#include <unistd.h>

static int fds[2];

static void *reader(void *arg)
{
  char c;
  ssize_t n = read(fds[0], &c, 1);
  return (void *)(long)(n == -1 && errno == EBADF);
}

static void *run(void *arg)
{
  kz_green_t g = kz_spawn(reader, NULL);
  void *r;
  int again[2];
  char c;
  kz_yield(); /* the reader blocks */
  CHECK(kz_state(g) == KZ_BLOCKED);
  CHECK(close(fds[0]) == 0);
  CHECK(kz_join(g, &r, 5.0) == 0);
  CHECK(r == (void *)1);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, again) == 0);
  CHECK(again[0] == fds[0]); /* the same number, a new file */
  fds[0] = again[0];
  g = kz_spawn(reader, NULL);
  kz_yield();
  CHECK(write(again[1], "n", 1) == 1);
  CHECK(kz_join(g, &r, 5.0) == 0); /* it read the byte: not EBADF, not hung */
  CHECK(r == NULL);
  /* dup2 over the descriptor, then close_range of it. */
  int other[2];
  CHECK(pipe(other) == 0);
  g = kz_spawn(reader, NULL);
  kz_sleep(0.05);
  CHECK(kz_state(g) == KZ_BLOCKED);
  CHECK(dup2(other[0], fds[0]) == fds[0]);
  CHECK(kz_join(g, &r, 5.0) == 0 && r == (void *)1);
  g = kz_spawn(reader, NULL);
  kz_sleep(0.05); /* the reader blocks, and the hub really watches the pipe */
  CHECK(kz_state(g) == KZ_BLOCKED);
  CHECK(close_range((unsigned)fds[0], (unsigned)fds[0], 0) == 0);
  CHECK(kz_join(g, &r, 5.0) == 0 && r == (void *)1);
  (void)c;
  puts("ok");
  return NULL;
}

int main(void)
{
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  CHECK(kz_run(run, NULL, NULL) == 0);
  return 0;
}
