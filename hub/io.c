/* io.c: green threads waiting on descriptors.
 *
 * Each hub keeps a table indexed by descriptor number; an entry holds one
 * ev_io shared by every green thread of the hub waiting on that descriptor,
 * with readers and writers queued separately.  The watcher asks libev for at
 * least the union of what its waiters want, and stays started after they
 * leave (note E).
 *
 * Notes.
 * A. epoll registers open files, not numbers.  If a descriptor is closed and
 *    its number reused while libev still believes the old registration
 *    stands, the new file is never watched and its waiters hang.  So every
 *    close the runtime can see (the shim's close, dup2, dup3, close_range,
 *    fclose, and the creation of a descriptor under a number it still
 *    watches; kz_close and kz_forget_fd for API users) goes through
 *    kz__fd_forget, which wakes the descriptor's waiters with EBADF, stops
 *    its watcher and marks the entry so its next start forces a fresh
 *    registration (ev_io_set sets EV__IOFDSET).  libev sends watcher changes
 *    to epoll once per loop pass, comparing old and new interest, so a stop
 *    and a restart within one pass cost no system call.
 * D. libev as Debian builds it asserts (aborts) when epoll_ctl says EBADF.
 *    Whenever a start will reach epoll_ctl (first use, after a forget, after
 *    a stop in an earlier pass), the descriptor is checked first with
 *    F_GETFD, so a closed one fails the wait with EBADF instead.  That costs
 *    one cheap system call on a path that makes one anyway.
 * E. Watchers are sticky.  A server's connection waits, is woken, reads,
 *    writes and waits again, thousands of times a second; stopping the
 *    watcher each time it is woken made every wait that came back in a later
 *    loop pass (most of them, with many connections: the hub polls every
 *    KZ__BUDGET switches) cost an F_GETFD and an epoll_ctl, doubling the
 *    system calls of a request.  Instead, a watcher whose waiters have left
 *    stays started and registered, unreferenced (ev_unref) so that it does
 *    not keep the loop alive, and a new waiter finds it armed: no system
 *    call.  Its interest shrinks only when an event finds nobody: the first
 *    such "stray" event per direction is let pass (a connection that reads
 *    before it waits again, pipelining), the second in a row trims that
 *    direction (a socket that stays writable, a peer sending to a program
 *    that no longer reads), so a level-triggered event can cost at most two
 *    spurious callbacks.  Events while the woken green threads have not yet
 *    come back from their waits are not stray: they have not read yet.
 *    The price is note A's condition in full: a sticky registration outlives
 *    its waiters, so a close the runtime cannot see (a raw syscall, a close
 *    inside libc) followed by the number's reuse would leave it stale.  So
 *    watchers are sticky only where the runtime sees descriptors being
 *    created: under the shim (kz__fd_sticky), whose creation calls forget
 *    the number they return (preload/fd.c, note E).  A program on the API
 *    alone may close a descriptor behind the hub's back, and it keeps the
 *    plain scheme: a watcher stops when its last waiter is woken or leaves,
 *    and a restart in a later pass registers the file anew.
 * B. The table is two-level (chunks of 1024 entries never move), because
 *    libev keeps pointers to the watchers.  There is no 1024-descriptor
 *    ceiling: it grows to whatever RLIMIT_NOFILE allows.
 * C. A descriptor libev cannot watch (closed, not pollable) comes back as
 *    EV_ERROR: every waiter fails with EBADF.
 * F. A close on one OS thread must reach the waiters and watchers of every
 *    hub, but another hub's table belongs to its thread.  kz__fd_forget acts
 *    on the caller's hub at once and, when other hubs exist, posts each a
 *    forget message.  It arrives a little later, when the number may already
 *    name a new file someone waits on: so every forget takes a number from a
 *    process-wide counter (the close's epoch), every waiter records the
 *    counter when it starts waiting, and a message wakes (EBADF) only the
 *    waiters older than its close, skips a watcher already forgotten since,
 *    and re-registers the watcher for the younger ones.  With no other hub
 *    and no watcher of the number on the caller's, a close has nobody to
 *    tell and nothing to forget, and the counter is not taken: a pre-fork
 *    server's parent closes (and accepts, fd.c note E) a descriptor per
 *    child, and the counter's page, written after each fork, was copied
 *    each time.
 * G. Wakes are batched.  libev calls io_cb once per ready descriptor, one
 *    after the other, and a wake reads the first waiter (on the waiting
 *    green thread's stack) and then its green thread: with many connections
 *    both are cold, two cache misses in a row per descriptor, the largest
 *    share of the hub's own time per request in an echo server.  So io_cb
 *    only notes the event and prefetches the waiter; kz__fd_flush, right
 *    after the loop pass, delivers the noted events in order, prefetching
 *    the green thread of the event WAKE_AHEAD places further on, so the
 *    misses overlap instead of adding up.  An event whose watcher a forget
 *    stopped or re-registered later in the same pass (note F) is dropped:
 *    it belongs to the file closed.  Errors (note C), and events that find
 *    no room when the list cannot grow, are delivered at once.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK 1024

/* One descriptor's watcher and waiters. */
struct fdw {
  ev_io io;              /* shared by all waiters; fd set once */
  struct kz__waitq rd;   /* waiting for KZ_READ */
  struct kz__waitq wr;   /* waiting for KZ_WRITE */
  bool used;             /* io initialised */
  bool reset;            /* forgotten: force re-registration (note A) */
  bool unref;            /* started without waiters: ev_unref'd (note E) */
  uint8_t stray;         /* EV_READ/EV_WRITE: an event found nobody once (note E) */
  uint8_t woken;         /* EV_READ/EV_WRITE: woken waiters not back yet (note E) */
  uint64_t stop_pass;    /* hub pass in which io was last stopped (note D) */
  uint64_t epoch;        /* forget epoch of its last forget (note F) */
};

