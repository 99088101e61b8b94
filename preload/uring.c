/* uring.c: waiting for io_uring completions in green threads (family
 * "poll").
 *
 * io_uring_enter(2) with IORING_ENTER_GETEVENTS and min_complete > 0 sleeps
 * in the kernel until that many completions are in the ring.  Natively it
 * blocks its thread; under the shim that thread is a hub's, and every other
 * green thread of the hub would stop with it.  An io_uring descriptor is
 * pollable, though: it is readable while its completion ring holds an entry
 * (or the kernel holds completions it will post at the next enter: deferred
 * task work, an overflow).  So:
 *
 *   - a wait for one completion asks the kernel first without sleeping (a
 *     GETEVENTS enter with a zero timeout, note B); if nothing has
 *     completed, the green thread parks on the hub until the ring
 *     descriptor is readable (or the caller's timeout passes), then asks
 *     again;
 *   - a wait for more than one completion cannot use readability (the ring
 *     stays readable from the first completion on, and the park would
 *     spin), so it runs on the blocking pool (block.c), waiting only: the
 *     submission stays on the caller's thread.
 *
 * How calls reach here.  liburing (2.3 in Debian 12) makes its system
 * calls with its own inline `syscall` instruction, not through libc, so
 * neither libc's syscall() nor patch.c ever sees them.  Its exported
 * functions are reached through the program's PLT, or liburing's own PLT
 * for the calls between them, so the shim interposes the ones that may
 * wait: __io_uring_get_cqe (behind the inline io_uring_wait_cqe,
 * io_uring_wait_cqe_nr, io_uring_peek_cqe), io_uring_wait_cqes,
 * io_uring_wait_cqe_timeout, io_uring_submit_and_wait,
 * io_uring_submit_and_wait_timeout, __io_uring_sqring_wait, io_uring_enter
 * and io_uring_enter2.  Each waits first, here, and then calls liburing's
 * own function, which finds the completions it wants and does not sleep:
 * what it returns, what it leaves in the ring, is liburing's.
 * kz_shim_uring_enter holds the same wait for a raw io_uring_enter made
 * through libc's syscall(SYS_io_uring_enter, ...), which syscall.c hands
 * over.
 *
 * Notes.
 * A. What the kernel does, it still does.  A submission is made by
 *    liburing or by one enter without GETEVENTS, on the calling thread (so
 *    IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN rings keep their one
 *    submitter task: all the green threads of a hub share its OS thread).
 *    The kernel never restarts a completion wait after a signal handler,
 *    SA_RESTART or not (-EINTR, io_uring_enter(2)): the park is
 *    KZ_INTR_ALWAYS.  liburing's calls are not cancellation points (it does
 *    not call libc), so a pthread_cancel waits for the next point.  The
 *    program's errno is never touched: liburing returns -errno and never
 *    sets errno.
 * B. The probe is IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG with a zero
 *    timeout and the caller's signal mask: 0 once a completion is there (it
 *    also runs deferred task work and flushes an overflow), -ETIME if not.
 *    EXT_ARG needs Linux 5.11 (IORING_FEAT_EXT_ARG); on older kernels the
 *    whole wait runs on the blocking pool, as for several completions.
 * C. Timeouts are relative (IORING_ENTER_ABS_TIMER, Linux 6.12, is passed
 *    through untouched): the deadline is taken once, when the wait begins,
 *    and ends it with -ETIME, as the kernel's does.  A deadline of the
 *    green thread's scope (kz_deadline) ends it with -ETIMEDOUT.
 * D. The caller's signal mask (EXT_ARG's sigmask, or the argument itself)
 *    is applied to the kernel's zero-timeout probes, not while parked: the
 *    OS thread is shared (poll.c, note C).
 * E. Not waited for here: a ring entered by its registered index
 *    (IORING_ENTER_REGISTERED_RING, per task: no descriptor to poll, and
 *    another thread cannot use the index), and liburing's old-kernel path
 *    that submits a timeout entry and waits in one call (no EXT_ARG).
 *    liburing's interposers wait on ring->ring_fd, the real descriptor, so
 *    a registered ring is waited for all the same through them.
 * F. A wait that runs on the blocking pool uses the ring's descriptor from
 *    another thread, which the kernel refuses for a DEFER_TASKRUN ring
 *    (-EEXIST): that wait then blocks the OS thread, as before.
 */
#include "shim.h"

#include <dlfcn.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT

#ifndef IORING_ENTER_ABS_TIMER
#define IORING_ENTER_ABS_TIMER (1U << 5)
#endif

/* ---- The system call ------------------------------------------------------------ */

/* io_uring_enter(2) itself, as liburing returns it: the result or -errno.
   The program's errno is kept (note A). */
