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

#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <signal.h>
#include <stdbool.h>
#include <dirent.h>
#include <mqueue.h>
#include <sys/epoll.h>
#include <sys/sem.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <setjmp.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

/* ---- The real functions (real.c) ---------------------------------------- */

#define KZ_SHIM_REAL_FUNCS(X)                                                       \
  X(ssize_t, read, (int, void *, size_t))                                          \
  X(ssize_t, write, (int, const void *, size_t))                                   \
  X(ssize_t, readv, (int, const struct iovec *, int))                              \
  X(ssize_t, writev, (int, const struct iovec *, int))                             \
  X(ssize_t, pread, (int, void *, size_t, off_t))                                  \
  X(ssize_t, pwrite, (int, const void *, size_t, off_t))                           \
  X(ssize_t, preadv, (int, const struct iovec *, int, off_t))                      \
  X(ssize_t, pwritev, (int, const struct iovec *, int, off_t))                     \
  X(ssize_t, preadv2, (int, const struct iovec *, int, off_t, int))                \
  X(ssize_t, pwritev2, (int, const struct iovec *, int, off_t, int))               \
  X(ssize_t, recv, (int, void *, size_t, int))                                     \
  X(ssize_t, send, (int, const void *, size_t, int))                               \
  X(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *)) \
  X(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t)) \
  X(ssize_t, recvmsg, (int, struct msghdr *, int))                                 \
  X(ssize_t, sendmsg, (int, const struct msghdr *, int))                           \
  X(int, recvmmsg, (int, struct mmsghdr *, unsigned, int, struct timespec *))      \
  X(int, sendmmsg, (int, struct mmsghdr *, unsigned, int))                         \
  X(ssize_t, sendfile, (int, int, off_t *, size_t))                                \
  X(ssize_t, splice, (int, loff_t *, int, loff_t *, size_t, unsigned))             \
  X(int, accept, (int, struct sockaddr *, socklen_t *))                            \
  X(int, accept4, (int, struct sockaddr *, socklen_t *, int))                      \
  X(int, connect, (int, const struct sockaddr *, socklen_t))                       \
  X(int, listen, (int, int))                                                       \
  X(int, socket, (int, int, int))                                                  \
  X(int, socketpair, (int, int, int, int *))                                       \
  X(int, close, (int))                                                             \
  X(int, close_range, (unsigned, unsigned, int))                                   \
  X(int, epoll_create, (int))                                                      \
  X(int, epoll_create1, (int))                                                     \
  X(int, epoll_ctl, (int, int, int, struct epoll_event *))                         \
  X(void, closefrom, (int))                                                        \
  X(int, dup, (int))                                                               \
  X(int, dup2, (int, int))                                                         \
  X(int, dup3, (int, int, int))                                                    \
  X(int, pipe, (int *))                                                            \
  X(int, pipe2, (int *, int))                                                      \
  X(int, fcntl, (int, int, ...))                                                   \
  X(int, fstat, (int, struct stat *))                                              \
  X(int, fstat64, (int, struct stat64 *))                                          \
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
  X(int, epoll_pwait2, (int, struct epoll_event *, int, const struct timespec *, const sigset_t *)) \
  X(unsigned, sleep, (unsigned))                                                   \
  X(int, usleep, (useconds_t))                                                     \
  X(int, nanosleep, (const struct timespec *, struct timespec *))                  \
  X(int, clock_nanosleep, (clockid_t, int, const struct timespec *, struct timespec *)) \
  X(int, fclose, (FILE *))                                                         \
  X(int, sigaction, (int, const struct sigaction *, struct sigaction *))           \
  X(int, pthread_sigmask, (int, const sigset_t *, sigset_t *))                     \
  X(int, sigprocmask, (int, const sigset_t *, sigset_t *))                         \
  X(int, sigpending, (sigset_t *))                                                 \
  X(int, raise, (int))                                                             \
  X(int, sigblock, (int))                                                          \
  X(int, sigsetmask, (int))                                                        \
  X(int, siggetmask, (void))                                                       \
  X(int, sighold, (int))                                                           \
  X(int, sigrelse, (int))                                                          \
  X(int, sigpause, (int))                                                          \
  X(int, __xpg_sigpause, (int))                                                    \
  X(int, __sigpause, (int, int))                                                   \
  X(int, sigwait, (const sigset_t *, int *))                                       \
  X(int, sigwaitinfo, (const sigset_t *, siginfo_t *))                             \
  X(int, sigtimedwait, (const sigset_t *, siginfo_t *, const struct timespec *))   \
  X(int, pause, (void))                                                            \
  X(int, sigsuspend, (const sigset_t *))                                           \
  X(pid_t, fork, (void))                                                           \
  X(pid_t, waitpid, (pid_t, int *, int))                                           \
  X(pid_t, wait4, (pid_t, int *, int, struct rusage *))                            \
  X(int, waitid, (idtype_t, id_t, siginfo_t *, int))                               \
  X(int, system, (const char *))                                                   \
  X(int, pclose, (FILE *))                                                         \
  X(int, getaddrinfo, (const char *, const char *, const struct addrinfo *, struct addrinfo **)) \
  X(int, getnameinfo, (const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int)) \
  X(struct hostent *, gethostbyname, (const char *))                               \
  X(struct hostent *, gethostbyname2, (const char *, int))                         \
  X(struct hostent *, gethostbyaddr, (const void *, socklen_t, int))               \
  X(int, gethostbyname_r, (const char *, struct hostent *, char *, size_t, struct hostent **, int *)) \
  X(int, gethostbyname2_r, (const char *, int, struct hostent *, char *, size_t, struct hostent **, int *)) \
  X(int, gethostbyaddr_r, (const void *, socklen_t, int, struct hostent *, char *, size_t, struct hostent **, int *)) \
  X(int, flock, (int, int))                                                        \
  X(DIR *, opendir, (const char *))                                                \
  X(DIR *, fdopendir, (int))                                                       \
  X(struct dirent *, readdir, (DIR *))                                             \
  X(struct dirent64 *, readdir64, (DIR *))                                         \
  X(int, closedir, (DIR *))                                                        \
  X(int, openat, (int, const char *, int, ...))                                    \
  X(int, lockf, (int, int, off_t))                                                 \
  X(int, semtimedop, (int, struct sembuf *, size_t, const struct timespec *))      \
  X(int, msgsnd, (int, const void *, size_t, int))                                 \
  X(ssize_t, msgrcv, (int, void *, size_t, long, int))                             \
  X(ssize_t, mq_timedreceive, (mqd_t, char *, size_t, unsigned *, const struct timespec *)) \
  X(int, mq_timedsend, (mqd_t, const char *, size_t, unsigned, const struct timespec *)) \
  X(ssize_t, mq_receive, (mqd_t, char *, size_t, unsigned *))                      \
  X(int, mq_send, (mqd_t, const char *, size_t, unsigned))                         \
  X(int, sched_setaffinity, (pid_t, size_t, const cpu_set_t *))                   \
  X(int, sched_getaffinity, (pid_t, size_t, cpu_set_t *))                         \
  X(int, sched_setscheduler, (pid_t, int, const struct sched_param *))            \
  X(int, sched_getscheduler, (pid_t))                                             \
  X(int, sched_setparam, (pid_t, const struct sched_param *))                     \
  X(int, sched_getparam, (pid_t, struct sched_param *))                           \
  X(int, sched_rr_get_interval, (pid_t, struct timespec *))                       \
  X(int, setpriority, (int, id_t, int))                                           \
  X(int, getpriority, (int, id_t))                                                \
  X(void, siglongjmp, (sigjmp_buf, int))                                           \
  X(void, longjmp, (jmp_buf, int))                                                 \
  X(void, _longjmp, (jmp_buf, int))                                                \
  X(void, __longjmp_chk, (jmp_buf, int))

