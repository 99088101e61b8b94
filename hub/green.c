/* green.c: green thread lifecycle (spawn, start, finish, join, detach,
 * cancel, exit), names, states, enumeration, and kz_run; spawns on, and
 * operations on the green threads of, other hubs.
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
 *    that page plus a 24-byte handle slot.  Handles are what callers hold,
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
 * D. Across hubs: only a green thread's own hub touches it (its struct,
 *    flags, joiners, done hooks; releasing it puts its stack back in that
 *    hub's cache, which is not shared).  A call with a handle of another
 *    hub's green thread finds that hub in the handle table (the slot
 *    records it, handle.c note C: the struct itself may be released and
 *    its stack unmapped at any moment) and sends what it wants done there,
 *    where the handle is looked up again: a handle that went stale on the
 *    way gets EINVAL from there.  Callers that place (kz_spawn_with,
 *    kz_spawn_future in future.c) find the hub first (kz__spawn_target);
 *    kz__spawn's own hub field is then THIS, one naming another hub is
 *    EXDEV there.
 * E. A spawn on another hub is made where it is asked for and adopted
 *    there, without a wait: the caller takes the stack (from the depot:
 *    the other hub's cache is its own, stack.c note G), the handle (owned
 *    by that hub) and fills in the struct, so every error is its own to
 *    report; then it posts the struct's own message (g->adopt), and that
 *    hub links it, counts it and readies it (or starts its delay's
 *    timer).  Until then the green thread is pending, as one whose start
 *    is delayed, and nothing but that hub touches it: anything another
 *    OS thread asks of it travels through the same mailbox, behind the
 *    adoption (the mailbox is one total order, remote.c note A); a green
 *    thread of that hub that got its handle meanwhile finds it pending
 *    and may join, detach or cancel it as such.  The message lives in
 *    the struct, which cannot go before it: a green thread is released
 *    only once it has finished, so once it has run.  Placement counts
 *    the green threads on their way (hub->sent less hub->taken).  A fork child does
 *    not adopt those made in the parent (kz__hubs_forks): their maker is
 *    a thread it does not have.  It was a round trip, the spawn made
 *    there while the caller waited.  The work moved, the crossings did
 *    not: one spawn + join costs what it did (the work, the thread's way
 *    there, the join's answer back), but a burst of spawns no longer
 *    waits a round trip each (bench_hubs burst: 2.2 us a pthread_create
 *    became 0.5-0.8 us).
 * F. kz_detach, kz_state and the names are round trips (kz__hub_call):
 *    exact answers (EINVAL for a detached one, the state as it is there),
 *    at the cost of a wait.  kz_cancel is not: cancelling is harmless on
 *    any state, so the request is posted and the caller goes on (EINVAL
 *    only for a handle stale when called).  The mailbox keeps one OS
 *    thread's posts in order, so a cancel followed by a join from the same
 *    thread reaches the target's hub first.
 * G. A cross-hub kz_join parks the joiner on its own hub, held (its wakes
 *    come through its mailbox), and sends a request (struct xjoin) to the
 *    target's hub, which answers in one of two ways: settled (a reply with
 *    the outcome: the target had finished, or the join is refused), or
 *    hooked (a "seen" wake: the target runs, a done hook is on it, and it
 *    is marked as being joined, so a second join or a detach from anywhere
 *    gets EINVAL, as locally).  A joiner whose wait ends (timeout,
 *    cancellation) first waits, shielded, for that answer: a target that
 *    had already finished is then joined even with a timeout of 0, and
 *    the joiner knows whether a hook is there to take off.
 * H. Races, and who frees the request (two references, the joiner's and
 *    the target's hub's; the state moves by compare-and-swap only):
 *    - the target finishes while the request is in flight: the request
 *      finds it finished and settles (the target is released there);
 *    - the target finishes while the joiner gives up: the done hook's
 *      HOOKED->DONE and the joiner's HOOKED->ABANDONED race; whichever
 *      wins decides.  If the hook won, the outcome is on its way and the
 *      joiner waits for it (the join succeeds after all: the target is
 *      released, so an ETIMEDOUT would leave a stale handle and a lost
 *      result).  If the joiner won, the target stays a zombie, joinable
 *      again, and the hook only lets go;
 *    - the joiner gave up while hooked: the hook must come off, or the
 *      target would stay "being joined" and a retry would get EINVAL.  The
 *      joiner posts the request once more as an unhook (it was consumed:
 *      the target's hub ran it), which takes the hook off unless the
 *      target finished first, and carries the joiner's reference.  Posted
 *      from the joiner's OS thread, it reaches the target's hub before that
 *      thread's next request, so a join retried after ETIMEDOUT works;
 *    - the hub side lets go of its reference before it posts the reply,
 *      and the joiner leaves (dropping the last) only once the reply has
 *      arrived, so the reply's delivery never touches freed memory; a
 *      "seen" wake, if sent, was posted earlier by the same hub and
 *      arrives before the reply.
 * I. The target is released on its own hub: by the request (finished
 *    already), or by its finish (the hook marks it detached; its handle is
 *    freed at once, before the reply, so that the handle is stale when
 *    kz_join returns, as after a local join, though the struct goes only
 *    after the target's last switch).  The joiner gets only the outcome
 *    and result, copied into the request.
 * J. The target's hub must live until the request is settled.  The set's
 *    hubs live as long as the process (hubs.c, note F).  A hub outside the
 *    set that is torn down (its kz_run returning, a remote hub stopped)
 *    reaps its zombies and never runs the messages left in its mailbox: a
 *    join of one of its green threads racing with that teardown is not
 *    answered.  Not handled: such a hub's green threads are its own
 *    program's to join before it stops it.
 * K. A spawn on another hub moves the new green thread's memory between
 *    two CPUs twice: its maker writes the struct and the first frame at
 *    the top of a stack the other hub used last, and that hub then reads
 *    them, and the shim's record (g->ext, kz__ext_size bytes) and the TLS
 *    area's first line (g->tp).  Each line the other CPU holds takes 30
 *    to 150 ns to come (hub.c, note N), and taken one after another, as
 *    the code reaches them (the struct, then the record it points to, then
 *    the area), they added up.  So each side asks for all of them first
 *    (kz__prefetch, for writing), and they come together.  Timed with
 *    rdtsc around each step of bench_hubs spawn (a measuring build), the
 *    maker's kz__spawn went from 0.6 to 0.35 us, the other hub's
 *    adoption from about 0.65 to 0.45.  The maker also asks first for the
 *    lines of the stack depot, the other hub's TLS areas and the count of
 *    threads (preload/thread.c, spawn), whose locks and counters it then
 *    changes one after another: 0.95-0.97x in two series of ten pairs of
 *    bench_hubs spawn.
 * L. Room for the shim's record: on stacks kudzu allocates, kz__ext_size
 *    bytes (rounded to a cache line) between the struct and the first
 *    frame, g->ext_room, which the shim's record of the green thread takes
 *    (preload/thread.c, note B).  The record then comes with the stack:
 *    no allocation, no depot of records whose lock and whose record's link
 *    the maker of a spawn on another hub read one after the other, each
 *    from the other CPU, and its lines are the struct's neighbours, asked
 *    for with them (note K).  A stack of the program's (its own struct is
 *    malloc'd) has none.
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
  g->id = kz__handle_new_owned(KZ__H_GREEN, g, hub);
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

struct kz__hub *kz__spawn_target(struct kz__hub *here, int which, int *err)
{
  struct kz__hub *to = which == KZ_HUB_THIS  ? here
                       : which == KZ_HUB_ANY ? kz__hubs_place(here)
                       : which > 0           ? kz__hubs_at(here, (unsigned)(which - 1))
                                             : NULL;
  if (!to)
    *err = -EINVAL;
  return to;
}

/* kz__spawn makes a green thread on the hub it is given: a hub field that
   names another is refused (-EXDEV, note D), a bad one -EINVAL. */
