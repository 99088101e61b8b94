/* tutorial_gather.c: gather with one failing task, in both modes.  The
 * asyncio original:
 *
 *   async def work(x):
 *       await asyncio.sleep(x)
 *       if x == 2: raise ValueError("task 2 failed")
 *       return x
 *   print(await asyncio.gather(work(1), work(2), work(3), return_exceptions=True))
 *   try: await asyncio.gather(work(1), work(2), work(3))
 *   except ValueError as e: print("caught:", e)
 *
 * Printed: [1, ValueError('task 2 failed'), 3], then "caught: task 2 failed"
 * and, unlike asyncio's gather but like a TaskGroup, task 3 cancelled.  In
 * the second round task 3 sleeps far longer than task 2 (5 s, cancelled
 * after 0.1 s), so that it is still asleep when task 2 fails however late a
 * loaded machine runs the hub: with 0.15 s, two timers that expired in the
 * same pass woke both, and task 3 finished instead of being cancelled.
 */
#include <kudzu.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static double third_sleep; /* seconds task 3 sleeps */

static void *work(void *arg)
{
  intptr_t x = (intptr_t)arg;
  kz_sleep(x == 3 ? third_sleep : (double)x * 0.05);
  if (x == 2)
    kz_fail(EINVAL); /* the C counterpart of raising */
  return arg;
}

static void spawn3(uint64_t *t, double third)
{
  third_sleep = third;
  for (intptr_t i = 0; i < 3; i++)
    t[i] = kz_spawn_future(work, (void *)(i + 1), NULL);
}

static void free3(uint64_t *t)
{
  for (int i = 0; i < 3; i++) {
    kz_future_wait(t[i], NULL, KZ_FOREVER); /* a cancelled one finishes first */
    kz_future_free(t[i]);
  }
}

static void *demo(void *arg)
{
  uint64_t t[3];
  void *res[3];
  int err[3];
  spawn3(t, 0.15);
  int failed = kz_gather(t, 3, res, err, KZ_GATHER_ERRORS, KZ_FOREVER);
  printf("[");
  for (int i = 0; i < 3; i++) {
    if (err[i])
      printf("%sError('task %d failed: %s')", i ? ", " : "", i + 1, strerror(err[i]));
    else
      printf("%s%ld", i ? ", " : "", (long)(intptr_t)res[i]);
  }
  printf("]  (%d failed)\n", failed);
  free3(t);

  spawn3(t, 5);
  if (kz_gather(t, 3, res, err, 0, KZ_FOREVER) == -1)
    printf("caught: task 2 failed: %s\n", strerror(errno));
  printf("task 1: %s, task 3: %s\n", err[0] ? "failed" : "done",
         err[2] == ECANCELED ? "cancelled" : "not cancelled");
  free3(t);
  return NULL;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, NULL) == 0 ? 0 : 1;
}
