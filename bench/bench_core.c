/* bench_core.c: the hub's core costs, each next to its reference, in one run.
 *
 *   bench_core                 every row, as "name<TAB>value<TAB>unit" lines
 *   bench_core --idle N        (internal) one idle-memory measurement with N
 *                              green threads, in a process of its own
 *
 * Rows:
 *   switch_ns             one-way kz__switch between two contexts (the raw
 *                         assembly, linked in from hub/switch_x86_64.S)
 *   ucontext_switch_ns    one-way glibc swapcontext, same loop
 *   yield_ns              kz_yield with two ready green threads, per yield
 *   spawn_join_ns         kz_spawn + run + kz_join of an empty function on a
 *                         warm stack
 *   pthread_spawn_join_ns pthread_create + pthread_join, same function
 *   idle_bytes_100k/_1m   resident memory per green thread with 100,000 and
 *                         1,000,000 green threads parked in kz_sleep
 *   maps_1m               lines of /proc/self/maps with 1,000,000 of them
 *   spawn_1m_s            seconds to spawn and park the 1,000,000
 *
 * Timings are the best of several repetitions (the least disturbed run on a
 * shared machine); each idle measurement runs in a fresh process so earlier
 * ones do not leave warm stacks or heap behind.
 */
#define _GNU_SOURCE
#include <kudzu.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "switch.h"

#define REPS 5

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void row(const char *name, double value, const char *unit)
{
  printf("%s\t%.2f\t%s\n", name, value, unit);
  fflush(stdout);
}

/* ---- switch_ns: the raw switch ------------------------------------------ */

static void *main_sp, *peer_sp;

/* Both sides run this same loop, so the two call chains into kz__switch are
   identical, as they are for two green threads yielding to each other in
   the runtime (every switch goes through kz__switch_to): each ret resumes
   where the return-stack predictor expects. */
static __attribute__((noinline)) void ping_pong(void **self, void **other, long n)
{
  for (long i = 0; i < n; i++)
    kz__switch(self, *other);
}

static void peer(void *arg)
{
  ping_pong(&peer_sp, &main_sp, (long)arg + 1);
}

