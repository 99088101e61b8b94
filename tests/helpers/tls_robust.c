/* tls_robust.c: a robust mutex held by a thread of a process that dies
 * comes back to another process with EOWNERDEAD.  A forked child starts a
 * thread that locks a process-shared robust mutex and exits the process
 * while holding it; the parent then gets the mutex with EOWNERDEAD, makes
 * it consistent, and unlocks it. */
#include "check.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t *m;

static void *holder(void *arg)
{
  (void)arg;
  CHECK(pthread_mutex_lock(m) == 0);
  _exit(0); /* the whole process dies with the mutex held */
}

int main(void)
{
  pthread_mutexattr_t a;
  pthread_t t;
  pid_t pid;
  int st;
  CHECK((m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)) != MAP_FAILED);
  CHECK(pthread_mutexattr_init(&a) == 0);
  CHECK(pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0);
  CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
  CHECK(pthread_mutex_init(m, &a) == 0);
  CHECK((pid = fork()) >= 0);
  if (pid == 0) {
    CHECK(pthread_create(&t, NULL, holder, NULL) == 0);
    pthread_join(t, NULL);
    _exit(1);
  }
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(pthread_mutex_lock(m) == EOWNERDEAD);
  CHECK(pthread_mutex_consistent(m) == 0);
  CHECK(pthread_mutex_unlock(m) == 0);
  puts("the dead process's robust mutex came back with EOWNERDEAD");
  return 0;
}