struct kz_shim_real {
#define X(ret, name, args) ret(*name) args;
  KZ_SHIM_REAL_FUNCS(X)
#undef X
};

/* Filled once at start-up (or on first use, whichever comes first; real.c,
   note B).  Hidden, so a slot is read PC-relative, without the GOT. */
extern struct kz_shim_real kz_real __attribute__((visibility("hidden")));
void kz_shim_real_init(void);

/* The real function name, filling the table if this is the first call. */
#define REAL(name) (KZ_LIKELY(kz_real.name != NULL) ? kz_real.name : (kz_shim_real_init(), kz_real.name))

/* Exported names: the version script (kudzu-preload.map) lists each. */
#define KZ_SHIM_EXPORT __attribute__((visibility("default")))

/* Define the interposer of libc's name whose body follows:
     KZ_INTERPOSE(ssize_t, read, (int fd, void *buf, size_t len), (fd, buf, len))
     { ...the body: its own checks (shim_active), the real call via REAL... }
   The exported function only asks "in a green thread?" and, when not (the
   hub, worker threads, threads without a hub, before start-up), jumps to
   libc's function: a tail call, no stack frame, a few instructions.  The
   body is a separate function, name##_in_green, entered otherwise.
   The order of the tests is the layout: a thread without a hub (workers,
   unpatched threads) falls straight through to the jump, whose one taken
   branch is the whole cost; the hub context (a hub, no current green thread)
   takes one branch more.  Written as kz__self() == NULL, the compiler
   branched around the h->current test on the no-hub path: 0.3 ns more per
   call, half the overhead (tests/helpers/bench_passthrough.c).  The NULL
   test of the slot is a load and a branch never taken, and measured free. */