static long sys_enter(unsigned fd, unsigned submit, unsigned min, unsigned flags, const void *arg, size_t sz)
{
  int saved = errno;
  long r = kz__syscall(SYS_io_uring_enter, fd, submit, min, flags, arg, sz);
  if (r < 0)
    r = -errno;
  errno = saved;
  return r;
}

/* Note B: is a completion there?  0 yes, -ETIME no, or another -errno. */
static long probe(int fd, const sigset_t *mask)
{
  struct __kernel_timespec zero = {0, 0};
  struct io_uring_getevents_arg a = {.sigmask = (unsigned long)mask, .sigmask_sz = _NSIG / 8,
                                     .ts = (unsigned long)&zero};
  return sys_enter((unsigned)fd, 0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &a, sizeof a);
}

/* ---- Waiting ------------------------------------------------------------------------ */

static long call_enter(const long *a)
{
  long r = sys_enter((unsigned)a[0], 0, (unsigned)a[1], (unsigned)a[2], (const void *)a[3], (size_t)a[4]);
  if (r < 0) { /* the blocking pool's convention: libc's */
    errno = (int)-r;
    return -1;
  }
  return r;
}

/* Wait for min completions on the blocking pool (notes E, F): a waiting
   enter, submitting nothing.  0 or -errno. */
static long wait_on_pool(int fd, unsigned min, const struct __kernel_timespec *ts, const sigset_t *mask,
                         bool ext_arg)
{
  int saved = errno;
  long r;
  struct io_uring_getevents_arg a = {.sigmask = (unsigned long)mask, .sigmask_sz = _NSIG / 8,
                                     .ts = (unsigned long)ts};
  struct blk b = {.call = call_enter, .a = {fd, min, IORING_ENTER_GETEVENTS, (long)mask, _NSIG / 8}};
  if (ext_arg) {
    b.a[2] |= IORING_ENTER_EXT_ARG;
    b.a[3] = (long)&a;
    b.a[4] = sizeof a;
  }
  r = kz_shim_blocking(&b, KZ_INTR_ALWAYS, false, saved) < 0 ? -errno : 0;
  if (r == -EEXIST) /* note F */
    r = sys_enter((unsigned)fd, 0, min, (unsigned)b.a[2], (const void *)b.a[3], (size_t)b.a[4]);
  errno = saved;
  return r < 0 ? r : 0;
}

/* Park until ring descriptor fd is readable or deadline passes: 0, or
   -errno (-ETIME for the deadline, note C). */
static long park_readable(struct kz_green *g, int fd, double deadline)
{
  int saved = errno, r;
  bool nocancel = g->flags & KZ__G_NO_CANCEL;
  g->flags |= KZ__G_NO_CANCEL; /* note A: not a cancellation point */
  r = kz_shim_wait_until(fd, KZ_READ, deadline, KZ_INTR_ALWAYS);
  if (!nocancel)
    g->flags &= ~KZ__G_NO_CANCEL;
  r = r < 0 ? (errno == EAGAIN ? -ETIME : -errno) : 0;
  errno = saved;
  return r;
}

/* Wait in green thread g until min completions are in the ring of
   descriptor fd (or the kernel would post them at the next enter): 0, or
   -errno: -ETIME when ts (relative, NULL: none) passes, -EINTR, -ETIMEDOUT
   (a scoped deadline), or what the kernel says.  May switch. */