/* A waiter on a descriptor, with the forget epoch when it began (note F). */
struct fd_waiter {
  struct kz__waiter w;
  uint64_t epoch;
};

static _Atomic uint64_t forget_epoch; /* forgets so far, process-wide (note F) */

bool kz__fd_sticky; /* note E */

/* An event io_cb noted for kz__fd_flush (note G). */
struct fd_event {
  struct fdw *w;
  uint64_t epoch;        /* w->epoch when noted */
  int revents;
};

struct kz__fdtab {
  struct fdw **chunks;   /* chunks[fd / CHUNK], NULL until used */
  size_t nchunks;
  struct fd_event *ev;   /* events noted in this loop pass (note G) */
  size_t nev, evcap;
};

/* Events ahead whose green threads the flush prefetches (note G). */
#define WAKE_AHEAD 4

int kz__fdtab_init(struct kz__hub *hub)
{
  hub->fds = calloc(1, sizeof *hub->fds);
  return hub->fds ? 0 : -ENOMEM;
}

/* A close on another OS thread (note F). */
struct forget_msg {
  struct kz__post post;
  int fd;
  uint64_t epoch;
};

static void forget_run(struct kz__post *p);

void kz__fdtab_term(struct kz__hub *hub)
{
  struct kz__fdtab *t = hub->fds;
  struct kz__post *p, *next, *keep = NULL;
  if (!t)
    return;
  /* The hub is off the list of hubs (kz__monitor_remove came first), so no
     forget message arrives any more; free those still in the mailbox and
     put the others back as they were. */
  p = atomic_exchange_explicit(&hub->inbox, NULL, memory_order_acquire);
  for (; p; p = next) {
    next = p->next;
    if (p->fn == forget_run) {
      free(kz__container_of(p, struct forget_msg, post));
    } else {
      p->next = keep;
      keep = p;
    }
  }
  for (p = keep; p; p = next) {
    next = p->next;
    kz__hub_post(hub, p);
  }
  for (size_t i = 0; i < t->nchunks; i++) {
    if (!t->chunks[i])
      continue;
    for (size_t j = 0; j < CHUNK; j++) {
      struct fdw *w = &t->chunks[i][j];
      if (w->used && w->unref)
        ev_ref(hub->loop); /* libev: before stopping an unreferenced watcher */
      if (w->used)
        ev_io_stop(hub->loop, &w->io);
    }
    free(t->chunks[i]);
  }
  free(t->chunks);
  free(t->ev);
  free(t);
  hub->fds = NULL;
}

