/* fork_alloc: fork() while other threads allocate.  glibc's fork holds
 * every malloc arena's lock during the fork system call; a thread that
 * allocates meanwhile waits for it, then goes on.
 *
 * NWORKERS threads each make and join short threads in a loop (each make
 * and join allocates and frees a thread's stack, its thread-local storage,
 * its record), while the main thread forks NFORKS children, each of which
 * exits at once with status 0.  The process has many mappings, so that
 * each fork takes long (the kernel copies each) and the threads surely
 * meet the locks it holds.  Checks: every fork and wait succeeds, every
 * child exits 0, every worker made threads and is joined.  The whole run is
 * bounded: alarm() ends a hung run with SIGALRM. */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NWORKERS 4
#define NFORKS 60
#define NSPLITS 8000 /* mappings copied by each fork: some 40 ms of holding the locks */

static _Atomic bool stop;
static _Atomic long made;

static void *nothing(void *arg) { return arg; }

static void *worker(void *arg)
{
  long n = 0;
  (void)arg;
  while (!atomic_load(&stop)) {
    pthread_t t;
    void *r;
    CHECK(pthread_create(&t, NULL, nothing, &n) == 0);
    CHECK(pthread_join(t, &r) == 0 && r == &n);
    n++;
  }
  atomic_fetch_add(&made, n);
  return n > 0 ? &made : NULL;
}

int main(void)
{
  pthread_t w[NWORKERS];
  long page = sysconf(_SC_PAGESIZE);
  char *area;
  alarm(60); /* a hung run fails instead of waiting for ever */
  /* Every other page read-only: 2 * NSPLITS mappings (never touched) */
  CHECK((area = mmap(NULL, 2 * NSPLITS * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0)) != MAP_FAILED);
  for (long i = 0; i < NSPLITS; i++)
    CHECK(mprotect(area + (2 * i + 1) * page, page, PROT_READ) == 0);
  for (int i = 0; i < NWORKERS; i++)
    CHECK(pthread_create(&w[i], NULL, worker, NULL) == 0);
  for (int i = 0; i < NFORKS; i++) {
    pid_t child;
    int st;
    CHECK((child = fork()) >= 0);
    if (child == 0)
      _exit(0);
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  atomic_store(&stop, true);
  for (int i = 0; i < NWORKERS; i++) {
    void *r;
    CHECK(pthread_join(w[i], &r) == 0);
    CHECK(r == &made); /* it made at least one thread */
  }
  CHECK(atomic_load(&made) >= NWORKERS);
  printf("%d forks while %d threads made and joined threads: all children exited 0, all joined\n",
         NFORKS, NWORKERS);
  return 0;
}
