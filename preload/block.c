/* block.c: the calls that block in the kernel on something the hub cannot
 * wait for (family "ipc"): file locks (flock, lockf, fcntl F_SETLKW and
 * F_OFD_SETLKW), System V semaphores and messages (semop, semtimedop,
 * msgsnd, msgrcv), the open of a FIFO; and POSIX message queues, which the
 * hub can wait for.
 *
 * Natively such a call blocks its thread.  Under the shim that thread is a
 * hub's, and every other green thread of the hub would stop with it.  So:
 *
 *   - each call is first tried without blocking (LOCK_NB, F_SETLK, F_TLOCK,
 *     IPC_NOWAIT): an uncontended lock or an available message costs what
 *     it costs natively, on the calling thread;
 *   - if it would block, the blocking form runs on a worker of the runtime's
 *     blocking pool while the green thread parks (hub/worker.c, note I);
 *   - a POSIX message queue descriptor is pollable: the green thread waits
 *     for it on the hub like for a socket, then tries again.
 *
 * Notes.
 * A. What the program would see natively, it sees.  The lock or message
 *    belongs to the program whatever happens to the waiting green thread:
 *    file locks belong to the open file (flock, OFD locks) or to the process
 *    (F_SETLKW, lockf), not to a thread, so one taken on a worker is the
 *    program's; a received message is copied into the caller's buffer, which
 *    lives on the caller's stack or heap, and the caller always waits for
 *    the worker to return (a cancellation, a scoped deadline or a signal
 *    handler interrupts the worker's system call instead of abandoning it).
 *    So nothing is ever taken on the program's behalf and then lost.
 * B. Signals (signal(7)): flock, F_SETLKW, lockf and the message-queue calls
 *    are restarted after an SA_RESTART handler; the System V calls never
 *    are.  Their parks say so (KZ_INTR_RESTART, KZ_INTR_ALWAYS), and a
 *    handler that would interrupt the call natively interrupts the worker's
 *    system call: EINTR, as natively.  Cancellation (pthread_cancel) acts
 *    where glibc's calls are cancellation points: F_SETLKW, lockf, msgsnd,
 *    msgrcv and the message-queue calls; flock, semop and semtimedop are
 *    not, and a cancellation waits for the next point, as natively.
 * C. errno is the program's: a call that succeeds after its first try
 *    failed with EWOULDBLOCK leaves errno as it was.
 * D. Waits on the program's own non-blocking forms (LOCK_NB, IPC_NOWAIT,
 *    an O_NONBLOCK queue) and every call outside a green thread pass
 *    straight through.
 * E. A raw futex wait (syscall(SYS_futex, FUTEX_WAIT or FUTEX_WAIT_BITSET),
 *    syscall.c) is how Rust's standard library and several C++ libraries
 *    wait for their locks: natively the thread sleeps in the kernel until
 *    the holder's FUTEX_WAKE.  In a green thread that sleep held the hub,
 *    and a holder parked on the same hub never ran again.  The wait runs
 *    on the blocking pool instead, whoever wakes it (a green thread of any
 *    hub, a real thread, another process for a shared futex): the kernel
 *    matches the wake to the worker's wait by address, not by thread.
 *    There is no try-first: the wait's own comparison with the expected
 *    value is the kernel's, atomic with the wait (and the caller usually
 *    compared just before calling).  FUTEX_WAIT's timeout is relative;
 *    made an absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET with
 *    every bit, the same wait) so that a wait restarted after the
 *    runtime's own interruption does not start its timeout over.  Like the
 *    kernel's: an untimed wait restarts after an SA_RESTART handler, a
 *    timed one fails with EINTR; neither is a cancellation point.  The
 *    priority-inheritance operations (FUTEX_LOCK_PI...) name the caller's
 *    thread id as the lock's owner and cannot run elsewhere: they stay on
 *    the hub's thread (docs/SHIM.md).
 * F. A green thread alone on its hub (kz_shim_alone: nothing else it could
 *    run, the single-threaded program, the pre-fork worker) makes the
 *    blocking call itself, on its own OS thread, in the kernel: exactly the
 *    native call (its EINTR and restart, its cancellation point), without
 *    the hand-off to a worker and back (two thread wake-ups).
 */