static long wait_completions(struct kz_green *g, int fd, unsigned min, const struct __kernel_timespec *ts,
                             const sigset_t *mask)
{
  double deadline = ts ? kz__now() + (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 : -1;
  long r;
  if (min > 1)
    return wait_on_pool(fd, min, ts, mask, true);
  while ((r = probe(fd, mask)) == -ETIME)
    if ((r = park_readable(g, fd, deadline)) < 0)
      return r;
  if (r == -EINVAL) /* no EXT_ARG: a kernel before 5.11 (note B) */
    return ts ? -EINVAL : wait_on_pool(fd, min, NULL, mask, false);
  return r;
}

/* ---- The bare system call ------------------------------------------------------------ */

/* The waiting io_uring_enter a green thread may make: GETEVENTS with
   completions to wait for, on a descriptor (note E), with a relative
   timeout if any (note C), and one of the argument forms this kernel
   interface has had (a sigset, or EXT_ARG's struct). */
static bool waits_here(unsigned min, unsigned flags, size_t sz)
{
  if (!(flags & IORING_ENTER_GETEVENTS) || min == 0 ||
      (flags & ~(IORING_ENTER_GETEVENTS | IORING_ENTER_SQ_WAKEUP | IORING_ENTER_EXT_ARG)))
    return false;
  return flags & IORING_ENTER_EXT_ARG ? sz == sizeof(struct io_uring_getevents_arg) : true;
}

/* io_uring_enter as the kernel answers it, for a green thread: the
   submission first, on this thread, then the wait (note A).  Returns what
   the system call returns: the entries submitted (the wait's failure is
   then dropped, as the kernel drops it), or the wait's result; -errno. */
static long enter_green(struct kz_green *g, unsigned fd, unsigned submit, unsigned min, unsigned flags,
                        const void *arg, size_t sz)
{
  const struct io_uring_getevents_arg *ea = flags & IORING_ENTER_EXT_ARG ? arg : NULL;
  const struct __kernel_timespec *ts = ea ? (const void *)(unsigned long)ea->ts : NULL;
  const sigset_t *mask = ea ? (const void *)(unsigned long)ea->sigmask : arg;
  long n = 0, r;
  if (submit) {
    n = sys_enter(fd, submit, 0, flags & IORING_ENTER_SQ_WAKEUP, NULL, 0);
    if (n < 0 || (unsigned long)n != submit)
      return n; /* the kernel waits only once everything was submitted */
  }
  r = wait_completions(g, (int)fd, min, ts, mask);
  return n ? n : r;
}

int kz_shim_uring_enter(unsigned fd, unsigned submit, unsigned min, unsigned flags, const void *arg, size_t sz)
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  long r;
  if (!g || !waits_here(min, flags, sz))
    r = sys_enter(fd, submit, min, flags, arg, sz);
  else
    r = enter_green(g, fd, submit, min, flags, arg, sz);
  if (r < 0) {
    errno = (int)-r;
    return -1;
  }
  return (int)r;
}

/* ---- liburing ---------------------------------------------------------------------------- */

#if __has_include(<liburing.h>)
#include <liburing.h>

/* liburing's own functions, found on first use (the program may load
   liburing after start-up, with dlopen). */
static void *real_fn(_Atomic(void *) *slot, const char *name)
{
  void *f = atomic_load_explicit(slot, memory_order_acquire);
  if (!f) {
    f = dlsym(RTLD_NEXT, name);
    atomic_store_explicit(slot, f, memory_order_release);
  }
  return f;
}

#define LIBURING(ret, name, params)                                           \
  static ret (*real_##name(void)) params                                      \
  {                                                                           \
    static _Atomic(void *) slot;                                              \
    return (ret(*) params)real_fn(&slot, #name);                              \
  }
LIBURING(int, __io_uring_get_cqe, (struct io_uring *, struct io_uring_cqe **, unsigned, unsigned, sigset_t *))
LIBURING(int, io_uring_wait_cqes,
         (struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *, sigset_t *))
LIBURING(int, io_uring_submit, (struct io_uring *))
LIBURING(int, io_uring_submit_and_wait, (struct io_uring *, unsigned))
LIBURING(int, io_uring_submit_and_wait_timeout,
         (struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *, sigset_t *))
LIBURING(int, __io_uring_sqring_wait, (struct io_uring *))

/* Completions in the ring now, as liburing counts them. */
static unsigned cq_ready(const struct io_uring *ring)
{
  return atomic_load_explicit((_Atomic unsigned *)ring->cq.ktail, memory_order_acquire) - *ring->cq.khead;
}

/* The green thread that should wait for ring, or NULL: liburing's own call
   then runs as it is (it will not sleep, or cannot be waited for here). */
static struct kz_green *ring_waiter(const struct io_uring *ring, unsigned wait_nr)
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  if (!g || wait_nr == 0 || ring->ring_fd < 0 || cq_ready(ring) >= wait_nr)
    return NULL;
  return g;
}

/* Wait for wait_nr completions of ring (no EXT_ARG: only without a
   timeout, note E).  0 or -errno. */
static long ring_wait(struct kz_green *g, struct io_uring *ring, unsigned wait_nr,
                      struct __kernel_timespec *ts, sigset_t *mask)
{
  if (!(ring->features & IORING_FEAT_EXT_ARG))
    return wait_on_pool(ring->ring_fd, wait_nr, NULL, mask, false);
  return wait_completions(g, ring->ring_fd, wait_nr, ts, mask);
}

/* Behind io_uring_wait_cqe, io_uring_wait_cqe_nr and io_uring_peek_cqe
   (liburing.h's inline functions).  With entries to submit (liburing's
   path for kernels without EXT_ARG), it runs as it is. */
EXPORT int __io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned submit,
                              unsigned wait_nr, sigset_t *mask)
{
  struct kz_green *g = submit ? NULL : ring_waiter(ring, wait_nr);
  long r;
  if (g && (r = ring_wait(g, ring, wait_nr, NULL, mask)) < 0) {
    *cqe_ptr = NULL;
    return (int)r;
  }
  return real___io_uring_get_cqe()(ring, cqe_ptr, submit, wait_nr, mask);
}