static struct fdw *fdw_find(struct kz__fdtab *t, int fd)
{
  size_t c = (size_t)fd / CHUNK;
  return c < t->nchunks && t->chunks[c] ? &t->chunks[c][fd % CHUNK] : NULL;
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents);

static struct fdw *fdw_get(struct kz__fdtab *t, int fd)
{
  size_t c = (size_t)fd / CHUNK;
  struct fdw *w;
  if (c >= t->nchunks) {
    size_t n = c + 1 > 2 * t->nchunks ? c + 1 : 2 * t->nchunks;
    struct fdw **v = realloc(t->chunks, n * sizeof *v);
    if (!v)
      return NULL;
    memset(v + t->nchunks, 0, (n - t->nchunks) * sizeof *v);
    t->chunks = v;
    t->nchunks = n;
  }
  if (!t->chunks[c] && !(t->chunks[c] = calloc(CHUNK, sizeof(struct fdw))))
    return NULL;
  w = &t->chunks[c][fd % CHUNK];
  if (!w->used) {
    ev_io_init(&w->io, io_cb, fd, 0);
    w->stop_pass = UINT64_MAX;
    kz__waitq_init(&w->rd);
    kz__waitq_init(&w->wr);
    w->used = true;
  }
  return w;
}

static int want_of(struct fdw *w)
{
  return (kz__waitq_empty(&w->rd) ? 0 : EV_READ) | (kz__waitq_empty(&w->wr) ? 0 : EV_WRITE);
}

/* A started watcher keeps the loop alive exactly while someone waits on it
   (note E): the hub's deadlock check counts on it. */
static void fdw_ref(struct kz__hub *hub, struct fdw *w)
{
  bool need = !ev_is_active(&w->io) || want_of(w);
  if (need && w->unref) {
    ev_ref(hub->loop);
    w->unref = false;
  } else if (!need && !w->unref) {
    ev_unref(hub->loop);
    w->unref = true;
  }
}

static void fdw_stop(struct kz__hub *hub, struct fdw *w)
{
  if (!ev_is_active(&w->io))
    return;
  if (w->unref) { /* libev: ev_ref before stopping an unreferenced watcher */
    ev_ref(hub->loop);
    w->unref = false;
  }
  ev_io_stop(hub->loop, &w->io);
  w->stop_pass = hub->pass;
}

/* (Re)start the watcher for events, none: stop it.  Returns -EBADF,
   starting nothing, if the descriptor is not open (note D). */
static int fdw_start(struct kz__hub *hub, struct fdw *w, int events)
{
  fdw_stop(hub, w);
  w->stray = 0;
  if (!events)
    return 0;
  if ((w->reset || w->stop_pass != hub->pass) && kz__syscall(SYS_fcntl, w->io.fd, F_GETFD) < 0 &&
      errno == EBADF)
    return -EBADF;
  if (w->reset) {
    ev_io_set(&w->io, w->io.fd, events);
    w->reset = false;
  } else {
    ev_io_modify(&w->io, events);
  }
  ev_io_start(hub->loop, &w->io);
  fdw_ref(hub, w);
  return 0;
}

/* Make the watcher ask for exactly what its waiters want (note E, the API's
   mode); no change when it already does. */
static void fdw_exact(struct kz__hub *hub, struct fdw *w)
{
  int want = want_of(w);
  if (ev_is_active(&w->io) ? (w->io.events & (EV_READ | EV_WRITE)) != want : want != 0)
    fdw_start(hub, w, want);
}

