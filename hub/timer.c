/* timer.c: callbacks scheduled on a hub: kz_call_soon, kz_call_later,
 * kz_call_at, and their cancellation.
 *
 * A callback runs on the hub context, outside every green thread: it may
 * spawn, wake, cancel and schedule, but blocking calls fail there with EPERM.
 * "Soon" callbacks run in the order they were scheduled, once per hub pass,
 * before the loop polls; those scheduled by a soon callback wait for the
 * next pass, so a callback that re-schedules itself cannot starve the hub.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* A scheduled callback. */
struct call {
  ev_timer timer;        /* call_later/call_at */
  struct kz__link link;  /* in hub->soon (call_soon) or hub->timed */
  struct kz__hub *hub;   /* the hub it runs on */
  kz_call_t id;          /* its handle, freed once it runs or is cancelled */
  kz_callback cb;
  void *arg;
};

static void call_free(struct call *c)
{
  kz__handle_free(c->id);
  free(c);
}

static void call_run(struct call *c)
{
  kz__list_remove(&c->link);
  kz_callback cb = c->cb;
  void *arg = c->arg;
  call_free(c);
  cb(arg);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
  call_run(kz__container_of(t, struct call, timer));
}

static struct call *call_new(kz_callback cb, void *arg, int *err)
{
  struct kz__hub *hub = kz__hub_get(err);
  struct call *c;
  if (!hub)
    return NULL;
  if (!cb) {
    *err = -EINVAL;
    return NULL;
  }
  if (!(c = malloc(sizeof *c)) || !(c->id = kz__handle_new(KZ__H_CALL, c))) {
    free(c);
    *err = -ENOMEM;
    return NULL;
  }
  c->hub = hub;
  c->cb = cb;
  c->arg = arg;
  kz__list_init(&c->link);
  ev_init(&c->timer, timer_cb);
  return c;
}

kz_call_t kz_call_soon(kz_callback cb, void *arg)
{
  int err = 0;
  struct call *c = call_new(cb, arg, &err);
  if (!c) {
    errno = -err;
    return 0;
  }
  kz__list_push(&c->hub->soon, &c->link);
  return c->id;
}

/* A timed call at kz__now() time when, or after delay from now (when < 0).
   For kz_call_at, the delay is computed right after libev reads the clock,
   so the deadline is when to within nanoseconds, however long the
   allocation before took: calls at times a few milliseconds apart keep
   their order. */
static kz_call_t call_timed(double delay, double when, kz_callback cb, void *arg)
{
  int err = 0;
  struct call *c;
  if (!(c = call_new(cb, arg, &err))) {
    errno = -err;
    return 0;
  }
  ev_now_update(c->hub->loop);
  if (when >= 0)
    delay = when - kz__now();
  ev_timer_set(&c->timer, delay > 0 ? delay : 0, 0);
  ev_timer_start(c->hub->loop, &c->timer);
  kz__list_push(&c->hub->timed, &c->link);
  return c->id;
}

kz_call_t kz_call_later(double delay, kz_callback cb, void *arg)
{
  if (isnan(delay)) {
    errno = EINVAL;
    return 0;
  }
  if (delay <= 0)
    return kz_call_soon(cb, arg);
  return call_timed(delay, -1, cb, arg);
}

kz_call_t kz_call_at(double when, kz_callback cb, void *arg)
{
  if (isnan(when)) {
    errno = EINVAL;
    return 0;
  }
  if (when - kz__now() <= 0)
    return kz_call_soon(cb, arg);
  return call_timed(0, when, cb, arg);
}

int kz_call_cancel(kz_call_t h)
{
  struct call *c = kz__handle_get(h, KZ__H_CALL);
  if (!c || c->hub != kz__tls_hub)
    return kz__fail_errno(-EINVAL);
  if (ev_is_active(&c->timer) || ev_is_pending(&c->timer))
    ev_timer_stop(c->hub->loop, &c->timer);
  kz__list_remove(&c->link);
  call_free(c);
  return 0;
}

void kz__run_soon(struct kz__hub *hub)
{
  struct kz__link batch;
  if (kz__list_empty(&hub->soon))
    return;
  /* Take this pass's callbacks; what they schedule waits for the next. */
  batch = hub->soon;
  batch.next->prev = &batch;
  batch.prev->next = &batch;
  kz__list_init(&hub->soon);
  while (!kz__list_empty(&batch)) {
    struct call *c = kz__container_of(batch.next, struct call, link);
    call_run(c);
  }
}

void kz__calls_term(struct kz__hub *hub)
{
  struct kz__link *lists[] = {&hub->soon, &hub->timed};
  for (int i = 0; i < 2; i++)
    while (!kz__list_empty(lists[i])) {
      struct call *c = kz__container_of(lists[i]->next, struct call, link);
      if (ev_is_active(&c->timer) || ev_is_pending(&c->timer))
        ev_timer_stop(hub->loop, &c->timer);
      kz__list_remove(&c->link);
      call_free(c);
    }
}
