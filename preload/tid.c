/* tid.c: thread ids under the shim: gettid, and the calls that take a
 * thread id (tgkill, tkill, the scheduling and affinity calls,
 * setpriority), by name and through syscall(2).
 *
 * A green thread other than a hub's main one has an id of its own that no
 * process or thread has (preload/thread.c, note N); these calls act on its
 * hub's OS thread for it, as the calls that take a green pthread_t do, and
 * pass every other id through untouched.
 *
 * Notes.
 * A. An id that stood for a green thread that is gone is passed through as
 *    it is: no process or thread ever has such an id, so the kernel answers
 *    ESRCH, as natively for a thread that has exited.
 * B. A signal sent to a green thread's id goes to its hub's OS thread, whose
 *    handler runs in whichever green thread is running there (as
 *    pthread_kill, thread.c note H); signal 0 tells whether it exists.
 *    Scheduling and affinity set for it hold for the whole hub.
 * C. The functions glibc exports (gettid, tgkill since 2.30) make the system
 *    call inline, without syscall(): each is interposed by name.
 * D. A signal (not 0) sent with tgkill or tkill to a green thread's id is
 *    delivered as pthread_kill delivers it (kz_shim_kill): on the thread's
 *    own hub, for it.  Sent to the hub's OS thread from another OS thread
 *    (a thread on another hub), two signals of one number for two green
 *    threads of that hub would merge in the kernel into one, where natively
 *    two threads each get theirs.
 */
#include "thread.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define EXPORT KZ_SHIM_EXPORT

/* A thread id of this process: the OS thread it stands for (0, the caller,
   needs nothing: the OS thread the caller runs on). */
static pid_t host(pid_t tid) { return kz_thr_tid_host(tid, 0); }

/* ---- syscall(2) ---------------------------------------------------------- */

bool kz_shim_tid_syscall(long nr, long a[6], long *ret)
{
  int r;
  switch (nr) {
  case SYS_gettid:
    *ret = kz_thr_gettid();
    return true;
  case SYS_tgkill:
    if ((r = kz_thr_tid_kill((pid_t)a[1], (pid_t)a[0], (int)a[2])) >= 0) { /* note D */
      *ret = r ? (errno = r, -1) : 0;
      return true;
    }
    a[1] = kz_thr_tid_host((pid_t)a[1], (pid_t)a[0]);
    return false;
  case SYS_rt_tgsigqueueinfo:
    a[1] = kz_thr_tid_host((pid_t)a[1], (pid_t)a[0]);
    return false;
  case SYS_tkill:
    if ((r = kz_thr_tid_kill((pid_t)a[0], 0, (int)a[1])) >= 0) {
      *ret = r ? (errno = r, -1) : 0;
      return true;
    }
    a[0] = host((pid_t)a[0]);
    return false;
  case SYS_sched_setaffinity:
  case SYS_sched_getaffinity:
  case SYS_sched_setscheduler:
  case SYS_sched_getscheduler:
  case SYS_sched_setparam:
  case SYS_sched_getparam:
  case SYS_sched_rr_get_interval:
  case SYS_sched_setattr:
  case SYS_sched_getattr:
    a[0] = host((pid_t)a[0]);
    return false;
  case SYS_setpriority:
  case SYS_getpriority:
    if (a[0] == PRIO_PROCESS)
      a[1] = host((pid_t)a[1]);
    return false;
  default:
    return false;
  }
}

/* ---- By name (note C) ---------------------------------------------------- */

EXPORT pid_t gettid(void) { return kz_thr_gettid(); }

EXPORT int tgkill(pid_t tgid, pid_t tid, int sig)
{
  int r = kz_thr_tid_kill(tid, tgid, sig); /* note D */
  if (r >= 0)
    return r ? (errno = r, -1) : 0;
  return (int)kz__syscall(SYS_tgkill, tgid, kz_thr_tid_host(tid, tgid), sig);
}

EXPORT int sched_setaffinity(pid_t pid, size_t n, const cpu_set_t *set)
{
  return REAL(sched_setaffinity)(host(pid), n, set);
}

EXPORT int sched_getaffinity(pid_t pid, size_t n, cpu_set_t *set)
{
  return REAL(sched_getaffinity)(host(pid), n, set);
}

EXPORT int sched_setscheduler(pid_t pid, int policy, const struct sched_param *p)
{
  return REAL(sched_setscheduler)(host(pid), policy, p);
}

EXPORT int sched_getscheduler(pid_t pid) { return REAL(sched_getscheduler)(host(pid)); }

EXPORT int sched_setparam(pid_t pid, const struct sched_param *p)
{
  return REAL(sched_setparam)(host(pid), p);
}

EXPORT int sched_getparam(pid_t pid, struct sched_param *p) { return REAL(sched_getparam)(host(pid), p); }

EXPORT int sched_rr_get_interval(pid_t pid, struct timespec *t)
{
  return REAL(sched_rr_get_interval)(host(pid), t);
}

EXPORT int setpriority(__priority_which_t which, id_t who, int prio)
{
  return REAL(setpriority)(which, which == PRIO_PROCESS ? (id_t)host((pid_t)who) : who, prio);
}

EXPORT int getpriority(__priority_which_t which, id_t who)
{
  return REAL(getpriority)(which, which == PRIO_PROCESS ? (id_t)host((pid_t)who) : who);
}