#include "shim.h"

#include <fcntl.h>
#include <mqueue.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT

/* ---- Blocking calls on a worker ------------------------------------------------ */

static void blk_run(void *arg)
{
  struct blk *b = arg;
  b->r = b->call(b->a);
  b->err = errno;
}

long kz_shim_blocking(struct blk *b, int intr, bool cancel_point, int saved_errno)
{
  struct kz_green *g = kz__self();
  if (g && kz_shim_alone(g)) { /* note F: the call itself, as natively */
    kz_shim_kernel_begin(g);
    blk_run(b);
    kz_shim_kernel_end(g);
    errno = b->r >= 0 ? saved_errno : b->err;
    return b->r;
  }
  for (;;) {
    int cut, r;
    bool nocancel = g->flags & KZ__G_NO_CANCEL;
    kz_shim_stats.worker++;
    if (!cancel_point) /* note B: a cancellation waits for the next point */
      g->flags |= KZ__G_NO_CANCEL;
    kz_shim_intr_begin(g, intr);
    r = kz__worker_call_blocking(blk_run, b, -1, &cut);
    kz_shim_intr_end(g);
    if (!nocancel)
      g->flags &= ~KZ__G_NO_CANCEL;
    if (r == -EPERM) { /* not a green thread after all */
      blk_run(b);
      r = 0;
    }
    if (r < 0) { /* the call never ran */
      kz_shim_cancel_point(r);
      errno = -r;
      return -1;
    }
    if (b->r >= 0) {
      errno = saved_errno; /* note C */
      return b->r;
    }
    if (b->err == EINTR && cut == 0)
      continue; /* the runtime's signal, sent by someone else: nobody asked */
    if (b->err != EINTR) { /* the call's own failure */
      errno = b->err;
      return -1;
    }
    kz_shim_cancel_point(cut);
    errno = -cut;
    return -1;
  }
}

/* ---- File locks -------------------------------------------------------------------- */

static long call_flock(const long *a) { return REAL(flock)((int)a[0], (int)a[1]); }

EXPORT int flock(int fd, int op)
{
  int saved = errno;
  struct blk b = {.call = call_flock, .a = {fd, op}};
  if (!shim_active(KZ_PATCH_IPC) || (op & (LOCK_NB | LOCK_UN)))
    return REAL(flock)(fd, op);
  if (REAL(flock)(fd, op | LOCK_NB) == 0) /* note C: success leaves errno alone */
    return 0;
  if (errno != EWOULDBLOCK)
    return -1;
  return (int)kz_shim_blocking(&b, KZ_INTR_RESTART, false, saved);
}

static long call_fcntl_lock(const long *a) { return REAL(fcntl)((int)a[0], (int)a[1], (void *)a[2]); }

int kz_shim_lock_wait(int fd, int cmd, void *lock)
{
  int saved = errno, try = cmd == F_SETLKW ? F_SETLK : F_OFD_SETLK;
  struct blk b = {.call = call_fcntl_lock, .a = {fd, cmd, (long)lock}};
  if (!shim_active(KZ_PATCH_IPC))
    return REAL(fcntl)(fd, cmd, lock);
  if (REAL(fcntl)(fd, try, lock) == 0) /* note C: success leaves errno alone */
    return 0;
  if (errno != EAGAIN && errno != EACCES)
    return -1;
  return (int)kz_shim_blocking(&b, KZ_INTR_RESTART, true, saved);
}

static long call_lockf(const long *a) { return REAL(lockf)((int)a[0], (int)a[1], (off_t)a[2]); }

EXPORT int lockf(int fd, int cmd, off_t len)
{
  int saved = errno;
  struct blk b = {.call = call_lockf, .a = {fd, cmd, (long)len}};
  if (!shim_active(KZ_PATCH_IPC) || cmd != F_LOCK)
    return REAL(lockf)(fd, cmd, len);
  if (REAL(lockf)(fd, F_TLOCK, len) == 0)
    return 0;
  if (errno != EAGAIN && errno != EACCES)
    return -1;
  return (int)kz_shim_blocking(&b, KZ_INTR_RESTART, true, saved);
}

