/* io.c: sockets, pipes and descriptors: read/write and their vector,
 * positional and socket forms, accept, connect, sendfile, splice, and the
 * calls that create, duplicate, close and configure descriptors.
 *
 * Every blocking interposer has the same shape, held by xfer_run():
 *   - outside a green thread, or on a descriptor the program made
 *     non-blocking itself, or on a regular file: the real call, as is;
 *   - a socket: the call with MSG_DONTWAIT; on EAGAIN, park on the hub until
 *     the socket is ready, then retry;
 *   - anything else (pipe, terminal, character device): poll it with a zero
 *     timeout first, park on the hub until it is ready, then make the real
 *     call, which no longer blocks (fd.c, note A).
 * SO_RCVTIMEO/SO_SNDTIMEO bound the wait like they bound the real call
 * (failing with EAGAIN); a scoped deadline fails it with ETIMEDOUT, a
 * cancellation with ECANCELED, a close by another green thread with EBADF,
 * a signal handler with EINTR (signal.c).  A call that already moved some
 * bytes returns their count instead of failing, as natively.
 *
 * Notes.
 * A. accept() takes no per-call flag that would make it non-blocking, so a
 *    blocking listener is polled first: between the readiness and the
 *    accept no other green thread of the hub runs, and only another process
 *    sharing the listener (a pre-forked server) could take the connection;
 *    then accept blocks the OS thread until the next one arrives, as it
 *    would natively.  Setting O_NONBLOCK on a listener shared with other
 *    processes would race with theirs, so it is not done.
 * B. connect() on a blocking socket is started non-blocking (the socket's
 *    flags are changed for the duration of the call and restored; no other
 *    green thread runs meanwhile), then waits for writability and reports
 *    SO_ERROR as errno.  sendfile() and splice() to or from a socket the
 *    program created do the same, since neither has a per-call flag for
 *    sockets; on an inherited socket they are polled first.
 * C. close(), dup2(), dup3(), close_range() and closefrom() first make the
 *    hub forget the descriptor: green threads waiting on it fail with EBADF,
 *    and the number can be reused at once.  fclose() does the same for its
 *    stream's descriptor, since libc closes it internally where the shim
 *    cannot see.
 * D. A blocking write moves every byte before it returns (natively the
 *    kernel loops; with MSG_DONTWAIT it returns a short count when the
 *    buffer fills), and so does a read with MSG_WAITALL on a stream socket.
 *    On a pipe, a large blocking write would block the OS thread until a
 *    reader drains it, and that reader may be a green thread of the same
 *    hub: such writes go PIPE_BUF bytes at a time, each after POLLOUT (one
 *    free pipe buffer, so it cannot block).  Writes of at most PIPE_BUF
 *    bytes stay atomic.
 * E. The glibc fortified entry points (__read_chk ...) check the buffer
 *    size like glibc does, failing through glibc's own __chk_fail.
 * F. A read on a socket whose previous read came back short (fewer bytes
 *    than asked: the receive queue was emptied) waits for readiness before
 *    trying, instead of making a call that would fail with EAGAIN: in a
 *    request-response exchange the next request has not arrived yet, and
 *    the failed call would be a third of the request's system calls.
 *    Readiness is level-triggered, so bytes that did arrive meanwhile are
 *    reported by the hub's next poll: a wrong guess costs a loop pass, not
 *    a lost wake-up.  Not when a timeout or a scoped deadline is running,
 *    where a read must still succeed on data already there.
 * H. The runtime's own descriptors (hub/rtfd.c) do not exist for the
 *    program: close() of one fails with EBADF, close_range() and closefrom()
 *    close the program's descriptors around them, dup(), dup2(), dup3(),
 *    fcntl() and fstat() of one fail with EBADF, and listings of
 *    /proc/self/fd leave them out (dir.c).  These checks run on every thread, green
 *    or not (a thread the shim leaves real can close a hub's descriptor as
 *    well as a green one can), before the pass-through.  dup2() or dup3()
 *    onto one moves the runtime's descriptor out of the way first (hub/hub.c,
 *    note G) and then proceeds; where it cannot move (the caller is not a
 *    green thread of the hub that owns it) it fails with EBUSY, the error
 *    Linux gives for a number that cannot be taken over at that moment.  The
 *    runtime's numbers sit near the top of the first 1024 (hub/rtfd.c, note
 *    B), where only a program aiming at them by number meets this.  libev's
 *    epoll_create1, made in the runtime's scope, is moved there as it is
 *    created.
 * I. A socket error after some bytes moved (a reset in the middle of a
 *    blocking write): the kernel reports it once, to the call that meets it,
 *    and a blocking call that moved bytes natively returns their count and
 *    leaves the error for the next call.  The shim's own retry inside the
 *    call is the one that meets it, so it keeps the error on the descriptor
 *    (pending_err) and the next call there fails with it, without a system
 *    call; a retry after bytes moved sends with MSG_NOSIGNAL, since natively
 *    that call would return its count without SIGPIPE, which comes with the
 *    next write.
 * J. A read from a descriptor open only for writing (a pipe's write end),
 *    or a write to one open only for reading, fails at once with EBADF
 *    natively.  Polled first, it would never be ready for that direction
 *    and its green thread would park for ever: such calls go straight to
 *    the kernel (the open file's access mode is known from its creation or
 *    its classification).
 * G. errno is the program's: a call that succeeds leaves it as it was,
 *    even after an attempt inside failed with EAGAIN, or when recvmmsg,
 *    sendmmsg or sendfile return what they moved before an error (as the
 *    kernel does: the error comes back on the next call).
 */
