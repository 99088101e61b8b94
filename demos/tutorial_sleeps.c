/* tutorial_sleeps.c: concurrent sleeps finish in the longest time, not the
 * sum.  The asyncio original:
 *
 *   async def do_some_work(x):
 *       print("Waiting:", x); await asyncio.sleep(x); return "Done after {}s".format(x)
 *   tasks = [ensure_future(do_some_work(1)), ensure_future(do_some_work(2)),
 *            ensure_future(do_some_work(4))]
 *   loop.run_until_complete(asyncio.wait(tasks))
 *   for task in tasks: print("Task ret:", task.result())
 *   print("Time:", now() - start)
 *
 * Seconds are scaled by SCALE (default 0.1) so the demo is quick; the time
 * printed is in the original's seconds: about 4, not 7.
 *
 *   tutorial_sleeps [SCALE]
 */
#include <kudzu.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static double scale = 0.1;

static void *do_some_work(void *arg)
{
  static char done[5][32]; /* x is 1, 2 or 4 */
  intptr_t x = (intptr_t)arg;
  printf("Waiting: %ld\n", (long)x);
  kz_sleep((double)x * scale);
  snprintf(done[x], sizeof done[0], "Done after %lds", (long)x);
  return done[x];
}

static void *demo(void *arg)
{
  uint64_t tasks[3];
  void *res[3];
  double start = kz_now();
  intptr_t xs[3] = {1, 2, 4};
  for (int i = 0; i < 3; i++)
    tasks[i] = kz_spawn_future(do_some_work, (void *)xs[i], NULL);
  if (kz_wait(tasks, 3, KZ_ALL_COMPLETED, KZ_FOREVER) != 3)
    return (void *)1;
  for (int i = 0; i < 3; i++) {
    kz_future_result(tasks[i], &res[i]);
    printf("Task ret: %s\n", (char *)res[i]);
    kz_future_free(tasks[i]);
  }
  printf("Time: %.1f\n", (kz_now() - start) / scale);
  return NULL;
}

int main(int argc, char **argv)
{
  void *r = NULL;
  if (argc > 1)
    scale = atof(argv[1]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, &r) == 0 && !r ? 0 : 1;
}