static double bench_switch(long n)
{
  static char stack[64 * 1024] __attribute__((aligned(16)));
  double t;
  peer_sp = kz__switch_init(stack + sizeof stack, peer, (void *)n, kz__fpctl_get());
  t = now();
  ping_pong(&main_sp, &peer_sp, n);
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

/* ---- ucontext_switch_ns -------------------------------------------------- */

static ucontext_t uc_main, uc_peer;

static void uc_peer_fn(void)
{
  for (;;)
    swapcontext(&uc_peer, &uc_main);
}

static double bench_ucontext(long n)
{
  static char stack[64 * 1024];
  double t;
  getcontext(&uc_peer);
  uc_peer.uc_stack.ss_sp = stack;
  uc_peer.uc_stack.ss_size = sizeof stack;
  uc_peer.uc_link = NULL;
  makecontext(&uc_peer, uc_peer_fn, 0);
  t = now();
  for (long i = 0; i < n; i++)
    swapcontext(&uc_main, &uc_peer);
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

/* ---- yield_ns, spawn_join_ns ---------------------------------------------- */

static void *yielder(void *arg)
{
  for (long i = 0, n = (long)arg; i < n; i++)
    kz_yield();
  return NULL;
}

static void *nothing(void *arg) { return arg; }

struct api_result {
  double yield_ns, spawn_join_ns;
};

static void *api_bench(void *arg)
{
  struct api_result *r = arg;
  long ny = 5000000, ns = 1000000;
  double t;
  r->yield_ns = r->spawn_join_ns = 1e30;
  for (int rep = 0; rep < REPS; rep++) {
    kz_green_t a = kz_spawn(yielder, (void *)ny), b = kz_spawn(yielder, (void *)ny);
    t = now();
    kz_join(a, NULL, KZ_FOREVER);
    kz_join(b, NULL, KZ_FOREVER);
    t = (now() - t) * 1e9 / (2.0 * (double)ny);
    if (t < r->yield_ns)
      r->yield_ns = t;
  }
  for (int i = 0; i < 1000; i++) /* warm the stack cache */
    kz_join(kz_spawn(nothing, NULL), NULL, KZ_FOREVER);
  for (int rep = 0; rep < REPS; rep++) {
    t = now();
    for (long i = 0; i < ns; i++)
      kz_join(kz_spawn(nothing, NULL), NULL, KZ_FOREVER);
    t = (now() - t) * 1e9 / (double)ns;
    if (t < r->spawn_join_ns)
      r->spawn_join_ns = t;
  }
  return NULL;
}

static double bench_pthread_spawn_join(long n)
{
  double best = 1e30;
  for (int rep = 0; rep < REPS; rep++) {
    double t = now();
    for (long i = 0; i < n; i++) {
      pthread_t th;
      pthread_create(&th, NULL, nothing, NULL);
      pthread_join(th, NULL);
    }
    t = (now() - t) * 1e9 / (double)n;
    if (t < best)
      best = t;
  }
  return best;
}

/* ---- idle memory, in a child process -------------------------------------- */

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

static long count_maps(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  long n = 0;
  int c;
  if (!f)
    return -1;
  while ((c = fgetc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static void *idle_body(void *arg)
{
  kz_sleep(3600);
  return NULL;
}

/* Prints "rss_bytes_per_green maps spawn_seconds" for n idle green threads. */
static void *idle_main(void *arg)
{
  long n = (long)arg;
  kz_green_t *g = malloc(sizeof *g * (size_t)n);
  long rss0;
  double t;
  if (!g)
    return (void *)1;
  rss0 = rss_bytes();
  t = now();
  for (long i = 0; i < n; i++)
    if (!(g[i] = kz_spawn(idle_body, NULL))) {
      perror("kz_spawn");
      return (void *)1;
    }
  kz_yield(); /* all start and park */
  t = now() - t;
  printf("%.1f %ld %.3f\n", (double)(rss_bytes() - rss0) / (double)n, count_maps(), t);
  fflush(stdout);
  _exit(0); /* the measurement is taken: skip cancelling a million sleepers */
}

static int idle_child(long n)
{
  void *r = NULL;
  return kz_run(idle_main, (void *)n, &r) == 0 && !r ? 0 : 1;
}

/* Run this program with --idle n and parse its line. */
static int idle_measure(const char *self, long n, double *bytes, long *maps, double *secs)
{
  char cmd[4096];
  FILE *p;
  int ok;
  snprintf(cmd, sizeof cmd, "'%s' --idle %ld", self, n);
  if (!(p = popen(cmd, "r")))
    return -1;
  ok = fscanf(p, "%lf %ld %lf", bytes, maps, secs) == 3;
  return pclose(p) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
  struct api_result api;
  double best, bytes, secs;
  long maps;

  if (argc == 3 && !strcmp(argv[1], "--idle"))
    return idle_child(atol(argv[2]));

  best = 1e30;
  for (int rep = 0; rep < REPS; rep++) {
    double t = bench_switch(20000000);
    best = t < best ? t : best;
  }
  row("switch_ns", best, "ns");
  best = 1e30;
  for (int rep = 0; rep < REPS; rep++) {
    double t = bench_ucontext(1000000);
    best = t < best ? t : best;
  }
  row("ucontext_switch_ns", best, "ns");

  if (kz_run(api_bench, &api, NULL) != 0) {
    perror("kz_run");
    return 1;
  }
  row("yield_ns", api.yield_ns, "ns");
  row("spawn_join_ns", api.spawn_join_ns, "ns");
  row("pthread_spawn_join_ns", bench_pthread_spawn_join(20000), "ns");

  if (idle_measure(argv[0], 100000, &bytes, &maps, &secs) == 0)
    row("idle_bytes_100k", bytes, "bytes");
  else
    fprintf(stderr, "bench_core: the 100,000 idle green threads run failed\n");
  if (idle_measure(argv[0], 1000000, &bytes, &maps, &secs) == 0) {
    row("idle_bytes_1m", bytes, "bytes");
    row("maps_1m", (double)maps, "lines");
    row("spawn_1m_s", secs, "s");
  } else {
    fprintf(stderr, "bench_core: the 1,000,000 idle green threads run failed\n");
    return 1;
  }
  return 0;
}
