/* syscall.c: the program's raw system calls, syscall(SYS_xxx, ...).
 *
 * A program (or a language runtime it embeds) that calls libc's syscall()
 * instead of the named wrapper bypassed every interposer: a raw close or
 * close_range of the runtime's descriptors killed the hub at its next wait,
 * and a raw futex wait (the locks of Rust's standard library, of several
 * C++ libraries) blocked the hub's OS thread while the lock's holder was a
 * green thread parked on it: a deadlock.  So the shim interposes syscall()
 * too, and sends each call whose meaning it changes to the interposer of
 * the named function, which then does what it does for the named call in
 * every context (a green thread, a handler, a thread without a hub).  Any
 * other number is made directly, as libc's syscall() would.
 *
 * Notes.
 * A. Only calls whose raw form and libc's wrapper mean the same are sent
 *    to the wrapper's interposer: same arguments, the same -1 and errno.
 *    clock_nanosleep is the one whose wrapper returns the error instead,
 *    converted here.  Calls whose raw form differs in what it writes back
 *    (ppoll and pselect6 update the caller's timeout, select's wrapper
 *    may not) stay raw: they block the OS thread as before (docs/SHIM.md).
 * B. The runtime never calls syscall() by name (hub/internal.h,
 *    kz__syscall): its own raw closes of its descriptors, futex words and
 *    gettid must not come here.
 * C. Variadic: libc's syscall() takes six long arguments whatever the
 *    call, and so does this one; the ones the call does not use are
 *    whatever the caller's registers held, passed on unread.
 * D. Thread ids: gettid answers a green thread's own id, and the calls
 *    that take a thread id get the OS thread a green thread's id stands for
 *    (tid.c, kz_shim_tid_syscall), before the dispatch below.
 * E. Every other number is made directly, on the calling OS thread, as
 *    libc's syscall() would: the shim knows neither its arguments nor how
 *    long it takes.  If it is one that waits (ppoll, pselect6, semop,
 *    msgrcv, waitid, ... by number) and the calling thread is still in the
 *    kernel a moment later, another OS thread takes its hub over and runs
 *    the hub's other threads meanwhile (hub/handoff.c).  The calls that
 *    return without waiting for anything (never_blocks: the getters,
 *    memory mappings, signal masks...) skip the two atomic operations
 *    that make that possible.  fstat and statx stay in that list though a
 *    network file system may take its time: a raw stat is rare, and what
 *    waits on a remote server is better asked through libc.
 */
#include "shim.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT

/* Calls that return without waiting for anything (note E): no hand-off
   needed around them. */
static bool never_blocks(long nr)
{
  switch (nr) {
  case SYS_getpid: case SYS_getppid: case SYS_getuid: case SYS_geteuid: case SYS_getgid:
  case SYS_getegid: case SYS_getresuid: case SYS_getresgid: case SYS_getpgid: case SYS_getsid:
  case SYS_getpgrp: case SYS_getcpu: case SYS_gettimeofday: case SYS_clock_gettime:
  case SYS_clock_getres: case SYS_time: case SYS_sched_yield: case SYS_sched_getaffinity:
  case SYS_sched_setaffinity: case SYS_sched_getparam: case SYS_sched_getscheduler:
  case SYS_getpriority: case SYS_setpriority: case SYS_prctl: case SYS_arch_prctl:
  case SYS_rt_sigprocmask: case SYS_rt_sigaction: case SYS_sigaltstack: case SYS_rt_sigpending:
  case SYS_set_robust_list: case SYS_get_robust_list: case SYS_set_tid_address: case SYS_rseq:
  case SYS_membarrier: case SYS_brk: case SYS_mmap: case SYS_munmap: case SYS_mprotect:
  case SYS_mremap: case SYS_madvise: case SYS_mincore: case SYS_getrusage: case SYS_times:
  case SYS_uname: case SYS_sysinfo: case SYS_getrlimit: case SYS_prlimit64: case SYS_umask:
  case SYS_getcwd: case SYS_capget: case SYS_personality: case SYS_getrandom: case SYS_kill:
  case SYS_rt_sigqueueinfo: case SYS_pidfd_open: case SYS_pidfd_send_signal: case SYS_eventfd2:
  case SYS_timerfd_create: case SYS_timerfd_settime: case SYS_timerfd_gettime:
  case SYS_timer_create: case SYS_timer_settime: case SYS_timer_gettime: case SYS_timer_delete:
  case SYS_memfd_create: case SYS_pipe2: case SYS_socketpair: case SYS_lseek: case SYS_fstat:
  case SYS_newfstatat: case SYS_statx:
    return true;
  }
  return false;
}

