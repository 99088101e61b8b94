/* proc.c: child processes in green threads: vfork, the wait family
 * (wait, waitpid, wait3, wait4, waitid), system and pclose.
 *
 * A wait for a child parks the green thread instead of the OS thread: the
 * call is tried with WNOHANG; if no child has changed state yet, the green
 * thread waits on a pidfd of that child (readable when it exits), or, when
 * no pidfd applies (any child, a process group, stops and continues), the
 * blocking call runs on a worker of the blocking pool (block.c), whose
 * system call a cancellation or a signal handler interrupts rather than
 * abandons.  The answer always comes from the real call, so statuses,
 * rusage, ECHILD and reaping are exactly native.
 *
 * Notes.
 * A. fork() needs nothing here: the hub's fork handler gives the child's
 *    event loop its own epoll instance (hub.c), and the child's copy of the
 *    descriptor table (fd.c) is right for the child.  vfork() becomes fork():
 *    a vfork child shares the parent's memory, and the shim's close or dup2
 *    in it would change the parent's hub (and its epoll registrations).
 *    POSIX allows vfork to be fork; posix_spawn and system use their own
 *    clone and are not affected.
 * B. system() and pclose() wait for their child inside glibc, where the
 *    shim cannot see, so they run on a worker thread while the green thread
 *    parks.  The worker takes the caller's signal mask for the call, since
 *    glibc gives the child the mask of the thread that calls system().
 * C. Waits for children are restarted after an SA_RESTART handler and fail
 *    with EINTR after one without, as natively.
 * D. A green thread alone on its hub (a single-threaded parent: the
 *    pre-fork server's) makes the blocking wait itself, in the kernel, as
 *    natively (block.c, note F): one system call per child instead of a
 *    pidfd, its registration, a loop pass and its close.
 */
#include "shim.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT

/* Note A. */
EXPORT pid_t vfork(void) { return REAL(fork)(); }

/* ---- The wait family ----------------------------------------------------- */

/* One wait request; kind tells which real call answers it. */
struct child_wait {
  enum { W_WAIT4, W_WAITID } kind;
  pid_t pid;          /* wait4's pid */
  int *status;
  struct rusage *ru;
  idtype_t idtype;    /* waitid's */
  id_t id;
  siginfo_t *si;
  int options;        /* the program's, without WNOHANG */
};

/* One attempt with WNOHANG: > 0 done (pid, or 1 for waitid), 0 nothing yet,
   -1 with errno. */
static long attempt(struct child_wait *w)
{
  int r;
  if (w->kind == W_WAIT4)
    return REAL(wait4)(w->pid, w->status, w->options | WNOHANG, w->ru);
  w->si->si_pid = 0;
  r = REAL(waitid)(w->idtype, w->id, w->si, w->options | WNOHANG);
  return r < 0 ? -1 : w->si->si_pid != 0;
}

/* A pidfd to wait on, if the request is for one child's exit; -1 if none. */
static int child_pidfd(const struct child_wait *w, bool *own)
{
  *own = true;
  if (w->kind == W_WAIT4)
    return w->pid > 0 && !(w->options & (WUNTRACED | WCONTINUED))
               ? (int)kz__syscall(SYS_pidfd_open, w->pid, 0) : -1;
  if (w->options & (WSTOPPED | WCONTINUED))
    return -1;
  if (w->idtype == P_PIDFD) {
    *own = false;
    return (int)w->id;
  }
  return w->idtype == P_PID ? (int)kz__syscall(SYS_pidfd_open, (pid_t)w->id, 0) : -1;
}

/* The blocking form of the wait, for a worker of the blocking pool. */
static long call_wait(const long *a)
{
  struct child_wait *w = (struct child_wait *)a[0];
  if (w->kind == W_WAIT4)
    return REAL(wait4)(w->pid, w->status, w->options, w->ru);
  return REAL(waitid)(w->idtype, w->id, w->si, w->options) < 0 ? -1 : 1;
}

/* Close a pidfd the wait opened, also when a cancellation unwinds. */
static void pidfd_release(void *arg)
{
  int fd = *(volatile int *)arg, err = errno;
  if (fd >= 0) {
    kz_fd_forget(fd);
    REAL(close)(fd);
  }
  errno = err;
}

/* Try, park, try again; *owned receives a pidfd opened here.  Without a
   pidfd (any child, a group, stops and continues) the blocking wait runs on
   the blocking pool, interrupted rather than abandoned (block.c, note A): a
   child it reaps is always the caller's. */