/* After a wait that ended early: the first completion if there is one
   (liburing's answer when its own enter failed). */
static int ended(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, long r)
{
  if (r == -ETIME && cq_ready(ring) > 0) /* at least one: the kernel answers 0 (note C) */
    return real___io_uring_get_cqe()(ring, cqe_ptr, 0, 0, NULL);
  *cqe_ptr = NULL;
  return (int)r;
}

EXPORT int io_uring_wait_cqes(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                              struct __kernel_timespec *ts, sigset_t *mask)
{
  struct kz_green *g = ring_waiter(ring, wait_nr);
  long r;
  if (g && (ts == NULL || (ring->features & IORING_FEAT_EXT_ARG)) &&
      (r = ring_wait(g, ring, wait_nr, ts, mask)) < 0)
    return ended(ring, cqe_ptr, r);
  return real_io_uring_wait_cqes()(ring, cqe_ptr, wait_nr, ts, mask);
}

EXPORT int io_uring_wait_cqe_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                                     struct __kernel_timespec *ts)
{
  return io_uring_wait_cqes(ring, cqe_ptr, 1, ts, NULL);
}

/* Submit what the program queued, as liburing would in the same call: the
   count, or -errno.  false in *all if the kernel took fewer entries than
   were queued (it then does not wait). */
static int submit_first(struct io_uring *ring, bool *all)
{
  int n = real_io_uring_submit()(ring);
  *all = n >= 0 && ((ring->flags & IORING_SETUP_SQPOLL) || *ring->sq.khead == *ring->sq.ktail);
  return n;
}

/* Returns the entries submitted, as liburing does; the wait's failure
   only when nothing was submitted (as the kernel reports it). */
EXPORT int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
  struct kz_green *g = ring_waiter(ring, wait_nr);
  bool all;
  int n;
  long r;
  if (!g)
    return real_io_uring_submit_and_wait()(ring, wait_nr);
  n = submit_first(ring, &all);
  if (n < 0 || !all || cq_ready(ring) >= wait_nr)
    return n;
  r = ring_wait(g, ring, wait_nr, NULL, NULL);
  return n > 0 || r == 0 ? n : (int)r;
}

/* liburing 2.3 returns the count its enter submitted (when it had to wait
   for the completion; 0 if one was already there) and the first
   completion in *cqe_ptr, NULL if none came before the timeout. */
EXPORT int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                                            unsigned wait_nr, struct __kernel_timespec *ts, sigset_t *mask)
{
  struct kz_green *g = ring_waiter(ring, wait_nr);
  bool all, had = false;
  int n;
  long r;
  if (!g || (ts && !(ring->features & IORING_FEAT_EXT_ARG)))
    return real_io_uring_submit_and_wait_timeout()(ring, cqe_ptr, wait_nr, ts, mask);
  had = cq_ready(ring) > 0;
  n = submit_first(ring, &all);
  if (n < 0) {
    *cqe_ptr = NULL;
    return n;
  }
  r = all ? ring_wait(g, ring, wait_nr, ts, mask) : -ETIME;
  r = r == 0 ? real___io_uring_get_cqe()(ring, cqe_ptr, 0, 0, NULL) : ended(ring, cqe_ptr, r);
  if (had)
    return r < 0 && *cqe_ptr == NULL ? (int)r : 0;
  return n > 0 ? n : (int)r;
}

/* Space in a full submission ring (IORING_SETUP_SQPOLL): the ring
   descriptor is writable once there is. */
EXPORT int __io_uring_sqring_wait(struct io_uring *ring)
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  if (g && ring->ring_fd >= 0 && (ring->flags & IORING_SETUP_SQPOLL) &&
      *ring->sq.ktail - atomic_load_explicit((_Atomic unsigned *)ring->sq.khead, memory_order_acquire) >=
          *ring->sq.kring_entries) {
    int saved = errno, r = kz_shim_wait_until(ring->ring_fd, KZ_WRITE, -1, KZ_INTR_ALWAYS);
    int err = errno;
    errno = saved;
    if (r < 0)
      return -err;
  }
  return real___io_uring_sqring_wait()(ring);
}

/* liburing's system call wrappers (2.3). */
EXPORT int io_uring_enter2(unsigned fd, unsigned submit, unsigned min, unsigned flags, sigset_t *sig, size_t sz)
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  if (!g || !waits_here(min, flags, sz))
    return (int)sys_enter(fd, submit, min, flags, sig, sz);
  return (int)enter_green(g, fd, submit, min, flags, sig, sz);
}

EXPORT int io_uring_enter(unsigned fd, unsigned submit, unsigned min, unsigned flags, sigset_t *sig)
{
  return io_uring_enter2(fd, submit, min, flags, sig, _NSIG / 8);
}
#endif
