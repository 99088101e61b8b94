/* io.c: green threads waiting on descriptors.
 *
 * Each hub keeps a table indexed by descriptor number; an entry holds one
 * ev_io shared by every green thread of the hub waiting on that descriptor,
 * with readers and writers queued separately.  The watcher asks libev for the
 * union of what its waiters want and is active only while someone waits.
 *
 * Notes.
 * A. epoll registers open files, not numbers.  If a descriptor is closed and
 *    its number reused while libev still believes the old registration
 *    stands, the new file is never watched and its waiters hang.  A watcher
 *    is active only while someone waits, and libev sends its changes to
 *    epoll once per loop pass, comparing old and new interest: so a stop and
 *    a restart within one pass cost no system call (the steady state of a
 *    server: woken, read, write, wait again), and a restart in a later pass
 *    re-adds the descriptor (EPOLL_CTL_ADD), which registers a new file
 *    under a reused number.  The one window left is a close and reuse of the
 *    number between a stop and a restart in the same pass: kz__fd_forget
 *    (the shim's close, dup2, dup3, fclose; kz_close for API users) marks the
 *    entry so its next start forces a fresh registration (ev_io_set sets
 *    EV__IOFDSET), and wakes its waiters with EBADF.
 * D. libev as Debian builds it asserts (aborts) when epoll_ctl says EBADF.
 *    Whenever a start will reach epoll_ctl (first use, after a forget, after
 *    a stop in an earlier pass), the descriptor is checked first with
 *    F_GETFD, so a closed one fails the wait with EBADF instead.  That costs
 *    one cheap system call on a path that makes one anyway.
 * B. The table is two-level (chunks of 1024 entries never move), because
 *    libev keeps pointers to the watchers.  There is no 1024-descriptor
 *    ceiling: it grows to whatever RLIMIT_NOFILE allows.
 * C. A descriptor libev cannot watch (closed, not pollable) comes back as
 *    EV_ERROR: every waiter fails with EBADF.
 */
#include "internal.h"

#include <fcntl.h>
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
  uint64_t stop_pass;    /* hub pass in which io was last stopped (note D) */
};

struct kz__fdtab {
  struct fdw **chunks;   /* chunks[fd / CHUNK], NULL until used */
  size_t nchunks;
};

int kz__fdtab_init(struct kz__hub *hub)
{
  hub->fds = calloc(1, sizeof *hub->fds);
  return hub->fds ? 0 : -ENOMEM;
}

