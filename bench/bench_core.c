/* bench_core.c: the hub's core costs, each next to its reference, in one run.
 *
 *   bench_core                 every row below
 *   bench_core ROW...          only these rows (e.g. "yield_ns"; "idle_bytes_1m"
 *                              brings its companions maps_1m and spawn_1m_s):
 *                              to profile one path with perf or callgrind
 *   bench_core --reps N ...    repetitions per timing (default 5)
 *   bench_core --idle N        (internal) one idle-memory measurement with N
 *                              green threads; run by the parent in a fresh
 *                              process (fork + exec of /proc/self/exe)
 *
 * Output: one "name<TAB>value<TAB>unit" line per row on stdout; notes and
 * errors on stderr.  Exit status 1 if a measurement could not be taken.
 *
 * Rows:
 *   switch_floor_ns       one-way switch that only pushes and pops the six
 *                         callee-saved registers and swaps stack pointers
 *                         (bench/switch_floor_x86_64.S): this machine's
 *                         floor for any stack switch
 *   switch_fpctl_floor_ns the same plus storing MXCSR and the x87 control
 *                         word (stmxcsr, fnstcw), nothing compared: the
 *                         floor for a switch that keeps the floating-point
 *                         control state per context, as kz__switch must
 *                         (hub/switch_x86_64.S, note E)
 *   switch_ns             one-way switch as the scheduler makes it between
 *                         two green threads that share TLS: the thread
 *                         pointer check (hub/sched.c) and kz__switch, the
 *                         raw assembly linked in from hub/switch_x86_64.S
 *   switch_vs_floor       switch_ns / switch_floor_ns of this run
 *   switch_raw_ns         kz__switch alone (no thread pointer check): what
 *                         the floating-point control state costs over the
 *                         floor
 *   switch_tls_ns         the same between two green threads with TLS of
 *                         their own (hub/tls.c): the thread pointer loaded
 *                         on every switch, with wrfsbase where the CPU and
 *                         kernel allow it (the runtime's choice)
 *   switch_tls_syscall_ns the same with arch_prctl(ARCH_SET_FS), the
 *                         fallback
 *   ucontext_switch_ns    one-way glibc swapcontext, same loop
 *   yield_ns              kz_yield through the scheduler with two ready green
 *                         threads, total time / total yields: the scheduler's
 *                         full switch (run queue, errno, hub polls included)
 *   spawn_join_ns         kz_spawn + run + kz_join of an empty function on a
 *                         warm stack (after a warm-up), per green thread
 *   pthread_spawn_join_ns pthread_create + pthread_join, same function
 *   idle_bytes_100k/_1m   growth of resident memory (/proc/self/statm) per
 *                         green thread with 100,000 and 1,000,000 green
 *                         threads parked in kz_sleep, default stack size
 *                         (spawned through the API: the OS thread's TLS)
 *   maps_1m               lines of /proc/self/maps with the 1,000,000 parked
 *   spawn_1m_s            seconds to spawn the 1,000,000 and let all park
 *   vm_max_map_count      the system's setting during the run (65530 is the
 *                         default the 1,000,000 must fit under)
 *
 * Method.  Clock: CLOCK_MONOTONIC.  Each timing is repeated and the best
 * (lowest) repetition is reported: on a shared machine the least disturbed
 * run is the closest to the code's own cost.  Nothing is pinned.  Each idle
 * measurement runs in a process of its own, so earlier rows leave no warm
 * stacks or heap behind and the two sizes do not contaminate each other.
 */
#define _GNU_SOURCE
#include <kudzu.h>

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"
#include "switch.h"

#include <sys/auxv.h>

static int reps = 5;

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

/* The best of reps runs of fn(n), each returning its ns per operation. */
static double best_of(double (*fn)(long), long n)
{
  double best = 1e30;
  for (int i = 0; i < reps; i++) {
    double t = fn(n);
    best = t < best ? t : best;
  }
  return best;
}

/* ---- switch_raw_ns: the raw switch -------------------------------------- */

static void *main_sp, *peer_sp;
static long peer_n;

/* Both sides run this same loop, so the two call chains into kz__switch are
   identical, as they are for two green threads yielding to each other in
   the runtime (every switch goes through one call site in sched.c): each ret
   resumes where the return-stack predictor expects.  The load of *other is
   part of the cost, as the scheduler's load of the target's saved sp is. */
static __attribute__((noinline)) void ping_pong(void **self, void **other, long n)
{
  for (long i = 0; i < n; i++)
    kz__switch(self, *other);
}

/* The peer answers every switch and one more, which hands control back for
   good after the main side's last one; its stack is then abandoned. */