EXPORT int lockf64(int fd, int cmd, off_t len) __attribute__((alias("lockf")));

/* ---- Raw futex waits (note E) ---------------------------------------------------- */

static long call_futex(const long *a) { return kz__syscall6(SYS_futex, a[0], a[1], a[2], a[3], a[4], a[5]); }

long kz_shim_futex(const long *a)
{
  int saved = errno, op = (int)a[1], cmd = op & FUTEX_CMD_MASK;
  const struct timespec *rel = (const struct timespec *)a[3];
  struct blk b = {.call = call_futex, .a = {a[0], a[1], a[2], a[3], a[4], a[5]}};
  struct timespec until;
  if ((cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET) || !shim_active(KZ_PATCH_IPC))
    return call_futex(a);
  if (cmd == FUTEX_WAIT && rel) { /* note E: a relative timeout becomes a deadline */
    if (rel->tv_sec < 0 || rel->tv_nsec < 0 || rel->tv_nsec >= 1000000000L) {
      errno = EINVAL;
      return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += rel->tv_sec;
    until.tv_nsec += rel->tv_nsec;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    b.a[1] = FUTEX_WAIT_BITSET | (op & FUTEX_PRIVATE_FLAG);
    b.a[3] = (long)&until;
    b.a[5] = (long)FUTEX_BITSET_MATCH_ANY;
  }
  return kz_shim_blocking(&b, rel ? KZ_INTR_ALWAYS : KZ_INTR_RESTART, false, saved);
}

/* ---- System V semaphores and messages ------------------------------------------------ */

static long call_semtimedop(const long *a)
{
  return REAL(semtimedop)((int)a[0], (struct sembuf *)a[1], (size_t)a[2], (const struct timespec *)a[3]);
}

/* Try sops all with IPC_NOWAIT (one operation, all or nothing, as semop
   is), then block on the worker with the program's own. */
static int sem_common(int id, struct sembuf *sops, size_t n, const struct timespec *ts)
{
  int saved = errno, r;
  struct sembuf few[16], *nw = n <= 16 ? few : malloc(n * sizeof *nw);
  struct blk b = {.call = call_semtimedop, .a = {id, (long)sops, (long)n, (long)ts}};
  if (!nw) {
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    nw[i] = sops[i];
    nw[i].sem_flg |= IPC_NOWAIT;
  }
  r = REAL(semtimedop)(id, nw, n, NULL);
  if (nw != few)
    free(nw);
  if (r == 0 || errno != EAGAIN)
    return r;
  return (int)kz_shim_blocking(&b, KZ_INTR_ALWAYS, false, saved);
}

/* A blocking semop: some operation would wait (it lacks IPC_NOWAIT). */
static bool may_block(const struct sembuf *sops, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!(sops[i].sem_flg & IPC_NOWAIT))
      return true;
  return false;
}

EXPORT int semop(int id, struct sembuf *sops, size_t n)
{
  if (!shim_active(KZ_PATCH_IPC) || !sops || !may_block(sops, n))
    return REAL(semtimedop)(id, sops, n, NULL);
  return sem_common(id, sops, n, NULL);
}

EXPORT int semtimedop(int id, struct sembuf *sops, size_t n, const struct timespec *ts)
{
  if (!shim_active(KZ_PATCH_IPC) || !sops || !may_block(sops, n))
    return REAL(semtimedop)(id, sops, n, ts);
  return sem_common(id, sops, n, ts);
}

static long call_msgsnd(const long *a) { return REAL(msgsnd)((int)a[0], (const void *)a[1], (size_t)a[2], (int)a[3]); }