void kz__fdtab_term(struct kz__hub *hub)
{
  struct kz__fdtab *t = hub->fds;
  if (!t)
    return;
  for (size_t i = 0; i < t->nchunks; i++) {
    if (!t->chunks[i])
      continue;
    for (size_t j = 0; j < CHUNK; j++)
      if (t->chunks[i][j].used)
        ev_io_stop(hub->loop, &t->chunks[i][j].io);
    free(t->chunks[i]);
  }
  free(t->chunks);
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

/* Make the watcher ask for exactly what its waiters want (note A).  Returns
   -EBADF, starting nothing, if the descriptor is not open (note D). */
static int fdw_update(struct kz__hub *hub, struct fdw *w)
{
  int want = (kz__waitq_empty(&w->rd) ? 0 : EV_READ) | (kz__waitq_empty(&w->wr) ? 0 : EV_WRITE);
  struct ev_loop *loop = hub->loop;
  if (ev_is_active(&w->io)) {
    if ((w->io.events & (EV_READ | EV_WRITE)) == want)
      return 0;
    ev_io_stop(loop, &w->io);
    w->stop_pass = hub->pass;
  }
  if (!want)
    return 0;
  if ((w->reset || w->stop_pass != hub->pass) && syscall(SYS_fcntl, w->io.fd, F_GETFD) < 0 &&
      errno == EBADF)
    return -EBADF;
  if (w->reset) {
    ev_io_set(&w->io, w->io.fd, want);
    w->reset = false;
  } else {
    ev_io_modify(&w->io, want);
  }
  ev_io_start(loop, &w->io);
  return 0;
}

static void wake_queue(struct kz__waitq *q, int r, int revents)
{
  while (kz__waitq_wake_one(q, r, (void *)(intptr_t)revents))
    ;
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
  struct fdw *w = kz__container_of(io, struct fdw, io);
  struct kz__hub *hub = ev_userdata(loop);
  if (revents & EV_ERROR) { /* note C */
    wake_queue(&w->rd, -EBADF, 0);
    wake_queue(&w->wr, -EBADF, 0);
    w->reset = true;
  } else {
    if (revents & EV_READ)
      wake_queue(&w->rd, 0, revents & (EV_READ | EV_WRITE));
    if (revents & EV_WRITE)
      wake_queue(&w->wr, 0, revents & (EV_READ | EV_WRITE));
  }
  fdw_update(hub, w);
}

int kz__wait_fd(int fd, int events, double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  struct kz__waiter rw, ww;
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
  kz__list_init(&rw.link);
  kz__list_init(&ww.link);
  rw.g = ww.g = g;
  rw.data = ww.data = NULL;
  if (events & KZ_READ)
    kz__list_push(&w->rd.head, &rw.link);
  if (events & KZ_WRITE)
    kz__list_push(&w->wr.head, &ww.link);
  if ((r = fdw_update(hub, w)) == 0) {
    g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_FD, .arg = fd, .arg2 = (uint64_t)events};
    r = kz__park(deadline);
  }
  kz__list_remove(&rw.link);
  kz__list_remove(&ww.link);
  /* The entry may have been reused for a new descriptor meanwhile; only
     the waiters' own links were touched, so updating it is always right. */
  fdw_update(hub, w);
  if (r < 0)
    return r;
  r = (int)((intptr_t)rw.data | (intptr_t)ww.data) & events;
  return r ? r : events;
}

int kz__wait_fds(struct kz__fdev *fds, int n, double deadline)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  struct kz__waiter stackw[32], *w = stackw;
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
    kz__list_init(&w[2 * i].link);
    kz__list_init(&w[2 * i + 1].link);
    w[2 * i].g = w[2 * i + 1].g = g;
    w[2 * i].data = w[2 * i + 1].data = NULL;
    if (!e)
      continue;
    if (fds[i].events & KZ_READ)
      kz__list_push(&e->rd.head, &w[2 * i].link);
    if (fds[i].events & KZ_WRITE)
      kz__list_push(&e->wr.head, &w[2 * i + 1].link);
    if (fdw_update(hub, e) < 0) { /* not open: report it like poll's POLLNVAL */
      kz__list_remove(&w[2 * i].link);
      kz__list_remove(&w[2 * i + 1].link);
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
    kz__list_remove(&w[2 * i].link);
    kz__list_remove(&w[2 * i + 1].link);
    if (fds[i].revents == 0)
      fds[i].revents = (int)((intptr_t)w[2 * i].data | (intptr_t)w[2 * i + 1].data) & fds[i].events;
    if (e && e->used)
      fdw_update(hub, e);
  }
  if (w != stackw)
    free(w);
  return r < 0 ? r : 0;
}

void kz__fd_forget(int fd)
{
  struct kz__hub *hub = kz__tls_hub;
  struct fdw *w;
  if (!hub || fd < 0 || !(w = fdw_find(hub->fds, fd)) || !w->used)
    return;
  wake_queue(&w->rd, -EBADF, 0);
  wake_queue(&w->wr, -EBADF, 0);
  if (ev_is_active(&w->io))
    ev_io_stop(hub->loop, &w->io);
  w->reset = true;
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
  return close(fd);
}

int kz_wait_fd(int fd, int events, double timeout)
{
  int err = 0, r;
  if (!kz__hub_get(&err))
    return kz__fail_errno(err);
  r = kz__wait_fd(fd, events, kz__deadline(timeout));
  return r < 0 ? kz__fail_errno(r) : r;
}