static void *peer(void *arg)
{
  ping_pong(&peer_sp, &main_sp, peer_n + 1);
  abort(); /* never resumed again */
}

static double switch_once(long n)
{
  static char stack[64 * 1024] __attribute__((aligned(16)));
  double t;
  peer_n = n;
  peer_sp = kz__switch_init(stack + sizeof stack, peer, NULL, kz__fpctl_get());
  kz__switch(&main_sp, peer_sp); /* enter the peer's loop: it switches straight back */
  t = now();
  ping_pong(&main_sp, &peer_sp, n);
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

/* ---- switch_floor_ns, switch_fpctl_floor_ns ------------------------------ */

typedef void floor_switch_fn(void **from_sp, void *to_sp);
void bench_floor_switch(void **from_sp, void *to_sp);
void bench_floor_fpctl_switch(void **from_sp, void *to_sp);
void *bench_floor_init(void *stack_top, void (*entry)(void));

/* The switch under test, called directly: one copy of the loop per switch
   (an indirect call would be part of the cost). */
static __attribute__((always_inline)) inline void floor_loop(floor_switch_fn *sw, void **self,
                                                              void **other, long n)
{
  for (long i = 0; i < n; i++)
    sw(self, *other);
}

static __attribute__((noinline)) void floor_ping_pong(void **self, void **other, long n)
{
  floor_loop(bench_floor_switch, self, other, n);
}

static __attribute__((noinline)) void fpctl_ping_pong(void **self, void **other, long n)
{
  floor_loop(bench_floor_fpctl_switch, self, other, n);
}

static void floor_peer(void)
{
  floor_ping_pong(&peer_sp, &main_sp, peer_n + 1);
  abort();
}

static void fpctl_peer(void)
{
  fpctl_ping_pong(&peer_sp, &main_sp, peer_n + 1);
  abort();
}

static double floor_once(long n)
{
  static char stack[64 * 1024] __attribute__((aligned(16)));
  double t;
  peer_n = n;
  peer_sp = bench_floor_init(stack + sizeof stack, floor_peer);
  bench_floor_switch(&main_sp, peer_sp);
  t = now();
  floor_ping_pong(&main_sp, &peer_sp, n);
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

static double fpctl_floor_once(long n)
{
  static char stack[64 * 1024] __attribute__((aligned(16)));
  double t;
  peer_n = n;
  peer_sp = bench_floor_init(stack + sizeof stack, fpctl_peer);
  bench_floor_fpctl_switch(&main_sp, peer_sp);
  t = now();
  fpctl_ping_pong(&main_sp, &peer_sp, n);
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

/* ---- switch_tls_ns: the thread pointer too ---------------------------------- */

static void *main_tp, *peer_tp, *loaded_tp;

/* sched.c's switch_to, less its bookkeeping: the target's thread pointer is
   loaded when it is not the one loaded (the one global, as hub->tp). */
static __attribute__((noinline)) void tls_ping_pong(void **self, void **other, void *other_tp, long n)
{
  for (long i = 0; i < n; i++) {
    if (__builtin_expect(other_tp != loaded_tp, 0)) {
      loaded_tp = other_tp;
      kz__tp_set(other_tp);
    }
    kz__switch(self, *other);
  }
}

static void *tls_peer(void *arg)
{
  (void)arg;
  tls_ping_pong(&peer_sp, &main_sp, main_tp, peer_n + 1);
  abort();
}

static double tls_once(long n)
{
  static char stack[64 * 1024] __attribute__((aligned(16)));
  double t;
  peer_n = n;
  loaded_tp = main_tp;
  peer_sp = kz__switch_init(stack + sizeof stack, tls_peer, NULL, kz__fpctl_get());
  kz__switch(&main_sp, peer_sp);
  t = now();
  tls_ping_pong(&main_sp, &peer_sp, peer_tp, n);
  t = (now() - t) * 1e9 / (2.0 * (double)n);
  return t;
}

/* ---- ucontext_switch_ns -------------------------------------------------- */

static ucontext_t uc_main, uc_peer;

static void uc_peer_fn(void)
{
  for (;;)
    swapcontext(&uc_peer, &uc_main);
}

static double ucontext_once(long n)
{
  static char stack[64 * 1024];
  double t;
  getcontext(&uc_peer);
  uc_peer.uc_stack.ss_sp = stack;
  uc_peer.uc_stack.ss_size = sizeof stack;
  uc_peer.uc_link = NULL;
  makecontext(&uc_peer, uc_peer_fn, 0);
  swapcontext(&uc_main, &uc_peer); /* same warm start as switch_once */
  t = now();
  for (long i = 0; i < n; i++)
    swapcontext(&uc_main, &uc_peer);
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

/* ---- yield_ns, spawn_join_ns: through the public API ---------------------- */

static void *yielder(void *arg)
{
  for (long i = 0, n = (long)arg; i < n; i++)
    kz_yield();
  return NULL;
}

static void *nothing(void *arg) { return arg; }

/* Green threads a and b yield n times each; the caller waits in kz_join. */
static double yield_once(long n)
{
  kz_green_t a = kz_spawn(yielder, (void *)n), b = kz_spawn(yielder, (void *)n);
  double t = now();
  if (!a || !b || kz_join(a, NULL, KZ_FOREVER) || kz_join(b, NULL, KZ_FOREVER)) {
    perror("bench_core: yield");
    exit(1);
  }
  return (now() - t) * 1e9 / (2.0 * (double)n);
}

static double spawn_join_once(long n)
{
  double t = now();
  for (long i = 0; i < n; i++) {
    kz_green_t g = kz_spawn(nothing, NULL);
    if (!g || kz_join(g, NULL, KZ_FOREVER)) {
      perror("bench_core: spawn/join");
      exit(1);
    }
  }
  return (now() - t) * 1e9 / (double)n;
}

/* Runs inside kz_run: which = "yield" or "spawn_join"; *out gets ns/op. */
struct api_job {
  const char *which;
  double ns;
};

static void *api_main(void *arg)
{
  struct api_job *job = arg;
  if (!strcmp(job->which, "yield")) {
    yield_once(100000); /* warm-up */
    job->ns = best_of(yield_once, 5000000);
  } else {
    spawn_join_once(10000); /* warm the stack cache and the handle table */
    job->ns = best_of(spawn_join_once, 1000000);
  }
  return NULL;
}

static double api_bench(const char *which)
{
  struct api_job job = {which, 0};
  if (kz_run(api_main, &job, NULL) != 0) {
    perror("bench_core: kz_run");
    exit(1);
  }
  return job.ns;
}

static double pthread_spawn_join_once(long n)
{
  double t = now();
  for (long i = 0; i < n; i++) {
    pthread_t th;
    int r = pthread_create(&th, NULL, nothing, NULL);
    if (r || (r = pthread_join(th, NULL))) {
      fprintf(stderr, "bench_core: pthread: %s\n", strerror(r));
      exit(1);
    }
  }
  return (now() - t) * 1e9 / (double)n;
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

static long count_lines(const char *path)
{
  FILE *f = fopen(path, "r");
  long n = 0;
  int c;
  if (!f)
    return -1;
  while ((c = getc_unlocked(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static long read_long(const char *path)
{
  FILE *f = fopen(path, "r");
  long v = -1;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = -1;
    fclose(f);
  }
  return v;
}

static void *idle_body(void *arg)
{
  kz_sleep(3600);
  return NULL;
}

/* In the child: spawn n sleepers, let them all park, print
   "bytes_per_green maps_lines spawn_seconds" on stdout. */
static void *idle_main(void *arg)
{
  long n = (long)arg;
  kz_green_t *g = malloc(sizeof *g * (size_t)n);
  long rss0;
  double t;
  if (!g)
    return (void *)1;
  memset(g, 0, sizeof *g * (size_t)n); /* our own array is not the runtime's cost */
  rss0 = rss_bytes();
  t = now();
  for (long i = 0; i < n; i++)
    if (!(g[i] = kz_spawn(idle_body, NULL))) {
      perror("bench_core: kz_spawn");
      return (void *)1;
    }
  kz_yield(); /* FIFO: every one of them runs and parks before we resume */
  t = now() - t;
  if (kz_state(g[0]) != KZ_BLOCKED || kz_state(g[n - 1]) != KZ_BLOCKED) {
    fprintf(stderr, "bench_core: the idle green threads did not all park\n");
    return (void *)1;
  }
  printf("%.1f %ld %.3f\n", (double)(rss_bytes() - rss0) / (double)n,
         count_lines("/proc/self/maps"), t);
  fflush(stdout);
  _exit(0); /* measured: skip cancelling a million sleepers */
}

static int idle_child(long n)
{
  void *r = NULL;
  if (n < 1)
    return 2;
  return kz_run(idle_main, (void *)n, &r) == 0 && !r ? 0 : 1;
}

/* Run a fresh copy of this program with --idle n and parse its line. */
static int idle_measure(long n, double *bytes, long *maps, double *secs)
{
  char arg[32];
  int fd[2], status, ok;
  pid_t pid;
  FILE *f;
  snprintf(arg, sizeof arg, "%ld", n);
  if (pipe(fd) < 0)
    return -1;
  if ((pid = fork()) < 0)
    return -1;
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    execl("/proc/self/exe", "bench_core", "--idle", arg, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  f = fdopen(fd[0], "r");
  ok = f && fscanf(f, "%lf %ld %lf", bytes, maps, secs) == 3;
  if (f)
    fclose(f);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- The rows ---------------------------------------------------------------- */

static int do_switch(void)
{
  int saved = reps, err = 0;
  struct kz__hub *hub;
  const char *why;
  double floor, same;
  reps = 2 * reps; /* 0.1 s each: more tries against a disturbed start */
  main_tp = peer_tp = __builtin_thread_pointer();
  row("switch_floor_ns", floor = best_of(floor_once, 20000000), "ns");
  row("switch_ns", same = best_of(tls_once, 20000000), "ns");
  row("switch_vs_floor", same / floor, "x");
  row("switch_raw_ns", best_of(switch_once, 20000000), "ns");
  row("switch_fpctl_floor_ns", best_of(fpctl_floor_once, 20000000), "ns");
  if (!(hub = kz__hub_get(&err)) || !kz__tls_available(&why) || !(peer_tp = kz__tls_new(hub))) {
    fprintf(stderr, "bench_core: no TLS of their own for green threads here: %s\n",
                    hub && !err ? why : "no hub");
    reps = saved;
    return 1;
  }
  kz__tls_bind(peer_tp, hub);
  kz__fsgsbase = (getauxval(AT_HWCAP2) & (1 << 1)) != 0; /* as tls.c chooses */
  row("switch_tls_ns", best_of(tls_once, kz__fsgsbase ? 10000000 : 1000000), "ns");
  kz__fsgsbase = false;
  reps = saved;
  row("switch_tls_syscall_ns", best_of(tls_once, 1000000), "ns");
  kz__tls_free(peer_tp, hub);
  return 0;
}

static int do_ucontext(void)
{
  row("ucontext_switch_ns", best_of(ucontext_once, 1000000), "ns");
  return 0;
}

static int do_yield(void)
{
  row("yield_ns", api_bench("yield"), "ns");
  return 0;
}

static int do_spawn_join(void)
{
  row("spawn_join_ns", api_bench("spawn_join"), "ns");
  return 0;
}

static int do_pthread(void)
{
  pthread_spawn_join_once(1000); /* warm-up */
  row("pthread_spawn_join_ns", best_of(pthread_spawn_join_once, 20000), "ns");
  return 0;
}

static int do_idle_100k(void)
{
  double bytes, secs;
  long maps;
  if (idle_measure(100000, &bytes, &maps, &secs) < 0) {
    fprintf(stderr, "bench_core: the run with 100,000 idle green threads failed\n");
    return 1;
  }
  row("idle_bytes_100k", bytes, "bytes");
  return 0;
}

static int do_idle_1m(void)
{
  double bytes, secs;
  long maps;
  row("vm_max_map_count", (double)read_long("/proc/sys/vm/max_map_count"), "maps");
  if (idle_measure(1000000, &bytes, &maps, &secs) < 0) {
    fprintf(stderr, "bench_core: the run with 1,000,000 idle green threads failed\n");
    return 1;
  }
  row("idle_bytes_1m", bytes, "bytes");
  row("maps_1m", (double)maps, "lines");
  row("spawn_1m_s", secs, "s");
  return 0;
}

static const struct {
  const char *name; /* the (first) row it prints */
  int (*run)(void); /* prints its rows; 0, or 1 if it could not measure */
} rows[] = {
    {"switch_ns", do_switch},
    {"ucontext_switch_ns", do_ucontext},
    {"yield_ns", do_yield},
    {"spawn_join_ns", do_spawn_join},
    {"pthread_spawn_join_ns", do_pthread},
    {"idle_bytes_100k", do_idle_100k},
    {"idle_bytes_1m", do_idle_1m},
};
#define NROWS (sizeof rows / sizeof rows[0])

int main(int argc, char **argv)
{
  int status = 0, argi = 1, ran = 0;

  if (argc == 3 && !strcmp(argv[1], "--idle"))
    return idle_child(atol(argv[2]));
  if (argc >= 3 && !strcmp(argv[1], "--reps")) {
    reps = atoi(argv[2]) > 0 ? atoi(argv[2]) : 1;
    argi = 3;
  }
  for (size_t i = 0; i < NROWS; i++) {
    bool want = argi == argc;
    for (int a = argi; a < argc && !want; a++)
      want = !strcmp(argv[a], rows[i].name);
    if (want) {
      status |= rows[i].run();
      ran++;
    }
  }
  if (!ran) {
    fprintf(stderr, "usage: bench_core [--reps N] [ROW...]; rows:");
    for (size_t i = 0; i < NROWS; i++)
      fprintf(stderr, " %s", rows[i].name);
    fprintf(stderr, "\n");
    return 2;
  }
  return status;
}