#include "shim.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT

extern void __chk_fail(void) __attribute__((noreturn));

/* ---- The wait helpers ------------------------------------------------------ */

int kz_shim_wait_until(int fd, int events, double deadline, int intr)
{
  struct kz_green *g = kz__self();
  int r;
  kz_shim_stats.parks++;
  kz_shim_intr_begin(g, intr);
  r = kz__wait_fd(fd, events, deadline);
  kz_shim_intr_end(g);
  if (r >= 0)
    return 0;
  kz_shim_cancel_point(r);
  if (r == -ETIMEDOUT && !(g->deadline > 0 && (deadline < 0 || g->deadline <= deadline)))
    r = -EAGAIN; /* the descriptor's own timeout, as the kernel reports it */
  errno = -r;
  return -1;
}

int kz_shim_wait(int fd, int events, double timeout)
{
  return kz_shim_wait_until(fd, events, timeout > 0 ? kz__now() + timeout : -1,
                            timeout > 0 ? KZ_INTR_ALWAYS : KZ_INTR_RESTART);
}

/* Is fd ready (or in error, or hung up: the call will say) right now? */
static bool ready_now(int fd, int events)
{
  struct pollfd p = {fd, (short)((events & KZ_READ ? POLLIN : 0) | (events & KZ_WRITE ? POLLOUT : 0)), 0};
  return REAL(poll)(&p, 1, 0) != 0;
}

/* Park until fd is ready for events unless it already is; 0 or -1/errno. */
static int wait_ready(int fd, int events, double deadline, int intr)
{
  while (!ready_now(fd, events))
    if (kz_shim_wait_until(fd, events, deadline, intr) < 0)
      return -1;
  return 0;
}

/* The descriptor's state if a call on it should be driven by the shim: in a
   green thread, blocking in the program's view, not a regular file, and a
   socket if the call is a socket call (else it fails natively: ENOTSOCK). */
static struct kz_fd *blocking_fd(unsigned family, int fd, bool sockets_only)
{
  struct kz_fd *f;
  if (!shim_active(family) || !(f = kz_fd_get(fd)) || f->user_nb || f->kind == KZ_FD_FILE)
    return NULL;
  if (sockets_only && f->kind != KZ_FD_SOCKET)
    return NULL;
  return f;
}

/* Set O_NONBLOCK on fd's open file for one call (note B); false if it
   cannot be done (or is already set). */