static int spawn_here_only(struct kz__hub *hub, int which)
{
  int err = 0;
  struct kz__hub *to = which == KZ_HUB_ANY ? NULL : kz__spawn_target(hub, which, &err);
  return to == hub ? 0 : err ? err : -EXDEV;
}

void (*kz__ext_adopt)(struct kz_green *g);
size_t kz__ext_size;

/* g joins hub, the one it was made for (hub thread): live, then ready, or
   its start delayed by delay seconds (none once cancelled). */
static void adopt(struct kz__hub *hub, struct kz_green *g, double delay)
{
  kz__list_push(&hub->all, &g->all);
  __atomic_store_n(&hub->nlive, hub->nlive + 1, __ATOMIC_RELAXED); /* read by placement (hubs.c) */
  hub->nshared += !g->tp;
  hub->nspawned++;
  if (delay > 0 && !(g->flags & KZ__G_CANCEL)) {
    ev_timer_set(&g->timer, delay, 0);
    ev_timer_start(hub->loop, &g->timer);
    return;
  }
  kz__ready(g);
}

struct kz_green *kz__spawn(struct kz__hub *hub, kz_fn fn, void *arg,
                           const struct kz_spawn_opts *opts, void *user_stack, size_t user_size,
                           int *err)
{
  bool here = hub == kz__tls_hub;
  double delay = opts ? opts->delay : 0;
  size_t room = (kz__ext_size + 63) & ~(size_t)63; /* note L */
  struct kz__stack st;
  struct kz_green *g;
  char *top;
  int r;

  if (opts && opts->hub != KZ_HUB_THIS && (r = spawn_here_only(hub, opts->hub)) < 0) {
    *err = r;
    return NULL;
  }
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
    /* another hub's cache is its own: the depot's (stack.c, note G) */
    if ((r = kz__stack_get(here ? hub : NULL, opts ? opts->stack_size : 0, &st)) < 0) {
      *err = r;
      return NULL;
    }
    g = (struct kz_green *)(((uintptr_t)(st.base + st.size) - sizeof *g) & ~(uintptr_t)63);
    top = (char *)g - room; /* note L: the shim's record, if any, under the struct */
    kz__prefetch(top - KZ__SW_INIT_BYTES, KZ__SW_INIT_BYTES + room + sizeof *g); /* note K */
  }
  g->id = kz__handle_new_owned(KZ__H_GREEN, g, hub);
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
  g->tp = NULL;      /* the OS thread's TLS: the struct may be a former pthread's */
  g->handoff = NULL; /* on its stack, whose TLS area is gone (preload/thread.c) */
  g->fn = fn;
  g->arg = arg;
  g->result = NULL;
  g->error = 0;
  g->deadline = 0;
  g->until = 0;
  g->stack = st;
  g->waiting.kind = KZ__WAIT_NONE;
  g->ext = NULL;
  g->ext_room = user_stack || !room ? NULL : top;
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
  if (opts) {
    if (opts->name) {
      strncpy(g->name, opts->name, sizeof g->name - 1);
      g->name[sizeof g->name - 1] = 0;
    }
    if (opts->detached)
      g->flags |= KZ__G_DETACHED;
  }
  if (!here) { /* note E: the rest there */
    kz__list_init(&g->all); /* on no list until adopted (kz__green_forget) */
    g->until = delay > 0 ? delay : 0;
    g->adopt_gen = kz__hubs_forks();
    return g;
  }
  adopt(hub, g, delay);
  return g;
}

