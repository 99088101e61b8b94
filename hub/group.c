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
 */
#include "internal.h"

#include <stdlib.h>

struct kz_group {
  struct kz__hub *hub;        /* owner hub */
  size_t limit;               /* members at once; 0: unbounded */
  size_t active;              /* members running */
  int first_error;            /* note B; 0 if none */
  bool fail_fast;             /* note B */
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

static void cancel_all(struct kz_group *grp)
{
  for (struct kz__link *l = grp->members.next; l != &grp->members; l = l->next)
    kz__cancel(kz__container_of(l, struct member, link)->g);
}

static void member_done(struct kz__done_hook *h, struct kz_green *g)
{
  struct member *m = kz__container_of(h, struct member, hook);
  struct kz_group *grp = m->grp;
  kz__list_remove(&m->link);
  free(m);
  grp->active--;
  if ((g->flags & KZ__G_FAILED) && g->state != KZ_CANCELLED && !grp->first_error) {
    grp->first_error = g->error;
    if (grp->fail_fast)
      cancel_all(grp);
  }
  kz__waitq_wake_one(&grp->room, 0, NULL);
  if (grp->active == 0)
    kz__waitq_wake_all(&grp->idle, 0);
}

struct kz_group *kz_group_new(size_t limit)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err);
  struct kz_group *grp;
  if (!hub) {
    errno = -err;
    return NULL;
  }
  if (!(grp = calloc(1, sizeof *grp))) {
    errno = ENOMEM;
    return NULL;
  }
  grp->hub = hub;
  grp->limit = limit;
  kz__list_init(&grp->members);
  kz__waitq_init(&grp->room);
  kz__waitq_init(&grp->idle);
  return grp;
}

/* Spawn a member once there is room, waiting until deadline (0: no wait). */
static kz_green_t group_spawn(struct kz_group *grp, kz_fn fn, void *arg, double deadline,
                              bool wait)
{
  struct kz_spawn_opts o = {.detached = 1};
  struct kz__waiter w;
  struct member *m;
  int err = 0;
  if (!grp || !fn)
    return errno = EINVAL, 0;
  if (grp->hub != kz__tls_hub)
    return errno = EXDEV, 0;
  while (grp->limit && grp->active >= grp->limit) {
    if (!wait)
      return errno = EAGAIN, 0;
    if (!grp->hub->current)
      return errno = EPERM, 0;
    grp->hub->current->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "group"};
    if ((err = kz__waitq_wait(&grp->room, &w, deadline)) < 0)
      return errno = -err, 0;
  }
  if (grp->fail_fast && grp->first_error)
    return errno = ECANCELED, 0;
  if (!(m = malloc(sizeof *m)))
    return errno = ENOMEM, 0;
  if (!(m->g = kz__spawn(grp->hub, fn, arg, &o, NULL, 0, &err))) {
    free(m);
    return errno = -err, 0;
  }
  m->grp = grp;
  m->hook.fn = member_done;
  kz__list_push(&m->g->done_hooks, &m->hook.link);
  kz__list_push(&grp->members, &m->link);
  grp->active++;
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
  struct kz__waiter w;
  int r = 0;
  if (!grp)
    return kz__fail_errno(-EINVAL);
  if (grp->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  while (grp->active && r == 0) {
    if (!grp->hub->current)
      return kz__fail_errno(-EPERM);
    grp->hub->current->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "group"};
    r = kz__waitq_wait(&grp->idle, &w, deadline);
  }
  if (grp->active)
    return kz__fail_errno(r);
  return grp->first_error ? kz__fail_errno(-grp->first_error) : 0;
}

int kz_group_join(struct kz_group *grp, double timeout)
{
  return group_join(grp, kz__deadline(timeout));
}

int kz_group_cancel(struct kz_group *grp)
{
  if (!grp)
    return kz__fail_errno(-EINVAL);
  if (grp->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  cancel_all(grp);
  return 0;
}

long kz_group_size(struct kz_group *grp)
{
  if (!grp)
    return kz__fail_errno(-EINVAL);
  if (grp->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  return (long)grp->active;
}

int kz_group_free(struct kz_group *grp)
{
  if (!grp)
    return kz__fail_errno(-EINVAL);
  if (grp->hub != kz__tls_hub)
    return kz__fail_errno(-EXDEV);
  if (grp->active || !kz__waitq_empty(&grp->room) || !kz__waitq_empty(&grp->idle))
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
  cancel_all(grp);
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