static bool nb_begin(int fd, int *saved)
{
  int fl = REAL(fcntl)(fd, F_GETFL);
  if (fl < 0 || (fl & O_NONBLOCK) || REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return false;
  *saved = fl;
  return true;
}

static void nb_end(int fd, int saved)
{
  int err = errno;
  REAL(fcntl)(fd, F_SETFL, saved);
  errno = err;
}

/* ---- Transfers ----------------------------------------------------------------- */

#define WINDOW 16 /* iovec entries per retry after a partial transfer */

/* One read or write in progress: the program's buffers and how far it got. */
struct xfer {
  struct msghdr *mp;          /* what the next attempt sends or fills */
  struct msghdr m;            /* mp for every form but recvmsg/sendmsg's first try */
  struct iovec one;           /* the buffer of the single-buffer forms */
  const struct iovec *iov;    /* the program's buffers, never modified */
  size_t iovcnt;
  size_t total;               /* bytes asked for */
  size_t done;                /* bytes moved so far */
  int flags;                  /* the program's MSG_* flags */
  int rwf;                    /* preadv2/pwritev2 flags (v2 set) */
  bool v2;                    /* preadv2/pwritev2 at the current position */
  bool all;                   /* move every byte before returning (note D) */
  bool sock_call;             /* recv/send family: ENOTSOCK on anything else */
  struct iovec part[WINDOW];  /* what is left, after a partial transfer */
};

static size_t iov_total(const struct iovec *v, size_t n)
{
  size_t t = 0;
  for (size_t i = 0; i < n; i++)
    t += v[i].iov_len;
  return t;
}

static void xfer_init(struct xfer *x, const struct iovec *iov, size_t n, int flags)
{
  x->m = (struct msghdr){.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
  x->mp = &x->m;
  x->iov = iov;
  x->iovcnt = n;
  x->total = iov_total(iov, n);
  x->done = 0;
  x->flags = flags;
  x->v2 = false;
  x->all = false;
  x->sock_call = false;
}

static void xfer_buf(struct xfer *x, const void *buf, size_t len, int flags)
{
  x->one = (struct iovec){(void *)buf, len};
  xfer_init(x, &x->one, 1, flags);
}

/* Point the next attempt at what is left after x->done bytes, at most cap
   bytes of it.  Ancillary data went with the first bytes. */
static void xfer_window(struct xfer *x, size_t cap)
{
  size_t skip = x->done, i = 0, k = 0, sum = 0;
  while (i < x->iovcnt && skip >= x->iov[i].iov_len)
    skip -= x->iov[i++].iov_len;
  for (; i < x->iovcnt && k < WINDOW && sum < cap; i++, k++) {
    x->part[k] = x->iov[i];
    if (k == 0) {
      x->part[0].iov_base = (char *)x->part[0].iov_base + skip;
      x->part[0].iov_len -= skip;
    }
    if (x->part[k].iov_len > cap - sum)
      x->part[k].iov_len = cap - sum;
    sum += x->part[k].iov_len;
  }
  if (x->mp != &x->m)
    x->m = *x->mp;
  x->m.msg_iov = x->part;
  x->m.msg_iovlen = k;
  x->m.msg_control = NULL;
  x->m.msg_controllen = 0;
  x->mp = &x->m;
}

/* One attempt on a socket, without blocking. */
static ssize_t sock_once(int fd, struct xfer *x, bool rd)
{
  struct msghdr *m = x->mp;
  int fl = x->flags | MSG_DONTWAIT | (x->done && !rd ? MSG_NOSIGNAL : 0); /* note I */
  if (m->msg_iovlen == 1 && !m->msg_control && m == &x->m) {
    struct iovec *v = m->msg_iov;
    if (rd)
      return REAL(recvfrom)(fd, v->iov_base, v->iov_len, fl, m->msg_name,
                            m->msg_name ? &m->msg_namelen : NULL);
    return REAL(sendto)(fd, v->iov_base, v->iov_len, fl, m->msg_name, m->msg_namelen);
  }
  return rd ? REAL(recvmsg)(fd, m, fl) : REAL(sendmsg)(fd, m, fl);
}

/* One attempt on anything else, once it is ready. */
static ssize_t plain_once(int fd, struct xfer *x, bool rd)
{
  struct msghdr *m = x->mp;
  int n = (int)m->msg_iovlen;
  if (x->v2)
    return rd ? REAL(preadv2)(fd, m->msg_iov, n, -1, x->rwf) : REAL(pwritev2)(fd, m->msg_iov, n, -1, x->rwf);
  if (n == 1)
    return rd ? REAL(read)(fd, m->msg_iov->iov_base, m->msg_iov->iov_len)
              : REAL(write)(fd, m->msg_iov->iov_base, m->msg_iov->iov_len);
  return rd ? REAL(readv)(fd, m->msg_iov, n) : REAL(writev)(fd, m->msg_iov, n);
}

/* The loop every read and write interposer shares (see the top of this file).
   Returns the bytes moved, or -1 with errno. */
static ssize_t xfer_run(int fd, struct kz_fd *f, struct xfer *x, int events)
{
  bool rd = events & KZ_READ;
  double timeout = rd ? f->rcvtimeo : f->sndtimeo;
  double deadline = timeout > 0 ? kz__now() + timeout : -1;
  int intr = timeout > 0 ? KZ_INTR_ALWAYS : KZ_INTR_RESTART;
  size_t cap = !rd && f->kind == KZ_FD_PIPE && x->total > PIPE_BUF ? PIPE_BUF : SIZE_MAX;
  int saved = errno; /* note G */
  ssize_t r;

  if (KZ_UNLIKELY(f->pending_err)) { /* note I */
    errno = f->pending_err;
    f->pending_err = 0;
    return -1;
  }
  if (f->kind != KZ_FD_SOCKET && f->accmode != O_RDWR && f->accmode != (rd ? O_RDONLY : O_WRONLY))
    return plain_once(fd, x, rd); /* note J: fails at once, as natively */
  if (cap != SIZE_MAX)
    xfer_window(x, cap);
  if (rd && f->drained && deadline < 0 && !(kz__self()->deadline > 0) &&
      kz_shim_wait_until(fd, events, -1, intr) < 0) /* note F */
    return -1;
  for (;;) {
    if (f->kind == KZ_FD_SOCKET) {
      r = sock_once(fd, x, rd);
      if (rd)
        f->drained = r > 0 && (size_t)r < x->total - x->done && !(x->flags & MSG_PEEK);
    } else if (ready_now(fd, events)) {
      r = plain_once(fd, x, rd);
    } else {
      r = -1, errno = EAGAIN;
    }
    if (r >= 0) {
      x->done += (size_t)r;
      if (!x->all || r == 0 || x->done >= x->total) {
        errno = saved;
        return (ssize_t)x->done;
      }
      xfer_window(x, cap);
      continue;
    }
    if (errno == ENOTSOCK && f->kind == KZ_FD_SOCKET && !x->done) { /* fd.c, note B */
      kz_fd_reclassify(fd);
      if (x->sock_call || !(f = kz_fd_get(fd)))
        return -1;
      if (f->user_nb || f->kind == KZ_FD_FILE)
        return plain_once(fd, x, rd);
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) { /* the call's own error */
      if (!x->done)
        return -1;
      if (f->kind == KZ_FD_SOCKET && errno != EPIPE)
        f->pending_err = errno; /* note I: the kernel told it once */
      errno = saved;
      return (ssize_t)x->done;
    }
    if (kz_shim_wait_until(fd, events, deadline, intr) < 0) {
      if (!x->done)
        return -1;
      errno = saved;
      return (ssize_t)x->done;
    }
  }
}

/* MSG_WAITALL waits for every byte on stream sockets only. */
static bool waits_for_all(int fd, int flags)
{
  int type = 0;
  socklen_t len = sizeof type;
  return (flags & MSG_WAITALL) && REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
         type == SOCK_STREAM;
}

/* ---- read, write and their forms ----------------------------------------------- */

KZ_INTERPOSE(ssize_t, read, (int fd, void *buf, size_t len), (fd, buf, len))
{
  struct kz_fd *f = blocking_fd(KZ_PATCH_IO, fd, false);
  struct xfer x;
  if (!f)
    return REAL(read)(fd, buf, len);
  xfer_buf(&x, buf, len, 0);
  return xfer_run(fd, f, &x, KZ_READ);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
  if (len > buflen)
    __chk_fail();
  return read(fd, buf, len);
}

KZ_INTERPOSE(ssize_t, write, (int fd, const void *buf, size_t len), (fd, buf, len))
{
  struct kz_fd *f = blocking_fd(KZ_PATCH_IO, fd, false);
  struct xfer x;
  if (!f)
    return REAL(write)(fd, buf, len);
  xfer_buf(&x, buf, len, 0);
  x.all = true;
  return xfer_run(fd, f, &x, KZ_WRITE);
}

KZ_INTERPOSE(ssize_t, readv, (int fd, const struct iovec *iov, int n), (fd, iov, n))
{
  struct kz_fd *f = n > 0 ? blocking_fd(KZ_PATCH_IO, fd, false) : NULL;
  struct xfer x;
  if (!f)
    return REAL(readv)(fd, iov, n);
  xfer_init(&x, iov, (size_t)n, 0);
  return xfer_run(fd, f, &x, KZ_READ);
}

KZ_INTERPOSE(ssize_t, writev, (int fd, const struct iovec *iov, int n), (fd, iov, n))
{
  struct kz_fd *f = n > 0 ? blocking_fd(KZ_PATCH_IO, fd, false) : NULL;
  struct xfer x;
  if (!f)
    return REAL(writev)(fd, iov, n);
  xfer_init(&x, iov, (size_t)n, 0);
  x.all = true;
  return xfer_run(fd, f, &x, KZ_WRITE);
}

/* preadv2/pwritev2 at offset -1 use (and move) the current position, so
   they work on pipes and sockets like readv/writev; RWF_NOWAIT asks for no
   waiting at all. */
static ssize_t v2_run(int fd, const struct iovec *iov, int n, int rwf, bool rd)
{
  struct kz_fd *f = n > 0 && !(rwf & RWF_NOWAIT) ? blocking_fd(KZ_PATCH_IO, fd, false) : NULL;
  struct xfer x;
  if (!f)
    return rd ? REAL(preadv2)(fd, iov, n, -1, rwf) : REAL(pwritev2)(fd, iov, n, -1, rwf);
  xfer_init(&x, iov, (size_t)n, 0);
  x.v2 = f->kind != KZ_FD_SOCKET;
  x.rwf = rwf;
  x.all = !rd;
  return xfer_run(fd, f, &x, rd ? KZ_READ : KZ_WRITE);
}

KZ_INTERPOSE(ssize_t, preadv2, (int fd, const struct iovec *iov, int n, off_t off, int rwf), (fd, iov, n, off, rwf))
{
  if (off != -1)
    return REAL(preadv2)(fd, iov, n, off, rwf);
  return v2_run(fd, iov, n, rwf, true);
}

KZ_INTERPOSE(ssize_t, pwritev2, (int fd, const struct iovec *iov, int n, off_t off, int rwf), (fd, iov, n, off, rwf))
{
  if (off != -1)
    return REAL(pwritev2)(fd, iov, n, off, rwf);
  return v2_run(fd, iov, n, rwf, false);
}

/* The positional forms at an explicit offset need a seekable file, which
   is always ready: they pass through (a pipe or socket fails with ESPIPE).
   off_t is 64 bits on this ABI, so the 64 forms are the same functions. */
KZ_INTERPOSE(ssize_t, pread, (int fd, void *buf, size_t len, off_t off), (fd, buf, len, off))
{ return REAL(pread)(fd, buf, len, off); }
KZ_INTERPOSE(ssize_t, pwrite, (int fd, const void *buf, size_t len, off_t off), (fd, buf, len, off))
{
  return REAL(pwrite)(fd, buf, len, off);
}
KZ_INTERPOSE(ssize_t, preadv, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
{
  return REAL(preadv)(fd, iov, n, off);
}
KZ_INTERPOSE(ssize_t, pwritev, (int fd, const struct iovec *iov, int n, off_t off), (fd, iov, n, off))
{
  return REAL(pwritev)(fd, iov, n, off);
}
EXPORT ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
  if (len > buflen)
    __chk_fail();
  return REAL(pread)(fd, buf, len, off);
}
extern __typeof(pread) pread64 __attribute__((alias("pread"), visibility("default")));
extern __typeof(pwrite) pwrite64 __attribute__((alias("pwrite"), visibility("default")));
extern __typeof(preadv) preadv64 __attribute__((alias("preadv"), visibility("default")));
extern __typeof(pwritev) pwritev64 __attribute__((alias("pwritev"), visibility("default")));
extern __typeof(preadv2) preadv64v2 __attribute__((alias("preadv2"), visibility("default")));
extern __typeof(pwritev2) pwritev64v2 __attribute__((alias("pwritev2"), visibility("default")));
extern __typeof(__pread_chk) __pread64_chk __attribute__((alias("__pread_chk"), visibility("default")));

/* ---- The socket forms ------------------------------------------------------------ */

KZ_INTERPOSE(ssize_t, recv, (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags))
{
  struct kz_fd *f = flags & MSG_DONTWAIT ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  struct xfer x;
  if (!f)
    return REAL(recv)(fd, buf, len, flags);
  xfer_buf(&x, buf, len, flags);
  x.all = waits_for_all(fd, flags);
  x.sock_call = true;
  return xfer_run(fd, f, &x, KZ_READ);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
  if (len > buflen)
    __chk_fail();
  return recv(fd, buf, len, flags);
}

KZ_INTERPOSE(ssize_t, recvfrom, (int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addrlen), (fd, buf, len, flags, addr, addrlen))
{
  struct kz_fd *f = flags & MSG_DONTWAIT ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  struct xfer x;
  ssize_t r;
  if (!f)
    return REAL(recvfrom)(fd, buf, len, flags, addr, addrlen);
  xfer_buf(&x, buf, len, flags);
  if (addr && addrlen) {
    x.m.msg_name = addr;
    x.m.msg_namelen = *addrlen;
  }
  x.all = waits_for_all(fd, flags);
  x.sock_call = true;
  r = xfer_run(fd, f, &x, KZ_READ);
  if (r >= 0 && addr && addrlen)
    *addrlen = x.m.msg_namelen;
  return r;
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *addrlen)
{
  if (len > buflen)
    __chk_fail();
  return recvfrom(fd, buf, len, flags, addr, addrlen);
}

KZ_INTERPOSE(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags), (fd, msg, flags))
{
  struct kz_fd *f = flags & MSG_DONTWAIT ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  struct xfer x;
  if (!f)
    return REAL(recvmsg)(fd, msg, flags);
  xfer_init(&x, msg->msg_iov, msg->msg_iovlen, flags);
  x.mp = msg; /* the kernel reports name, control and flags in the program's own */
  x.all = waits_for_all(fd, flags);
  x.sock_call = true;
  return xfer_run(fd, f, &x, KZ_READ);
}

KZ_INTERPOSE(ssize_t, send, (int fd, const void *buf, size_t len, int flags), (fd, buf, len, flags))
{
  struct kz_fd *f = flags & MSG_DONTWAIT ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  struct xfer x;
  if (!f)
    return REAL(send)(fd, buf, len, flags);
  xfer_buf(&x, buf, len, flags);
  x.all = true;
  x.sock_call = true;
  return xfer_run(fd, f, &x, KZ_WRITE);
}

KZ_INTERPOSE(ssize_t, sendto, (int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr, socklen_t addrlen), (fd, buf, len, flags, addr, addrlen))
{
  struct kz_fd *f = flags & MSG_DONTWAIT ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  struct xfer x;
  if (!f)
    return REAL(sendto)(fd, buf, len, flags, addr, addrlen);
  xfer_buf(&x, buf, len, flags);
  x.m.msg_name = (void *)addr;
  x.m.msg_namelen = addr ? addrlen : 0;
  x.all = true;
  x.sock_call = true;
  return xfer_run(fd, f, &x, KZ_WRITE);
}

KZ_INTERPOSE(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), (fd, msg, flags))
{
  struct kz_fd *f = flags & MSG_DONTWAIT ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  struct xfer x;
  if (!f)
    return REAL(sendmsg)(fd, msg, flags);
  xfer_init(&x, msg->msg_iov, msg->msg_iovlen, flags);
  x.mp = (struct msghdr *)msg; /* read only: the first try sends it as is */
  x.all = true;
  x.sock_call = true;
  return xfer_run(fd, f, &x, KZ_WRITE);
}

