/* arena_trim: a thread frees enough to make malloc give memory back.
 *
 * A thread's malloc arena (any thread but the main one has one of its own)
 * shrinks when a free leaves more than the trim threshold unused at its
 * top; glibc then reads /proc/sys/vm/overcommit_memory, once per process,
 * while it holds that arena's lock.  Nothing the program can see may
 * allocate there: that allocation would wait for the same lock.
 *
 * NTHREADS threads each take every small chunk of one size the thread
 * cache holds (so that the next allocation of that size needs the arena's
 * lock), allocate NBLOCKS blocks below the mmap threshold, then free the
 * blocks, last first: the top of the arena grows past the trim threshold
 * and the heap shrinks.  Checks: every thread finishes and is joined.  The
 * whole run is bounded: alarm() ends a hung run with SIGALRM.  A pipe made
 * and closed first gives glibc's /proc descriptor a number used before. */
#include "check.h"

#include <pthread.h>
#include <unistd.h>

#define NTHREADS 2  /* under several hubs, one lands on a hub of its own */
#define NBLOCKS 64
#define BLOCK (64 * 1024)
#define NSMALL 64   /* more than the thread cache keeps of one size */
#define SMALL 32

static void *trim(void *arg)
{
  void *block[NBLOCKS], *small[NSMALL];
  for (int i = 0; i < NSMALL; i++) /* first: below the blocks */
    CHECK((small[i] = malloc(SMALL)) != NULL);
  for (int i = 0; i < NBLOCKS; i++) {
    CHECK((block[i] = malloc(BLOCK)) != NULL);
    ((char *)block[i])[0] = 1;
  }
  for (int i = NBLOCKS - 1; i >= 0; i--)
    free(block[i]);
  for (int i = 0; i < NSMALL; i++)
    free(small[i]);
  return arg;
}

int main(void)
{
  pthread_t t[NTHREADS];
  int p[2];
  alarm(30); /* a hung run fails instead of waiting for ever */
  CHECK(pipe(p) == 0); /* descriptors made and closed, as programs do */
  CHECK(close(p[0]) == 0 && close(p[1]) == 0);
  for (int i = 0; i < NTHREADS; i++)
    CHECK(pthread_create(&t[i], NULL, trim, (void *)(long)i) == 0);
  for (int i = 0; i < NTHREADS; i++) {
    void *r;
    CHECK(pthread_join(t[i], &r) == 0 && r == (void *)(long)i);
  }
  printf("%d threads each freed %d blocks of %d KiB: all joined\n", NTHREADS, NBLOCKS, BLOCK / 1024);
  return 0;
}