EXPORT long syscall(long nr, ...)
{
  long a[6], r;
  struct kz_green *g;
  va_list ap;
  va_start(ap, nr);
  for (int i = 0; i < 6; i++)
    a[i] = va_arg(ap, long);
  va_end(ap);
  if (kz_shim_tid_syscall(nr, a, &r)) /* thread ids (tid.c) */
    return r;

  switch (nr) {
  /* Descriptors: the runtime's own stay out of reach (io.c, note H). */
  case SYS_close:
    return close((int)a[0]);
  case SYS_close_range:
    return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
  case SYS_dup2:
    return dup2((int)a[0], (int)a[1]);
  case SYS_dup3:
    return dup3((int)a[0], (int)a[1], (int)a[2]);
  case SYS_fcntl:
    return fcntl((int)a[0], (int)a[1], a[2]);
  /* Waits: parks of the calling green thread. */
  case SYS_read:
    return read((int)a[0], (void *)a[1], (size_t)a[2]);
  case SYS_write:
    return write((int)a[0], (const void *)a[1], (size_t)a[2]);
  case SYS_readv:
    return readv((int)a[0], (const struct iovec *)a[1], (int)a[2]);
  case SYS_writev:
    return writev((int)a[0], (const struct iovec *)a[1], (int)a[2]);
  case SYS_pread64:
    return pread((int)a[0], (void *)a[1], (size_t)a[2], (off_t)a[3]);
  case SYS_pwrite64:
    return pwrite((int)a[0], (const void *)a[1], (size_t)a[2], (off_t)a[3]);
  case SYS_accept:
    return accept((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2]);
  case SYS_accept4:
    return accept4((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2], (int)a[3]);
  case SYS_connect:
    return connect((int)a[0], (const struct sockaddr *)a[1], (socklen_t)a[2]);
  case SYS_recvfrom:
    return recvfrom((int)a[0], (void *)a[1], (size_t)a[2], (int)a[3], (struct sockaddr *)a[4],
                    (socklen_t *)a[5]);
  case SYS_sendto:
    return sendto((int)a[0], (const void *)a[1], (size_t)a[2], (int)a[3],
                  (const struct sockaddr *)a[4], (socklen_t)a[5]);
  case SYS_recvmsg:
    return recvmsg((int)a[0], (struct msghdr *)a[1], (int)a[2]);
  case SYS_sendmsg:
    return sendmsg((int)a[0], (const struct msghdr *)a[1], (int)a[2]);
  case SYS_poll:
    return poll((struct pollfd *)a[0], (nfds_t)a[1], (int)a[2]);
  case SYS_epoll_wait:
    return epoll_wait((int)a[0], (struct epoll_event *)a[1], (int)a[2], (int)a[3]);
  case SYS_nanosleep:
    return nanosleep((const struct timespec *)a[0], (struct timespec *)a[1]);
  case SYS_clock_nanosleep: { /* note A: the wrapper returns the error */
    int r = clock_nanosleep((clockid_t)a[0], (int)a[1], (const struct timespec *)a[2],
                            (struct timespec *)a[3]);
    if (r != 0) {
      errno = r;
      return -1;
    }
    return 0;
  }
  case SYS_wait4:
    return wait4((pid_t)a[0], (int *)a[1], (int)a[2], (struct rusage *)a[3]);
  case SYS_flock:
    return flock((int)a[0], (int)a[1]);
  case SYS_futex:
    return kz_shim_futex(a);
  case SYS_prctl: /* names are a green thread's own (thread.c, note Q) */
    return prctl((int)a[0], a[1], a[2], a[3], a[4]);
  case SYS_io_uring_enter:
    return kz_shim_uring_enter((unsigned)a[0], (unsigned)a[1], (unsigned)a[2], (unsigned)a[3],
                               (const void *)a[4], (size_t)a[5]);
  }
  /* note E: anything else may block; if it does, the hub goes on elsewhere */
  if (never_blocks(nr))
    return kz__syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  g = kz__sys_enter();
  r = kz__syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  kz__sys_exit(g);
  return r;
}