#define KZ_INTERPOSE(ret, name, params, args)                                  \
  static __attribute__((noinline)) ret name##_in_green params;                 \
  KZ_SHIM_EXPORT ret name params                                               \
  {                                                                            \
    struct kz__hub *hub_ = kz__tls_hub;                                        \
    if ((KZ_LIKELY(hub_ == NULL) || hub_->current == NULL) &&                  \
        KZ_LIKELY(kz_real.name != NULL))                                       \
      return kz_real.name args;                                                \
    return name##_in_green args;                                               \
  }                                                                            \
  static __attribute__((noinline)) ret name##_in_green params

/* ---- Thread ids (tid.c) ------------------------------------------------ */

/* The interposed syscall(2)'s part for thread ids (syscall.c): true if it
   answered call nr itself (*ret set, errno set on -1); false if the raw
   call is to be made, with a thread id in a[] possibly replaced by the one
   it stands for (preload/thread.c, note M). */
bool kz_shim_tid_syscall(long nr, long a[6], long *ret);

/* ---- Configuration (init.c) -------------------------------------------------- */

enum {
  KZ_PATCH_IO = 1 << 0,     /* sockets, pipes: read/write/recv/send/accept/connect */
  KZ_PATCH_POLL = 1 << 1,   /* poll, ppoll, select, pselect, epoll_wait */
  KZ_PATCH_SLEEP = 1 << 2,  /* sleep, usleep, nanosleep, clock_nanosleep */
  KZ_PATCH_THREAD = 1 << 3, /* pthreads (see docs/SHIM.md) */
  KZ_PATCH_DNS = 1 << 4,    /* getaddrinfo and friends, on the worker pool */
  KZ_PATCH_PROC = 1 << 5,   /* waitpid and friends, system */
  KZ_PATCH_LIBC = 1 << 6,   /* libc's own calls reach the interposers (patch.c) */
  KZ_PATCH_IPC = 1 << 7,    /* file locks, System V IPC, POSIX message queues (block.c) */
  KZ_PATCH_ALL = 0x3f | KZ_PATCH_LIBC | KZ_PATCH_IPC,
};

struct kz_shim_config {
  unsigned patch;  /* KZ_PATCH_* families intercepted */
  bool debug;      /* KUDZU_DEBUG: log decisions on stderr */
  bool stats;      /* KUDZU_STATS: counts at exit */
  bool torture;    /* KUDZU_TORTURE: yield in every interposed call */
  bool ready;      /* initialisation finished: interposers may act */
};
extern struct kz_shim_config kz_shim;

/* Patch libc's code so that its internal calls to the blocking functions
   reach the shim (family "libc", patch.c).  Once, from the constructor,
   before any other thread exists; says on stderr what it leaves alone. */
void kz_shim_patch_libc(void);

/* Per-OS-thread counters for KUDZU_STATS: plain increments, no atomics.
   The statistics at exit read every hub's OS thread's (init.c, note C). */
