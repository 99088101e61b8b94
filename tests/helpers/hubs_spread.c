/* hubs_spread.c: N threads (argv[1], default 4), alive together, each
 * reading the id of the OS thread it runs on with the system call itself
 * (an instruction no interposer sees: under the launcher gettid names the
 * green thread, not its hub's OS thread); prints on how many distinct OS
 * threads they ran.  Natively: N.  Under the launcher: the hubs they were
 * placed on (tests/shim/hubs.sh). */
#include "check.h"
#include <pthread.h>
#include <stdbool.h>
#include <sys/syscall.h>

enum { MAX = 64 };
static long tids[MAX];
static pthread_barrier_t all;

static long os_tid(void)
{
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_gettid) : "rcx", "r11", "memory");
  return r;
}

static void *thread(void *arg)
{
  long i = (long)arg;
  pthread_barrier_wait(&all); /* every thread exists */
  tids[i] = os_tid();
  pthread_barrier_wait(&all);
  return NULL;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 4, distinct = 0;
  pthread_t t[MAX];
  CHECK(n > 0 && n <= MAX);
  CHECK(pthread_barrier_init(&all, NULL, (unsigned)n + 1) == 0);
  for (long i = 0; i < n; i++)
    CHECK(pthread_create(&t[i], NULL, thread, (void *)i) == 0);
  pthread_barrier_wait(&all);
  pthread_barrier_wait(&all);
  for (int i = 0; i < n; i++) {
    CHECK(pthread_join(t[i], NULL) == 0);
    bool seen = false;
    for (int j = 0; j < i; j++)
      seen = seen || tids[j] == tids[i];
    distinct += !seen;
  }
  printf("%d threads on %d OS threads\n", n, distinct);
  return 0;
}
