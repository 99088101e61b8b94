/* rel_fork_threads.c: after fork(), the child runs only the thread that
 * called fork() (POSIX: "the child process shall be created with a single
 * thread").  THREADS threads tick: each sleeps 1 ms in nanosleep() and
 * checks which process it runs in, in a loop.  The main thread forks; the
 * child sleeps CHILD_MS (long enough for every ticking thread to wake many
 * times, were it there) and exits 0.  A thread that finds itself in the
 * child records it in shared memory and ends the child with status 3.
 * Copies of a program's threads running in its child would run the
 * parent's work twice: a thread blocked in read() on a socket the two
 * processes share would, in the child, take data meant for the parent.
 * Prints one line, the same natively and under the launcher. */
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define CHILD_MS 300

static pid_t parent;
static atomic_int *ran_in_child; /* shared with the child */
static atomic_int stop;

static void *ticker(void *arg)
{
  struct timespec tick = {0, 1000000};
  (void)arg;
  while (!atomic_load(&stop)) {
    nanosleep(&tick, NULL);
    if (getpid() != parent) {
      atomic_fetch_add(ran_in_child, 1);
      _exit(3);
    }
  }
  return NULL;
}

int main(void)
{
  pthread_t t[THREADS];
  struct timespec ts = {0, CHILD_MS * 1000000L};
  int st;
  pid_t child;

  alarm(60); /* the default action ends a hung run */
  parent = getpid();
  ran_in_child = mmap(NULL, sizeof *ran_in_child, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(ran_in_child != MAP_FAILED);
  for (int i = 0; i < THREADS; i++)
    CHECK(pthread_create(&t[i], NULL, ticker, NULL) == 0);
  child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
      ;
    _exit(0);
  }
  while (waitpid(child, &st, 0) < 0)
    CHECK(errno == EINTR);
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  if (atomic_load(ran_in_child))
    fprintf(stderr, "rel_fork_threads: copies of the parent's threads ran in the fork child "
            "(exit status %d)\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  CHECK(atomic_load(ran_in_child) == 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  printf("fork: the child ran only the forking thread\n");
  return 0;
}
