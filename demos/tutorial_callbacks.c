/* tutorial_callbacks.c: done callbacks.  The asyncio original:
 *
 *   async def do_some_work(x): print('Waiting: ', x); return 'Done after {}s'.format(x)
 *   def callback(future): print('Callback: ', future.result())
 *   task = asyncio.ensure_future(do_some_work(2))
 *   task.add_done_callback(callback)
 *   loop.run_until_complete(task)
 *
 * Plus a callback added after the future completed, which runs too, and a
 * plain future completed by hand.
 */
#include <kudzu.h>

#include <stdint.h>
#include <stdio.h>

static void *do_some_work(void *arg)
{
  static char msg[32];
  printf("Waiting:  %ld\n", (long)(intptr_t)arg);
  kz_sleep(0.01);
  snprintf(msg, sizeof msg, "Done after %lds", (long)(intptr_t)arg);
  return msg;
}

static void callback(kz_future_t f, void *arg)
{
  void *r = NULL;
  kz_future_result(f, &r);
  printf("Callback%s:  %s\n", (char *)arg, (char *)r);
}

static void *demo(void *arg)
{
  kz_future_t task = kz_spawn_future(do_some_work, (void *)2, NULL);
  kz_future_t f = kz_future_new();
  kz_future_add_done_callback(task, callback, "");
  kz_future_wait(task, NULL, KZ_FOREVER);
  kz_future_add_done_callback(task, callback, " (added after completion)");
  kz_future_add_done_callback(f, callback, " (plain future)");
  kz_future_set_result(f, "set by hand");
  kz_sleep(0.01); /* the callbacks run on the hub meanwhile */
  kz_future_free(task);
  kz_future_free(f);
  return NULL;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, NULL) == 0 ? 0 : 1;
}