/* Waiters were queued: make sure the watcher covers them (note E). */
static int fdw_arm(struct kz__hub *hub, struct fdw *w)
{
  int want = want_of(w), have = ev_is_active(&w->io) ? w->io.events & (EV_READ | EV_WRITE) : 0;
  w->stray &= (uint8_t)~want;
  if ((have & want) == want) {
    fdw_ref(hub, w);
    return 0;
  }
  return fdw_start(hub, w, have | want);
}

/* Waiters of events left (woken, timed out, cancelled): the watcher stays
   (note E). */
static void fdw_release(struct kz__hub *hub, struct fdw *w, int events)
{
  w->woken &= (uint8_t)~events;
  if (!kz__fd_sticky)
    fdw_exact(hub, w);
  else if (ev_is_active(&w->io))
    fdw_ref(hub, w);
}

static void wake_queue(struct kz__waitq *q, int r, int revents)
{
  while (kz__waitq_wake_one(q, r, (void *)(intptr_t)revents))
    ;
}

/* Wake the waiters of one direction; returns the direction's bit if the
   event was stray (note E). */
static int deliver(struct fdw *w, struct kz__waitq *q, int dir, int revents)
{
  if (!kz__waitq_empty(q)) {
    wake_queue(q, 0, revents & (EV_READ | EV_WRITE));
    w->woken |= (uint8_t)dir;
    w->stray &= (uint8_t)~dir;
    return 0;
  }
  return w->woken & dir ? 0 : dir;
}

/* What an event on w means for its waiters and its watcher. */
static void io_event(struct kz__hub *hub, struct fdw *w, int revents)
{
  int stray = 0, trim;
  if (revents & EV_ERROR) { /* note C */
    wake_queue(&w->rd, -EBADF, 0);
    wake_queue(&w->wr, -EBADF, 0);
    w->reset = true;
    fdw_stop(hub, w);
    return;
  }
  if (revents & EV_READ)
    stray |= deliver(w, &w->rd, EV_READ, revents);
  if (revents & EV_WRITE)
    stray |= deliver(w, &w->wr, EV_WRITE, revents);
  trim = stray & w->stray;
  w->stray |= (uint8_t)stray;
  if (!kz__fd_sticky)
    fdw_exact(hub, w);
  else if (trim)
    fdw_start(hub, w, (w->io.events & (EV_READ | EV_WRITE) & ~trim) | want_of(w));
  else
    fdw_ref(hub, w);
}

/* The first waiter an event on w wakes, or NULL. */
static struct kz__waiter *first_waiter(struct fdw *w, int revents)
{
  struct kz__waitq *q = revents & EV_READ && !kz__waitq_empty(&w->rd) ? &w->rd
                      : revents & EV_WRITE && !kz__waitq_empty(&w->wr) ? &w->wr : NULL;
  return q ? kz__container_of(q->head.next, struct kz__waiter, link) : NULL;
}

static bool events_grow(struct kz__fdtab *t)
{
  size_t n = t->evcap ? 2 * t->evcap : 64;
  struct fd_event *v = realloc(t->ev, n * sizeof *v);
  if (!v)
    return false;
  t->ev = v;
  t->evcap = n;
  return true;
}

/* Note the event for kz__fd_flush (note G). */
static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
  struct fdw *w = kz__container_of(io, struct fdw, io);
  struct kz__hub *hub = ev_userdata(loop);
  struct kz__fdtab *t = hub->fds;
  struct kz__waiter *first;
  if (revents & EV_ERROR || (t->nev == t->evcap && !events_grow(t))) {
    io_event(hub, w, revents);
    return;
  }
  t->ev[t->nev++] = (struct fd_event){.w = w, .epoch = w->epoch, .revents = revents};
  if ((first = first_waiter(w, revents)))
    __builtin_prefetch(first);
}

