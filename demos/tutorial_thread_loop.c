/* tutorial_thread_loop.c: a hub in a background thread, fed from the main
 * thread.  The asyncio original:
 *
 *   new_loop = asyncio.new_event_loop()
 *   t = Thread(target=start_loop, args=(new_loop,)); t.start()
 *   print('TIME: {}'.format(time.time() - start))
 *   new_loop.call_soon_threadsafe(more_work, 6)     # synchronous: blocks that loop
 *   new_loop.call_soon_threadsafe(more_work, 3)
 *   asyncio.run_coroutine_threadsafe(do_some_work(6), new_loop)   # asynchronous
 *   asyncio.run_coroutine_threadsafe(do_some_work(4), new_loop)
 *
 * The main thread has no hub: it submits and keeps going ("here"), then
 * waits on the futures like concurrent.futures.  Seconds are tenths here.
 * The two green threads sleep concurrently: about 0.6 s, not 1.0 s.
 */
#include <kudzu.h>

#include <stdint.h>
#include <stdio.h>

static void more_work(void *arg)
{
  printf("More work %ld\n", (long)(intptr_t)arg);
  printf("Finished more work %ld\n", (long)(intptr_t)arg);
}

static void *do_some_work(void *arg)
{
  intptr_t x = (intptr_t)arg;
  printf("Waiting %ld\n", (long)x);
  kz_sleep((double)x / 10);
  printf("Done after %lds\n", (long)x);
  return arg;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  double start = kz_now();
  struct kz_remote *loop = kz_remote_start();
  void *r6 = NULL, *r4 = NULL;
  if (!loop)
    return 1;
  printf("TIME: %.2f\n", kz_now() - start);
  kz_remote_call_soon(loop, more_work, (void *)6);
  kz_remote_call_soon(loop, more_work, (void *)3);
  kz_future_t a = kz_remote_spawn(loop, do_some_work, (void *)6);
  kz_future_t b = kz_remote_spawn(loop, do_some_work, (void *)4);
  printf("here\n");
  if (kz_future_wait(a, &r6, 5) || kz_future_wait(b, &r4, 5))
    return 1;
  printf("results %ld %ld after %.1f s\n", (long)(intptr_t)r6, (long)(intptr_t)r4,
         kz_now() - start);
  kz_future_free(a);
  kz_future_free(b);
  int rc = kz_remote_stop(loop) == 0 ? 0 : 1;
  kz_remote_free(loop);
  return rc;
}