/* Natively a blocking recvmmsg waits for all n messages (for the first one
   only with MSG_WAITFORONE); its timeout, checked after each message, ends
   the wait once at least one arrived. */
KZ_INTERPOSE(int, recvmmsg, (int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *tmo), (fd, v, n, flags, tmo))
{
  struct kz_fd *f = flags & MSG_DONTWAIT || !n ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  double deadline, until = -1;
  unsigned got = 0;
  int r, saved = errno; /* note G */
  if (!f)
    return REAL(recvmmsg)(fd, v, n, flags, tmo);
  deadline = f->rcvtimeo > 0 ? kz__now() + f->rcvtimeo : -1;
  if (tmo)
    until = kz__now() + (double)tmo->tv_sec + (double)tmo->tv_nsec * 1e-9;
  for (;;) {
    r = REAL(recvmmsg)(fd, v + got, n - got, flags | MSG_DONTWAIT, NULL);
    if (r > 0) {
      got += (unsigned)r;
      if (got == n || (flags & MSG_WAITFORONE) || (tmo && kz__now() >= until))
        break;
      continue;
    }
    if (r < 0 && errno != EAGAIN)
      break;
    if (kz_shim_wait_until(fd, KZ_READ, got && tmo ? until : deadline,
                           got || deadline >= 0 ? KZ_INTR_ALWAYS : KZ_INTR_RESTART) < 0)
      break;
  }
  if (!got)
    return -1;
  errno = saved;
  return (int)got;
}