/* The message of note E, on g's hub. */
static void adopt_run(struct kz__post *p)
{
  struct kz_green *g = kz__container_of(p, struct kz_green, adopt);
  struct kz__hub *hub;
  double delay;
  kz__prefetch(g, sizeof *g); /* note K: what its maker wrote, all at once */
  kz__prefetch(g->sp, KZ__SW_INIT_BYTES);
  if (g->ext)
    kz__prefetch(g->ext, kz__ext_size);
  if (g->tp)
    kz__prefetch(g->tp, 64);
  hub = g->hub;
  delay = g->until;
  if (g->adopt_gen == kz__hubs_forks()) { /* else made in the parent, by a thread the child does not have */
    g->until = 0;
    adopt(hub, g, delay);
    if (g->ext && kz__ext_adopt)
      kz__ext_adopt(g);
  }
  /* after the live count: placement, reading this first, never counts it
     out of both (hubs.c, note A); this hub's alone to write */
  atomic_store_explicit(&hub->taken, atomic_load_explicit(&hub->taken, memory_order_relaxed) + 1,
                        memory_order_release);
}

void kz__green_own_tls(struct kz_green *g, void *tp)
{
  if (!g->tp && !kz__list_empty(&g->all)) /* adopted already: counted as sharing */
    g->hub->nshared--;
  g->tp = tp;
}