EXPORT int msgsnd(int id, const void *msg, size_t size, int flags)
{
  int saved = errno;
  struct blk b = {.call = call_msgsnd, .a = {id, (long)msg, (long)size, flags}};
  if (!shim_active(KZ_PATCH_IPC) || (flags & IPC_NOWAIT))
    return REAL(msgsnd)(id, msg, size, flags);
  if (REAL(msgsnd)(id, msg, size, flags | IPC_NOWAIT) == 0)
    return 0;
  if (errno != EAGAIN)
    return -1;
  return (int)kz_shim_blocking(&b, KZ_INTR_ALWAYS, true, saved);
}

static long call_msgrcv(const long *a)
{
  return REAL(msgrcv)((int)a[0], (void *)a[1], (size_t)a[2], a[3], (int)a[4]);
}

EXPORT ssize_t msgrcv(int id, void *msg, size_t size, long type, int flags)
{
  int saved = errno;
  ssize_t r;
  struct blk b = {.call = call_msgrcv, .a = {id, (long)msg, (long)size, type, flags}};
  if (!shim_active(KZ_PATCH_IPC) || (flags & IPC_NOWAIT))
    return REAL(msgrcv)(id, msg, size, type, flags);
  if ((r = REAL(msgrcv)(id, msg, size, type, flags | IPC_NOWAIT)) >= 0)
    return r;
  if (errno != ENOMSG)
    return -1;
  return kz_shim_blocking(&b, KZ_INTR_ALWAYS, true, saved);
}

/* ---- POSIX message queues: waited for on the hub --------------------------------------- */

/* A deadline on the monotonic clock for an absolute CLOCK_REALTIME time
   (converted once, as clock_nanosleep does in sleep.c), or -1 for none. */
static double realtime_deadline(const struct timespec *abs)
{
  struct timespec now;
  if (!abs)
    return -1;
  clock_gettime(CLOCK_REALTIME, &now);
  return kz__now() + (double)(abs->tv_sec - now.tv_sec) + (double)(abs->tv_nsec - now.tv_nsec) * 1e-9;
}

/* A blocking queue in the program's view? */
static bool mq_blocking(mqd_t q)
{
  struct mq_attr at;
  return mq_getattr(q, &at) == 0 && !(at.mq_flags & O_NONBLOCK);
}

/* Try with a deadline already past (the kernel then answers at once), park
   until the queue is ready, repeat.  The program's own abs_timeout is kept
   as a deadline on the hub: ETIMEDOUT when it passes, as natively. */
static const struct timespec past = {0, 0};

/* The waits of mq_timedreceive and mq_receive (abs NULL: none). */
static ssize_t mq_recv_wait(mqd_t q, char *buf, size_t len, unsigned *prio, const struct timespec *abs)
{
  int saved = errno;
  double deadline;
  ssize_t r;
  if (abs && (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000)) {
    errno = EINVAL;
    return -1;
  }
  deadline = realtime_deadline(abs);
  while ((r = REAL(mq_timedreceive)(q, buf, len, prio, &past)) < 0 && errno == ETIMEDOUT) {
    if (deadline >= 0 && kz__now() >= deadline)
      return -1; /* ETIMEDOUT */
    if (kz_shim_wait_until(q, KZ_READ, deadline, KZ_INTR_RESTART) < 0) {
      if (errno == EAGAIN)
        errno = ETIMEDOUT;
      return -1;
    }
  }
  if (r >= 0)
    errno = saved;
  return r;
}

static int mq_send_wait(mqd_t q, const char *buf, size_t len, unsigned prio, const struct timespec *abs)
{
  int saved = errno, r;
  double deadline;
  if (abs && (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000)) {
    errno = EINVAL;
    return -1;
  }
  deadline = realtime_deadline(abs);
  while ((r = REAL(mq_timedsend)(q, buf, len, prio, &past)) < 0 && errno == ETIMEDOUT) {
    if (deadline >= 0 && kz__now() >= deadline)
      return -1;
    if (kz_shim_wait_until(q, KZ_WRITE, deadline, KZ_INTR_RESTART) < 0) {
      if (errno == EAGAIN)
        errno = ETIMEDOUT;
      return -1;
    }
  }
  if (r == 0)
    errno = saved;
  return r;
}

