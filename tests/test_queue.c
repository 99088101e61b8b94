/* test_queue.c: FIFO, LIFO and priority queues: order, bounded puts that
 * wait, timeouts, try-variants, close and drain, producer/consumer, misuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <stdint.h>

#define P(i) ((void *)(intptr_t)(i))

static intptr_t get_now(struct kz_queue *q)
{
  void *it = NULL;
  cr_assert_eq(kz_queue_try_get(q, &it), 0);
  return (intptr_t)it;
}

Test(queue, fifo_lifo_priority_order)
{
  struct kz_queue *f = kz_queue_new(KZ_QUEUE_FIFO, 0), *l = kz_queue_new(KZ_QUEUE_LIFO, 0),
                  *p = kz_queue_new(KZ_QUEUE_PRIORITY, 0);
  for (int i = 1; i <= 40; i++) { /* past the first allocation: the ring grows */
    cr_assert_eq(kz_queue_put(f, P(i), 0), 0);
    cr_assert_eq(kz_queue_put(l, P(i), 0), 0);
  }
  for (int i = 1; i <= 40; i++)
    cr_assert_eq(get_now(f), i);
  for (int i = 40; i >= 1; i--)
    cr_assert_eq(get_now(l), i);
  long prios[] = {5, 1, 3, 1, 9, 0};
  for (int i = 0; i < 6; i++)
    cr_assert_eq(kz_queue_put_prio(p, P(i), prios[i], 0), 0);
  int expect[] = {5, 1, 3, 2, 0, 4}; /* lowest first; equal ones in put order */
  for (int i = 0; i < 6; i++)
    cr_assert_eq(get_now(p), expect[i]);
  cr_assert_eq(kz_queue_try_get(p, NULL), -1);
  cr_assert_eq(errno, EAGAIN);
  kz_queue_free(f);
  kz_queue_free(l);
  kz_queue_free(p);
}

static struct kz_queue *q;

static void *putter(void *arg)
{
  for (intptr_t i = 0; i < 5; i++)
    cr_assert_eq(kz_queue_put(q, P(i), KZ_FOREVER), 0);
  return NULL;
}

Test(queue, bounded_put_waits_for_room_and_keeps_order)
{
  q = kz_queue_new(KZ_QUEUE_FIFO, 2);
  kz_green_t g = kz_spawn(putter, NULL);
  kz_yield();
  cr_assert_eq(kz_queue_size(q), 2, "the putter waits at capacity");
  cr_assert_eq(kz_queue_try_put(q, P(99)), -1);
  cr_assert_eq(errno, EAGAIN);
  cr_assert_eq(kz_queue_put(q, P(99), 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  for (intptr_t i = 0; i < 5; i++) {
    void *it;
    cr_assert_eq(kz_queue_get(q, &it, 1), 0);
    cr_assert_eq((intptr_t)it, i);
  }
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(kz_queue_get(q, NULL, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  kz_queue_free(q);
}

static void *getter(void *arg)
{
  void *it;
  if (kz_queue_get(q, &it, KZ_FOREVER) < 0)
    return P(-errno);
  return it;
}

Test(queue, close_drains_then_fails)
{
  void *r;
  q = kz_queue_new(KZ_QUEUE_FIFO, 0);
  kz_green_t g = kz_spawn(getter, NULL);
  kz_yield();
  cr_assert_eq(kz_queue_close(q), 0);
  cr_assert_eq(kz_join(g, &r, KZ_FOREVER), 0);
  cr_assert_eq((intptr_t)r, -EPIPE, "a waiting getter is woken with EPIPE");
  struct kz_queue *q2 = kz_queue_new(KZ_QUEUE_LIFO, 4);
  kz_queue_put(q2, P(1), 0);
  kz_queue_put(q2, P(2), 0);
  kz_queue_close(q2);
  cr_assert_eq(kz_queue_put(q2, P(3), 0), -1);
  cr_assert_eq(errno, EPIPE);
  cr_assert_eq(get_now(q2), 2);
  cr_assert_eq(get_now(q2), 1);
  cr_assert_eq(kz_queue_get(q2, NULL, 1), -1);
  cr_assert_eq(errno, EPIPE, "drained: fails at once");
  kz_queue_free(q);
  kz_queue_free(q2);
}

static void *blocked_putter(void *arg)
{
  return P(kz_queue_put(q, P(7), KZ_FOREVER) == -1 ? errno : 0);
}

Test(queue, close_wakes_waiting_putters)
{
  void *r;
  q = kz_queue_new(KZ_QUEUE_FIFO, 1);
  kz_queue_put(q, P(1), 0);
  kz_green_t g = kz_spawn(blocked_putter, NULL);
  kz_yield();
  kz_queue_close(q);
  kz_join(g, &r, KZ_FOREVER);
  cr_assert_eq((intptr_t)r, EPIPE);
  cr_assert_eq(kz_queue_size(q), 1, "the refused item was not added");
  kz_queue_free(q);
}

static long consumed_sum;
static void *consumer(void *arg)
{
  void *it;
  while (kz_queue_get(q, &it, KZ_FOREVER) == 0)
    consumed_sum += (intptr_t)it;
  cr_assert_eq(errno, EPIPE);
  return NULL;
}

static void *producer(void *arg)
{
  for (intptr_t i = 1; i <= 1000; i++)
    cr_assert_eq(kz_queue_put(q, P(i), KZ_FOREVER), 0);
  return NULL;
}

Test(queue, producers_and_consumers)
{
  kz_green_t p[3], c[4];
  q = kz_queue_new(KZ_QUEUE_FIFO, 8);
  for (int i = 0; i < 4; i++)
    c[i] = kz_spawn(consumer, NULL);
  for (int i = 0; i < 3; i++)
    p[i] = kz_spawn(producer, NULL);
  for (int i = 0; i < 3; i++)
    kz_join(p[i], NULL, KZ_FOREVER);
  kz_queue_close(q);
  for (int i = 0; i < 4; i++)
    kz_join(c[i], NULL, KZ_FOREVER);
  cr_assert_eq(consumed_sum, 3 * 1000 * 1001 / 2, "every item consumed exactly once");
  kz_queue_free(q);
}

Test(queue, misuse)
{
  cr_assert_null(kz_queue_new(42, 0));
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_queue_put(NULL, NULL, 0), -1);
  cr_assert_eq(errno, EINVAL);
  q = kz_queue_new(KZ_QUEUE_FIFO, 0);
  kz_green_t g = kz_spawn(getter, NULL);
  kz_yield();
  cr_assert_eq(kz_queue_free(q), -1);
  cr_assert_eq(errno, EBUSY);
  kz_queue_put(q, P(1), 0);
  kz_join(g, NULL, KZ_FOREVER);
  cr_assert_eq(kz_queue_free(q), 0);
}
