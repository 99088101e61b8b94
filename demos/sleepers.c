/* sleepers.c: the first demo: many concurrent green threads on one OS thread.
 *
 * Spawns N green threads (default 100,000); each sleeps a different time up
 * to one second, then adds to a shared total.  They all sleep at once, so the
 * program takes about one second, not N seconds, on one OS thread, and the
 * memory it needs per green thread is printed.  Like asyncio's
 * `gather(*(asyncio.sleep(random()) for _ in range(n)))`.
 *
 *   sleepers [N]
 */
#include <kudzu.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long total;

static void *sleeper(void *arg)
{
  long i = (long)arg;
  kz_sleep((double)(i % 1000) / 1000.0); /* 0 to 0.999 s */
  total += i;
  return NULL;
}

/* Resident memory in bytes, from /proc/self/statm. */
static long rss_bytes(void)
{
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return resident * sysconf(_SC_PAGESIZE);
}

static void *demo(void *arg)
{
  long n = (long)arg;
  kz_green_t *g = malloc(sizeof *g * (size_t)n);
  long rss0 = rss_bytes(), rss1;
  double t0 = kz_now(), slept = 0;
  if (!g)
    return (void *)1;
  for (long i = 0; i < n; i++) {
    slept += (double)(i % 1000) / 1000.0;
    if (!(g[i] = kz_spawn(sleeper, (void *)i))) {
      perror("kz_spawn");
      return (void *)1;
    }
  }
  kz_yield(); /* every one of them starts and goes to sleep */
  rss1 = rss_bytes();
  printf("%ld green threads sleeping at once on one OS thread, %.0f bytes of memory each "
         "(spawned in %.2f s)\n", n, (double)(rss1 - rss0) / (double)n, kz_now() - t0);
  for (long i = 0; i < n; i++)
    kz_join(g[i], NULL, KZ_FOREVER);
  printf("all %ld finished in %.2f s (sum of their sleeps: %.0f s); total = %ld\n", n,
         kz_now() - t0, slept, total);
  free(g);
  return NULL;
}

int main(int argc, char **argv)
{
  long n = argc > 1 ? atol(argv[1]) : 100000;
  void *r = NULL;
  if (n <= 0) {
    fprintf(stderr, "usage: sleepers [N > 0]\n");
    return 2;
  }
  if (kz_run(demo, (void *)n, &r) != 0) {
    perror("kz_run");
    return 1;
  }
  return r ? 1 : 0;
}
