/* tutorial_queue.c: a producer/consumer queue.  The asyncio original:
 *
 *   async def producer(q, n):
 *       for i in range(n): await q.put(i); print("produced", i)
 *       await q.put(None)
 *   async def consumer(q):
 *       while (item := await q.get()) is not None:
 *           print("consumed", item); await asyncio.sleep(0.1)
 *   q = asyncio.Queue(maxsize=2)
 *   await asyncio.gather(producer(q, 5), consumer(q))
 *
 * The queue holds at most 2 items, so the producer runs at most 3 ahead of
 * the consumer (2 queued, 1 in hand).  Here the end is signalled by closing
 * the queue: the consumer drains it, then its get fails with EPIPE.
 */
#include <kudzu.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

static struct kz_queue *q;

static void *producer(void *arg)
{
  for (intptr_t i = 0; i < (intptr_t)arg; i++) {
    kz_queue_put(q, (void *)i, KZ_FOREVER);
    printf("produced %ld\n", (long)i);
  }
  kz_queue_close(q);
  return NULL;
}

static void *consumer(void *arg)
{
  void *item;
  while (kz_queue_get(q, &item, KZ_FOREVER) == 0) {
    printf("consumed %ld\n", (long)(intptr_t)item);
    kz_sleep(0.02);
  }
  printf("queue closed and drained (%s)\n", errno == EPIPE ? "EPIPE" : "?");
  return NULL;
}

static void *demo(void *arg)
{
  uint64_t t[2];
  q = kz_queue_new(KZ_QUEUE_FIFO, 2);
  t[0] = kz_spawn(producer, (void *)5);
  t[1] = kz_spawn(consumer, NULL);
  kz_gather(t, 2, NULL, NULL, 0, KZ_FOREVER);
  kz_join(t[0], NULL, KZ_FOREVER);
  kz_join(t[1], NULL, KZ_FOREVER);
  kz_queue_free(q);
  return NULL;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(demo, NULL, NULL) == 0 ? 0 : 1;
}
