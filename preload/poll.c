/* poll.c: poll, ppoll, select, pselect, epoll_wait, epoll_pwait,
 * epoll_pwait2 in green threads.
 *
 * Each first asks the kernel with a zero timeout; if nothing is ready and
 * the caller is willing to wait, the green thread parks on the hub until one
 * of the descriptors is ready (or the timeout passes), then asks again.  The
 * answer always comes from the kernel, so the readiness contract (POLLHUP,
 * POLLERR, POLLNVAL, exceptional conditions) is exactly the native one.
 *
 * Notes.
 * A. There is no 1024-descriptor ceiling: poll hands any number of
 *    descriptors to the hub (kz__wait_fds).  select reads as many bits as
 *    nfds says, like the kernel (a program may allocate sets larger than
 *    fd_set); FD_SETSIZE is the limit of glibc's FD_SET macros, not of the
 *    call.
 * B. An epoll instance is itself a descriptor that becomes readable when one
 *    of its members is ready, so epoll_wait waits on it like on a socket.
 * C. ppoll/pselect/epoll_pwait take a signal mask for the duration of the
 *    call: it becomes the green thread's own mask until the call returns
 *    (signal.c), as the kernel installs it for the thread, and the call
 *    fails with EINTR once a handler ran for the green thread meanwhile
 *    (also one for a pending signal the mask unblocks, handled as the mask
 *    is set).  The kernel's own zero-timeout queries then take no mask.
 * D. A pollfd asking for no events still reports errors and hang-ups; the
 *    hub can only watch for readability to learn of them, so such entries
 *    wait for readability (a spurious wake-up just asks the kernel again).
 *    Output-only entries wait for writability only: waiting for input too
 *    would wake, and spin, on data the program is not reading yet.
 * E. Waits here are never restarted after a signal handler, as natively
 *    (signal(7)): the wait of the green thread the handler ran for fails
 *    with EINTR.
 */
#include "shim.h"

#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#define EXPORT KZ_SHIM_EXPORT

/* Deadline (kz__now seconds, -1 none) of a timeout in milliseconds. */
static double ms_deadline(int ms) { return ms < 0 ? -1 : kz__now() + ms / 1000.0; }

static double ts_deadline(const struct timespec *ts)
{
  return ts ? kz__now() + (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 : -1;
}

/* Note D. */
static int to_events(short ev)
{
  int e = (ev & (POLLIN | POLLPRI | POLLRDHUP | POLLRDNORM | POLLRDBAND) ? KZ_READ : 0) |
          (ev & (POLLOUT | POLLWRNORM | POLLWRBAND) ? KZ_WRITE : 0);
  return e ? e : KZ_READ;
}

/* Park on the hub for a poll-like call (note E).  0 when something may be
   ready or the call's own deadline passed (the caller asks the kernel
   again); otherwise -errno: -EINTR, -ECANCELED, -ETIMEDOUT (a scoped
   deadline), -ENOMEM. */
static int park_fds(struct kz__fdev *v, int n, double deadline)
{
  struct kz_green *g = kz__self();
  int r;
  kz_shim_stats().parks++;
  kz_shim_intr_begin(g, KZ_INTR_ALWAYS);
  r = kz__wait_fds(v, n, deadline);
  kz_shim_intr_end(g);
  if (r == -ETIMEDOUT && !(g->deadline > 0 && kz__now() >= g->deadline))
    return 0;
  return r;
}

/* Park until one of fds may be ready; 0, or park_fds's -errno. */
static int wait_pollfds(struct pollfd *fds, nfds_t n, double deadline)
{
  struct kz__fdev stackv[16], *v = stackv;
  int r;
  if (n > 16 && !(v = malloc(sizeof *v * n)))
    return -ENOMEM;
  for (nfds_t i = 0; i < n; i++)
    v[i] = (struct kz__fdev){.fd = fds[i].fd, .events = to_events(fds[i].events)};
  r = park_fds(v, (int)n, deadline);
  if (v != stackv)
    free(v);
  return r;
}

/* The signal mask of a call that takes one (note C). */
struct call_mask {
  const sigset_t *mask; /* the call's, or NULL */
  uint64_t old;         /* the green thread's own before the call */
  uint32_t handled;     /* its handlers run before the call */
};

static void mask_begin(struct call_mask *m, const sigset_t *mask)
{
  struct kz_green *g = kz__self();
  m->mask = mask;
  if (mask) {
    m->handled = g->sig.handled;
    m->old = kz_shim_sigmask_set(g, kz_shim_sigmask_of(mask));
  }
}

/* Has a handler run for the caller since mask_begin?  (-1 EINTR, else 0.) */
static int mask_handled(const struct call_mask *m)
{
  if (m->mask && kz__self()->sig.handled != m->handled) {
    errno = EINTR;
    return -1;
  }
  return 0;
}

static void mask_end(const struct call_mask *m)
{
  int e = errno;
  if (m->mask)
    kz_shim_sigmask_set(kz__self(), m->old);
  errno = e;
}

static int poll_common(struct pollfd *fds, nfds_t n, double deadline, const sigset_t *mask)
{
  struct call_mask m;
  int r;
  mask_begin(&m, mask);
  for (;;) {
    if ((r = mask_handled(&m)) < 0)
      break;
    r = REAL(poll)(fds, n, 0);
    if (r != 0 || (deadline >= 0 && kz__now() >= deadline))
      break;
    if ((r = wait_pollfds(fds, n, deadline)) < 0) {
      mask_end(&m);
      kz_shim_cancel_point(r); /* with the program's mask back */
      errno = -r;
      return -1;
    }
  }
  mask_end(&m);
  return r;
}

KZ_INTERPOSE(int, poll, (struct pollfd *fds, nfds_t n, int timeout), (fds, n, timeout))
{
  if (!shim_active(KZ_PATCH_POLL) || timeout == 0)
    return REAL(poll)(fds, n, timeout);
  return poll_common(fds, n, ms_deadline(timeout), NULL);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
  if (n > fdslen / sizeof *fds)
    __builtin_trap();
  return poll(fds, n, timeout);
}

KZ_INTERPOSE(int, ppoll, (struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask), (fds, n, ts, mask))
{
  if (!shim_active(KZ_PATCH_POLL) || (ts && !ts->tv_sec && !ts->tv_nsec))
    return REAL(ppoll)(fds, n, ts, mask);
  return poll_common(fds, n, ts_deadline(ts), mask);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                       const sigset_t *mask, size_t fdslen)
{
  if (n > fdslen / sizeof *fds)
    __builtin_trap();
  return ppoll(fds, n, ts, mask);
}

/* fd_set bits, for sets of any size (note A). */
#define LBITS (8 * (int)sizeof(unsigned long))
static bool bit_get(const fd_set *s, int fd)
{
  return s && (((const unsigned long *)s)[fd / LBITS] >> (fd % LBITS) & 1);
}
static void bit_set(fd_set *s, int fd) { ((unsigned long *)s)[fd / LBITS] |= 1ul << (fd % LBITS); }
static void bits_clear(fd_set *s, int nfds)
{
  if (s)
    memset(s, 0, (size_t)(nfds + LBITS - 1) / LBITS * sizeof(unsigned long));
}

/* The kernel ignores bits beyond the descriptors a process can have. */
static int select_limit(int nfds)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)nfds > rl.rlim_cur)
    return (int)rl.rlim_cur;
  return nfds;
}