struct kz_shim_stats {
  unsigned long calls;  /* interposed calls made in green threads */
  unsigned long parks;  /* parks on the hub for them */
  unsigned long eintr;  /* parks ended by a signal handler (EINTR) */
  unsigned long worker; /* calls run on the worker pool (DNS, system) */
};
extern KZ_TLS struct kz_shim_stats kz_shim_stats_tls;
/* The OS thread's counters, also from a green thread with TLS of its own
   (hub/tls.c, note D). */
#define kz_shim_stats() (*(struct kz_shim_stats *)kz__os_tls(&kz_shim_stats_tls))

/* dup2 onto the shim's own runtime descriptor (KUDZU_STATS's copy of
   stderr, init.c): move it elsewhere.  0, or -1 if fd is not the shim's. */
int kz_shim_give_fd(int fd);

/* Signal handlers running on this OS thread (signal.c): calls made from a
   handler pass straight through. */
extern KZ_TLS int kz_shim_in_handler;
/* This OS thread is inside fork(), between the shim's prepare step and
   its parent or child step, where glibc takes its own locks (patch.c,
   note H). */
extern KZ_TLS bool kz_shim_forking;
/* The green thread a running handler was given to, when that is not the
   running green thread (signal.c, note E), else NULL. */
extern KZ_TLS struct kz_green *kz_shim_handler_for;

/* Fairness (init.c, note D): every KZ_SHIM_FAIR_CALLS interposed calls
   made in green threads of an OS thread, the caller yields to the hub if
   nothing has switched on the hub since the last such check.  May
   switch. */
#define KZ_SHIM_FAIR_CALLS 1024
/* The default preemption slice, in seconds of CPU time (init.c, note E). */
#define KZ_SHIM_SLICE 0.010
void kz_shim_fair(void);

/* Should an interposer of family f act?  Only inside a green thread, once
   initialised, and not in a signal handler.  Everything else (the hub
   itself and libev, worker threads, threads without a hub, handlers) passes
   through.  In torture mode every call that acts yields first. */
static inline struct kz_green *shim_active(unsigned family)
{
  struct kz_green *g = kz__self(); /* first: the whole test in a thread without a hub */
  if (!g || KZ_UNLIKELY(kz_shim_in_handler) || KZ_UNLIKELY(!kz_shim.ready) || !(kz_shim.patch & family))
    return NULL;
  if (KZ_UNLIKELY(kz_shim.torture))
    kz__yield();
  if (KZ_UNLIKELY(++kz_shim_stats().calls % KZ_SHIM_FAIR_CALLS == 0))
    kz_shim_fair();
  return g;
}

/* A call that never blocks, made by a green thread, counted as a switch
   point (kz_shim_fair): sigaction, raise. */
static inline void kz_shim_switch_point(void) { (void)shim_active(KZ_PATCH_THREAD); }

/* The running green thread, for the calls that only ask who is running
   (pthread_self, thread-specific data, a thread's stack): unlike
   shim_active, also inside a signal handler, which natively runs in the
   thread it interrupted, so these answer for the green thread the signal
   interrupted (signal.c, note E).  NULL outside green threads, on the hub
   context (a handler that interrupted the hub answers for the OS thread),
   before start-up, or when family is not patched.  Never yields, never
   counts: safe in a handler. */
static inline struct kz_green *shim_identity(unsigned family)
{
  struct kz_green *g = kz__self();
  if (KZ_UNLIKELY(kz_shim_in_handler) && kz_shim_handler_for)
    g = kz_shim_handler_for; /* a handler given to another green thread */
  if (!g || KZ_UNLIKELY(!kz_shim.ready) || !(kz_shim.patch & family))
    return NULL;
  return g;
}

/* ---- Descriptors (fd.c) -------------------------------------------------- */

enum kz_fd_kind { KZ_FD_UNKNOWN, KZ_FD_SOCKET, KZ_FD_PIPE, KZ_FD_FILE, KZ_FD_OTHER };

/* What the shim knows of one descriptor. */
struct kz_fd {
  uint8_t known;     /* the fields below are valid */
  uint8_t kind;      /* enum kz_fd_kind */
  uint8_t user_nb;   /* the program's own view: O_NONBLOCK set */
  uint8_t owned;     /* created by the program through the shim, not inherited */
  uint8_t drained;   /* a socket whose last read came back short (io.c, note F) */
  uint8_t accmode;   /* O_RDONLY, O_WRONLY or O_RDWR: the directions the open file allows */
  int pending_err;   /* an error met after bytes moved, for the next call (io.c, note I) */
  double rcvtimeo;   /* SO_RCVTIMEO in seconds, 0: none */
  double sndtimeo;   /* SO_SNDTIMEO in seconds, 0: none */
};

