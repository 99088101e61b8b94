/* hub.c: the per-OS-thread hub: creation and teardown, the mailbox other
 * threads post to, and the hub context's loop.
 *
 * Notes.
 * A. Each hub owns an ev_loop_new() loop, never libev's default loop: the
 *    program may use libev (and its default loop and signal watchers) itself.
 * B. The hub runs in its own context on its own stack.  The thread that
 *    creates the hub keeps running on its original stack as the hub's main
 *    green thread; the hub context starts the first time something parks.
 * C. Ready green threads switch directly to each other (sched.c); the hub
 *    context gets control back when the run queue empties, or once every
 *    green thread that was ready when it dispatched has run and KZ__BUDGET
 *    more direct switches were made, and then polls libev once (without
 *    blocking when green threads are ready).  So I/O is never starved by a
 *    busy ping-pong, and a yield costs a switch, not a system call.  The
 *    budget grows with the batch because polling before a batch has run
 *    finds its descriptors still readable (nobody has read them yet):
 *    epoll re-checks every such level-triggered item on each poll, and with
 *    a thousand connections woken at once, polling every 128 switches spent
 *    more time in those re-checks than in the reads.
 * D. ev_async, the mailbox's wake-up, is unreferenced: it must not keep an
 *    otherwise idle loop alive, or a deadlock would hang instead of being
 *    reported.  kz__hub_hold() references the loop while a green thread
 *    waits for another OS thread.
 * F. fork() copies the hub of the forking thread, and with it the epoll
 *    instance, which parent and child would then share.  An atfork handler
 *    gives the child's loop its own backend (ev_loop_fork); the hubs of
 *    other threads do not exist in the child (their threads do not).
 * E. When nothing is ready, no callback is due and libev has no active
 *    watcher, no event can ever wake anyone: the main green thread's
 *    blocking call fails with EDEADLK (gevent's "this operation would block
 *    forever") instead of the process hanging silently.
 */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KZ__HUB_STACK (256 * 1024)

KZ_TLS struct kz__hub *kz__tls_hub;

/* The runtime's own key and once: libc's, through kz__os_ (internal.h), not
   the shim's, which would keep the value in a green thread's record. */
static pthread_key_t hub_key;
static pthread_once_t hub_once = PTHREAD_ONCE_INIT;

double kz__now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double kz_now(void) { return kz__now(); }

/* A thread that exits with a hub: tear it down if only the main green thread
   is left; otherwise its green threads are lost with it (said once). */
static void hub_key_destructor(void *p)
{
  struct kz__hub *hub = p;
  if (!hub || kz__tls_hub != hub)
    return;
  if (hub->nlive <= 1 && hub->current == hub->main)
    kz__hub_destroy(hub);
  else
    kz__say("an OS thread exited with %zu green threads still alive on its hub",
            hub->nlive - 1);
}

/* Note F. */
static void hub_atfork_child(void)
{
  struct kz__hub *hub = kz__tls_hub;
  if (hub)
    ev_loop_fork(hub->loop);
}

static void hub_global_init(void)
{
  kz__os_key_create(&hub_key, hub_key_destructor);
  pthread_atfork(NULL, NULL, hub_atfork_child);
  kz__monitor_init();
}

/* Run the messages other threads posted, in the order each posted them. */
static void wakeup_cb(struct ev_loop *loop, ev_async *w, int revents)
{
  struct kz__hub *hub = kz__container_of(w, struct kz__hub, wakeup);
  struct kz__post *p = atomic_exchange_explicit(&hub->inbox, NULL, memory_order_acquire);
  struct kz__post *fifo = NULL, *next;
  for (; p; p = next) { /* the inbox is LIFO: reverse it */
    next = p->next;
    p->next = fifo;
    fifo = p;
  }
  for (p = fifo; p; p = next) {
    next = p->next;
    p->fn(p);
  }
}

void kz__hub_post(struct kz__hub *hub, struct kz__post *p)
{
  struct kz__post *head = atomic_load_explicit(&hub->inbox, memory_order_relaxed);
  do
    p->next = head;
  while (!atomic_compare_exchange_weak_explicit(&hub->inbox, &head, p, memory_order_release,
                                                memory_order_relaxed));
  ev_async_send(hub->loop, &hub->wakeup);
}