void kz__spawn_post(struct kz_green *g)
{
  struct kz__hub *hub = g->hub;
  atomic_fetch_add_explicit(&hub->sent, 1, memory_order_relaxed); /* placement counts it (hubs.c) */
  g->adopt.fn = adopt_run;
  kz__hub_post(hub, &g->adopt);
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
  /* gone from the count before a hook wakes a joiner of another hub, whose
     next spawn's placement reads it (hubs.c, note A) */
  kz__list_remove(&g->all);
  __atomic_store_n(&hub->nlive, hub->nlive - 1, __ATOMIC_RELAXED);
  hub->nshared -= !g->tp;
  /* its mask counts no more before a hook wakes a joiner of another hub:
     once the join returns, the OS thread must block what the others all
     block (a signal sent then met the default action, sig_new_thread) */
  kz__sig_leave(hub, g);
  while ((l = g->done_hooks.next) != &g->done_hooks) {
    struct kz__done_hook *h = kz__container_of(l, struct kz__done_hook, link);
    kz__list_remove(l);
    h->fn(h, g);
  }
  kz__waitq_wake_all(&g->joiners, 0);
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
  if (g->id) /* 0: made stale already (a join from another hub, note I) */
    kz__handle_free(g->id); /* first: another hub that misses the record finds the handle stale */
  if (g->ext && kz__ext_release)
    kz__ext_release(g);
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

/* ---- Across hubs (notes D to J) ---------------------------------------------- */

/* The hub of green thread h, from any thread, without touching the green
   thread (handle.c, note C); NULL if h is 0, stale or malformed. */
static struct kz__hub *owner_of(kz_green_t h) { return kz__handle_owner(h, KZ__H_GREEN); }

/* An operation on a green thread of any hub, run on its hub (note F). */
struct green_call {
  kz_green_t id;
  int (*op)(struct kz_green *g, struct green_call *c); /* >= 0 or -errno */
  int r;             /* out: op's result, -EINVAL if h went stale */
  const char *name;  /* kz_set_name */
  char *buf;         /* kz_get_name */
  size_t len;
};

static void green_call_run(void *arg)
{
  struct green_call *c = arg;
  struct kz_green *g = kz__green_get(c->id);
  c->r = g ? c->op(g, c) : -EINVAL;
}

/* Run op on h's hub (at once if that is the caller's); its result. */
static int on_green(kz_green_t h, int (*op)(struct kz_green *g, struct green_call *c),
                    struct green_call *c)
{
  struct kz__hub *hub = owner_of(h);
  int r;
  if (!hub)
    return -EINVAL;
  c->id = h;
  c->op = op;
  r = kz__hub_call(hub, green_call_run, c);
  return r < 0 ? r : c->r;
}

/* kz_join of a green thread of another hub (notes G to I).  States:
 *   XJ_POSTED     the request is on its way to the target's hub
 *   XJ_HOOKED     the target runs; a done hook will settle the join
 *   XJ_DONE       settled: outcome set, the reply on its way to the joiner
 *   XJ_ABANDONED  the joiner gave up (timeout, cancellation) once hooked
 * Two references: the joiner's and the target's hub's (its request, then
 * its hook); the last to let go frees it. */
enum { XJ_POSTED, XJ_HOOKED, XJ_DONE, XJ_ABANDONED };

struct xjoin {
  struct kz__post post;         /* the request, then the unhook, to the target's hub */
  struct kz__done_hook hook;    /* on the target while hooked */
  struct kz__remote_wake seen;  /* to the joiner: hooked */
  struct kz__remote_wake reply; /* to the joiner: settled */
  kz_green_t id;                /* the target */
  _Atomic int state;            /* XJ_* */
  _Atomic int refs;             /* the joiner's, the target's hub's */
  bool hooked;                  /* hook is on the target (the target's hub thread only) */
  int r;                        /* outcome once settled: kz_join's 0 or -errno */
  void *result;                 /* and the target's result */
};

static void xjoin_unref(struct xjoin *x)
{
  if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1)
    free(x);
}

