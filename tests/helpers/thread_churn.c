/* thread_churn.c: threads made and joined over and over, one at a time,
 * cost no memory that stays: after a warm-up of WARM rounds, ROUNDS more
 * rounds of pthread_create + pthread_join grow the resident set by less
 * than LIMIT bytes.  Under the launcher with several hubs, the threads
 * are placed in turn on the creator's hub and on the others, so most of
 * them are made on one OS thread and released on another (a handle slot
 * that never came back cost 24 bytes a thread: hub/handle.c, note D).
 * Prints "ok", or the growth with exit status 1.
 */
#include "check.h"
#include <pthread.h>
#include <unistd.h>

#define WARM 20000
#define ROUNDS 150000
#define LIMIT (1024 * 1024)

static long rss_bytes(void)
{
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  CHECK(f != NULL);
  CHECK(fscanf(f, "%ld %ld", &pages, &resident) == 2);
  fclose(f);
  return resident * sysconf(_SC_PAGESIZE);
}

static void *value(void *arg) { return arg; }

static void churn(long n)
{
  for (long i = 0; i < n; i++) {
    pthread_t t;
    void *ret = NULL;
    CHECK(pthread_create(&t, NULL, value, (void *)(i + 1)) == 0);
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(ret == (void *)(i + 1));
  }
}

int main(void)
{
  long before, after;
  churn(WARM);
  before = rss_bytes();
  churn(ROUNDS);
  after = rss_bytes();
  if (after - before >= LIMIT) {
    printf("resident memory grew by %ld bytes in %d threads\n", after - before, ROUNDS);
    return 1;
  }
  printf("ok\n");
  return 0;
}