KZ_INTERPOSE(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned n, int flags), (fd, v, n, flags))
{
  struct kz_fd *f = flags & MSG_DONTWAIT || !n ? NULL : blocking_fd(KZ_PATCH_IO, fd, true);
  double deadline;
  unsigned sent = 0;
  int r, saved = errno; /* note G */
  if (!f)
    return REAL(sendmmsg)(fd, v, n, flags);
  deadline = f->sndtimeo > 0 ? kz__now() + f->sndtimeo : -1;
  for (;;) {
    r = REAL(sendmmsg)(fd, v + sent, n - sent, flags | MSG_DONTWAIT);
    if (r > 0 && (sent += (unsigned)r) == n)
      break;
    if (r < 0 && errno != EAGAIN)
      break;
    if (r <= 0 && kz_shim_wait_until(fd, KZ_WRITE, deadline,
                                     deadline >= 0 ? KZ_INTR_ALWAYS : KZ_INTR_RESTART) < 0)
      break;
  }
  if (!sent)
    return -1;
  errno = saved;
  return (int)sent;
}

/* ---- sendfile and splice (note B) --------------------------------------------- */

/* Moves every byte (or up to the end of in_fd), like the blocking call. */
KZ_INTERPOSE(ssize_t, sendfile, (int out, int in, off_t *off, size_t count), (out, in, off, count))
{
  struct kz_fd *f = blocking_fd(KZ_PATCH_IO, out, false);
  double deadline;
  size_t done = 0;
  ssize_t r = 0;
  int saved, err = errno; /* note G */
  if (!f || !count)
    return REAL(sendfile)(out, in, off, count);
  deadline = f->sndtimeo > 0 ? kz__now() + f->sndtimeo : -1;
  while (done < count) {
    size_t n = count - done;
    if (wait_ready(out, KZ_WRITE, deadline, f->sndtimeo > 0 ? KZ_INTR_ALWAYS : KZ_INTR_RESTART) < 0) {
      r = -1;
      break;
    }
    if (f->kind == KZ_FD_PIPE && n > PIPE_BUF)
      n = PIPE_BUF;
    if (f->kind == KZ_FD_SOCKET && f->owned && nb_begin(out, &saved)) {
      r = REAL(sendfile)(out, in, off, n);
      nb_end(out, saved);
    } else {
      r = REAL(sendfile)(out, in, off, n);
    }
    if (r == 0 || (r < 0 && errno != EAGAIN)) /* the end of in, or an error */
      break;
    if (r > 0)
      done += (size_t)r;
  }
  if (!done && r < 0)
    return -1;
  errno = err;
  return (ssize_t)done;
}