EXPORT ssize_t mq_timedreceive(mqd_t q, char *buf, size_t len, unsigned *prio, const struct timespec *abs)
{
  if (!shim_active(KZ_PATCH_IPC) || !mq_blocking(q))
    return REAL(mq_timedreceive)(q, buf, len, prio, abs);
  return mq_recv_wait(q, buf, len, prio, abs);
}

EXPORT ssize_t mq_receive(mqd_t q, char *buf, size_t len, unsigned *prio)
{
  if (!shim_active(KZ_PATCH_IPC) || !mq_blocking(q))
    return REAL(mq_receive)(q, buf, len, prio);
  return mq_recv_wait(q, buf, len, prio, NULL);
}

EXPORT int mq_timedsend(mqd_t q, const char *buf, size_t len, unsigned prio, const struct timespec *abs)
{
  if (!shim_active(KZ_PATCH_IPC) || !mq_blocking(q))
    return REAL(mq_timedsend)(q, buf, len, prio, abs);
  return mq_send_wait(q, buf, len, prio, abs);
}

EXPORT int mq_send(mqd_t q, const char *buf, size_t len, unsigned prio)
{
  if (!shim_active(KZ_PATCH_IPC) || !mq_blocking(q))
    return REAL(mq_send)(q, buf, len, prio);
  return mq_send_wait(q, buf, len, prio, NULL);
}

/* ---- open of a FIFO ---------------------------------------------------------------------- */

/* A blocking open of a FIFO waits for the other end, which no descriptor
   announces (a FIFO opened non-blocking for reading reports nothing until a
   writer writes).  So in a green thread a path is looked at first, and a
   FIFO's open runs on the blocking pool; everything else is opened here.
   The look costs one fstatat per open in green threads, none elsewhere.
   open(2) restarts after an SA_RESTART handler and is a cancellation
   point. */
static long call_openat(const long *a)
{
  return REAL(openat)((int)a[0], (const char *)a[1], (int)a[2], (mode_t)a[3]);
}

static bool fifo_at(int dirfd, const char *path, int flags)
{
  struct stat st;
  if (flags & (O_NONBLOCK | O_PATH | O_CREAT | O_DIRECTORY | __O_TMPFILE))
    return false;
  return fstatat(dirfd, path, &st, flags & O_NOFOLLOW ? AT_SYMLINK_NOFOLLOW : 0) == 0 &&
         S_ISFIFO(st.st_mode);
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
  int saved = errno;
  struct blk b = {.call = call_openat, .a = {dirfd, (long)path, flags, mode}};
  if (!shim_active(KZ_PATCH_IPC) || !path || !fifo_at(dirfd, path, flags))
    return REAL(openat)(dirfd, path, flags, mode);
  return (int)kz_shim_blocking(&b, KZ_INTR_RESTART, true, saved);
}

/* The mode argument is there only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags, mode)                                                 \
  do {                                                                         \
    if ((flags) & (O_CREAT | __O_TMPFILE)) {                                   \
      va_list ap;                                                              \
      va_start(ap, flags);                                                     \
      mode = (mode_t)va_arg(ap, int);                                          \
      va_end(ap);                                                              \
    }                                                                          \
  } while (0)

EXPORT int open(const char *path, int flags, ...)
{
  mode_t mode = 0;
  OPEN_MODE(flags, mode);
  if (!kz__self())
    return REAL(openat)(AT_FDCWD, path, flags, mode);
  return open_common(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
  mode_t mode = 0;
  OPEN_MODE(flags, mode);
  if (!kz__self())
    return REAL(openat)(dirfd, path, flags, mode);
  return open_common(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

/* The fortified forms (_FORTIFY_SOURCE) take no mode: O_CREAT is refused
   at compile time. */
EXPORT int __open_2(const char *path, int flags) { return open(path, flags); }
EXPORT int __open64_2(const char *path, int flags) { return open(path, flags); }
EXPORT int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
EXPORT int __openat64_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