/* Settle the join from state `from` (the target's hub): false if the
   joiner gave up first. */
static bool xjoin_settle(struct xjoin *x, int from)
{
  return atomic_compare_exchange_strong(&x->state, &from, XJ_DONE);
}

/* The settled join's outcome goes back to the joiner; the hub side lets
   go first: the joiner holds x until the reply has arrived (note H). */
static void xjoin_reply(struct xjoin *x, int r, void *result)
{
  x->r = r;
  x->result = result;
  xjoin_unref(x);
  kz__wake_remote(&x->reply);
}

/* What kz_join reports for finished g. */
static int outcome(const struct kz_green *g)
{
  return g->state == KZ_CANCELLED ? -ECANCELED : (g->flags & KZ__G_FAILED) ? -g->error : 0;
}

/* Done hook: the target finishes with a joiner on another hub (note H). */
static void xjoin_done(struct kz__done_hook *h, struct kz_green *g)
{
  struct xjoin *x = kz__container_of(h, struct xjoin, hook);
  x->hooked = false;
  g->flags &= ~KZ__G_JOINING;
  if (!xjoin_settle(x, XJ_HOOKED)) { /* abandoned: g stays joinable */
    xjoin_unref(x);
    return;
  }
  g->flags |= KZ__G_DETACHED; /* finish releases it, here (note I) */
  kz__handle_free(g->id);     /* stale now, as after a local join */
  g->id = 0;
  xjoin_reply(x, outcome(g), g->result);
}

/* The request, on the target's hub. */
static void xjoin_request(struct kz__post *p)
{
  struct xjoin *x = kz__container_of(p, struct xjoin, post);
  struct kz_green *g = kz__green_get(x->id);
  if (!g || (g->flags & (KZ__G_DETACHED | KZ__G_JOINING))) {
    if (xjoin_settle(x, XJ_POSTED))
      xjoin_reply(x, -EINVAL, NULL);
    else
      xjoin_unref(x);
  } else if (finished(g)) { /* note G: the joiner still waits for this */
    int r = outcome(g);
    void *res = g->result;
    if (xjoin_settle(x, XJ_POSTED)) {
      kz__green_release(g); /* on its own hub (note I) */
      xjoin_reply(x, r, res);
    } else {
      xjoin_unref(x);
    }
  } else {
    int s = XJ_POSTED;
    if (!atomic_compare_exchange_strong(&x->state, &s, XJ_HOOKED)) {
      xjoin_unref(x);
      return;
    }
    g->flags |= KZ__G_JOINING;
    x->hooked = true;
    x->hook.fn = xjoin_done;
    kz__list_push(g->done_hooks.next, &x->hook.link); /* first: before other hooks */
    kz__wake_remote(&x->seen);
  }
}

/* The joiner gave up once hooked: take the hook off, if the target has not
   finished meanwhile (on the target's hub; note H). */
