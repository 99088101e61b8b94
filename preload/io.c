/* io.c: sockets, pipes and descriptors: read/write and their vector,
 * positional and socket forms, accept, connect, and the calls that create,
 * duplicate, close and configure descriptors.
 *
 * Every blocking interposer has the same shape, held by io_loop():
 *   - outside a green thread, or on a descriptor the program made
 *     non-blocking itself, or on a regular file: the real call, as is;
 *   - a socket: the call with MSG_DONTWAIT; on EAGAIN, park on the hub until
 *     the socket is ready, then retry;
 *   - anything else (pipe, terminal, character device): poll it with a zero
 *     timeout first, park on the hub until it is ready, then make the real
 *     call, which no longer blocks (fd.c, note A).
 * SO_RCVTIMEO/SO_SNDTIMEO bound the wait like they bound the real call
 * (failing with EAGAIN); a scoped deadline fails it with ETIMEDOUT, a
 * cancellation with ECANCELED, and a close by another green thread with
 * EBADF.
 *
 * Notes.
 * A. accept() takes no per-call flag that would make it non-blocking, so a
 *    blocking listener is polled first: between the readiness and the
 *    accept no other green thread of the hub runs, and only another process
 *    sharing the listener could take the connection (then accept blocks the
 *    hub until the next one arrives, as it would block the thread).
 * B. connect() on a blocking socket is started non-blocking (the socket's
 *    flags are changed for the duration of the call and restored), then
 *    waits for writability and reports SO_ERROR as errno.
 * C. close(), dup2() and dup3() first make the hub forget the descriptor:
 *    green threads waiting on it fail with EBADF, and the number can be
 *    reused at once.  fclose() does the same for its stream's descriptor,
 *    since libc closes it internally where the shim cannot see.
 */
#include "shim.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ---- The wait helper ---------------------------------------------------- */

int kz_shim_wait_until(int fd, int events, double deadline)
{
  struct kz_green *g = kz__self();
  int r;
  kz_shim_stats.parks++;
  r = kz__wait_fd(fd, events, deadline);
  if (r >= 0)
    return 0;
  if (r == -ETIMEDOUT && !(g->deadline > 0 && (deadline < 0 || g->deadline <= deadline)))
    r = -EAGAIN; /* the descriptor's own timeout, as the kernel reports it */
  /* -EINTR: a signal handler without SA_RESTART ran (signal.c). */
  errno = -r;
  return -1;
}

int kz_shim_wait(int fd, int events, double timeout)
{
  return kz_shim_wait_until(fd, events, timeout > 0 ? kz__now() + timeout : -1);
}

/* One attempt of an operation; dontwait: add MSG_DONTWAIT (sockets). */
typedef ssize_t (*io_op)(int fd, void *ctx, int dontwait);

static bool ready_now(int fd, int events)
{
  struct pollfd p = {fd, (short)((events & KZ_READ ? POLLIN : 0) | (events & KZ_WRITE ? POLLOUT : 0)), 0};
  return REAL(poll)(&p, 1, 0) != 0; /* ready, error, or hang-up: let the call say */
}

/* The loop every blocking interposer shares (see the top of this file). */
static ssize_t io_loop(unsigned family, int fd, int events, io_op op, void *ctx)
{
  struct kz_fd *f;
  double deadline = -1, timeout;
  ssize_t r;

  if (!shim_active(family) || !(f = kz_fd_get(fd)) || f->user_nb || f->kind == KZ_FD_FILE)
    return op(fd, ctx, 0);
  timeout = events & KZ_READ ? f->rcvtimeo : f->sndtimeo;
  if (timeout > 0)
    deadline = kz__now() + timeout;
  for (;;) {
    if (f->kind == KZ_FD_SOCKET) {
      r = op(fd, ctx, MSG_DONTWAIT);
      if (r < 0 && errno == ENOTSOCK) { /* fd.c, note B */
        kz_fd_reclassify(fd);
        return io_loop(family, fd, events, op, ctx);
      }
      if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        return r;
    } else if (ready_now(fd, events)) {
      return op(fd, ctx, 0);
    }
    if (kz_shim_wait_until(fd, events, deadline) < 0)
      return -1;
  }
}

/* ---- read, write and their forms ----------------------------------------------- */

struct buf_ctx {
  void *buf;
  size_t len;
  int flags;
  struct sockaddr *addr;
  socklen_t *addrlen;
  const struct iovec *iov;
  int iovcnt;
  off_t off;
};

