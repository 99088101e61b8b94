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
 *    process-directed signals and those sent to any green thread of the hub
 *    (pthread_kill sends them to its OS thread: thread.c, note H).
 * B. Masks.  The green threads of a hub share their OS thread's signal mask
 *    (pthread_sigmask passes straight through).  A signal the mask does not
 *    block is delivered to its handler as soon as it arrives, and never
 *    shows in a signalfd.  Natively the kernel unblocks the waited signals
 *    while a thread sleeps in sigtimedwait, so a waiter takes them whether
 *    they were blocked or not (POSIX leaves the unblocked case undefined,
 *    Linux takes them).  Here the waited signals the OS thread does not
 *    block are blocked for as long as some green thread of the hub waits
 *    for them (a count per signal, per OS thread), then unblocked again: a
 *    pending one then goes to its handler, as when it arrives just after a
 *    native sigtimedwait returned.  Meanwhile the other green threads see
 *    those signals blocked in pthread_sigmask, a pthread_sigmask that
 *    unblocks them takes them away from the waiter, and a program one of
 *    them starts (fork and exec) inherits them blocked.
 * C. EINTR as natively: sigwaitinfo and sigtimedwait fail with EINTR when a
 *    handler interrupts them (signal(7): never restarted), which here means
 *    when the waiter is the main green thread (signal.c); sigwait retries,
 *    as glibc's does.  The waited signals themselves are blocked, so no
 *    handler of theirs runs.  A cancellation (pthread_cancel) ends the wait
 *    at once: these calls, and pause and sigsuspend, are cancellation
 *    points.
 * D. The signalfd is closed through the hub (kz_fd_forget) when the call
 *    returns.  If the program closes it meanwhile (closefrom in another
 *    green thread), the wait ends with EBADF and a new one is made; the
 *    number, now the program's, is not closed again.
 * E. pause and sigsuspend wait for a handler to run: the green thread parks
 *    until a wrapped handler has run since its call began (signal.c, note
 *    F), then fails with EINTR, as natively.  sigsuspend sets the OS
 *    thread's mask for the wait, which the other green threads of the hub
 *    share meanwhile (note B), and restores the mask it found; a signal
 *    its mask unblocks that is already pending is handled as the mask
 *    changes, and the call returns at once.
 */
#include "shim.h"

#include <sys/signalfd.h>

/* Green threads of this OS thread waiting for each signal that the shim
   blocked on their behalf (note B); the OS thread's, also from a green
   thread with TLS of its own (hub/tls.c, note D). */
static KZ_TLS unsigned held_tls[_NSIG];
#define held ((unsigned *)kz__os_tls(held_tls))

/* Block the signals of set that the OS thread does not block, or that other
   waiters hold blocked already; the ones this waiter holds go in *mine. */
static void hold(const sigset_t *set, sigset_t *mine)
{
  sigset_t cur, add;
  sigemptyset(mine);
  sigemptyset(&add);
  if (pthread_sigmask(SIG_BLOCK, NULL, &cur) != 0)
    return;
  for (int s = 1; s < _NSIG; s++) {
    if (!sigismember(set, s) || s == SIGKILL || s == SIGSTOP)
      continue;
    if (held[s] || !sigismember(&cur, s)) {
      if (!held[s]++)
        sigaddset(&add, s);
      sigaddset(mine, s);
    }
  }
  if (!sigisemptyset(&add))
    pthread_sigmask(SIG_BLOCK, &add, NULL);
}

/* Unblock what the last waiter of each signal in mine held. */
static void release(const sigset_t *mine)
{
  sigset_t drop;
  sigemptyset(&drop);
  for (int s = 1; s < _NSIG; s++)
    if (sigismember(mine, s) && !--held[s])
      sigaddset(&drop, s);
  if (!sigisemptyset(&drop))
    pthread_sigmask(SIG_UNBLOCK, &drop, NULL);
}

/* Take a pending signal of set without waiting: its number, or -1 with
   errno (EAGAIN: none). */
static int take(const sigset_t *set, siginfo_t *info)
{
  static const struct timespec zero;
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
static int green_wait(const sigset_t *set, siginfo_t *info, double deadline)
{
  int saved = errno, fd = -1, sig;
  bool no_fd = false;
  sigset_t mine;
  siginfo_t spare;
  if (!info)
    info = &spare;
  hold(set, &mine);
  while ((sig = take(set, info)) < 0 && errno == EAGAIN) {
    if (fd < 0 && (fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
      no_fd = true;
      break;
    }
    if (kz_shim_wait_until(fd, KZ_READ, deadline, KZ_INTR_ALWAYS) < 0) {
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
  release(&mine);
  if (sig > 0)
    errno = saved;
  return sig;
}

KZ_INTERPOSE(int, sigtimedwait, (const sigset_t *set, siginfo_t *info, const struct timespec *timeout),
             (set, info, timeout))
{
  double deadline = -1;
  if (!shim_active(KZ_PATCH_POLL) || !set)
    return REAL(sigtimedwait)(set, info, timeout);
  if (timeout) {
    if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L ||
        (timeout->tv_sec == 0 && timeout->tv_nsec == 0))
      return REAL(sigtimedwait)(set, info, timeout); /* EINVAL, or a plain poll */
    deadline = kz__now() + (double)timeout->tv_sec + (double)timeout->tv_nsec * 1e-9;
  }
  return green_wait(set, info, deadline);
}

KZ_INTERPOSE(int, sigwaitinfo, (const sigset_t *set, siginfo_t *info), (set, info))
{
  if (!shim_active(KZ_PATCH_POLL) || !set)
    return REAL(sigwaitinfo)(set, info);
  return green_wait(set, info, -1);
}

/* Like glibc's: an error number, never EINTR (note C). */
KZ_INTERPOSE(int, sigwait, (const sigset_t *set, int *sig), (set, sig))
{
  int r, saved = errno;
  if (!shim_active(KZ_PATCH_POLL) || !set)
    return REAL(sigwait)(set, sig);
  do
    r = green_wait(set, NULL, -1);
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
  if (!g || (r = kz_shim_suspend(g, kz_shim_handled())) == -EPERM)
    return REAL(pause)();
  kz_shim_cancel_point(r);
  errno = -r;
  return -1;
}

KZ_INTERPOSE(int, sigsuspend, (const sigset_t *mask), (mask))
{
  struct kz_green *g = shim_active(KZ_PATCH_POLL);
  unsigned long since = kz_shim_handled();
  sigset_t old;
  int r;
  if (!g || !mask || pthread_sigmask(SIG_SETMASK, mask, &old) != 0)
    return REAL(sigsuspend)(mask);
  r = kz_shim_suspend(g, since);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r == -EPERM)
    return REAL(sigsuspend)(mask);
  kz_shim_cancel_point(r); /* with the program's mask back */
  errno = -r;
  return -1;
}