static void xjoin_unhook(struct kz__post *p)
{
  struct xjoin *x = kz__container_of(p, struct xjoin, post);
  if (x->hooked) {
    struct kz_green *g = kz__green_get(x->id); /* unfinished: valid */
    kz__list_remove(&x->hook.link);
    x->hooked = false;
    if (g)
      g->flags &= ~KZ__G_JOINING;
    xjoin_unref(x); /* the hook's */
  }
  xjoin_unref(x); /* the joiner's, which this message carried */
}

/* Park self, shielded, until the target's hub has answered the request:
   hooked (seen) or settled (reply), whichever it sent (note G). */
static void answered(struct kz_green *self, struct xjoin *x)
{
  struct kz__shield sh;
  kz__shield_up(self, &sh);
  while (!x->seen.arrived && !x->reply.arrived) {
    self->waiting = (struct kz__wait_info){.kind = KZ__WAIT_REMOTE, .what = "a join's request to another hub"};
    kz__park(-1);
  }
  kz__shield_down(self, &sh);
}

/* Join h, a green thread of hub there (another hub), from the running
   green thread self; as kz_join: 0 or -errno. */
static int join_remote(struct kz__hub *there, kz_green_t h, void **result, double timeout)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *self = hub->current;
  struct xjoin *x = malloc(sizeof *x);
  double dl = kz__deadline(timeout);
  int r = 0, s;
  void *res;
  if (!x)
    return -ENOMEM;
  *x = (struct xjoin){.post.fn = xjoin_request, .seen.g = self, .reply.g = self, .id = h};
  atomic_init(&x->state, XJ_POSTED);
  atomic_init(&x->refs, 2);
  kz__hub_hold(hub); /* the replies come through the mailbox */
  kz__hub_post(there, &x->post);
  while (!x->reply.arrived) {
    self->waiting = (struct kz__wait_info){.kind = KZ__WAIT_JOIN, .arg2 = h};
    if ((r = kz__park(dl)) == 0)
      continue; /* the request was seen, or spurious */
    answered(self, x); /* note G */
    if (x->reply.arrived)
      break;
    s = XJ_HOOKED;
    if (atomic_compare_exchange_strong(&x->state, &s, XJ_ABANDONED)) {
      x->post.fn = xjoin_unhook; /* carries the joiner's reference */
      kz__hub_post(there, &x->post);
      kz__hub_unhold(hub);
      return r;
    }
    kz__wait_remote(&x->reply, "a join's result from another hub"); /* settled: on its way */
  }
  kz__hub_unhold(hub);
  /* seen, if it was sent, arrived before reply: both come from the target's hub, in order */
  r = x->r;
  res = x->result;
  xjoin_unref(x);
  if (result && (r == 0 || r == -ECANCELED))
    *result = res;
  return r;
}

/* ---- Public API --------------------------------------------------------- */

kz_green_t kz_spawn_with(kz_fn fn, void *arg, const struct kz_spawn_opts *opts)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err), *to;
  struct kz_spawn_opts here;
  struct kz_green *g;
  kz_green_t id;
  if (!hub || !(to = opts ? kz__spawn_target(hub, opts->hub, &err) : hub))
    goto error;
  if (to == hub) {
    if (opts && opts->hub != KZ_HUB_THIS) {
      here = *opts;
      here.hub = KZ_HUB_THIS; /* placed already */
      opts = &here;
    }
    if (!(g = kz__spawn(hub, fn, arg, opts, NULL, 0, &err)))
      goto error;
    return g->id;
  }
  here = *opts;
  here.hub = KZ_HUB_THIS;
  if (!(g = kz__spawn(to, fn, arg, &here, NULL, 0, &err)))
    goto error;
  id = g->id;
  kz__spawn_post(g); /* note E: g may be gone once posted */
  return id;

error:
  errno = -err;
  return 0;
}

kz_green_t kz_spawn(kz_fn fn, void *arg) { return kz_spawn_with(fn, arg, NULL); }