static ssize_t op_read(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  return dw ? REAL(recv)(fd, b->buf, b->len, MSG_DONTWAIT) : REAL(read)(fd, b->buf, b->len);
}

static ssize_t op_write(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  return dw ? REAL(send)(fd, b->buf, b->len, MSG_DONTWAIT) : REAL(write)(fd, b->buf, b->len);
}

static ssize_t op_readv(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  struct msghdr m = {.msg_iov = (struct iovec *)b->iov, .msg_iovlen = (size_t)b->iovcnt};
  return dw ? REAL(recvmsg)(fd, &m, MSG_DONTWAIT) : REAL(readv)(fd, b->iov, b->iovcnt);
}

static ssize_t op_writev(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  struct msghdr m = {.msg_iov = (struct iovec *)b->iov, .msg_iovlen = (size_t)b->iovcnt};
  return dw ? REAL(sendmsg)(fd, &m, MSG_DONTWAIT) : REAL(writev)(fd, b->iov, b->iovcnt);
}

static ssize_t op_recvfrom(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  return REAL(recvfrom)(fd, b->buf, b->len, b->flags | (dw ? MSG_DONTWAIT : 0), b->addr, b->addrlen);
}

static ssize_t op_sendto(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  return REAL(sendto)(fd, b->buf, b->len, b->flags | (dw ? MSG_DONTWAIT : 0), b->addr,
                      b->addrlen ? *b->addrlen : 0);
}

static ssize_t op_recvmsg(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  return REAL(recvmsg)(fd, b->buf, b->flags | (dw ? MSG_DONTWAIT : 0));
}

static ssize_t op_sendmsg(int fd, void *c, int dw)
{
  struct buf_ctx *b = c;
  return REAL(sendmsg)(fd, b->buf, b->flags | (dw ? MSG_DONTWAIT : 0));
}

#define EXPORT __attribute__((visibility("default")))

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
  struct buf_ctx b = {.buf = buf, .len = len};
  return io_loop(KZ_PATCH_IO, fd, KZ_READ, op_read, &b);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
  if (len > buflen)
    __builtin_trap(); /* what glibc's __chk_fail does, without its message */
  return read(fd, buf, len);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
  struct buf_ctx b = {.buf = (void *)buf, .len = len};
  return io_loop(KZ_PATCH_IO, fd, KZ_WRITE, op_write, &b);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
  struct buf_ctx b = {.iov = iov, .iovcnt = iovcnt};
  return io_loop(KZ_PATCH_IO, fd, KZ_READ, op_readv, &b);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
  struct buf_ctx b = {.iov = iov, .iovcnt = iovcnt};
  return io_loop(KZ_PATCH_IO, fd, KZ_WRITE, op_writev, &b);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
  struct buf_ctx b = {.buf = buf, .len = len, .flags = flags};
  if (flags & MSG_DONTWAIT)
    return REAL(recv)(fd, buf, len, flags);
  return io_loop(KZ_PATCH_IO, fd, KZ_READ, op_recvfrom, &b);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
  if (len > buflen)
    __builtin_trap();
  return recv(fd, buf, len, flags);
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
  struct buf_ctx b = {.buf = (void *)buf, .len = len, .flags = flags};
  if (flags & MSG_DONTWAIT)
    return REAL(send)(fd, buf, len, flags);
  return io_loop(KZ_PATCH_IO, fd, KZ_WRITE, op_sendto, &b);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                        socklen_t *addrlen)
{
  struct buf_ctx b = {.buf = buf, .len = len, .flags = flags, .addr = addr, .addrlen = addrlen};
  if (flags & MSG_DONTWAIT)
    return REAL(recvfrom)(fd, buf, len, flags, addr, addrlen);
  return io_loop(KZ_PATCH_IO, fd, KZ_READ, op_recvfrom, &b);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *addrlen)
{
  if (len > buflen)
    __builtin_trap();
  return recvfrom(fd, buf, len, flags, addr, addrlen);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                      socklen_t addrlen)
{
  struct buf_ctx b = {.buf = (void *)buf, .len = len, .flags = flags,
                      .addr = (struct sockaddr *)addr, .addrlen = &addrlen};
  if (flags & MSG_DONTWAIT)
    return REAL(sendto)(fd, buf, len, flags, addr, addrlen);
  return io_loop(KZ_PATCH_IO, fd, KZ_WRITE, op_sendto, &b);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
  struct buf_ctx b = {.buf = msg, .flags = flags};
  if (flags & MSG_DONTWAIT)
    return REAL(recvmsg)(fd, msg, flags);
  return io_loop(KZ_PATCH_IO, fd, KZ_READ, op_recvmsg, &b);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
  struct buf_ctx b = {.buf = (void *)msg, .flags = flags};
  if (flags & MSG_DONTWAIT)
    return REAL(sendmsg)(fd, msg, flags);
  return io_loop(KZ_PATCH_IO, fd, KZ_WRITE, op_sendmsg, &b);
}

