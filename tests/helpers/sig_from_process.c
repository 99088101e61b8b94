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
#include <semaphore.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_signal(int sig)
{
  (void)sig;
  sig_look();
}

static pid_t child;
static int go_fd;

/* A child that, once told to go (go()), sends sig to this process, to
   thread tid if not 0, then writes a byte to fd if >= 0.  The signal must
   not arrive while the parent is still inside fork, which holds malloc's
   locks that the handler's pthread_getattr_np takes. */
static void sender(int sig, pid_t tid, int fd)
{
  pid_t parent = getpid();
  int p[2];
  char c;
  CHECK(pipe(p) == 0);
  CHECK((child = fork()) >= 0);
  if (child == 0) {
    int r = read(p[0], &c, 1) == 1 ? 0 : -1;
    if (r == 0)
      r = tid ? (int)syscall(SYS_tgkill, parent, tid, sig) : kill(parent, sig);
    if (r == 0 && fd >= 0)
      r = write(fd, "x", 1) == 1 ? 0 : -1;
    _exit(r == 0 ? 0 : 1);
  }
  close(p[0]);
  go_fd = p[1];
}

static void go(void)
{
  CHECK(write(go_fd, "g", 1) == 1);
  close(go_fd);
}

static void reap(void)
{
  int st;
  CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
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
  (void)arg;
  sig_register(&tvalue);
  sender(SIGUSR1, (pid_t)syscall(SYS_gettid), -1);
  go();
  spin_until_handled(before);
  sig_expect_self("tgkill while it computes", &tvalue);
  reap();
  before = sig_seen.runs;
  sender(SIGUSR1, 0, -1);
  go();
  spin_until_handled(before);
  sig_expect_consistent("kill while a thread computes", 1);
  reap();
  return NULL;
}

static int rvalue;
static sem_t registered;

static void *reading(void *arg)
{
  int *p = arg;
  char c;
  sig_register(&rvalue); /* after the finished thread: the latest entry wins */
  CHECK(sem_post(&registered) == 0);
  CHECK(read(p[0], &c, 1) == 1);
  return NULL;
}

int main(void)
{
  static int mvalue;
  struct sigaction sa;
  pthread_t t;
  int p[2];
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sig_setup();
  sig_register(&mvalue);
  CHECK(pthread_create(&t, NULL, computing, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);

  CHECK(pipe(p) == 0);
  sender(SIGUSR1, 0, p[1]);
  CHECK(sem_init(&registered, 0, 0) == 0);
  CHECK(pthread_create(&t, NULL, reading, p) == 0);
  CHECK(sem_wait(&registered) == 0);
  go();
  CHECK(pthread_join(t, NULL) == 0);
  reap();
  CHECK(sig_seen.runs == 3);
  sig_expect_consistent("kill while every thread waits", 0);
  return 0;
}
