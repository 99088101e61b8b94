/* green.c: green thread lifecycle (spawn, start, finish, join, detach,
 * cancel, exit), names, states, enumeration, and kz_run.
 *
 * States (enum kz_state, plus KZ__S_READY inside the hub):
 *
 *   PENDING --dispatched--> RUNNING <--> READY (in the run queue)
 *      |                      |  ^
 *      | cancelled            |  | woken (kz__wake)
 *      v                      v  |
 *   CANCELLED <-- finish -- BLOCKED (parked)
 *   DONE      <-- finish --/
 *
 * A finished green thread that is not detached stays a zombie (its stack and
 * result kept) until kz_join releases it, like a joinable pthread.
 *
 * Notes.
 * A. For stacks kudzu allocates, struct kz_green sits at the top of the stack
 *    it describes: spawning touches one page, and an idle green thread costs
 *    that page plus a 16-byte handle slot.  Handles are what callers hold,
 *    so a stale one never reaches the (possibly recycled) struct.
 * B. A green thread cancelled before it started still gets dispatched once,
 *    on its own stack, so that it finishes through the one path that wakes
 *    joiners and runs done hooks; its function is never called.
 * C. A green thread whose function returns makes its last switch from the
 *    trampoline, at the depth of its first one: kz__green_entry returns, and
 *    kz__trampoline jumps to kz__schedule.  The calls it made are then all
 *    returned, so the CPU's return-address predictor is in step when the
 *    joiner resumes (measured: spawn + join 147 ns -> 105 ns).  kz_exit and
 *    kz_fail switch from deeper down, as they must.
 */
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct kz__hub *finish(struct kz__hub *hub, struct kz_green *g, void *result, int error);

/* The body of every green thread, called by kz__trampoline.  It returns
   the hub to the trampoline, which then jumps (not calls) to kz__schedule
   for the last switch: note C. */
void *kz__green_entry(void *arg)
{
  struct kz_green *g = arg;
  void *result = NULL;
  kz__switched(g->hub, NULL);
  g->flags |= KZ__G_STARTED;
  g->state = KZ_RUNNING;
  if (!(g->flags & KZ__G_CANCEL)) /* note B */
    result = g->fn(g->arg);
  return finish(g->hub, g, result, 0);
}

struct kz_green *kz__green_main(struct kz__hub *hub)
{
  struct kz_green *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->id = kz__handle_new(KZ__H_GREEN, g);
  if (!g->id) {
    free(g);
    return NULL;
  }
  g->hub = hub;
  g->state = KZ_RUNNING;
  g->flags = KZ__G_MAIN | KZ__G_OWN_STRUCT | KZ__G_STARTED | KZ__G_DETACHED;
  kz__park_timer_init(g);
  kz__waitq_init(&g->joiners);
  kz__list_init(&g->done_hooks);
  strcpy(g->name, "main");
  kz__list_push(&hub->all, &g->all);
  hub->nlive = 1;
  hub->sig.os = kz__sigmask_os_read(); /* what the OS thread blocks... */
  kz__sigmask_adopt(g, hub->sig.os);    /* ...becomes its own mask */
  return g;
}