extern __typeof(sendfile) sendfile64 __attribute__((alias("sendfile"), visibility("default")));

/* One end of a splice: wait for it unless it is a file. */
static int splice_wait(struct kz_fd *f, int fd, int events)
{
  if (f->kind == KZ_FD_FILE)
    return 0;
  return wait_ready(fd, events, -1, KZ_INTR_RESTART);
}

/* One of the two ends is a pipe, which SPLICE_F_NONBLOCK covers; a socket
   end the program created is made non-blocking for the call. */
KZ_INTERPOSE(ssize_t, splice, (int in, loff_t *offin, int out, loff_t *offout, size_t len, unsigned flags), (in, offin, out, offout, len, flags))
{
  struct kz_fd *fi, *fo;
  int sock, saved, err = errno; /* note G */
  bool nb;
  ssize_t r;
  if (!shim_active(KZ_PATCH_IO) || (flags & SPLICE_F_NONBLOCK) || !(fi = kz_fd_get(in)) ||
      !(fo = kz_fd_get(out)) || fi->user_nb || fo->user_nb)
    return REAL(splice)(in, offin, out, offout, len, flags);
  sock = fi->kind == KZ_FD_SOCKET && fi->owned ? in : fo->kind == KZ_FD_SOCKET && fo->owned ? out : -1;
  for (;;) {
    if (splice_wait(fi, in, KZ_READ) < 0 || splice_wait(fo, out, KZ_WRITE) < 0)
      return -1;
    nb = sock >= 0 && nb_begin(sock, &saved);
    r = REAL(splice)(in, offin, out, offout, len, flags | SPLICE_F_NONBLOCK);
    if (nb)
      nb_end(sock, saved);
    if (r >= 0) {
      errno = err;
      return r;
    }
    if (errno != EAGAIN)
      return -1;
  }
}

/* ---- accept and connect ---------------------------------------------------------- */

/* Note A. */
static int accept_wait(int fd, struct kz_fd *f, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
  double deadline = f->rcvtimeo > 0 ? kz__now() + f->rcvtimeo : -1;
  if (wait_ready(fd, KZ_READ, deadline, f->rcvtimeo > 0 ? KZ_INTR_ALWAYS : KZ_INTR_RESTART) < 0)
    return -1;
  return REAL(accept4)(fd, addr, addrlen, flags);
}

KZ_INTERPOSE(int, accept4, (int fd, struct sockaddr *addr, socklen_t *addrlen, int flags), (fd, addr, addrlen, flags))
{
  struct kz_fd *f = blocking_fd(KZ_PATCH_IO, fd, true);
  int r = f ? accept_wait(fd, f, addr, addrlen, flags) : REAL(accept4)(fd, addr, addrlen, flags);
  if (r >= 0)
    kz_fd_created(r, KZ_FD_SOCKET, (flags & SOCK_NONBLOCK) != 0, O_RDWR);
  return r;
}

KZ_INTERPOSE(int, accept, (int fd, struct sockaddr *addr, socklen_t *addrlen), (fd, addr, addrlen))
{
  struct kz_fd *f = blocking_fd(KZ_PATCH_IO, fd, true);
  int r = f ? accept_wait(fd, f, addr, addrlen, 0) : REAL(accept)(fd, addr, addrlen);
  if (r >= 0)
    kz_fd_created(r, KZ_FD_SOCKET, false, O_RDWR);
  return r;
}

/* Note B. */
/* One connect attempt without blocking (note B). */
static int connect_nb(int fd, const struct sockaddr *addr, socklen_t len)
{
  int saved, r;
  if (!nb_begin(fd, &saved))
    return REAL(connect)(fd, addr, len);
  r = REAL(connect)(fd, addr, len);
  nb_end(fd, saved);
  return r;
}

/* A Unix socket's listener with a full backlog refuses a non-blocking
   connect with EAGAIN, and nothing on the connecting side becomes ready
   when room appears (natively the caller sleeps on the listener): the
   blocking connect runs on the blocking pool (block.c), interrupted rather
   than abandoned. */
static long call_connect(const long *a)
{
  return REAL(connect)((int)a[0], (const struct sockaddr *)a[1], (socklen_t)a[2]);
}