int kz_join(kz_green_t h, void **result, double timeout)
{
  struct kz__hub *hub = kz__tls_hub, *there = owner_of(h);
  struct kz_green *g, *self;
  struct kz__waiter w;
  int r;
  void *res;

  if (!there)
    return kz__fail_errno(-EINVAL);
  if (!hub || !(self = hub->current))
    return kz__fail_errno(-EPERM);
  if (there != hub)
    return (r = join_remote(there, h, result, timeout)) < 0 ? kz__fail_errno(r) : 0;
  if (!(g = kz__green_get(h)))
    return kz__fail_errno(-EINVAL);
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
  r = outcome(g);
  kz__green_release(g);
  if (result && (r == 0 || r == -ECANCELED))
    *result = res;
  return r ? kz__fail_errno(r) : 0;
}

static int detach_op(struct kz_green *g, struct green_call *c)
{
  (void)c;
  if (g->flags & (KZ__G_DETACHED | KZ__G_JOINING))
    return -EINVAL;
  if (finished(g)) {
    kz__green_release(g);
    return 0;
  }
  g->flags |= KZ__G_DETACHED;
  return 0;
}

int kz_detach(kz_green_t h)
{
  struct green_call c;
  int r = on_green(h, detach_op, &c);
  return r < 0 ? kz__fail_errno(r) : 0;
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

/* A cancellation for a green thread of another hub (note F): posted, not
   waited for. */
struct xcancel {
  struct kz__post post;
  kz_green_t id;
};

static void xcancel_run(struct kz__post *p)
{
  struct xcancel *c = kz__container_of(p, struct xcancel, post);
  struct kz_green *g = kz__green_get(c->id);
  if (g)
    kz__cancel(g);
  free(c);
}

int kz_cancel(kz_green_t h)
{
  struct kz__hub *there = owner_of(h);
  struct xcancel *c;
  if (!there)
    return kz__fail_errno(-EINVAL);
  if (there == kz__tls_hub)
    return kz__cancel(kz__green_get(h));
  if (!(c = malloc(sizeof *c)))
    return kz__fail_errno(-ENOMEM);
  *c = (struct xcancel){.post.fn = xcancel_run, .id = h};
  kz__hub_post(there, &c->post);
  return 0;
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

static int set_name_op(struct kz_green *g, struct green_call *c)
{
  strncpy(g->name, c->name, sizeof g->name - 1);
  g->name[sizeof g->name - 1] = 0;
  return 0;
}

int kz_set_name(kz_green_t h, const char *name)
{
  struct green_call c = {.name = name};
  int r = name ? on_green(h, set_name_op, &c) : -EINVAL;
  return r < 0 ? kz__fail_errno(r) : 0;
}

/* The name of g, or its default "green-<index>". */
const char *kz__green_name(struct kz_green *g, char buf[24])
{
  if (g->name[0])
    return g->name;
  snprintf(buf, 24, "green-%u", (unsigned)g->id);
  return buf;
}

static int get_name_op(struct kz_green *g, struct green_call *c)
{
  char tmp[24];
  const char *name = kz__green_name(g, tmp);
  size_t n = strlen(name);
  if (n >= c->len) {
    memcpy(c->buf, name, c->len - 1);
    c->buf[c->len - 1] = 0;
    return -ERANGE;
  }
  memcpy(c->buf, name, n + 1);
  return 0;
}

int kz_get_name(kz_green_t h, char *buf, size_t len)
{
  struct green_call c = {.buf = buf, .len = len};
  int r = buf && len ? on_green(h, get_name_op, &c) : -EINVAL;
  return r < 0 ? kz__fail_errno(r) : 0;
}

static int state_op(struct kz_green *g, struct green_call *c)
{
  (void)c;
  return g->state == KZ__S_READY ? KZ_RUNNING : g->state == KZ__S_AWAY ? KZ_BLOCKED : g->state;
}

int kz_state(kz_green_t h)
{
  struct green_call c;
  int r = on_green(h, state_op, &c);
  return r < 0 ? kz__fail_errno(r) : r;
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