struct kz_green *kz__spawn(struct kz__hub *hub, kz_fn fn, void *arg,
                           const struct kz_spawn_opts *opts, void *user_stack, size_t user_size,
                           int *err)
{
  struct kz__stack st;
  struct kz_green *g;
  char *top;
  int r;

  if (!fn ||
      (opts && opts->stack_size && (opts->stack_size < KZ_STACK_MIN || opts->stack_size > KZ_STACK_MAX)) ||
      (opts && (isnan(opts->delay) || opts->delay > KZ_TIMEOUT_MAX)) ||
      (user_stack && user_size < KZ_STACK_MIN)) {
    *err = -EINVAL;
    return NULL;
  }
  if (user_stack) {
    st = (struct kz__stack){.base = user_stack, .size = user_size, .user = 1};
    if (!(g = malloc(sizeof *g))) {
      *err = -ENOMEM;
      return NULL;
    }
    top = st.base + st.size;
  } else {
    if ((r = kz__stack_get(hub, opts ? opts->stack_size : 0, &st)) < 0) {
      *err = r;
      return NULL;
    }
    g = (struct kz_green *)(((uintptr_t)(st.base + st.size) - sizeof *g) & ~(uintptr_t)63);
    top = (char *)g;
  }
  g->id = kz__handle_new(KZ__H_GREEN, g);
  if (!g->id) {
    if (user_stack)
      free(g);
    else
      kz__stack_put(hub, &st);
    *err = -ENOMEM;
    return NULL;
  }
  /* Every field, written once (no memset: this is the spawn fast path). */
  g->sp = kz__switch_init(top, kz__green_entry, g, KZ__FPCTL_CURRENT);
  g->err = 0;
  g->state = KZ_PENDING;
  g->flags = user_stack ? KZ__G_OWN_STRUCT : 0;
  g->wake = 0;
  g->run_next = NULL;
  g->hub = hub;
  g->fn = fn;
  g->arg = arg;
  g->result = NULL;
  g->error = 0;
  g->deadline = 0;
  g->until = 0;
  g->stack = st;
  g->waiting.kind = KZ__WAIT_NONE;
  g->ext = NULL;
  g->sig = (struct kz__green_sig){0}; /* follows the main one's mask (kz__sig_owner) */
#ifdef KZ_ASAN
  g->asan_fake = NULL;
  g->asan_bottom = NULL;
  g->asan_size = 0;
#endif
  g->name[0] = 0;
  kz__park_timer_init(g);
  kz__waitq_init(&g->joiners);
  kz__list_init(&g->done_hooks);
  kz__list_push(&hub->all, &g->all);
  hub->nlive++;
  hub->nspawned++;
  if (opts) {
    if (opts->name) {
      strncpy(g->name, opts->name, sizeof g->name - 1);
      g->name[sizeof g->name - 1] = 0;
    }
    if (opts->detached)
      g->flags |= KZ__G_DETACHED;
    if (opts->delay > 0) {
      ev_timer_set(&g->timer, opts->delay, 0);
      ev_timer_start(hub->loop, &g->timer);
      return g;
    }
  }
  kz__ready(g);
  return g;
}

/* Everything a green thread does when it finishes, but the last switch:
   result, done hooks, joiners, the live list, and who frees it.  Returns the
   hub, for the switch. */
static struct kz__hub *finish(struct kz__hub *hub, struct kz_green *g, void *result, int error)
{
  struct kz__link *l;

  g->result = result;
  g->error = error;
  if (error)
    g->flags |= KZ__G_FAILED;
  g->state = (g->flags & KZ__G_CANCEL) ? KZ_CANCELLED : KZ_DONE;
  g->flags |= KZ__G_NO_CANCEL;
  while ((l = g->done_hooks.next) != &g->done_hooks) {
    struct kz__done_hook *h = kz__container_of(l, struct kz__done_hook, link);
    kz__list_remove(l);
    h->fn(h, g);
  }
  kz__waitq_wake_all(&g->joiners, 0);
  kz__list_remove(&g->all);
  hub->nlive--;
  kz__sig_leave(hub, g);
  if (hub->nlive == 1)
    kz__waitq_wake_all(&hub->quiesce, 0);
  if (g->flags & KZ__G_DETACHED)
    hub->dying = g; /* freed by whoever runs next (sched.c, note D) */
  else
    kz__list_push(&hub->zombies, &g->all);
  return hub;
}

void kz__green_finish(void *result, int error)
{
  struct kz__hub *hub = kz__tls_hub;
  kz__schedule(finish(hub, hub->current, result, error));
  __builtin_unreachable();
}

void (*kz__ext_release)(struct kz_green *g);

void kz__green_release(struct kz_green *g)
{
  struct kz__hub *hub = g->hub;
  struct kz__stack st = g->stack;
  /* Every way a green thread ends comes here exactly once (kz_join,
     kz_detach, a detached finish, kz_run's and the hub's reaping, the
     shim's joins): the one place where the shim's record can go with it. */
  if (g->ext && kz__ext_release)
    kz__ext_release(g);
  kz__handle_free(g->id);
  kz__list_remove(&g->all); /* from the zombies, if there */
  if (g->flags & KZ__G_OWN_STRUCT)
    free(g);
  if (!st.user)
    kz__stack_put(hub, &st);
}

struct kz_green *kz__green_get(kz_green_t h) { return kz__handle_get(h, KZ__H_GREEN); }

static bool finished(const struct kz_green *g)
{
  return g->state == KZ_DONE || g->state == KZ_CANCELLED;
}

/* ---- Public API --------------------------------------------------------- */