void kz__fd_flush(struct kz__hub *hub)
{
  struct kz__fdtab *t = hub->fds;
  for (size_t i = 0; i < t->nev; i++) {
    struct fd_event *e = &t->ev[i];
    if (i + WAKE_AHEAD < t->nev) {
      struct fd_event *ahead = &t->ev[i + WAKE_AHEAD];
      struct kz__waiter *first = first_waiter(ahead->w, ahead->revents);
      if (first)
        __builtin_prefetch(first->g);
    }
    if (ev_is_active(&e->w->io) && e->w->epoch == e->epoch) /* else a forget came after it */
      io_event(hub, e->w, e->revents);
  }
  t->nev = 0;
}

int kz__wait_fd(int fd, int events, double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  struct fd_waiter rw, ww;
  struct fdw *w;
  int r;

  if (!g)
    return -EPERM;
  if (fd < 0)
    return -EBADF;
  events &= KZ_READ | KZ_WRITE;
  if (!events)
    return -EINVAL;
  if ((g->flags & (KZ__G_CANCEL | KZ__G_NO_CANCEL)) == KZ__G_CANCEL)
    return -ECANCELED;
  if (!(w = fdw_get(hub->fds, fd)))
    return -ENOMEM;
  kz__list_init(&rw.w.link);
  kz__list_init(&ww.w.link);
  rw.w.g = ww.w.g = g;
  rw.w.data = ww.w.data = NULL;
  rw.epoch = ww.epoch = atomic_load_explicit(&forget_epoch, memory_order_relaxed);
  if (events & KZ_READ)
    kz__list_push(&w->rd.head, &rw.w.link);
  if (events & KZ_WRITE)
    kz__list_push(&w->wr.head, &ww.w.link);
  if ((r = fdw_arm(hub, w)) == 0) {
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_FD, .arg = fd, .arg2 = (uint64_t)events};
    r = kz__park(deadline);
  }
  kz__list_remove(&rw.w.link);
  kz__list_remove(&ww.w.link);
  /* The entry may have been reused for a new descriptor meanwhile; only
     the waiters' own links were touched, so releasing it is always right. */
  fdw_release(hub, w, events);
  if (r < 0)
    return r;
  r = (int)((intptr_t)rw.w.data | (intptr_t)ww.w.data) & events;
  return r ? r : events;
}

int kz__wait_fds(struct kz__fdev *fds, int n, double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  struct fd_waiter stackw[32], *w = stackw;
  uint64_t epoch = atomic_load_explicit(&forget_epoch, memory_order_relaxed);
  int r = 0, i;

  if (!g)
    return -EPERM;
  if ((g->flags & (KZ__G_CANCEL | KZ__G_NO_CANCEL)) == KZ__G_CANCEL)
    return -ECANCELED;
  if (n > 16 && !(w = malloc(sizeof *w * 2 * (size_t)n)))
    return -ENOMEM;
  for (i = 0; i < n; i++) {
    struct fdw *e = fds[i].fd >= 0 ? fdw_get(hub->fds, fds[i].fd) : NULL;
    fds[i].revents = 0;
    kz__list_init(&w[2 * i].w.link);
    kz__list_init(&w[2 * i + 1].w.link);
    w[2 * i].w.g = w[2 * i + 1].w.g = g;
    w[2 * i].w.data = w[2 * i + 1].w.data = NULL;
    w[2 * i].epoch = w[2 * i + 1].epoch = epoch;
    if (!e)
      continue;
    if (fds[i].events & KZ_READ)
      kz__list_push(&e->rd.head, &w[2 * i].w.link);
    if (fds[i].events & KZ_WRITE)
      kz__list_push(&e->wr.head, &w[2 * i + 1].w.link);
    if (fdw_arm(hub, e) < 0) { /* not open: report it like poll's POLLNVAL */
      kz__list_remove(&w[2 * i].w.link);
      kz__list_remove(&w[2 * i + 1].w.link);
      fds[i].revents = -EBADF;
      r = 1;
    }
  }
  if (!r) {
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_FD, .arg = n ? fds[0].fd : -1,
                                        .arg2 = (uint64_t)(n ? fds[0].events : 0)};
    r = kz__park(deadline);
  }
  for (i = 0; i < n; i++) {
    struct fdw *e = fds[i].fd >= 0 ? fdw_find(hub->fds, fds[i].fd) : NULL;
    kz__list_remove(&w[2 * i].w.link);
    kz__list_remove(&w[2 * i + 1].w.link);
    if (fds[i].revents == 0)
      fds[i].revents = (int)((intptr_t)w[2 * i].w.data | (intptr_t)w[2 * i + 1].w.data) & fds[i].events;
    if (e && e->used)
      fdw_release(hub, e, fds[i].events);
  }
  if (w != stackw)
    free(w);
  return r < 0 ? r : 0;
}

