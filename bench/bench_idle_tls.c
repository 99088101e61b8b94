/* bench_idle_tls.c: what an idle thread with 100 bytes of __thread data
 * costs under the launcher, where each is a green thread with TLS of its
 * own (hub/tls.c).  A plain pthread program, built without kudzu:
 *
 *   bench_idle_tls LAUNCHER [N]   runs itself under LAUNCHER (build/bin/kudzu)
 *   kudzu bench_idle_tls - [N]    the measurement (N = 100000 by default)
 *
 * starts N threads that each fill their __thread buffer and block in a
 * read on a pipe nobody writes, waits until all have (yielding, so that
 * under the launcher each runs and parks), and prints one row:
 *   idle_tls_bytes_100k   growth of resident memory (/proc/self/statm) per
 *                         thread, default attributes (the hub's pooled
 *                         128 KiB stacks)
 * (named for N = 100000).  Not meant to run natively: N native threads
 * would need N kernel threads. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static __thread char data[100];
static int idle_pipe[2];
static int parked;

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

static void *idle(void *arg)
{
  char c;
  memset(data, (int)(long)arg, sizeof data);
  __atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST);
  if (read(idle_pipe[0], &c, 1) != 0 || data[0] != (char)(long)arg)
    abort();
  return NULL;
}

int main(int argc, char **argv)
{
  long n = argc > 2 ? atol(argv[2]) : 100000, rss0;
  char self[4096];
  ssize_t len;
  pthread_t t;
  if (argc < 2 || n < 1) {
    fprintf(stderr, "usage: bench_idle_tls LAUNCHER [N]\n");
    return 2;
  }
  if (strcmp(argv[1], "-") != 0) { /* run the measurement under the launcher */
    if ((len = readlink("/proc/self/exe", self, sizeof self - 1)) < 0)
      return 2;
    self[len] = 0;
    execl(argv[1], argv[1], self, "-", argc > 2 ? argv[2] : "100000", (char *)NULL);
    perror("bench_idle_tls: the launcher");
    return 2;
  }
  if (pipe(idle_pipe) != 0)
    return 2;
  rss0 = rss_bytes();
  for (long i = 0; i < n; i++) {
    int r = pthread_create(&t, NULL, idle, (void *)i);
    if (r) {
      fprintf(stderr, "bench_idle_tls: pthread_create: %s\n", strerror(r));
      return 1;
    }
  }
  for (int tries = 0; __atomic_load_n(&parked, __ATOMIC_SEQ_CST) < n; tries++) {
    if (tries > 1000000) {
      fprintf(stderr, "bench_idle_tls: the threads did not all start\n");
      return 1;
    }
    sched_yield();
  }
  sched_yield(); /* the last ones reach their read */
  printf("idle_tls_bytes_%s\t%.1f\tbytes\n", n == 100000 ? "100k" : "n",
         (double)(rss_bytes() - rss0) / (double)n);
  fflush(stdout);
  _exit(0); /* measured: skip tearing the threads down */
}
