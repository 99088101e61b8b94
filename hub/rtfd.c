/* rtfd.c: the runtime's own descriptors, kept out of the program's way.
 *
 * A hub owns two descriptors: its loop's epoll instance (created by libev)
 * and the eventfd other threads wake it through (hub.c).  They live among
 * the program's numbers, and programs close what they did not open:
 * closefrom(3), close_range(3, ~0U, 0), a loop of close() up to the limit, a
 * walk of /proc/self/fd (daemons, sshd at each connection).  Closing a
 * hub's epoll descriptor made libev abort at its next epoll_ctl.  So:
 *
 *   - every runtime descriptor is recorded here (a process-wide bitmap that
 *     any thread may read without a lock);
 *   - the shim's close, close_range, closefrom, dup2, dup3 and F_DUPFD
 *     consult it from every thread, green or not (preload/io.c), and treat a
 *     runtime descriptor as if it did not exist: a close fails with EBADF, a
 *     range skips it, a duplicate of it fails with EBADF;
 *   - under the shim, descriptors are created for the runtime at high
 *     numbers, close-on-exec (kz__rtfd_adopt), so the low numbers a program
 *     expects to be free stay free.
 *
 * Notes.
 * A. "Created for the runtime": libev creates its epoll descriptor itself.
 *    Its call reaches the shim's epoll_create1 (libev is a shared library,
 *    so its calls go through the dynamic linker like the program's); the
 *    hub marks the calls that create the runtime's descriptors with
 *    kz__rtfd_scope (a per-thread count), and the shim's creation
 *    interposers adopt what they create while it is set.  The scope covers
 *    libev's own work and none of the program's: ev_loop_new,
 *    ev_loop_destroy, and every pass of ev_run, whose callbacks libev
 *    invokes through a hook that leaves the scope while they run (hub.c,
 *    note M: libev may re-create its backend in any pass).  Without the shim (a program
 *    on the API alone) libev's descriptor stays where libev puts it and is
 *    not recorded (libev does not tell its number): such a program calls
 *    its own close, which the runtime does not see anyway.
 * B. Where: at or above min(RLIMIT_NOFILE's soft limit, 1024) - 32.  Not at
 *    the very top of a large limit: the kernel's descriptor table and
 *    libev's per-descriptor array both grow to the highest number in use,
 *    and a limit of 1,048,576 (common in containers) would cost megabytes
 *    per process.  Below 1024, so a program that selects on its own low
 *    descriptors never meets them; 32 numbers leave room for many hubs.  A
 *    program that fills every number still gets EMFILE only as many
 *    descriptors early as the runtime holds (two per hub).  When the
 *    program has taken those numbers itself, the next 32 below are tried,
 *    and so on down to 64.  When the limit is too low for that (64 or
 *    less), a new descriptor stays where it was made.  The numbers are visible to F_GETFD: a program looking for a
 *    free number (bash's move_to_high_fd) must see them taken.
 * C. The runtime's own closes of its descriptors (libev's, in scope) pass,
 *    and drop the record.  A number libev closes in scope that is not
 *    recorded was given to the program (kz__hub_give_fd: dup2 onto it): the
 *    close is skipped, since the number names the program's file now.  In
 *    scope libev closes nothing but its backend (the hub uses no ev_async,
 *    ev_signal, ev_child or ev_periodic, so libev has no other descriptor).
 * D. The bitmap covers numbers below KZ__RTFD_MAX; a runtime descriptor
 *    above it (a process already holding that many) is not protected.
 * E. A runtime descriptor closed where no interposer sees it (the system
 *    call instruction itself) is found when its hub next uses it (libev's
 *    epoll_ctl or epoll_wait, the eventfd's read or write fail).  With
 *    several hubs it may be found first in another way: a hub started
 *    after the close (the shim's extra hubs start at the first
 *    pthread_create) is given the free numbers, and took the old hub's
 *    very number, so both hubs' loops shared one epoll instance and
 *    nothing ever failed (the program ran on, its main hub polling the new
 *    hub's descriptors).  The runtime drops a record before it closes the
 *    descriptor, so a number the kernel hands out while still recorded was
 *    closed behind the runtime's back: it is said then, naming the hub
 *    that owned it.
 * F. A thread that replaces a runtime descriptor (dup2 onto its number,
 *    hub.c note G) finds the hub that owns it by the hub's fields
 *    (wake_fd, backend_fd).  A number is recorded here only once its
 *    owner's field holds it (kz__rtfd_dup's into, kz__rtfd_into for what
 *    libev makes in a pass): recorded first, a thread's dup2 that came in
 *    between found the number the runtime's and no hub holding it, and
 *    failed with EBUSY (close_all dup2_thread, once in a loaded run, as a
 *    hub re-made its backend while a thread replaced the top numbers).
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#define RTFD_SPAN 32
#define RTFD_CAP 1024

KZ_TLS int kz__rtfd_scope;
KZ_TLS int kz__rtfd_last = -1;
KZ_TLS _Atomic int *kz__rtfd_into;
_Atomic uint64_t kz__rtfd_bits[KZ__RTFD_MAX / 64];

void kz__rtfd_add(int fd)
{
  if (fd < 0 || fd >= KZ__RTFD_MAX) /* note D */
    return;
  atomic_fetch_or(&kz__rtfd_bits[fd >> 6], 1ull << (fd & 63));
}

