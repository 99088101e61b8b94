/* test_queue.c: FIFO, LIFO and priority queues: order, bounded puts that
 * wait, timeouts, try-variants, close and drain, producer/consumer, misuse;
 * and queues shared by green threads of several hubs and by plain threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

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

/* ---- Across hubs ---------------------------------------------------------------- */

#define MAXHUBS 4
#define ITEMS 20000

static struct kz_queue *xq;
static _Atomic int next_item, ngot;
static _Atomic unsigned char seen[ITEMS];

/* Producers put ITEMS distinct numbers between them; consumers take until
   the queue is closed and drained. */
static void *producer_x(void *arg)
{
  int i;
  while ((i = next_item++) < ITEMS)
    if (kz_queue_put(xq, P(i + 1), KZ_FOREVER) != 0)
      return P(1);
  return NULL;
}

static void *consumer_x(void *arg)
{
  void *it;
  while (kz_queue_get(xq, &it, KZ_FOREVER) == 0) {
    intptr_t i = (intptr_t)it - 1;
    if (i < 0 || i >= ITEMS)
      return P(2);
    seen[i]++;
    ngot++;
  }
  return errno == EPIPE ? NULL : P(3);
}

static void queue_across(int hubs, size_t cap)
{
  struct kz_remote *r[MAXHUBS];
  kz_future_t prod[MAXHUBS * 2], cons[MAXHUBS * 2];
  void *res;
  xq = kz_queue_new(KZ_QUEUE_FIFO, cap);
  next_item = ngot = 0;
  for (int i = 0; i < hubs; i++)
    cr_assert_not_null(r[i] = kz_remote_start());
  for (int i = 0; i < hubs; i++) { /* producer and consumer of a pair on different hubs */
    cr_assert_neq(cons[i] = kz_remote_spawn(r[i], consumer_x, NULL), 0);
    cr_assert_neq(prod[i] = kz_remote_spawn(r[(i + 1) % hubs], producer_x, NULL), 0);
  }
  for (int i = 0; i < hubs; i++) {
    cr_assert_eq(kz_future_wait(prod[i], &res, 60), 0);
    cr_assert_null(res);
  }
  cr_assert_eq(kz_queue_close(xq), 0, "wakes the consumers waiting on other hubs");
  for (int i = 0; i < hubs; i++) {
    cr_assert_eq(kz_future_wait(cons[i], &res, 60), 0);
    cr_assert_null(res, "consumer %d: %p", i, res);
  }
  cr_assert_eq(ngot, ITEMS);
  for (int i = 0; i < ITEMS; i++)
    cr_assert_eq(seen[i], 1, "item %d delivered %d times", i, seen[i]);
  cr_assert_eq(kz_queue_free(xq), 0);
  for (int i = 0; i < hubs; i++) {
    kz_future_free(prod[i]);
    kz_future_free(cons[i]);
    kz_remote_free(r[i]);
  }
}

Test(queue, every_item_once_between_2_hubs) { queue_across(2, 0); }
Test(queue, every_item_once_between_4_hubs) { queue_across(4, 0); }
Test(queue, every_item_once_bounded_between_2_hubs) { queue_across(2, 4); }
Test(queue, every_item_once_bounded_between_4_hubs) { queue_across(4, 1); }

static void *put_one_x(void *arg)
{
  return (void *)(intptr_t)(kz_queue_put(xq, arg, KZ_FOREVER) == -1 ? errno : 0);
}

static void *get_one_x(void *arg)
{
  return (void *)(intptr_t)(kz_queue_get(xq, NULL, *(double *)arg) == -1 ? errno : 0);
}

static _Atomic int xwaiting;

static void *get_counted_x(void *arg)
{
  xwaiting++;
  return get_one_x(arg);
}

static void *put_counted_x(void *arg)
{
  xwaiting++;
  return put_one_x(arg);
}

Test(queue, close_wakes_getters_and_putters_of_other_hubs_with_epipe)
{
  static double forever = KZ_FOREVER;
  struct kz_remote *a = kz_remote_start(), *b = kz_remote_start();
  struct kz_queue *full = kz_queue_new(KZ_QUEUE_FIFO, 1);
  void *res;
  xq = kz_queue_new(KZ_QUEUE_FIFO, 0);
  xwaiting = 0;
  kz_future_t g1 = kz_remote_spawn(a, get_counted_x, &forever);
  kz_future_t g2 = kz_remote_spawn(b, get_counted_x, &forever);
  while (xwaiting < 2)
    kz_sleep(0.001);
  kz_sleep(0.01);
  cr_assert_eq(kz_queue_close(xq), 0);
  cr_assert_eq(kz_future_wait(g1, &res, 30), 0);
  cr_assert_eq((intptr_t)res, EPIPE);
  cr_assert_eq(kz_future_wait(g2, &res, 30), 0);
  cr_assert_eq((intptr_t)res, EPIPE);
  cr_assert_eq(kz_queue_free(xq), 0);
  /* a full queue's putter on another hub */
  xq = full;
  xwaiting = 0;
  cr_assert_eq(kz_queue_put(xq, P(1), 0), 0);
  kz_future_t p = kz_remote_spawn(a, put_counted_x, P(2));
  while (xwaiting < 1)
    kz_sleep(0.001);
  kz_sleep(0.01);
  cr_assert_eq(kz_queue_close(xq), 0);
  cr_assert_eq(kz_future_wait(p, &res, 30), 0);
  cr_assert_eq((intptr_t)res, EPIPE);
  cr_assert_eq(kz_queue_size(xq), 1, "the waiting putter's item was not added");
  kz_future_free(g1);
  kz_future_free(g2);
  kz_future_free(p);
  kz_remote_free(a);
  kz_remote_free(b);
}