/* The state of fd (classified on first sight), or NULL if fd is out of range
   or not open. */
struct kz_fd *kz_fd_get(int fd);
/* Record a descriptor the program just created through the shim, open for
   accmode (O_RDONLY, O_WRONLY, O_RDWR). */
void kz_fd_created(int fd, int kind, bool user_nb, int accmode);
/* Forget what is cached about fd, so it is classified again on next use. */
void kz_fd_reclassify(int fd);
/* Forget fd (closed or replaced): wakes waiters, drops the hub's watcher. */
void kz_fd_forget(int fd);
/* kz_fd_forget for every descriptor in [first, last] the shim has seen. */
void kz_fd_forget_range(unsigned first, unsigned last);

/* ---- Signals (signal.c) ------------------------------------------------- */

/* How a parked call reacts to a signal handler, natively (signal(7)). */
enum kz_shim_intr {
  KZ_INTR_RESTART = 1, /* restarted after an SA_RESTART handler: read, accept... */
  KZ_INTR_ALWAYS = 2,  /* EINTR after any handler: sleeps, poll, timeouts */
};

/* Bracket every park of an interposed call: a signal handler given to g
   (the caller) in between may end the park with -EINTR (signal.c). */
void kz_shim_intr_begin(struct kz_green *g, int intr);
void kz_shim_intr_end(struct kz_green *g);

/* Park green thread g (the caller) until a handler runs for it that had
   not run when g->sig.handled was since: pause and sigsuspend.  Returns
   -EINTR (at once if one ran already), or -ECANCELED (the caller then
   calls kz_shim_cancel_point once it holds nothing).  May switch. */
int kz_shim_suspend(struct kz_green *g, uint32_t since);

/* Give green thread g (the caller) the signal mask mask, delivering what
   was sent to it that it no longer blocks; returns its mask before. */
uint64_t kz_shim_sigmask_set(struct kz_green *g, uint64_t mask);
/* In a fork child, once the other threads are left behind: nothing
   pending, the OS thread's mask from the masks of the threads left.  When
   none was left behind (left_behind false) and nothing is pending, it
   writes nothing. */
void kz_shim_signal_forked(struct kz__hub *hub, bool left_behind);
/* A sigset_t as a mask (signal s: bit s-1). */
uint64_t kz_shim_sigmask_of(const sigset_t *set);

/* Send sig to green thread id of hub, from any thread (pthread_kill):
   pending for it while it blocks sig, else handled for it (signal.c, note
   H).  0 or an error number (EINVAL); an unknown id is ignored. */
int kz_shim_kill(struct kz__hub *hub, kz_green_t id, int sig);

/* ---- Cancellation (init.c) -------------------------------------------------- */

/* Called where an interposed blocking call fails with ECANCELED, once the
   call holds nothing: the thread family sets it, so that a green thread
   cancelled by pthread_cancel unwinds from there.  NULL: the call just
   fails with ECANCELED (kz_cancel from the API). */
extern void (*kz_shim_on_cancel)(void);

static inline void kz_shim_cancel_point(int r)
{
  if (KZ_UNLIKELY(r == -ECANCELED) && kz_shim_on_cancel)
    kz_shim_on_cancel();
}

/* ---- The wait helpers (io.c) -------------------------------------------------- */

/* Park the calling green thread until fd is ready for events, or the
   deadline (kz__now() seconds, < 0: none) passes, or a signal handler
   interrupts it (intr: enum kz_shim_intr).  Returns 0, or -1 with errno:
   EAGAIN for the deadline (what SO_RCVTIMEO gives natively), ETIMEDOUT for
   a scoped deadline, ECANCELED, EBADF (closed meanwhile), EINTR.  A
   cancellation point (kz_shim_on_cancel). */
int kz_shim_wait_until(int fd, int events, double deadline, int intr);
/* The same with a timeout in seconds (0: none). */
int kz_shim_wait(int fd, int events, double timeout);