KZ_INTERPOSE(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), (fd, addr, len))
{
  struct kz_fd *f = blocking_fd(KZ_PATCH_IO, fd, true);
  int r, err = 0, saved = errno;
  socklen_t elen = sizeof err;
  if (!f)
    return REAL(connect)(fd, addr, len);
  if ((r = connect_nb(fd, addr, len)) < 0 && errno == EAGAIN && addr && addr->sa_family == AF_UNIX) {
    struct blk b = {.call = call_connect, .a = {fd, (long)addr, (long)len}};
    return (int)kz_shim_blocking(&b, KZ_INTR_RESTART, true, saved);
  }
  if (r == 0 || errno != EINPROGRESS)
    return r;
  if (kz_shim_wait(fd, KZ_WRITE, f->sndtimeo) < 0) {
    if (errno == EAGAIN)
      errno = EINPROGRESS; /* what a blocking connect reports on SO_SNDTIMEO */
    return -1;
  }
  if (REAL(getsockopt)(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
    return -1;
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

/* ---- Creating, duplicating, closing, configuring ------------------------------- */

KZ_INTERPOSE(int, socket, (int domain, int type, int protocol), (domain, type, protocol))
{
  int fd = REAL(socket)(domain, type, protocol);
  if (fd >= 0)
    kz_fd_created(fd, KZ_FD_SOCKET, (type & SOCK_NONBLOCK) != 0, O_RDWR);
  return fd;
}

KZ_INTERPOSE(int, socketpair, (int domain, int type, int protocol, int sv[2]), (domain, type, protocol, sv))
{
  int r = REAL(socketpair)(domain, type, protocol, sv);
  if (r == 0) {
    kz_fd_created(sv[0], KZ_FD_SOCKET, (type & SOCK_NONBLOCK) != 0, O_RDWR);
    kz_fd_created(sv[1], KZ_FD_SOCKET, (type & SOCK_NONBLOCK) != 0, O_RDWR);
  }
  return r;
}

KZ_INTERPOSE(int, pipe2, (int p[2], int flags), (p, flags))
{
  int r = REAL(pipe2)(p, flags);
  if (r == 0) {
    kz_fd_created(p[0], KZ_FD_PIPE, (flags & O_NONBLOCK) != 0, O_RDONLY);
    kz_fd_created(p[1], KZ_FD_PIPE, (flags & O_NONBLOCK) != 0, O_WRONLY);
  }
  return r;
}

KZ_INTERPOSE(int, pipe, (int p[2]), (p))
{ return pipe2(p, 0); }

/* Note H: a runtime descriptor in a call from anyone but the runtime.
   Sets errno and returns true if the call must fail with err. */
static bool runtime_fd(int fd, int err)
{
  if (KZ_LIKELY(!kz__rtfd_is(fd)) || kz__rtfd_scope)
    return false;
  errno = err;
  return true;
}

static __attribute__((noinline)) int close_in_green(int fd)
{
  kz_fd_forget(fd); /* note C */
  return REAL(close)(fd);
}

EXPORT int close(int fd)
{
  struct kz__hub *hub = kz__tls_hub;
  if (KZ_UNLIKELY(kz__rtfd_is(fd) || kz__rtfd_scope)) { /* note H */
    int r = kz__rtfd_refuse(fd);
    if (r != 0)
      return r < 0 ? -1 : 0;
  }
  if ((KZ_LIKELY(hub == NULL) || hub->current == NULL) && KZ_LIKELY(kz_real.close != NULL))
    return kz_real.close(fd);
  return close_in_green(fd);
}

KZ_INTERPOSE(int, fclose, (FILE *stream), (stream))
{
  int fd = stream ? fileno(stream) : -1;
  if (fd >= 0)
    kz_fd_forget(fd);
  return REAL(fclose)(stream);
}

/* close_range over [first, last] (first <= last) without the runtime's
   descriptors (note H): one call per stretch between them.
   CLOSE_RANGE_UNSHARE unshares the table once, first; CLOSE_RANGE_CLOEXEC
   marks the stretches only. */
static int close_range_around(unsigned first, unsigned last, int flags)
{
  if (flags & CLOSE_RANGE_UNSHARE) {
    if (kz__syscall(SYS_unshare, CLONE_FILES) < 0)
      return -1;
    flags &= ~CLOSE_RANGE_UNSHARE;
  }
  for (;;) {
    int hi = last > (unsigned)INT_MAX ? INT_MAX : (int)last;
    int rt = first <= (unsigned)INT_MAX ? kz__rtfd_next((int)first, hi) : -1;
    if (rt < 0)
      break;
    if ((unsigned)rt > first && REAL(close_range)(first, (unsigned)rt - 1, flags) < 0)
      return -1;
    first = (unsigned)rt + 1;
    if (first > last)
      return 0;
  }
  return REAL(close_range)(first, last, flags);
}

/* Is any runtime descriptor in [first, last]? */
static bool runtime_in(unsigned first, unsigned last)
{
  if (first > last || first > (unsigned)INT_MAX)
    return false;
  return kz__rtfd_next((int)first, last > (unsigned)INT_MAX ? INT_MAX : (int)last) >= 0;
}

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
  if (kz__self() && !(flags & CLOSE_RANGE_CLOEXEC) && first <= last)
    kz_fd_forget_range(first, last); /* note C */
  if (KZ_LIKELY(kz__rtfd_scope || !runtime_in(first, last)))
    return REAL(close_range)(first, last, flags);
  return close_range_around(first, last, flags); /* note H */
}

EXPORT void closefrom(int lowfd)
{
  unsigned first = lowfd < 0 ? 0u : (unsigned)lowfd;
  kz_fd_forget_range(first, ~0u);
  /* glibc's closefrom is close_range(lowfd, ~0U, 0) with a fallback for
     kernels without it (Linux < 5.9), where the runtime's descriptors are
     not spared. */
  if (!runtime_in(first, ~0u) || close_range_around(first, ~0u, 0) < 0)
    REAL(closefrom)(lowfd);
}

EXPORT int dup(int fd)
{
  int r;
  if (runtime_fd(fd, EBADF)) /* note H */
    return -1;
  r = REAL(dup)(fd);
  if (r >= 0 && kz__self())
    kz_fd_reclassify(r);
  return r;
}

/* dup2 and dup3: note C, and note H. */
static int dup_to(int old, int new, int flags, bool three)
{
  int r;
  if (runtime_fd(old, EBADF))
    return -1;
  if (KZ_UNLIKELY(kz__rtfd_is(new)) && !kz__rtfd_scope && kz__hub_give_fd(new) < 0 &&
      kz_shim_give_fd(new) < 0) {
    errno = EBUSY;
    return -1;
  }
  if (!kz__self())
    return three ? REAL(dup3)(old, new, flags) : REAL(dup2)(old, new);
  if (old != new && REAL(fcntl)(old, F_GETFD) >= 0)
    kz_fd_forget(new);
  r = three ? REAL(dup3)(old, new, flags) : REAL(dup2)(old, new);
  if (r >= 0)
    kz_fd_reclassify(r);
  return r;
}

EXPORT int dup2(int old, int new) { return dup_to(old, new, 0, false); }

EXPORT int dup3(int old, int new, int flags) { return dup_to(old, new, flags, true); }

/* Note H: fstat of a runtime descriptor fails as for a number not open
   (CPython's subprocess tests find a child's descriptors this way). */
EXPORT int fstat(int fd, struct stat *st)
{
  if (runtime_fd(fd, EBADF))
    return -1;
  return REAL(fstat)(fd, st);
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
  if (runtime_fd(fd, EBADF))
    return -1;
  return REAL(fstat64)(fd, st);
}

/* libev's epoll instance, created in the runtime's scope, goes to the
   runtime's numbers (hub/rtfd.c, note A); anyone else's is untouched. */
EXPORT int epoll_create1(int flags)
{
  int fd = REAL(epoll_create1)(flags);
  return KZ_UNLIKELY(kz__rtfd_scope) ? kz__rtfd_adopt(fd) : fd;
}

EXPORT int epoll_create(int size)
{
  int fd = REAL(epoll_create)(size);
  return KZ_UNLIKELY(kz__rtfd_scope) ? kz__rtfd_adopt(fd) : fd;
}

/* A hub's epoll instance closed behind the runtime's back would make libev
   abort on an assertion about the watched descriptor: say what happened. */
EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
  struct epoll_event probe;
  int r = REAL(epoll_ctl)(epfd, op, fd, ev);
  if (KZ_UNLIKELY(r < 0) && (errno == EBADF || errno == EINVAL) && kz__rtfd_is(epfd) &&
      REAL(epoll_wait)(epfd, &probe, 1, 0) < 0) /* closed, or now some other file */
    kz__rtfd_lost(epfd, "a hub's epoll instance");
  return r;
}

/* F_SETFL and F_DUPFD* change what the shim knows; the rest passes through.
   Every command's argument is an int or a pointer, which the x86_64 calling
   convention passes the same way as an unsigned long. */
static int fcntl_common(int fd, int cmd, unsigned long arg)
{
  int r;
  if (runtime_fd(fd, EBADF)) /* note H */
    return -1;
  if ((cmd == F_SETLKW || cmd == F_OFD_SETLKW) && kz__self())
    return kz_shim_lock_wait(fd, cmd, (void *)arg); /* block.c */
  r = REAL(fcntl)(fd, cmd, arg);
  if (r < 0)
    return r;
  if (cmd == F_SETFL) {
    struct kz_fd *f = kz_fd_get(fd);
    if (f)
      f->user_nb = (arg & O_NONBLOCK) != 0;
  } else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
    kz_fd_reclassify(r);
  }
  return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
  va_list ap;
  unsigned long arg;
  va_start(ap, cmd);
  arg = va_arg(ap, unsigned long);
  va_end(ap);
  return fcntl_common(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
  va_list ap;
  unsigned long arg;
  va_start(ap, cmd);
  arg = va_arg(ap, unsigned long);
  va_end(ap);
  return fcntl_common(fd, cmd, arg);
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
  va_list ap;
  void *arg;
  int r;
  va_start(ap, req);
  arg = va_arg(ap, void *);
  va_end(ap);
  r = REAL(ioctl)(fd, req, arg);
  if (r == 0 && req == FIONBIO && arg) {
    struct kz_fd *f = kz_fd_get(fd);
    if (f)
      f->user_nb = *(int *)arg != 0;
  }
  return r;
}

KZ_INTERPOSE(int, setsockopt, (int fd, int level, int opt, const void *val, socklen_t len), (fd, level, opt, val, len))
{
  int r = REAL(setsockopt)(fd, level, opt, val, len);
  if (r == 0 && level == SOL_SOCKET && (opt == SO_RCVTIMEO || opt == SO_SNDTIMEO) &&
      len >= sizeof(struct timeval)) {
    const struct timeval *tv = val;
    struct kz_fd *f = kz_fd_get(fd);
    double t = (double)tv->tv_sec + (double)tv->tv_usec * 1e-6;
    if (f && opt == SO_RCVTIMEO)
      f->rcvtimeo = t;
    else if (f)
      f->sndtimeo = t;
  }
  return r;
}