/* Write poll's answer back into the sets; the count, or -1 EBADF. */
static int select_answer(struct pollfd *p, int n, int nfds, fd_set *rd, fd_set *wr, fd_set *ex)
{
  int ready = 0;
  for (int i = 0; i < n; i++)
    if (p[i].revents & POLLNVAL) {
      errno = EBADF;
      return -1;
    }
  bits_clear(rd, nfds);
  bits_clear(wr, nfds);
  bits_clear(ex, nfds);
  for (int i = 0; i < n; i++) {
    short re = p[i].revents, ev = p[i].events;
    if ((ev & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR)))
      bit_set(rd, p[i].fd), ready++;
    if ((ev & POLLOUT) && (re & (POLLOUT | POLLERR)))
      bit_set(wr, p[i].fd), ready++;
    if ((ev & POLLPRI) && (re & POLLPRI))
      bit_set(ex, p[i].fd), ready++;
  }
  return ready;
}

/* select in terms of poll: the sets become pollfds and back. */
static int select_common(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, double deadline,
                         const sigset_t *mask)
{
  struct pollfd stackp[64], *p = stackp;
  int n = 0, r;
  if (nfds < 0) {
    errno = EINVAL;
    return -1;
  }
  nfds = select_limit(nfds);
  if (nfds > 64 && !(p = malloc(sizeof *p * (size_t)nfds))) {
    errno = ENOMEM;
    return -1;
  }
  for (int fd = 0; fd < nfds; fd++) {
    short ev = (short)((bit_get(rd, fd) ? POLLIN : 0) | (bit_get(wr, fd) ? POLLOUT : 0) |
                       (bit_get(ex, fd) ? POLLPRI : 0));
    if (ev)
      p[n++] = (struct pollfd){fd, ev, 0};
  }
  r = poll_common(p, (nfds_t)n, deadline, mask);
  if (r >= 0)
    r = select_answer(p, n, nfds, rd, wr, ex);
  if (p != stackp)
    free(p);
  return r;
}

KZ_INTERPOSE(int, select, (int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv), (nfds, rd, wr, ex, tv))
{
  double deadline;
  int r;
  if (!shim_active(KZ_PATCH_POLL) || (tv && !tv->tv_sec && !tv->tv_usec))
    return REAL(select)(nfds, rd, wr, ex, tv);
  deadline = tv ? kz__now() + (double)tv->tv_sec + (double)tv->tv_usec * 1e-6 : -1;
  r = select_common(nfds, rd, wr, ex, deadline, NULL);
  if (tv && r >= 0) { /* Linux reports the time left */
    double left = deadline - kz__now();
    if (left < 0)
      left = 0;
    tv->tv_sec = (time_t)left;
    tv->tv_usec = (suseconds_t)((left - (double)tv->tv_sec) * 1e6);
  }
  return r;
}

