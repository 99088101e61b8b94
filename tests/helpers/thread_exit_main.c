/* thread_exit_main.c: main calls pthread_exit while other threads still
 * run; the process lives until they finish, then exits with status 0. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

static int go[2];

static void *late(void *arg)
{
  char c;
  CHECK(read(go[0], &c, 1) == 1); /* only after main has left */
  printf("thread %ld finished after main\n", (long)(intptr_t)arg);
  fflush(stdout);
  return NULL;
}

static void *starter(void *arg)
{
  usleep(50 * 1000); /* main is gone by now (or about to be: both are fine) */
  CHECK(write(go[1], "x", 1) == 1);
  return NULL;
}

int main(void)
{
  pthread_t t;
  CHECK(pipe(go) == 0);
  for (long i = 1; i <= 1; i++)
    CHECK(pthread_create(&t, NULL, late, (void *)(intptr_t)i) == 0);
  CHECK(pthread_create(&t, NULL, starter, NULL) == 0);
  pthread_exit(NULL);
}