static long wait_until_done(struct child_wait *w, volatile int *owned)
{
  int saved = errno, pidfd;
  bool own = false;
  long r;
  struct blk b = {.call = call_wait, .a = {(long)w}};
  if (kz_shim_alone(kz__self())) /* note D */
    return kz_shim_blocking(&b, KZ_INTR_RESTART, true, saved);
  if ((r = attempt(w)) != 0)
    return r;
  pidfd = child_pidfd(w, &own);
  *owned = own ? pidfd : -1;
  if (pidfd < 0)
    return kz_shim_blocking(&b, KZ_INTR_RESTART, true, saved);
  while ((r = attempt(w)) == 0)
    if (kz_shim_wait_until(pidfd, KZ_READ, -1, KZ_INTR_RESTART) < 0)
      return -1;
  return r;
}

static long wait_loop(struct child_wait *w)
{
  /* volatile: pthread_cleanup_push is a setjmp, and the cleanup must see
     the value stored after it */
  volatile int owned = -1; /* the pidfd to close, or -1 */
  long r;
  pthread_cleanup_push(pidfd_release, (void *)&owned);
  r = wait_until_done(w, &owned);
  pthread_cleanup_pop(1);
  return r;
}

KZ_INTERPOSE(pid_t, wait4, (pid_t pid, int *status, int options, struct rusage *ru), (pid, status, options, ru))
{
  struct child_wait w = {.kind = W_WAIT4, .pid = pid, .status = status, .ru = ru, .options = options};
  if ((options & WNOHANG) || !shim_active(KZ_PATCH_PROC))
    return REAL(wait4)(pid, status, options, ru);
  return (pid_t)wait_loop(&w);
}

KZ_INTERPOSE(pid_t, waitpid, (pid_t pid, int *status, int options), (pid, status, options))
{ return wait4(pid, status, options, NULL); }
EXPORT pid_t wait(int *status) { return wait4(-1, status, 0, NULL); }
EXPORT pid_t wait3(int *status, int options, struct rusage *ru) { return wait4(-1, status, options, ru); }

KZ_INTERPOSE(int, waitid, (idtype_t idtype, id_t id, siginfo_t *si, int options), (idtype, id, si, options))
{
  struct child_wait w = {.kind = W_WAITID, .idtype = idtype, .id = id, .si = si, .options = options};
  if ((options & WNOHANG) || !si || !shim_active(KZ_PATCH_PROC))
    return REAL(waitid)(idtype, id, si, options);
  return wait_loop(&w) < 0 ? -1 : 0;
}

/* ---- system and pclose, on a worker (note B) ------------------------------- */

struct proc_job {
  sigset_t mask;   /* the caller's signal mask */
  char *command;   /* system's, copied */
  FILE *stream;    /* pclose's */
  int result;
  int err;
};

static void system_run(void *arg)
{
  struct proc_job *j = arg;
  sigset_t worker;
  pthread_sigmask(SIG_SETMASK, &j->mask, &worker);
  j->result = j->command ? REAL(system)(j->command) : REAL(pclose)(j->stream);
  j->err = errno;
  pthread_sigmask(SIG_SETMASK, &worker, NULL);
}

static void job_free(void *arg)
{
  struct proc_job *j = arg;
  free(j->command);
  free(j);
}

/* Run a job on a worker; its result, or -1 with errno. */
static int proc_offload(struct proc_job *j)
{
  int r;
  pthread_sigmask(SIG_SETMASK, NULL, &j->mask);
  if (kz_shim_offload(system_run, j, job_free) < 0)
    return -1;
  r = j->result;
  errno = j->err;
  job_free(j);
  return r;
}

KZ_INTERPOSE(int, system, (const char *command), (command))
{
  struct proc_job *j;
  if (!command || !shim_active(KZ_PATCH_PROC) || !(j = calloc(1, sizeof *j)))
    return REAL(system)(command);
  if (!(j->command = strdup(command))) {
    free(j);
    return REAL(system)(command);
  }
  return proc_offload(j);
}

KZ_INTERPOSE(int, pclose, (FILE *stream), (stream))
{
  struct proc_job *j;
  if (stream)
    kz_fd_forget(fileno(stream));
  if (!stream || !shim_active(KZ_PATCH_PROC) || !(j = calloc(1, sizeof *j)))
    return REAL(pclose)(stream);
  j->stream = stream;
  return proc_offload(j);
}