KZ_INTERPOSE(int, pselect, (int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts, const sigset_t *mask), (nfds, rd, wr, ex, ts, mask))
{
  if (!shim_active(KZ_PATCH_POLL) || (ts && !ts->tv_sec && !ts->tv_nsec))
    return REAL(pselect)(nfds, rd, wr, ex, ts, mask);
  return select_common(nfds, rd, wr, ex, ts_deadline(ts), mask);
}

static int epoll_common(int epfd, struct epoll_event *ev, int max, double deadline, const sigset_t *mask)
{
  struct call_mask m;
  int r;
  mask_begin(&m, mask);
  for (;;) {
    if ((r = mask_handled(&m)) < 0)
      break;
    r = REAL(epoll_wait)(epfd, ev, max, 0);
    if (r != 0 || (deadline >= 0 && kz__now() >= deadline))
      break;
    struct kz__fdev v = {.fd = epfd, .events = KZ_READ};
    r = park_fds(&v, 1, deadline); /* note B */
    if (r == 0 && v.revents < 0)
      r = v.revents;
    if (r < 0) {
      mask_end(&m);
      kz_shim_cancel_point(r); /* with the program's mask back */
      errno = -r;
      return -1;
    }
  }
  mask_end(&m);
  return r;
}

static __attribute__((noinline)) int epoll_wait_in_green(int epfd, struct epoll_event *ev, int max, int timeout)
{
  if (!shim_active(KZ_PATCH_POLL) || timeout == 0)
    return REAL(epoll_wait)(epfd, ev, max, timeout);
  return epoll_common(epfd, ev, max, ms_deadline(timeout), NULL);
}

/* KZ_INTERPOSE's shape, and one more test on the failure path: on the hub
   context this is libev polling, and a hub's epoll instance closed or
   replaced behind the runtime's back is said plainly (preload/io.c, note
   H) instead of libev's bare "(libev) epoll_wait" abort. */
/* libev's poll for hub, when a short park's deadline comes before its
   rounded timeout (hub/sched.c, note G): -1 with ENOSYS if not. */
static int hub_poll_fine(struct kz__hub *hub, int epfd, struct epoll_event *ev, int max, int timeout)
{
  double left = hub->soonest - kz__now();
  struct timespec ts;
  if (left <= 0 || epfd != hub->backend_fd) {
    hub->soonest = 0; /* passed: libev's own timeout is right again */
    errno = ENOSYS;
    return -1;
  }
  if (timeout >= 0 && left * 1e3 >= timeout) {
    errno = ENOSYS;
    return -1;
  }
  ts.tv_sec = (time_t)left;
  ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
  return (int)kz__syscall(SYS_epoll_pwait2, epfd, ev, max, &ts, NULL, 8);
}

EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
  struct kz__hub *hub = kz__tls_hub;
  if ((KZ_LIKELY(hub == NULL) || hub->current == NULL) && KZ_LIKELY(kz_real.epoll_wait != NULL)) {
    int r;
    if (hub && KZ_UNLIKELY(hub->soonest > 0) && timeout != 0 &&
        ((r = hub_poll_fine(hub, epfd, ev, max, timeout)) >= 0 || errno != ENOSYS))
      return r;
    r = kz_real.epoll_wait(epfd, ev, max, timeout);
    if (KZ_UNLIKELY(r < 0) && hub && (errno == EBADF || errno == EINVAL) && kz__rtfd_is(epfd))
      kz__rtfd_lost(epfd, "a hub's epoll instance");
    return r;
  }
  return epoll_wait_in_green(epfd, ev, max, timeout);
}

KZ_INTERPOSE(int, epoll_pwait, (int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask), (epfd, ev, max, timeout, mask))
{
  if (!shim_active(KZ_PATCH_POLL) || timeout == 0)
    return REAL(epoll_pwait)(epfd, ev, max, timeout, mask);
  return epoll_common(epfd, ev, max, ms_deadline(timeout), mask);
}

KZ_INTERPOSE(int, epoll_pwait2, (int epfd, struct epoll_event *ev, int max, const struct timespec *ts, const sigset_t *mask), (epfd, ev, max, ts, mask))
{
  if (!kz_real.epoll_pwait2 && !REAL(epoll_pwait2)) { /* a libc without it */
    errno = ENOSYS;
    return -1;
  }
  if (!shim_active(KZ_PATCH_POLL) || (ts && !ts->tv_sec && !ts->tv_nsec))
    return REAL(epoll_pwait2)(epfd, ev, max, ts, mask);
  return epoll_common(epfd, ev, max, ts_deadline(ts), mask);
}
