/* fork_thread.c: a thread other than main forks.  Natively the child has
 * that one thread: the main thread and the other threads of the parent do
 * not run there, and when the forking thread ends (returns from its start
 * routine) the child ends with status 0 and its atexit handlers run.  The
 * child's thread may start threads of its own and join them. */
#include "check.h"
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static int pipe_fd[2];
static pid_t parent;
static volatile int spins;

static void *spinner(void *arg) /* a thread of the parent: must not run in the child */
{
  (void)arg;
  for (;;) {
    if (getpid() != parent) {
      (void)!write(pipe_fd[1], "X", 1);
      _exit(3);
    }
    spins++;
    usleep(1000);
  }
  return NULL;
}

static void *child_helper(void *arg) { return (char *)arg + 1; }

static void at_exit(void)
{
  if (getpid() != parent)
    (void)!write(pipe_fd[1], "E", 1);
}

static void *forker(void *arg)
{
  pid_t pid;
  (void)arg;
  CHECK((pid = fork()) >= 0);
  if (pid == 0) {
    pthread_t t;
    void *r;
    usleep(20000); /* the parent's threads would run meanwhile */
    CHECK(pthread_create(&t, NULL, child_helper, (void *)1) == 0);
    CHECK(pthread_join(t, &r) == 0 && r == (void *)2);
    (void)!write(pipe_fd[1], "T", 1);
    return NULL; /* the child's last thread ends: exit status 0, atexit runs */
  }
  return (void *)(long)pid;
}

int main(void)
{
  pthread_t s, f;
  void *r;
  int status;
  char buf[8] = "";
  ssize_t n;
  parent = getpid();
  CHECK(pipe(pipe_fd) == 0);
  CHECK(atexit(at_exit) == 0);
  CHECK(pthread_create(&s, NULL, spinner, NULL) == 0);
  CHECK(pthread_create(&f, NULL, forker, NULL) == 0);
  CHECK(pthread_join(f, &r) == 0);
  CHECK(waitpid((pid_t)(long)r, &status, 0) == (pid_t)(long)r);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(pipe_fd[1]);
  pipe_fd[1] = -1;
  CHECK((n = read(pipe_fd[0], buf, sizeof buf - 1)) == 2 && !strcmp(buf, "TE"));
  puts("the child ran the forking thread alone, and ended with it");
  return 0;
}
