/* group.c: groups of green threads bounded at N at once (gevent.pool.Pool,
 * asyncio.TaskGroup with a Semaphore), joined or cancelled as a unit, and
 * kz_map, which runs a function over an array through one.
 *
 * Notes.
 * A. Members are detached green threads with a done hook (struct member)
 *    that keeps the group's count; a finishing member frees a place, wakes
 *    one spawner waiting for it, and when it was the last, every joiner.
 *    A spawner re-checks the count after waking (a try-spawn may have taken
 *    the place meanwhile), so the bound always holds.
 * B. The group remembers the first error a member finished with (kz_fail;
 *    cancellations are not errors: kz_group_cancel is how a group is
 *    stopped).  In fail-fast mode (kz_map) that first error also cancels
 *    every other member and refuses later spawns with ECANCELED.
 * C. A group belongs to no hub: green threads of any hub spawn into it,
 *    join it and cancel it.  A member runs on the hub of the thread that
 *    spawned it; the group's lock (sched.c note F) guards the count, the
 *    members and both wait queues, and its waiters wait as on any object
 *    of several hubs.  A spawn reserves its place under the lock, spawns
 *    without it (kz__spawn allocates), then links the member; a
 *    cancellation of the whole group in between is caught by a generation
 *    count (cancels), and the new member cancels itself.  Only a green
 *    thread's own hub may cancel it, so a member of another hub is
 *    cancelled by a message posted to its hub, which names it by handle:
 *    one that finished meanwhile is simply not found.
 */
#include "internal.h"

#include <stdlib.h>

struct kz_group {
  struct kz__spin lock;       /* guards everything below (note C) */
  size_t limit;               /* members at once; 0: unbounded */
  size_t active;              /* members running, or places reserved by spawns */
  int first_error;            /* note B; 0 if none */
  bool fail_fast;             /* note B */
  unsigned cancels;           /* cancel_all calls so far (note C) */
  struct kz__link members;    /* struct member */
  struct kz__waitq room;      /* spawners waiting for a place */
  struct kz__waitq idle;      /* joiners waiting for active == 0 */
};

/* A member's link to its group, freed when it finishes. */
struct member {
  struct kz__done_hook hook;  /* on the green thread */
  struct kz__link link;       /* in group->members */
  struct kz_group *grp;
  struct kz_green *g;
};

/* A cancellation posted to a member's hub (note C). */
struct cancel_msg {
  struct kz__post post;
  kz_green_t id;
};

static void posted_cancel(struct kz__post *p)
{
  struct cancel_msg *c = kz__container_of(p, struct cancel_msg, post);
  struct kz_green *g = kz__green_get(c->id);
  if (g && g->hub == kz__tls_hub)
    kz__cancel(g);
  free(c);
}

/* Cancel g, a member of any hub (note C).  Does not switch. */
static void cancel_member(struct kz_green *g)
{
  struct cancel_msg *c;
  if (g->hub == kz__tls_hub) {
    kz__cancel(g);
  } else if ((c = malloc(sizeof *c))) {
    c->id = g->id;
    c->post.fn = posted_cancel;
    kz__hub_post(g->hub, &c->post);
  }
}

/* With grp's lock held. */
static void cancel_all(struct kz_group *grp)
{
  grp->cancels++;
  for (struct kz__link *l = grp->members.next; l != &grp->members; l = l->next)
    cancel_member(kz__container_of(l, struct member, link)->g);
}

/* With grp's lock held, a place was given back: claim a spawner waiting for
   one, and every joiner if none is taken (delivered by the caller). */
static void place_freed(struct kz_group *grp, struct kz__link *claimed)
{
  struct kz__waiter *w = kz__xwake_claim(&grp->room, 0);
  if (w)
    kz__list_push(claimed, &w->link);
  if (grp->active == 0)
    kz__xwake_claim_all(&grp->idle, 0, claimed);
}

