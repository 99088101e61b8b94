/* libc_lock_api.c: a green thread waiting for a lock inside libc (a
 * stream's, held by a real OS thread with flockfile) parks instead of
 * sleeping in the kernel, so another green thread of its hub keeps ticking
 * meanwhile; then its fputs completes.  Run under the launcher with the
 * thread family off, so that pthread_create makes a real OS thread. */
#include <kudzu.h>

#include "check.h"
#include <pthread.h>
#include <unistd.h>

#define HOLD_S 0.5
#define TICK_S 0.05

static FILE *f;
static int held[2];
static volatile int ticks, stop;

static void *holder(void *arg)
{
  flockfile(f);
  CHECK(write(held[1], "x", 1) == 1);
  usleep((useconds_t)(HOLD_S * 1e6));
  funlockfile(f);
  return NULL;
}

static void *ticker(void *arg)
{
  while (!stop) {
    usleep((useconds_t)(TICK_S * 1e6));
    ticks++;
  }
  return NULL;
}

static void *run(void *arg)
{
  pthread_t t;
  char c;
  CHECK((f = fopen("/dev/null", "w")) != NULL);
  CHECK(pipe(held) == 0);
  CHECK(pthread_create(&t, NULL, holder, NULL) == 0);
  CHECK(read(held[0], &c, 1) == 1); /* the stream's lock is the other thread's now */
  kz_green_t g = kz_spawn(ticker, NULL);
  CHECK(g != 0);
  double t0 = mono();
  CHECK(fputs("x", f) >= 0 && fflush(f) == 0);
  double waited = mono() - t0;
  int seen = ticks;
  stop = 1;
  CHECK(kz_join(g, NULL, KZ_FOREVER) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  fclose(f);
  CHECK(waited > HOLD_S / 2); /* fputs did wait for the holder */
  if (seen < 4)
    fprintf(stderr, "%d ticks of %.2f s while fputs waited %.2f s\n", seen, TICK_S, waited);
  CHECK(seen >= 4); /* about HOLD_S / TICK_S ticks; none if the OS thread slept */
  puts("ok");
  return NULL;
}

int main(void)
{
  CHECK(kz_run(run, NULL, NULL) == 0);
  return 0;
}
