/* exit_api_worker.c: a program on the API (run natively and under the
 * launcher) runs a call on the worker pool, which leaves a worker thread
 * idle, starts a plain pthread that runs briefly, and calls kz_exit from
 * main.  The process must end with status 0 when that thread has finished,
 * as it would without the runtime: the pool's idle threads must not keep it
 * alive. */
#include <kudzu.h>

#include "check.h"
#include <pthread.h>
#include <unistd.h>

static void *twice(void *arg) { return (void *)((long)arg * 2); }

static void *brief(void *arg)
{
  (void)arg;
  usleep(50 * 1000);
  puts("the last thread finished after main");
  fflush(stdout);
  return NULL;
}

int main(void)
{
  pthread_t t;
  void *r = NULL;
  CHECK(kz_run_in_executor(NULL, twice, (void *)21, NULL, &r, KZ_FOREVER) == 0);
  CHECK((long)r == 42);
  puts("a worker ran a call");
  fflush(stdout);
  CHECK(pthread_create(&t, NULL, brief, NULL) == 0);
  kz_exit(NULL);
}