void kz__hub_hold(struct kz__hub *hub)
{
  if (hub->holds++ == 0)
    ev_ref(hub->loop);
}

void kz__hub_unhold(struct kz__hub *hub)
{
  if (--hub->holds == 0)
    ev_unref(hub->loop);
}

struct kz__hub *kz__hub_create(int *err)
{
  struct kz__hub *hub;
  int r;

  kz__os_once(&hub_once, hub_global_init);
  hub = calloc(1, sizeof *hub);
  if (!hub)
    goto error1;
  hub->errnop = &errno;
  kz__list_init(&hub->all);
  kz__list_init(&hub->zombies);
  kz__list_init(&hub->soon);
  kz__list_init(&hub->timed);
  kz__waitq_init(&hub->quiesce);
  hub->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
  if (!hub->loop)
    hub->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
  if (!hub->loop)
    goto error2;
  if ((r = kz__stack_cache_init(hub)) < 0)
    goto error3;
  if ((r = kz__stack_get(hub, KZ__HUB_STACK, &hub->hub_stack)) < 0)
    goto error4;
  if ((r = kz__fdtab_init(hub)) < 0)
    goto error5;
  hub->main = kz__green_main(hub);
  if (!hub->main)
    goto error6;
  ev_set_userdata(hub->loop, hub);
  ev_async_init(&hub->wakeup, wakeup_cb);
  ev_async_start(hub->loop, &hub->wakeup);
  ev_unref(hub->loop); /* note D */
  hub->sp = kz__switch_init(hub->hub_stack.base + hub->hub_stack.size, kz__hub_loop, hub,
                            kz__fpctl_get());
  hub->current = hub->main;
  kz__debug_thread_init(hub);
  kz__monitor_add(hub);
  kz__tls_hub = hub;
  kz__os_setspecific(hub_key, hub);
  return hub;

error6:
  kz__fdtab_term(hub);
error5:
  kz__stack_put(hub, &hub->hub_stack);
error4:
  kz__stack_cache_term(hub);
error3:
  ev_loop_destroy(hub->loop);
error2:
  free(hub);
error1:
  *err = -ENOMEM;
  return NULL;
}

void kz__hub_destroy(struct kz__hub *hub)
{
  struct kz_green *main = hub->main;
  while (!kz__list_empty(&hub->zombies))
    kz__green_release(kz__container_of(hub->zombies.next, struct kz_green, all));
  kz__monitor_remove(hub);
  kz__tls_hub = NULL;
  kz__os_setspecific(hub_key, NULL);
  kz__debug_thread_term(hub);
  ev_ref(hub->loop);
  ev_async_stop(hub->loop, &hub->wakeup);
  kz__calls_term(hub);
  kz__fdtab_term(hub);
  ev_loop_destroy(hub->loop);
  kz__handle_free(main->id);
  free(main);
  kz__stack_put(hub, &hub->hub_stack);
  kz__stack_cache_term(hub);
  free(hub);
}

/* Note E: nothing can ever happen again on this hub. */
static void hub_deadlock(struct kz__hub *hub)
{
  if (!kz__wake(hub->main, -EDEADLK)) {
    kz__say("hub deadlock: nothing is ready and nothing can wake the parked green threads");
    abort();
  }
}

void *kz__hub_loop(void *arg)
{
  struct kz__hub *hub = arg;
  kz__switched(hub, NULL);
  for (;;) {
    bool busy, alive;
    kz__verify(hub);
    __atomic_store_n(&hub->pass, hub->pass + 1, __ATOMIC_RELAXED); /* monitor.c reads */
    kz__run_soon(hub);
    busy = hub->run_head || !kz__list_empty(&hub->soon);
    __atomic_store_n(&hub->in_loop, true, __ATOMIC_RELAXED);
    alive = ev_run(hub->loop, busy ? EVRUN_NOWAIT : EVRUN_ONCE);
    kz__fd_flush(hub);
    __atomic_store_n(&hub->in_loop, false, __ATOMIC_RELAXED);
    if (!hub->run_head) {
      if (!busy && !alive && !ev_pending_count(hub->loop) && kz__list_empty(&hub->soon) &&
          !atomic_load_explicit(&hub->inbox, memory_order_relaxed))
        hub_deadlock(hub);
      continue;
    }
    hub->budget = hub->nready + KZ__BUDGET;
    kz__schedule(hub);
  }
}