/* Park for a timed wait that is not on a descriptor (sleeps, child
   processes): returns kz__park's result (0 never; -ETIMEDOUT at the
   deadline, -EINTR, -ECANCELED).  A cancellation point.  May switch. */
int kz_shim_park(double deadline, int intr);

/* ---- Calls that block in the kernel (block.c) ------------------------------------- */

/* Is green g the only thing its hub could run?  Then blocking its OS thread
   in the kernel stops nothing else: no other green thread (ready, parked or
   sleeping), no callback due or armed, no completion expected from another
   thread.  Such a call is then made in the kernel, on g's own OS thread,
   exactly as natively (the pre-fork worker, a single-threaded program): no
   hand-off, no worker.  A message another thread posts meanwhile (a remote
   spawn, a dump request) runs when the call returns, as one posted just
   after it began would anyway; a signal handler runs at once, on this OS
   thread, and the kernel restarts the call or fails it with EINTR as it
   would natively. */
static inline bool kz_shim_alone(struct kz_green *g)
{
  struct kz__hub *h = g->hub;
  return h->nlive == 1 && h->nready == 0 && h->holds == 0 && kz__list_empty(&h->soon) &&
         kz__list_empty(&h->timed);
}

/* Around such a call: the hub is waiting, as it would be in libev, and the
   blocked-hub monitor must not report it. */
static inline void kz_shim_kernel_begin(struct kz_green *g)
{
  __atomic_store_n(&g->hub->in_loop, true, __ATOMIC_RELAXED);
  if (g->hub->preempt_timer >= 0) /* its tick would fail the call with EINTR (hub/preempt.c, note E) */
    kz__preempt_hold(true);
}
static inline void kz_shim_kernel_end(struct kz_green *g)
{
  if (g->hub->preempt_timer >= 0)
    kz__preempt_hold(false);
  __atomic_store_n(&g->hub->in_loop, false, __ATOMIC_RELAXED);
}

/* One call to run on the blocking pool: call(a) with errno captured.  It
   lives on the caller's stack: the caller waits until it has run. */
struct blk {
  long (*call)(const long *a);
  long a[6]; /* the call's arguments */
  long r;    /* its result */
  int err;   /* errno after it */
};

/* Run b on the blocking pool (block.c, note A) while the calling green
   thread parks; errno as libc's: the call's result, or -1 with errno (the
   call's own, or EINTR, ETIMEDOUT, ECANCELED when the wait ended first and
   the call was interrupted).  intr: enum kz_shim_intr; cancel_point: a
   pthread_cancel ends the wait (else it waits for the next point);
   saved_errno: the program's errno, restored on success.  May switch. */
long kz_shim_blocking(struct blk *b, int intr, bool cancel_point, int saved_errno);

/* fcntl F_SETLKW and F_OFD_SETLKW (io.c hands them here): without holding
   the hub.  libc's convention. */
int kz_shim_lock_wait(int fd, int cmd, void *lock);

/* The program's raw futex call, a[0..5] as syscall(SYS_futex, ...) got
   them (syscall.c hands it here): a wait without holding the hub.
   syscall()'s convention. */
long kz_shim_futex(const long *a);

/* ---- io_uring (uring.c) ----------------------------------------------------------- */

/* The io_uring_enter system call, with libc's syscall() convention (the
   result, or -1 with errno): in a green thread, a wait for completions
   parks the caller on the hub (or runs on the blocking pool) instead of
   blocking the OS thread; everything else is the bare system call.  For an
   interposer of syscall(SYS_io_uring_enter, ...).  May switch. */
int kz_shim_uring_enter(unsigned fd, unsigned submit, unsigned min, unsigned flags, const void *arg, size_t sz);

/* ---- Offloading (dns.c) ------------------------------------------------------ */

/* Run fn(job) on the worker pool while the calling green thread parks (in
   place if it turns out not to be in one).  Returns 0 once fn has run: the
   caller reads and frees job.  -1 with errno (ECANCELED, ETIMEDOUT,
   ENOMEM) if the wait ended first: the worker owns job and calls
   discard(job) when fn returns. */
int kz_shim_offload(void (*fn)(void *), void *job, void (*discard)(void *));

#endif
