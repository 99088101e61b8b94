/* sig_from_process.c: handlers for signals another process sends (a forked
 * child) see the thread they interrupted.
 *   - tgkill to a thread that computes while the main thread waits in
 *     pthread_join: the handler runs in that thread and answers for it;
 *   - kill to the process while that thread computes and the main thread
 *     waits: the kernel picks a thread, and the handler answers for the
 *     one whose stack it runs on, with that thread's own key value;
 *   - kill while every thread waits (a read on a pipe, a join): the
 *     handler answers for one of the threads, with its own key value (under
 *     the launcher it then runs on the hub's stack, so its frame is in no
 *     thread's stack: not checked).
 */
#include "sig_identity.h"
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_signal(int sig)
{
  (void)sig;
  sig_look();
}

/* A child that sends sig to this process, to thread tid if not 0, then
   writes a byte to fd if >= 0. */
static pid_t sender(int sig, pid_t tid, int fd)
{
  pid_t parent = getpid(), pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int r = tid ? (int)syscall(SYS_tgkill, parent, tid, sig) : kill(parent, sig);
    if (r == 0 && fd >= 0)
      r = write(fd, "x", 1) == 1 ? 0 : -1;
    _exit(r == 0 ? 0 : 1);
  }
  return pid;
}

static void reap(pid_t pid)
{
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Compute (never block) until a handler has run. */
static void spin_until_handled(int before)
{
  while (__atomic_load_n(&sig_seen.runs, __ATOMIC_SEQ_CST) == before)
    ;
}

static int tvalue;

static void *computing(void *arg)
{
  int before = sig_seen.runs;
  pid_t pid;
  (void)arg;
  sig_register(&tvalue);
  pid = sender(SIGUSR1, (pid_t)syscall(SYS_gettid), -1);
  spin_until_handled(before);
  sig_expect_self("tgkill while it computes", &tvalue);
  reap(pid);
  before = sig_seen.runs;
  pid = sender(SIGUSR1, 0, -1);
  spin_until_handled(before);
  sig_expect_consistent("kill while a thread computes", 1);
  reap(pid);
  return NULL;
}

static void *reading(void *arg)
{
  int *p = arg;
  char c;
  CHECK(read(p[0], &c, 1) == 1);
  return NULL;
}

int main(void)
{
  static int mvalue;
  struct sigaction sa;
  pthread_t t;
  int p[2];
  pid_t pid;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sig_setup();
  sig_register(&mvalue);
  CHECK(pthread_create(&t, NULL, computing, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);

  CHECK(pipe(p) == 0);
  CHECK(pthread_create(&t, NULL, reading, p) == 0);
  pid = sender(SIGUSR1, 0, p[1]);
  CHECK(pthread_join(t, NULL) == 0);
  reap(pid);
  CHECK(sig_seen.runs == 3);
  sig_expect_consistent("kill while every thread waits", 0);
  return 0;
}
