/* sigwait.c: sigwait, sigwaitinfo and sigtimedwait in a green thread park
 * only that green thread (family "poll": like epoll_wait, they wait for a
 * descriptor's readiness); so do pause and sigsuspend (note E).
 *
 * A waiting call makes a signalfd for its set, parks until the hub's poll
 * finds it readable, then takes the signal with the real sigtimedwait and a
 * zero timeout.  The kernel dequeues each signal once, so every signal goes
 * to exactly one waiter however many wake up for it; a waiter that finds
 * nothing left parks again.  Nobody waiting, nothing of this exists: a
 * pending signal stays pending, an unblocked one goes to its handler, as
 * natively.
 *
 * Notes.
 * A. A signalfd (like the kernel's sigtimedwait) reports the signals
 *    pending for the thread that polls it, plus the process's: epoll
 *    evaluates it in the hub's epoll_wait, on the hub's OS thread, which is
 *    the OS thread of every green thread of that hub.  So it sees the
 *    process-directed signals and those sent to the OS thread (tgkill with
 *    its number, which every green thread of the hub reports as its own).
 * B. Masks.  Each green thread has its own mask, and the OS thread blocks
 *    what all of them block (hub/sigmask.c): a signal nobody blocks is
 *    delivered to a handler as soon as it arrives, and never shows in a
 *    signalfd.  Natively the kernel unblocks the waited signals while a
 *    thread sleeps in sigtimedwait, so a waiter takes them whether they
 *    were blocked or not (POSIX leaves the unblocked case undefined, Linux
 *    takes them).  Here the waited signals are kept blocked on the OS thread
 *    (hub->sig.keep) for as long as some green thread of the hub waits for
 *    them (a count per signal, per OS thread), then let go: a pending one
 *    then goes to a green thread that does not block it, as when it arrives
 *    just after a native sigtimedwait returned.  Meanwhile a waited signal
 *    goes to a waiter, never to another green thread's handler; the green
 *    threads' own masks, as pthread_sigmask reports them, do not change.
 *    A signal sent to the waiter alone (pthread_kill while it blocks it:
 *    signal.c, note H) is taken first, and wakes it.
 * C. EINTR as natively: sigwaitinfo and sigtimedwait fail with EINTR when a
 *    handler given to the waiter interrupts them (signal(7): never
 *    restarted; signal.c); sigwait retries, as glibc's does.  The waited
 *    signals themselves are blocked, so no handler of theirs runs.  A
 *    cancellation (pthread_cancel) ends the wait at once: these calls, and
 *    pause and sigsuspend, are cancellation points.
 * D. The signalfd is closed through the hub (kz_fd_forget) when the call
 *    returns.  If the program closes it meanwhile (closefrom in another
 *    green thread), the wait ends with EBADF and a new one is made; the
 *    number, now the program's, is not closed again.
 * E. pause and sigsuspend wait for a handler to run: the green thread parks
 *    until a handler has run for it since its call began (signal.c, note
 *    F), then fails with EINTR, as natively.  sigsuspend makes its mask the
 *    green thread's own for the wait, and puts back the one it found; a
 *    signal its mask unblocks that is already pending is handled as the mask
 *    changes, and the call returns at once.
 */
#include "shim.h"

#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* Keep the signals of set blocked on the OS thread while g waits for them;
   they go in *mine. */
static void hold(struct kz_green *g, const sigset_t *set, uint64_t *mine)
{
  uint64_t add = 0;
  *mine = kz_shim_sigmask_of(set) & ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
  for (uint64_t m = *mine; m; m &= m - 1) /* counted per hub (note B) */
    if (!g->hub->sig.held[__builtin_ctzll(m)]++)
      add |= m & -m;
  g->sig.waiting = *mine;
  if (add)
    kz__sigmask_keep(g->hub, add, 0);
}

/* Let go of what the last waiter of each signal in mine held. */
static void release(struct kz_green *g, uint64_t mine)
{
  uint64_t drop = 0;
  for (uint64_t m = mine; m; m &= m - 1)
    if (!--g->hub->sig.held[__builtin_ctzll(m)])
      drop |= m & -m;
  g->sig.waiting = 0;
  if (drop)
    kz__sigmask_keep(g->hub, 0, drop);
}

/* Take a pending signal of set without waiting: one sent to g alone first
   (signal.c, note H), then the OS thread's and the process's.  Its number,
   or -1 with errno (EAGAIN: none). */
