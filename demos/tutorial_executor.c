/* tutorial_executor.c: run_in_executor with 5 workers.  The asyncio
 * original:
 *
 *   def blocking(i): time.sleep(1); return i * i
 *   async def main():
 *       loop = asyncio.get_running_loop()
 *       with ThreadPoolExecutor(max_workers=5) as pool:
 *           results = await asyncio.gather(
 *               *(loop.run_in_executor(pool, blocking, i) for i in range(10)))
 *       print(results)
 *
 * Ten blocking calls of 0.2 s (usleep: a real blocking call, made on a
 * worker thread) on 5 threads take about 0.4 s, while the hub keeps
 * running a ticker green thread.
 */
#include <kudzu.h>

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static struct kz_executor *pool;
static int ticks;

static void *blocking(void *arg)
{
  usleep(200 * 1000);
  return (void *)((intptr_t)arg * (intptr_t)arg);
}

static void *call(void *arg)
{
  void *r = NULL;
  if (kz_run_in_executor(pool, blocking, arg, NULL, &r, KZ_FOREVER) != 0)
    kz_fail(1);
  return r;
}

static void *ticker(void *arg)
{
  while (kz_sleep(0.05) == 0)
    ticks++;
  return NULL;
}

static void *demo(void *arg)
{
  uint64_t t[10];
  void *res[10];
  double t0 = kz_now();
  kz_future_t tick = kz_spawn_future(ticker, NULL, NULL);
  pool = kz_executor_new(5);
  for (intptr_t i = 0; i < 10; i++)
    t[i] = kz_spawn_future(call, (void *)i, NULL);
  kz_gather(t, 10, res, NULL, 0, KZ_FOREVER);
  printf("[");
  for (int i = 0; i < 10; i++)
    printf("%s%ld", i ? ", " : "", (long)(intptr_t)res[i]);
  printf("]\n");
  printf("10 blocking calls of 0.2 s on 5 workers: %.1f s; the hub ticked meanwhile: %s\n",
         kz_now() - t0, ticks >= 4 ? "yes" : "no");
  kz_future_cancel(tick);
  kz_future_wait(tick, NULL, KZ_FOREVER);
  kz_future_free(tick);
  for (int i = 0; i < 10; i++)
    kz_future_free(t[i]);
  kz_executor_free(pool);
  return NULL;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, NULL) == 0 ? 0 : 1;
}