void kz__rtfd_drop(int fd)
{
  if (fd < 0 || fd >= KZ__RTFD_MAX)
    return;
  atomic_fetch_and(&kz__rtfd_bits[fd >> 6], ~(1ull << (fd & 63)));
}

/* The lowest number a runtime descriptor may take (note B), or -1. */
static int rtfd_floor(void)
{
  struct rlimit rl;
  rlim_t top;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return -1;
  top = rl.rlim_cur < RTFD_CAP ? rl.rlim_cur : RTFD_CAP;
  return top > 2 * RTFD_SPAN ? (int)(top - RTFD_SPAN) : -1;
}

/* A copy of fd at the highest stretch of the runtime's numbers with room:
   from the floor, then 32 lower at a time (a program that took the top
   numbers itself), then anywhere.  -errno if none. */
static int dup_high(int fd)
{
  int floor = rtfd_floor(), high;
  for (int min = floor; min >= 2 * RTFD_SPAN; min -= RTFD_SPAN)
    if ((high = (int)kz__syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, min)) >= 0)
      return high;
  high = (int)kz__syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0);
  return high >= 0 ? high : -errno;
}

int kz__rtfd_move(int fd)
{
  int floor = rtfd_floor(), high = -1;
  if (fd < 0 || floor < 0 || fd >= floor || (high = dup_high(fd)) < 0 || high < fd) {
    if (high >= 0 && high < fd)
      (void)kz__syscall(SYS_close, high);
    if (fd >= 0) /* stay, but close-on-exec */
      (void)kz__syscall(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
    return fd;
  }
  (void)kz__syscall(SYS_close, fd);
  return high;
}

/* Which hub owned a lost number (note E): kz__hubs_each's step. */
struct owner {
  int fd;
  _Atomic int *into; /* the field just given the number: not the old owner's */
  char what[96];     /* what it was, "" if no hub's */
};

static void owner_find(struct kz__hub *hub, void *arg)
{
  struct owner *o = arg;
  const char *kind = o->fd == hub->backend_fd && &hub->backend_fd != o->into ? "epoll instance"
                     : o->fd == atomic_load(&hub->wake_fd) && &hub->wake_fd != o->into
                         ? "wake-up eventfd"
                         : NULL;
  if (kind && !o->what[0])
    snprintf(o->what, sizeof o->what, "a hub's %s, the hub of OS thread %d", kind, (int)hub->watch.tid);
}

/* Record fd, which the kernel has just given out (note E), after its
   owner's field, into (note F). */
static void record_new(int fd, _Atomic int *into)
{
  uint64_t bit = 1ull << (fd & 63);
  struct owner o = {.fd = fd, .into = into};
  if (into)
    atomic_store(into, fd);
  if (fd < 0 || fd >= KZ__RTFD_MAX || !(atomic_fetch_or(&kz__rtfd_bits[fd >> 6], bit) & bit))
    return;
  kz__hubs_each(owner_find, &o);
  kz__rtfd_lost(fd, o.what[0] ? o.what : "one of the runtime's");
}

int kz__rtfd_dup(int fd, _Atomic int *into)
{
  int high = dup_high(fd);
  if (high >= 0)
    record_new(high, into);
  return high;
}

int kz__rtfd_adopt(int fd)
{
  if (fd < 0)
    return fd;
  fd = kz__rtfd_move(fd);
  record_new(fd, kz__rtfd_into);
  kz__rtfd_last = fd;
  return fd;
}

int kz__rtfd_refuse(int fd)
{
  if (kz__rtfd_scope) { /* the runtime closes its own (note C) */
    if (!kz__rtfd_is(fd))
      return 1; /* given to the program: not the runtime's to close */
    kz__rtfd_drop(fd);
    return 0;
  }
  errno = EBADF;
  return -1;
}

int kz__rtfd_next(int from, int to)
{
  if (from < 0)
    from = 0;
  for (int fd = from; fd <= to && fd < KZ__RTFD_MAX; fd++) {
    uint64_t word = atomic_load_explicit(&kz__rtfd_bits[fd >> 6], memory_order_relaxed) >> (fd & 63);
    if (!word) {
      fd |= 63; /* the rest of this word is empty */
      continue;
    }
    fd += __builtin_ctzll(word);
    if (fd <= to)
      return fd;
    break;
  }
  return -1;
}

void kz__rtfd_lost(int fd, const char *what)
{
  kz__say("the runtime's descriptor %d (%s) was closed or replaced behind its back "
          "(a raw close system call, or code the shim cannot see); the hub cannot go on",
          fd, what);
  abort();
}