/* ---- accept and connect ---------------------------------------------------------- */

struct accept_ctx {
  struct sockaddr *addr;
  socklen_t *addrlen;
  int flags;
};

static ssize_t op_accept(int fd, void *c, int dw)
{
  struct accept_ctx *a = c;
  /* A socket here is polled first (note A): make the fd look unknown-kind
     to io_loop by answering EAGAIN when not ready. */
  if (dw && !ready_now(fd, KZ_READ)) {
    errno = EAGAIN;
    return -1;
  }
  return REAL(accept4)(fd, a->addr, a->addrlen, a->flags);
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
  struct accept_ctx a = {addr, addrlen, flags};
  int r = (int)io_loop(KZ_PATCH_IO, fd, KZ_READ, op_accept, &a);
  if (r >= 0)
    kz_fd_created(r, KZ_FD_SOCKET, (flags & SOCK_NONBLOCK) != 0);
  return r;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
  return accept4(fd, addr, addrlen, 0);
}

/* Note B. */
EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
  struct kz_fd *f;
  int fl, r, err = 0;
  socklen_t elen = sizeof err;
  if (!shim_active(KZ_PATCH_IO) || !(f = kz_fd_get(fd)) || f->user_nb || f->kind != KZ_FD_SOCKET)
    return REAL(connect)(fd, addr, len);
  if ((fl = REAL(fcntl)(fd, F_GETFL)) < 0 || REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return REAL(connect)(fd, addr, len);
  r = REAL(connect)(fd, addr, len);
  err = errno;
  REAL(fcntl)(fd, F_SETFL, fl);
  if (r == 0 || err != EINPROGRESS) {
    errno = err;
    return r;
  }
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

EXPORT int socket(int domain, int type, int protocol)
{
  int fd = REAL(socket)(domain, type, protocol);
  if (fd >= 0)
    kz_fd_created(fd, KZ_FD_SOCKET, (type & SOCK_NONBLOCK) != 0);
  return fd;
}

EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
  int r = REAL(socketpair)(domain, type, protocol, sv);
  if (r == 0) {
    kz_fd_created(sv[0], KZ_FD_SOCKET, (type & SOCK_NONBLOCK) != 0);
    kz_fd_created(sv[1], KZ_FD_SOCKET, (type & SOCK_NONBLOCK) != 0);
  }
  return r;
}

EXPORT int pipe2(int p[2], int flags)
{
  int r = REAL(pipe2)(p, flags);
  if (r == 0) {
    kz_fd_created(p[0], KZ_FD_PIPE, (flags & O_NONBLOCK) != 0);
    kz_fd_created(p[1], KZ_FD_PIPE, (flags & O_NONBLOCK) != 0);
  }
  return r;
}

EXPORT int pipe(int p[2]) { return pipe2(p, 0); }

EXPORT int close(int fd)
{
  kz_fd_forget(fd); /* note C */
  return REAL(close)(fd);
}

EXPORT int fclose(FILE *stream)
{
  int fd = stream ? fileno(stream) : -1;
  if (fd >= 0)
    kz_fd_forget(fd);
  return REAL(fclose)(stream);
}

EXPORT int dup(int fd)
{
  int r = REAL(dup)(fd);
  if (r >= 0)
    kz_fd_reclassify(r);
  return r;
}

EXPORT int dup2(int old, int new)
{
  int r;
  if (old != new)
    kz_fd_forget(new);
  r = REAL(dup2)(old, new);
  if (r >= 0)
    kz_fd_reclassify(r);
  return r;
}

EXPORT int dup3(int old, int new, int flags)
{
  int r;
  kz_fd_forget(new);
  r = REAL(dup3)(old, new, flags);
  if (r >= 0)
    kz_fd_reclassify(r);
  return r;
}

/* F_SETFL and F_DUPFD* change what the shim knows; the rest passes through.
   Every command's argument is an int or a pointer, which the x86_64 calling
   convention passes the same way as an unsigned long. */
static int fcntl_common(int fd, int cmd, unsigned long arg)
{
  int r = REAL(fcntl)(fd, cmd, arg);
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

EXPORT int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
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