/* Forget fd on hub for a close of epoch (note F): wake the waiters older
   than it with EBADF, drop the registration, and register again for the
   younger ones, if any. */
static void forget_on(struct kz__hub *hub, int fd, uint64_t epoch)
{
  struct fdw *w = fd >= 0 ? fdw_find(hub->fds, fd) : NULL;
  int want;
  if (!w || !w->used || w->epoch >= epoch)
    return;
  for (struct kz__waitq *q = &w->rd; q; q = q == &w->rd ? &w->wr : NULL) {
    struct kz__link *l = q->head.next, *next;
    for (; l != &q->head; l = next) {
      struct fd_waiter *fw = kz__container_of(l, struct fd_waiter, w.link);
      next = l->next;
      if (fw->epoch < epoch && fw->w.g->state == KZ_BLOCKED) {
        kz__list_remove(l);
        kz__wake(fw->w.g, -EBADF);
      }
    }
  }
  fdw_stop(hub, w);
  w->reset = true;
  w->stray = w->woken = 0;
  w->epoch = epoch;
  if ((want = want_of(w)) && fdw_start(hub, w, want) < 0) {
    wake_queue(&w->rd, -EBADF, 0);
    wake_queue(&w->wr, -EBADF, 0);
  }
}

static void forget_run(struct kz__post *p)
{
  struct forget_msg *m = kz__container_of(p, struct forget_msg, post);
  forget_on(kz__tls_hub, m->fd, m->epoch);
  free(m);
}

static struct kz__post *forget_make(void *arg)
{
  const struct forget_msg *proto = arg;
  struct forget_msg *m = malloc(sizeof *m);
  if (!m) /* that hub keeps a stale watcher: said, not silent */
    kz__say("cannot tell another hub that descriptor %d was closed: out of memory", proto->fd);
  else
    *m = *proto;
  return m ? &m->post : NULL;
}

static void forget_drop(struct kz__post *p) { free(kz__container_of(p, struct forget_msg, post)); }

void kz__fd_forget(int fd)
{
  struct kz__hub *hub = kz__tls_hub;
  struct forget_msg proto = {.post.fn = forget_run, .fd = fd};
  struct fdw *w;
  if (fd < 0)
    return;
  if (kz__hubs_count() <= (hub ? 1u : 0u) && (!hub || !(w = fdw_find(hub->fds, fd)) || !w->used))
    return; /* note F: nobody to tell, nothing to forget; the counter stays */
  proto.epoch = atomic_fetch_add_explicit(&forget_epoch, 1, memory_order_relaxed) + 1;
  if (hub)
    forget_on(hub, fd, proto.epoch);
  if (kz__hubs_count() > (hub ? 1u : 0u))
    kz__hubs_post_others(hub, forget_make, forget_drop, &proto);
}

int kz_forget_fd(int fd)
{
  if (fd < 0)
    return kz__fail_errno(-EBADF);
  kz__fd_forget(fd);
  return 0;
}

int kz_close(int fd)
{
  kz_forget_fd(fd);
  return kz__os_close(fd);
}

int kz_wait_fd(int fd, int events, double timeout)
{
  int err = 0, r;
  if (!kz__hub_get(&err))
    return kz__fail_errno(err);
  r = kz__wait_fd(fd, events, kz__deadline(timeout));
  return r < 0 ? kz__fail_errno(r) : r;
}