static _Atomic kz_green_t xwaiter_id;

static void *get_forever_x(void *arg)
{
  xwaiter_id = kz_self();
  return get_one_x(arg);
}

static void cancel_on_its_hub(void *arg) { kz_cancel(xwaiter_id); }

Test(queue, a_getter_of_another_hub_times_out_and_is_cancelled)
{
  static double brief = 0.05, forever = KZ_FOREVER;
  struct kz_remote *r = kz_remote_start();
  void *res;
  xq = kz_queue_new(KZ_QUEUE_FIFO, 0);
  xwaiter_id = 0;
  kz_future_t t = kz_remote_spawn(r, get_one_x, &brief);
  cr_assert_eq(kz_future_wait(t, &res, 30), 0);
  cr_assert_eq((intptr_t)res, ETIMEDOUT);
  kz_future_t c = kz_remote_spawn(r, get_forever_x, &forever);
  while (!xwaiter_id)
    kz_sleep(0.001);
  kz_sleep(0.01);
  cr_assert_eq(kz_remote_call_soon(r, cancel_on_its_hub, NULL), 0);
  cr_assert_eq(kz_future_wait(c, &res, 30), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(kz_queue_put(xq, P(7), 0), 0, "no getter is left queued: the item stays");
  cr_assert_eq(kz_queue_size(xq), 1);
  cr_assert_eq(kz_queue_free(xq), 0);
  kz_future_free(t);
  kz_future_free(c);
  kz_remote_free(r);
}

/* A put racing a getter's timeout, many times over: each item is either
   returned by a get or left in the queue, never lost nor given twice. */
#define RACES 3000

static void *get_racing(void *arg)
{
  for (int got = 0; got < RACES;) {
    void *it;
    if (kz_queue_get(xq, &it, 0.0001 * (got % 3)) == 0) {
      if ((intptr_t)it != got + 1)
        return P(1);
      got++;
      ngot = got;
    } else if (errno != ETIMEDOUT) {
      return P(2);
    }
  }
  return NULL;
}

Test(queue, a_put_racing_a_timeout_is_never_lost_nor_doubled)
{
  struct kz_remote *r = kz_remote_start();
  void *res;
  xq = kz_queue_new(KZ_QUEUE_FIFO, 0);
  ngot = 0;
  kz_future_t f = kz_remote_spawn(r, get_racing, NULL);
  for (int i = 0; i < RACES; i++) {
    cr_assert_eq(kz_queue_put(xq, P(i + 1), KZ_FOREVER), 0);
    while (ngot + kz_queue_size(xq) <= i)
      kz_yield();
    if (i % 2)
      kz_sleep(0.00005 * (i % 4));
  }
  cr_assert_eq(kz_future_wait(f, &res, 60), 0);
  cr_assert_null(res, "items came in order, each once");
  cr_assert_eq(kz_queue_size(xq), 0);
  cr_assert_eq(kz_queue_free(xq), 0);
  kz_future_free(f);
  kz_remote_free(r);
}

static void *feed_from_a_plain_thread(void *arg)
{
  for (intptr_t i = 1; i <= 100; i++)
    while (kz_queue_try_put(xq, P(i)) != 0)
      if (errno != EAGAIN)
        return P(1);
      else
        usleep(100);
  return NULL;
}

Test(queue, a_plain_thread_feeds_a_queue_with_try_put)
{
  pthread_t t;
  void *it, *res;
  xq = kz_queue_new(KZ_QUEUE_FIFO, 8);
  cr_assert_eq(pthread_create(&t, NULL, feed_from_a_plain_thread, NULL), 0);
  for (intptr_t i = 1; i <= 100; i++) {
    cr_assert_eq(kz_queue_get(xq, &it, 30), 0);
    cr_assert_eq((intptr_t)it, i);
  }
  pthread_join(t, &res);
  cr_assert_null(res);
  cr_assert_eq(kz_queue_free(xq), 0);
}

static int cb_errs[3] = {-1, -1, -1};

static void use_in_callback(void *arg)
{
  void *it;
  cb_errs[0] = kz_queue_try_put(xq, P(5)) == -1 ? errno : 0;
  cb_errs[1] = kz_queue_get(xq, &it, 1) == -1 ? errno : 0;
  cb_errs[2] = kz_queue_try_get(xq, &it) == -1 ? errno : (intptr_t)it == 5 ? 0 : -2;
}

Test(queue, a_hub_callback_uses_the_try_variants_and_never_waits)
{
  xq = kz_queue_new(KZ_QUEUE_FIFO, 1);
  kz_call_soon(use_in_callback, NULL);
  kz_sleep(0.01);
  cr_assert_eq(cb_errs[0], 0, "a try-put works on the hub");
  cr_assert_eq(cb_errs[1], EPERM, "a call that may wait is refused there");
  cr_assert_eq(cb_errs[2], 0, "a try-get works on the hub");
  cr_assert_eq(kz_queue_put(xq, P(1), 0), 0);
  kz_call_soon(use_in_callback, NULL); /* full: the try-put fails */
  kz_sleep(0.01);
  cr_assert_eq(cb_errs[0], EAGAIN);
  cr_assert_eq(cb_errs[2], -2, "the try-get took the item that was there");
  cr_assert_eq(kz_queue_size(xq), 0);
  cr_assert_eq(kz_queue_free(xq), 0);
}