static void member_done(struct kz__done_hook *h, struct kz_green *g)
{
  struct member *m = kz__container_of(h, struct member, hook);
  struct kz_group *grp = m->grp;
  struct kz__link claimed;
  kz__list_init(&claimed);
  kz__spin_lock(&grp->lock);
  kz__list_remove(&m->link);
  grp->active--;
  if ((g->flags & KZ__G_FAILED) && g->state != KZ_CANCELLED && !grp->first_error) {
    grp->first_error = g->error;
    if (grp->fail_fast)
      cancel_all(grp);
  }
  place_freed(grp, &claimed);
  kz__spin_unlock(&grp->lock);
  kz__xwake_deliver_all(&claimed);
  free(m);
}

struct kz_group *kz_group_new(size_t limit)
{
  struct kz_group *grp = calloc(1, sizeof *grp);
  if (!grp) {
    errno = ENOMEM;
    return NULL;
  }
  grp->limit = limit;
  kz__list_init(&grp->members);
  kz__waitq_init(&grp->room);
  kz__waitq_init(&grp->idle);
  return grp;
}

/* With grp's lock held: queue the running green thread on q, release the
   lock, park, and take the lock again. */
static int group_wait(struct kz_group *grp, struct kz__waitq *q, struct kz_green *g, double deadline)
{
  struct kz__waiter w;
  int r;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .arg2 = (uintptr_t)grp, .what = "group"};
  kz__xwait_queue(q, &w, g);
  kz__spin_unlock(&grp->lock);
  r = kz__xwait_park(&w, &grp->lock, deadline);
  kz__spin_lock(&grp->lock);
  return r;
}

/* A spawn that reserved a place and then failed gives it back. */
static void unreserve(struct kz_group *grp)
{
  struct kz__link claimed;
  kz__list_init(&claimed);
  kz__spin_lock(&grp->lock);
  grp->active--;
  place_freed(grp, &claimed);
  kz__spin_unlock(&grp->lock);
  kz__xwake_deliver_all(&claimed);
}

/* Spawn a member on the caller's hub once there is room, waiting until
   deadline (0: no wait). */
static kz_green_t group_spawn(struct kz_group *grp, kz_fn fn, void *arg, double deadline,
                              bool wait)
{
  struct kz_spawn_opts o = {.detached = 1};
  struct kz__hub *hub;
  struct member *m;
  unsigned cancels;
  int err = 0;
  if (!grp || !fn)
    return errno = EINVAL, 0;
  if (!(hub = kz__hub_get(&err)))
    return errno = -err, 0;
  kz__spin_lock(&grp->lock);
  while (grp->limit && grp->active >= grp->limit && err == 0) {
    if (!wait)
      err = -EAGAIN;
    else if (!hub->current)
      err = -EPERM;
    else
      err = group_wait(grp, &grp->room, hub->current, deadline);
  }
  if (err == 0 && grp->fail_fast && grp->first_error)
    err = -ECANCELED;
  if (err == 0)
    grp->active++; /* the place is ours (note C) */
  cancels = grp->cancels;
  kz__spin_unlock(&grp->lock);
  if (err)
    return errno = -err, 0;
  if (!(m = malloc(sizeof *m))) {
    unreserve(grp);
    return errno = ENOMEM, 0;
  }
  if (!(m->g = kz__spawn(hub, fn, arg, &o, NULL, 0, &err))) {
    free(m);
    unreserve(grp);
    return errno = -err, 0;
  }
  m->grp = grp;
  m->hook.fn = member_done;
  kz__list_push(&m->g->done_hooks, &m->hook.link);
  kz__spin_lock(&grp->lock);
  kz__list_push(&grp->members, &m->link);
  if (grp->cancels != cancels) /* the group was cancelled meanwhile (note C) */
    kz__cancel(m->g);
  kz__spin_unlock(&grp->lock);
  return m->g->id;
}

kz_green_t kz_group_spawn(struct kz_group *grp, kz_fn fn, void *arg, double timeout)
{
  return group_spawn(grp, fn, arg, kz__deadline(timeout), true);
}

