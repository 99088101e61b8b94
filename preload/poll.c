/* poll.c: poll, ppoll, select, pselect, epoll_wait, epoll_pwait in green
 * threads.
 *
 * Each first asks the kernel with a zero timeout; if nothing is ready and
 * the caller is willing to wait, the green thread parks on the hub until one
 * of the descriptors is ready (or the timeout passes), then asks again.  The
 * answer always comes from the kernel, so the readiness contract (POLLHUP,
 * POLLERR, POLLNVAL, exceptional conditions) is exactly the native one.
 *
 * Notes.
 * A. There is no 1024-descriptor ceiling: poll hands any number of
 *    descriptors to the hub (kz__wait_fds).  select keeps its own API limit
 *    (FD_SETSIZE), as in libc.
 * B. An epoll instance is itself a descriptor that becomes readable when one
 *    of its members is ready, so epoll_wait waits on it like on a socket.
 * C. ppoll/pselect/epoll_pwait take a signal mask for the duration of the
 *    wait; on one OS thread shared by many green threads that mask cannot be
 *    installed while parked, so it is applied only to the kernel's own
 *    zero-timeout queries.  Documented in docs/SHIM.md.
 */
#include "shim.h"

#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* Deadline (kz__now seconds, -1 none) of a timeout in milliseconds. */
static double ms_deadline(int ms) { return ms < 0 ? -1 : kz__now() + ms / 1000.0; }

static double ts_deadline(const struct timespec *ts)
{
  return ts ? kz__now() + (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 : -1;
}

static int to_events(short ev)
{
  return (ev & (POLLIN | POLLPRI | POLLRDHUP) ? KZ_READ : 0) | (ev & POLLOUT ? KZ_WRITE : 0);
}

/* Park until one of fds may be ready; 0, or -1 with errno. */
static int wait_pollfds(struct pollfd *fds, nfds_t n, double deadline)
{
  struct kz__fdev stackv[16], *v = stackv;
  int r;
  if (n > 16 && !(v = malloc(sizeof *v * n))) {
    errno = ENOMEM;
    return -1;
  }
  for (nfds_t i = 0; i < n; i++)
    v[i] = (struct kz__fdev){.fd = fds[i].fd, .events = to_events(fds[i].events) | KZ_READ};
  kz_shim_stats.parks++;
  r = kz__wait_fds(v, (int)n, deadline);
  if (v != stackv)
    free(v);
  if (r < 0 && r != -ETIMEDOUT) {
    errno = -r;
    return -1;
  }
  return 0;
}

static int poll_common(struct pollfd *fds, nfds_t n, double deadline, const sigset_t *mask)
{
  for (;;) {
    struct timespec zero = {0, 0};
    int r = mask ? REAL(ppoll)(fds, n, &zero, mask) : REAL(poll)(fds, n, 0);
    if (r != 0 || (deadline >= 0 && kz__now() >= deadline))
      return r;
    if (wait_pollfds(fds, n, deadline) < 0)
      return -1;
  }
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
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

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
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

/* select in terms of poll: the sets become pollfds and back. */
static int select_common(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, double deadline,
                         const sigset_t *mask)
{
  struct pollfd stackp[64], *p = stackp;
  int n = 0, r, ready = 0;
  if (nfds < 0 || nfds > FD_SETSIZE) {
    errno = EINVAL;
    return -1;
  }
  if (nfds > 64 && !(p = malloc(sizeof *p * (size_t)nfds))) {
    errno = ENOMEM;
    return -1;
  }
  for (int fd = 0; fd < nfds; fd++) {
    short ev = (short)((rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                       (ex && FD_ISSET(fd, ex) ? POLLPRI : 0));
    if (ev)
      p[n++] = (struct pollfd){fd, ev, 0};
  }
  r = poll_common(p, (nfds_t)n, deadline, mask);
  if (r >= 0) {
    for (int i = 0; i < n; i++) {
      if (p[i].revents & POLLNVAL) {
        errno = EBADF;
        r = -1;
        goto out;
      }
    }
    if (rd) FD_ZERO(rd);
    if (wr) FD_ZERO(wr);
    if (ex) FD_ZERO(ex);
    for (int i = 0; i < n; i++) {
      short re = p[i].revents;
      if (rd && (re & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN)) FD_SET(p[i].fd, rd), ready++;
      if (wr && (re & (POLLOUT | POLLERR)) && (p[i].events & POLLOUT)) FD_SET(p[i].fd, wr), ready++;
      if (ex && (re & POLLPRI) && (p[i].events & POLLPRI)) FD_SET(p[i].fd, ex), ready++;
    }
    r = ready;
  }
out:
  if (p != stackp)
    free(p);
  return r;
}

EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
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

EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
                   const sigset_t *mask)
{
  if (!shim_active(KZ_PATCH_POLL) || (ts && !ts->tv_sec && !ts->tv_nsec))
    return REAL(pselect)(nfds, rd, wr, ex, ts, mask);
  return select_common(nfds, rd, wr, ex, ts_deadline(ts), mask);
}

static int epoll_common(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
  double deadline = ms_deadline(timeout);
  for (;;) {
    int r = mask ? REAL(epoll_pwait)(epfd, ev, max, 0, mask) : REAL(epoll_wait)(epfd, ev, max, 0);
    if (r != 0 || (deadline >= 0 && kz__now() >= deadline))
      return r;
    kz_shim_stats.parks++;
    r = kz__wait_fd(epfd, KZ_READ, deadline); /* note B */
    if (r < 0 && r != -ETIMEDOUT) {
      errno = -r;
      return -1;
    }
  }
}

EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
  if (!shim_active(KZ_PATCH_POLL) || timeout == 0)
    return REAL(epoll_wait)(epfd, ev, max, timeout);
  return epoll_common(epfd, ev, max, timeout, NULL);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
  if (!shim_active(KZ_PATCH_POLL) || timeout == 0)
    return REAL(epoll_pwait)(epfd, ev, max, timeout, mask);
  return epoll_common(epfd, ev, max, timeout, mask);
}