static int take(struct kz_green *g, const sigset_t *set, siginfo_t *info)
{
  static const struct timespec zero;
  struct kz_green *own = kz__sig_owner(g);
  uint64_t mine = own->sig.pend & kz_shim_sigmask_of(set);
  if (mine) {
    int sig = __builtin_ctzll(mine) + 1;
    own->sig.pend &= ~(1ull << (sig - 1));
    memset(info, 0, sizeof *info);
    info->si_signo = sig;
    info->si_code = SI_TKILL; /* what pthread_kill sends */
    info->si_pid = getpid();
    info->si_uid = getuid();
    return sig;
  }
  return REAL(sigtimedwait)(set, info, &zero);
}

static void drop_fd(int fd)
{
  int e = errno;
  kz_fd_forget(fd);
  REAL(close)(fd);
  errno = e;
}

/* Park the calling green thread until a signal of set is pending, and take
   it: its number, or -1 with errno (EAGAIN at the deadline, in kz__now()
   seconds, < 0: none; EINTR, ECANCELED, ETIMEDOUT for a scoped deadline). */
static int green_wait(struct kz_green *g, const sigset_t *set, siginfo_t *info, double deadline)
{
  int saved = errno, fd = -1, sig;
  bool no_fd = false;
  uint64_t mine;
  siginfo_t spare;
  if (!info)
    info = &spare;
  hold(g, set, &mine);
  while ((sig = take(g, set, info)) < 0 && errno == EAGAIN) {
    if (fd < 0 && (fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
      no_fd = true;
      break;
    }
    if (kz_shim_wait_until(fd, KZ_READ, deadline, KZ_INTR_ALWAYS) < 0) {
      if (errno == EINTR && (kz__sig_owner(g)->sig.pend & mine))
        continue; /* woken for a signal sent to it (signal.c, note H) */
      if (errno != EBADF)
        break;
      fd = -1; /* closed by the program (note D) */
    }
  }
  if (fd >= 0)
    drop_fd(fd);
  if (no_fd) { /* no descriptor to spare: the real wait, which holds the hub */
    struct timespec ts, *tp = NULL;
    double left = deadline - kz__now();
    if (deadline >= 0) {
      left = left > 0 ? left : 0;
      ts.tv_sec = (time_t)left;
      ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
      tp = &ts;
    }
    sig = REAL(sigtimedwait)(set, info, tp);
  }
  release(g, mine);
  if (sig > 0)
    errno = saved;
  return sig;
}

KZ_INTERPOSE(int, sigtimedwait, (const sigset_t *set, siginfo_t *info, const struct timespec *timeout),
             (set, info, timeout))
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  double deadline = -1;
  if (!g || !set)
    return REAL(sigtimedwait)(set, info, timeout);
  if (timeout) {
    if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L ||
        (timeout->tv_sec == 0 && timeout->tv_nsec == 0))
      return REAL(sigtimedwait)(set, info, timeout); /* EINVAL, or a plain poll */
    deadline = kz__now() + (double)timeout->tv_sec + (double)timeout->tv_nsec * 1e-9;
  }
  return green_wait(g, set, info, deadline);
}

KZ_INTERPOSE(int, sigwaitinfo, (const sigset_t *set, siginfo_t *info), (set, info))
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  if (!g || !set)
    return REAL(sigwaitinfo)(set, info);
  return green_wait(g, set, info, -1);
}

/* Like glibc's: an error number, never EINTR (note C). */
KZ_INTERPOSE(int, sigwait, (const sigset_t *set, int *sig), (set, sig))
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  int r, saved = errno;
  if (!g || !set)
    return REAL(sigwait)(set, sig);
  do
    r = green_wait(g, set, NULL, -1);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    r = errno;
    errno = saved;
    return r;
  }
  *sig = r;
  return 0;
}

/* ---- pause, sigsuspend (note E) ---------------------------------------------- */

KZ_INTERPOSE(int, pause, (void), ())
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  int r;
  if (!g)
    return REAL(pause)();
  r = kz_shim_suspend(g, g->sig.handled);
  kz_shim_cancel_point(r);
  errno = -r;
  return -1;
}

KZ_INTERPOSE(int, sigsuspend, (const sigset_t *mask), (mask))
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  uint32_t since;
  uint64_t old;
  int r;
  if (!g || !mask)
    return REAL(sigsuspend)(mask);
  since = g->sig.handled;
  old = kz_shim_sigmask_set(g, kz_shim_sigmask_of(mask)); /* a pending one is handled here */
  r = kz_shim_suspend(g, since);
  kz_shim_sigmask_set(g, old);
  kz_shim_cancel_point(r); /* with the program's mask back */
  errno = -r;
  return -1;
}
