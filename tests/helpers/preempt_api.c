/* preempt_api.c: green threads spawned through the API stay cooperative
 * under the launcher, where threads are preempted (hub/preempt.c): nothing
 * else runs between two of their waits, however long they compute.
 *
 * A pthread is created first, so the hub's slice timer is armed and the
 * main thread is preemptible.  Then two API green threads each compute for
 * 100 ms of CPU time without waiting, checking all along that a shared word
 * still holds what they stored; the main thread, meanwhile, is parked in
 * kz_join.  Exit 0 if neither saw the other run in the middle of its
 * computation. */
#include <kudzu.h>

#include "check.h"
#include <pthread.h>
#include <stdint.h>

static volatile intptr_t owner;

static double cpu(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *compute(void *arg)
{
  double t0 = cpu();
  owner = (intptr_t)arg;
  while (cpu() - t0 < 0.1) /* the clock read now and then: the time goes to this loop */
    for (int i = 0; i < 1000000; i++)
      if (owner != (intptr_t)arg)
        return (void *)1; /* the other one ran: preempted */
  return NULL;
}

static void *nothing(void *arg) { return arg; }

int main(void)
{
  pthread_t t;
  kz_green_t a, b;
  void *ra, *rb;
  CHECK(pthread_create(&t, NULL, nothing, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK((a = kz_spawn(compute, (void *)1)) != 0);
  CHECK((b = kz_spawn(compute, (void *)2)) != 0);
  CHECK(kz_join(a, &ra, KZ_FOREVER) == 0);
  CHECK(kz_join(b, &rb, KZ_FOREVER) == 0);
  CHECK(ra == NULL && rb == NULL);
  puts("API green threads were not preempted");
  return 0;
}