kz_green_t kz_spawn_with(kz_fn fn, void *arg, const struct kz_spawn_opts *opts)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err);
  struct kz_green *g = hub ? kz__spawn(hub, fn, arg, opts, NULL, 0, &err) : NULL;
  if (!g) {
    errno = -err;
    return 0;
  }
  return g->id;
}

kz_green_t kz_spawn(kz_fn fn, void *arg) { return kz_spawn_with(fn, arg, NULL); }

/* Look h up for an operation from this OS thread: -EINVAL or -EXDEV. */
static struct kz_green *lookup(kz_green_t h, int *err)
{
  struct kz_green *g = kz__green_get(h);
  if (!g) {
    *err = -EINVAL;
    return NULL;
  }
  if (g->hub != kz__tls_hub) {
    *err = -EXDEV;
    return NULL;
  }
  return g;
}

int kz_join(kz_green_t h, void **result, double timeout)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g, *self;
  struct kz__waiter w;
  int err = 0, r;
  void *res;

  if (!(g = lookup(h, &err)))
    return kz__fail_errno(err);
  if (!(self = hub->current))
    return kz__fail_errno(-EPERM);
  if (g == self)
    return kz__fail_errno(-EDEADLK);
  if (g->flags & (KZ__G_DETACHED | KZ__G_JOINING))
    return kz__fail_errno(-EINVAL);
  if (!finished(g)) {
    g->flags |= KZ__G_JOINING;
    self->waiting = (struct kz__wait_info){.kind = KZ__WAIT_JOIN, .arg2 = h};
    r = kz__waitq_wait(&g->joiners, &w, kz__deadline(timeout));
    g->flags &= ~KZ__G_JOINING;
    if (r < 0 && !finished(g))
      return kz__fail_errno(r);
  }
  res = g->result;
  r = g->state == KZ_CANCELLED ? -ECANCELED : (g->flags & KZ__G_FAILED) ? -g->error : 0;
  kz__green_release(g);
  if (result && (r == 0 || r == -ECANCELED))
    *result = res;
  return r ? kz__fail_errno(r) : 0;
}

int kz_detach(kz_green_t h)
{
  int err = 0;
  struct kz_green *g = lookup(h, &err);
  if (!g)
    return kz__fail_errno(err);
  if (g->flags & (KZ__G_DETACHED | KZ__G_JOINING))
    return kz__fail_errno(-EINVAL);
  if (finished(g)) {
    kz__green_release(g);
    return 0;
  }
  g->flags |= KZ__G_DETACHED;
  return 0;
}

int kz__cancel(struct kz_green *g)
{
  if (finished(g) || (g->flags & KZ__G_CANCEL))
    return 0;
  g->flags |= KZ__G_CANCEL;
  if (g->state == KZ_PENDING && ev_is_active(&g->timer)) { /* delayed start: start now */
    ev_timer_stop(g->hub->loop, &g->timer);
    kz__ready(g);
  } else if (g->state == KZ_BLOCKED && !(g->flags & KZ__G_NO_CANCEL)) {
    kz__wake(g, -ECANCELED);
  }
  return 0;
}

int kz_cancel(kz_green_t h)
{
  int err = 0;
  struct kz_green *g = lookup(h, &err);
  return g ? kz__cancel(g) : kz__fail_errno(err);
}

int kz_sleep(double seconds)
{
  struct kz_green *g;
  int err = 0, r;
  double dl;
  if (!kz__hub_get(&err))
    return kz__fail_errno(err);
  if (!(g = kz__self()))
    return kz__fail_errno(-EPERM);
  if ((g->flags & (KZ__G_CANCEL | KZ__G_NO_CANCEL)) == KZ__G_CANCEL)
    return kz__fail_errno(-ECANCELED);
  if (isnan(seconds))
    return kz__fail_errno(-EINVAL);
  if (!(seconds > 0)) {
    kz__yield();
    return 0;
  }
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SLEEP};
  dl = kz__deadline(seconds);
  r = kz__park(dl);
  if (r == -ETIMEDOUT && !(g->deadline > 0 && g->deadline < dl))
    return 0; /* its own deadline, not a scoped one */
  return r == 0 ? 0 : kz__fail_errno(r);
}

kz_green_t kz_self(void)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err);
  if (!hub) {
    errno = -err;
    return 0;
  }
  if (!hub->current) {
    errno = EPERM;
    return 0;
  }
  return hub->current->id;
}

