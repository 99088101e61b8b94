/* tutorial_wait.c: wait with FIRST_COMPLETED, then with a timeout, then for
 * the rest.  The asyncio original:
 *
 *   async def coro(tag):
 *       print(">", tag); await asyncio.sleep(random.uniform(0.5, 5)); print("<", tag); return tag
 *   tasks = [coro(i) for i in range(1, 11)]
 *   print("Get first result:")
 *   finished, unfinished = run(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED))
 *   for task in finished: print(task.result())
 *   print("unfinished:", len(unfinished))
 *   print("Get more results in 2 seconds:")
 *   finished2, unfinished2 = run(asyncio.wait(unfinished, timeout=2))
 *   ...
 *   print("Get all other results:")
 *   finished3, unfinished3 = run(asyncio.wait(unfinished2))
 *
 * The sleeps are fixed here (tag i sleeps 0.5 * i units of 0.2 s) and the
 * second wait's timeout is 2.25 units, so the output is the same on every
 * run: tag 1 first, tags 2-5 within the timeout, then 6-10.
 */
#include <kudzu.h>

#include <stdint.h>
#include <stdio.h>

#define UNIT 0.2

static void *coro(void *arg)
{
  intptr_t tag = (intptr_t)arg;
  printf("> %ld\n", (long)tag);
  kz_sleep(0.5 * (double)tag * UNIT);
  printf("< %ld\n", (long)tag);
  return arg;
}

static void print_results(uint64_t *t, int n)
{
  for (int i = 0; i < n; i++) {
    void *r = NULL;
    kz_future_result(t[i], &r);
    printf("%ld\n", (long)(intptr_t)r);
  }
}

static void *demo(void *arg)
{
  uint64_t t[10];
  int n, done = 0;
  for (intptr_t i = 0; i < 10; i++)
    t[i] = kz_spawn_future(coro, (void *)(i + 1), NULL);
  printf("Get first result:\n");
  n = kz_wait(t, 10, KZ_FIRST_COMPLETED, KZ_FOREVER);
  print_results(t, n);
  done += n;
  printf("unfinished: %d\n", 10 - done);
  printf("Get more results in 2 seconds:\n");
  n = kz_wait(t + done, 10 - done, KZ_ALL_COMPLETED, 2.25 * UNIT);
  print_results(t + done, n);
  done += n;
  printf("unfinished2: %d\n", 10 - done);
  printf("Get all other results:\n");
  n = kz_wait(t + done, 10 - done, KZ_ALL_COMPLETED, KZ_FOREVER);
  print_results(t + done, n);
  done += n;
  printf("unfinished3: %d\n", 10 - done);
  for (int i = 0; i < 10; i++)
    kz_future_free(t[i]);
  return NULL;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, NULL) == 0 ? 0 : 1;
}
