/* thread_names: a thread's name is its own.  It inherits its creator's;
 * prctl(PR_SET_NAME), also through syscall(), and pthread_setname_np
 * rename only the thread they name; the main thread's renames reach the
 * threads it makes afterwards, whoever made the rename.  Natively every
 * thread is an OS thread with a name of its own; under the launcher the
 * threads share hubs' OS threads (run with --hubs 1 too, where they all
 * share the main thread's).  Prints "names: ok".
 */
#include "check.h"

#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int to_main[2], to_thread[2];
static pthread_t main_thread;

static void name_is(const char *want)
{
  char n[16] = "";
  CHECK(prctl(PR_GET_NAME, n) == 0);
  if (strcmp(n, want)) {
    fprintf(stderr, "name is '%s', not '%s'\n", n, want);
    CHECK(!"the expected name");
  }
}

static void step(int fd[2])
{
  char c = 's';
  CHECK(write(fd[1], &c, 1) == 1);
}

static void wait_step(int fd[2])
{
  char c;
  CHECK(read(fd[0], &c, 1) == 1);
}

/* Renames itself with prctl, then lets the main thread look. */
static void *renamer(void *arg)
{
  (void)arg;
  name_is("boss"); /* inherited */
  CHECK(prctl(PR_SET_NAME, "worker-a") == 0);
  name_is("worker-a");
  step(to_main);
  wait_step(to_thread); /* the main thread looked, and made a thread */
  name_is("worker-a");
  return NULL;
}

/* Its name, as it finds it, into arg. */
static void *inherits(void *arg)
{
  CHECK(prctl(PR_GET_NAME, (char *)arg) == 0);
  return NULL;
}

static void *raw_renamer(void *arg)
{
  char n[16] = "";
  (void)arg;
  CHECK(syscall(SYS_prctl, PR_SET_NAME, "raw-c", 0, 0, 0) == 0);
  CHECK(syscall(SYS_prctl, PR_GET_NAME, n, 0, 0, 0) == 0 && !strcmp(n, "raw-c"));
  CHECK(prctl(PR_SET_NAME, "a-name-longer-than-15") == 0);
  name_is("a-name-longer-t"); /* the kernel's 15 characters */
  errno = 0;
  CHECK(prctl(PR_SET_NAME, NULL) == -1 && errno == EFAULT);
  errno = 0;
  CHECK(prctl(PR_GET_NAME, NULL) == -1 && errno == EFAULT);
  name_is("a-name-longer-t");
  return NULL;
}

static void *main_renamer(void *arg)
{
  (void)arg;
  CHECK(pthread_setname_np(main_thread, "renamed") == 0);
  return NULL;
}

/* A thread the main thread makes now inherits want. */
static void inherited_is(const char *want)
{
  char n[16] = "";
  pthread_t t;
  CHECK(pthread_create(&t, NULL, inherits, n) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  if (strcmp(n, want)) {
    fprintf(stderr, "a new thread is '%s', not '%s'\n", n, want);
    CHECK(!"the inherited name");
  }
}

int main(void)
{
  char n[16];
  pthread_t a, c, e;
  main_thread = pthread_self();
  CHECK(pipe(to_main) == 0 && pipe(to_thread) == 0);
  CHECK(prctl(PR_SET_NAME, "boss") == 0);
  inherited_is("boss");
  CHECK(pthread_create(&a, NULL, renamer, NULL) == 0);
  wait_step(to_main);
  name_is("boss"); /* the thread renamed itself only */
  CHECK(pthread_getname_np(a, n, sizeof n) == 0 && !strcmp(n, "worker-a"));
  inherited_is("boss");
  step(to_thread);
  CHECK(pthread_join(a, NULL) == 0);

  CHECK(pthread_create(&c, NULL, raw_renamer, NULL) == 0);
  CHECK(pthread_join(c, NULL) == 0);
  name_is("boss");
  inherited_is("boss");

  CHECK(pthread_setname_np(pthread_self(), "chief") == 0);
  name_is("chief");
  inherited_is("chief");
  CHECK(prctl(PR_SET_NAME, "boss-again") == 0);
  inherited_is("boss-again");

  CHECK(pthread_create(&e, NULL, main_renamer, NULL) == 0);
  CHECK(pthread_join(e, NULL) == 0);
  name_is("renamed");
  inherited_is("renamed");
  printf("names: ok\n");
  return 0;
}