void kz_exit(void *result)
{
  struct kz_green *g = kz__self();
  if (!g) {
    kz__say("kz_exit called outside a green thread");
    abort();
  }
  if (g->flags & KZ__G_MAIN) {
    struct kz__hub *hub = g->hub;
    struct kz__waiter w;
    g->flags |= KZ__G_NO_CANCEL;
    while (hub->nlive > 1)
      kz__waitq_wait(&hub->quiesce, &w, -1);
    kz__os_thread_exit(result);
  }
  kz__green_finish(result, 0);
}

void kz_fail(int err)
{
  struct kz_green *g = kz__self();
  if (!g || (g->flags & KZ__G_MAIN)) {
    kz__say("kz_fail called outside a spawned green thread");
    abort();
  }
  kz__green_finish(NULL, err > 0 ? err : EINVAL);
}

int kz_set_name(kz_green_t h, const char *name)
{
  struct kz_green *g = kz__green_get(h);
  if (!g || !name)
    return kz__fail_errno(-EINVAL);
  strncpy(g->name, name, sizeof g->name - 1);
  g->name[sizeof g->name - 1] = 0;
  return 0;
}

/* The name of g, or its default "green-<index>". */
const char *kz__green_name(struct kz_green *g, char buf[24])
{
  if (g->name[0])
    return g->name;
  snprintf(buf, 24, "green-%u", (unsigned)g->id);
  return buf;
}

int kz_get_name(kz_green_t h, char *buf, size_t len)
{
  struct kz_green *g = kz__green_get(h);
  char tmp[24];
  const char *name;
  size_t n;
  if (!g || !buf || !len)
    return kz__fail_errno(-EINVAL);
  name = kz__green_name(g, tmp);
  n = strlen(name);
  if (n >= len) {
    memcpy(buf, name, len - 1);
    buf[len - 1] = 0;
    return kz__fail_errno(-ERANGE);
  }
  memcpy(buf, name, n + 1);
  return 0;
}

int kz_state(kz_green_t h)
{
  struct kz_green *g = kz__green_get(h);
  if (!g)
    return kz__fail_errno(-EINVAL);
  return g->state == KZ__S_READY ? KZ_RUNNING : g->state;
}

const char *kz_state_name(int state)
{
  static const char *const names[] = {"pending", "running", "blocked", "done", "cancelled"};
  return state >= 0 && state <= KZ_CANCELLED ? names[state] : "invalid";
}

size_t kz_list(kz_green_t *out, size_t max)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz__link *l;
  size_t n = 0;
  if (!hub)
    return 0;
  for (l = hub->all.next; l != &hub->all; l = l->next, n++)
    if (out && n < max)
      out[n] = kz__container_of(l, struct kz_green, all)->id;
  return n;
}

int kz_run(kz_fn main, void *arg, void **result)
{
  int err = 0, r;
  bool created = kz__tls_hub == NULL;
  struct kz__hub *hub = kz__hub_get(&err);
  struct kz_green *g;
  struct kz__waiter w;
  struct kz_spawn_opts opts = {.name = "kz_run"};

  if (!hub)
    return kz__fail_errno(err);
  if (hub->current != hub->main || hub->in_run)
    return kz__fail_errno(-EBUSY);
  if (!(g = kz__spawn(hub, main, arg, &opts, NULL, 0, &err)))
    return kz__fail_errno(err);
  hub->in_run = true;
  hub->main->flags |= KZ__G_NO_CANCEL;
  r = kz_join(g->id, result, KZ_FOREVER) ? -errno : 0;
  /* Cancel and reap whatever main left behind, like asyncio.run. */
  while (hub->nlive > 1) {
    struct kz__link *l;
    for (l = hub->all.next; l != &hub->all; l = l->next)
      if (l != &hub->main->all)
        kz__cancel(kz__container_of(l, struct kz_green, all));
    if (kz__waitq_wait(&hub->quiesce, &w, -1) == -EDEADLK)
      break;
  }
  while (!kz__list_empty(&hub->zombies))
    kz__green_release(kz__container_of(hub->zombies.next, struct kz_green, all));
  hub->main->flags &= ~KZ__G_NO_CANCEL;
  hub->in_run = false;
  if (created && hub->nlive == 1 && !kz__hubs_member(hub)) /* hubs.c, note F */
    kz__hub_destroy(hub);
  return r ? kz__fail_errno(r) : 0;
}
