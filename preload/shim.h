/* shim.h: what the files of the preload shim share: the table of real libc
 * functions, the per-descriptor state, configuration, and the one helper
 * every blocking interposer uses.
 *
 * An interposer has one shape (notes in io.c):
 *
 *   if (!shim_active())             -> the real call, untouched
 *   try the call without blocking   -> done unless it would block
 *   park on the hub until ready     -> retry
 */
#ifndef KZ_SHIM_H
#define KZ_SHIM_H

#include "internal.h"

#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* ---- The real functions (real.c) ---------------------------------------- */

#define KZ_SHIM_REAL_FUNCS(X)                                                       \
  X(ssize_t, read, (int, void *, size_t))                                          \
  X(ssize_t, write, (int, const void *, size_t))                                   \
  X(ssize_t, readv, (int, const struct iovec *, int))                              \
  X(ssize_t, writev, (int, const struct iovec *, int))                             \
  X(ssize_t, recv, (int, void *, size_t, int))                                     \
  X(ssize_t, send, (int, const void *, size_t, int))                               \
  X(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *)) \
  X(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t)) \
  X(ssize_t, recvmsg, (int, struct msghdr *, int))                                 \
  X(ssize_t, sendmsg, (int, const struct msghdr *, int))                           \
  X(int, recvmmsg, (int, struct mmsghdr *, unsigned, int, struct timespec *))      \
  X(int, sendmmsg, (int, struct mmsghdr *, unsigned, int))                         \
  X(int, accept, (int, struct sockaddr *, socklen_t *))                            \
  X(int, accept4, (int, struct sockaddr *, socklen_t *, int))                      \
  X(int, connect, (int, const struct sockaddr *, socklen_t))                       \
  X(int, listen, (int, int))                                                       \
  X(int, socket, (int, int, int))                                                  \
  X(int, socketpair, (int, int, int, int *))                                       \
  X(int, close, (int))                                                             \
  X(int, dup, (int))                                                               \
  X(int, dup2, (int, int))                                                         \
  X(int, dup3, (int, int, int))                                                    \
  X(int, pipe, (int *))                                                            \
  X(int, pipe2, (int *, int))                                                      \
  X(int, fcntl, (int, int, ...))                                                   \
  X(int, ioctl, (int, unsigned long, ...))                                         \
  X(int, setsockopt, (int, int, int, const void *, socklen_t))                     \
  X(int, getsockopt, (int, int, int, void *, socklen_t *))                         \
  X(int, shutdown, (int, int))                                                     \
  X(int, poll, (struct pollfd *, nfds_t, int))                                     \
  X(int, ppoll, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *)) \
  X(int, select, (int, fd_set *, fd_set *, fd_set *, struct timeval *))            \
  X(int, pselect, (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *)) \
  X(int, epoll_wait, (int, struct epoll_event *, int, int))                        \
  X(int, epoll_pwait, (int, struct epoll_event *, int, int, const sigset_t *))     \
  X(unsigned, sleep, (unsigned))                                                   \
  X(int, usleep, (useconds_t))                                                     \
  X(int, nanosleep, (const struct timespec *, struct timespec *))                  \
  X(int, clock_nanosleep, (clockid_t, int, const struct timespec *, struct timespec *)) \
  X(int, fclose, (FILE *))                                                         \
  X(int, sigaction, (int, const struct sigaction *, struct sigaction *))

struct kz_shim_real {
#define X(ret, name, args) ret(*name) args;
  KZ_SHIM_REAL_FUNCS(X)
#undef X
};

/* Filled once at start-up (or on first use, whichever comes first). */
extern struct kz_shim_real kz_real;
void kz_shim_real_init(void);

/* The real function name, filling the table if this is the first call. */
#define REAL(name) (KZ_LIKELY(kz_real.name != NULL) ? kz_real.name : (kz_shim_real_init(), kz_real.name))

/* ---- Configuration (init.c) -------------------------------------------------- */

enum {
  KZ_PATCH_IO = 1 << 0,     /* sockets, pipes: read/write/recv/send/accept/connect */
  KZ_PATCH_POLL = 1 << 1,   /* poll, ppoll, select, pselect, epoll_wait */
  KZ_PATCH_SLEEP = 1 << 2,  /* sleep, usleep, nanosleep, clock_nanosleep */
  KZ_PATCH_THREAD = 1 << 3, /* pthreads (see docs/SHIM.md) */
  KZ_PATCH_ALL = 0xf,
};

struct kz_shim_config {
  unsigned patch;  /* KZ_PATCH_* families intercepted */
  bool debug;      /* KUDZU_DEBUG: log decisions on stderr */
  bool stats;      /* KUDZU_STATS: counts at exit */
  bool torture;    /* KUDZU_TORTURE: yield in every interposed call */
  bool ready;      /* initialisation finished: interposers may act */
};
extern struct kz_shim_config kz_shim;

/* Per-thread counters for KUDZU_STATS. */
struct kz_shim_stats {
  unsigned long calls;  /* interposed calls made in green threads */
  unsigned long parks;  /* of which parked at least once */
};
extern KZ_TLS struct kz_shim_stats kz_shim_stats;

/* Should an interposer of family f act?  Only inside a green thread, once
   initialised.  Everything else (the hub itself and libev, worker threads,
   threads without a hub, signal handlers run on the hub) passes through. */
static inline struct kz_green *shim_active(unsigned family)
{
  struct kz_green *g;
  if (KZ_UNLIKELY(!kz_shim.ready) || !(kz_shim.patch & family) || !(g = kz__self()))
    return NULL;
  if (KZ_UNLIKELY(kz_shim.torture))
    kz__yield();
  kz_shim_stats.calls++;
  return g;
}

/* ---- Descriptors (fd.c) -------------------------------------------------- */

enum kz_fd_kind { KZ_FD_UNKNOWN, KZ_FD_SOCKET, KZ_FD_PIPE, KZ_FD_FILE, KZ_FD_OTHER };

/* What the shim knows of one descriptor. */
struct kz_fd {
  uint8_t known;     /* the fields below are valid */
  uint8_t kind;      /* enum kz_fd_kind */
  uint8_t user_nb;   /* the program's own view: O_NONBLOCK set */
  uint8_t rt_nb;     /* kudzu set O_NONBLOCK on the open file (hidden) */
  double rcvtimeo;   /* SO_RCVTIMEO in seconds, 0: none */
  double sndtimeo;   /* SO_SNDTIMEO in seconds, 0: none */
};

/* The state of fd (classified on first sight), or NULL if fd is out of range
   or not open. */
struct kz_fd *kz_fd_get(int fd);
/* Record a descriptor the program just created through the shim. */
void kz_fd_created(int fd, int kind, bool user_nb);
/* Forget what is cached about fd, so it is classified again on next use. */
void kz_fd_reclassify(int fd);
/* Forget fd (closed or replaced): wakes waiters, drops the hub's watcher. */
void kz_fd_forget(int fd);

/* ---- Signals (signal.c) ------------------------------------------------- */

/* Interruptions by signal handlers go to this hub's main green thread. */
void kz_shim_signal_init(struct kz__hub *hub);

/* ---- The wait helper (io.c) --------------------------------------------------- */

/* Park the calling green thread until fd is ready for events, or the
   timeout (seconds, 0: none) passes.  Returns 0, or -1 with errno:
   EAGAIN for the timeout (what SO_RCVTIMEO gives natively), ETIMEDOUT for
   a scoped deadline, ECANCELED, EBADF. */
int kz_shim_wait(int fd, int events, double timeout);

#endif