kz_green_t kz_group_try_spawn(struct kz_group *grp, kz_fn fn, void *arg)
{
  return group_spawn(grp, fn, arg, 0, false);
}

/* Wait until no member runs, or until deadline. */
static int group_join(struct kz_group *grp, double deadline)
{
  struct kz_green *g;
  int r = 0;
  if (!grp)
    return kz__fail_errno(-EINVAL);
  if (!kz__hub_get(&r))
    return kz__fail_errno(r);
  g = kz__self();
  kz__spin_lock(&grp->lock);
  while (grp->active && r == 0)
    r = g ? group_wait(grp, &grp->idle, g, deadline) : -EPERM;
  if (!grp->active)
    r = grp->first_error ? -grp->first_error : 0;
  kz__spin_unlock(&grp->lock);
  return r ? kz__fail_errno(r) : 0;
}

int kz_group_join(struct kz_group *grp, double timeout)
{
  return group_join(grp, kz__deadline(timeout));
}

int kz_group_cancel(struct kz_group *grp)
{
  if (!grp)
    return kz__fail_errno(-EINVAL);
  kz__spin_lock(&grp->lock);
  cancel_all(grp);
  kz__spin_unlock(&grp->lock);
  return 0;
}

long kz_group_size(struct kz_group *grp)
{
  size_t n;
  if (!grp)
    return kz__fail_errno(-EINVAL);
  kz__spin_lock(&grp->lock);
  n = grp->active;
  kz__spin_unlock(&grp->lock);
  return (long)n;
}

int kz_group_free(struct kz_group *grp)
{
  bool busy;
  if (!grp)
    return kz__fail_errno(-EINVAL);
  kz__spin_lock(&grp->lock);
  busy = grp->active || !kz__waitq_empty(&grp->room) || !kz__waitq_empty(&grp->idle);
  kz__spin_unlock(&grp->lock);
  if (busy)
    return kz__fail_errno(-EBUSY);
  free(grp);
  return 0;
}

/* ---- map ------------------------------------------------------------------------- */

struct map_item {
  kz_fn fn;
  void *arg;
  void **result;
};

static void *map_run(void *p)
{
  struct map_item *it = p;
  *it->result = it->fn(it->arg);
  return NULL;
}

/* Cancel what is left and wait for it, whatever the caller's state. */
static void map_stop(struct kz_group *grp)
{
  struct kz_green *self = kz__self();
  struct kz__shield s;
  kz_group_cancel(grp);
  kz__shield_up(self, &s);
  kz_group_join(grp, KZ_FOREVER);
  kz__shield_down(self, &s);
}

int kz_map(kz_fn fn, void *const *args, void **results, size_t n, size_t limit, double timeout)
{
  double deadline = kz__deadline(timeout);
  struct map_item *items;
  struct kz_group *grp;
  int r = 0;
  if (!fn || (n && (!args || !results)))
    return kz__fail_errno(-EINVAL);
  if (!kz__hub_get(&r))
    return kz__fail_errno(r);
  if (!kz__self())
    return kz__fail_errno(-EPERM);
  if (!(grp = kz_group_new(limit)))
    return -1;
  if (n > SIZE_MAX / sizeof *items || !(items = malloc((n ? n : 1) * sizeof *items))) {
    kz_group_free(grp);
    return kz__fail_errno(-ENOMEM);
  }
  grp->fail_fast = true;
  for (size_t i = 0; i < n && r == 0; i++) {
    items[i] = (struct map_item){fn, args[i], &results[i]};
    results[i] = NULL;
    if (!group_spawn(grp, map_run, &items[i], deadline, true))
      r = -errno;
  }
  if (r == 0 && group_join(grp, deadline) < 0)
    r = -errno;
  if (r < 0) {
    map_stop(grp);
    if (r == -ECANCELED && grp->first_error)
      r = -grp->first_error; /* refused to spawn after a member's error */
  }
  kz_group_free(grp);
  free(items);
  return r ? kz__fail_errno(r) : 0;
}
