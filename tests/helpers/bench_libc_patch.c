/* bench_libc_patch.c: what patching libc's code costs (preload/patch.c).
 *
 *   bench_libc_patch LAUNCHER
 *
 * Prints, as "name<TAB>value<TAB>unit" rows (medians of paired differences,
 * the order of each pair alternating; measured, never asserted):
 *   libc_patch_startup_us        `LAUNCHER -- true` minus `LAUNCHER -p
 *                                all,-libc -- true`: the start-up cost of
 *                                decoding and patching libc, in wall time
 *                                (stderr also gives the CPU time, which a
 *                                loaded machine disturbs less);
 *   libc_patch_overhead_ns       a getc on a pipe with data, outside green
 *                                threads, patched minus unpatched: stdio's
 *                                read (one per 4 KiB) now passes the shim;
 *   libc_patch_call_overhead_ns  one call of a patched function reached as
 *                                libc's own callers reach it (libc's
 *                                address, no PLT), patched minus
 *                                unpatched: clock_nanosleep on
 *                                CLOCK_THREAD_CPUTIME_ID, which glibc refuses
 *                                without a system call, so the difference is
 *                                the jump to the shim, its test and the
 *                                trampoline, not a system call's noise.
 * Each pair runs two copies of this program under the launcher (thread
 * family off, so the measuring thread is a real OS thread without a hub,
 * "outside green threads"), one with the libc family and one without. */
#include "check.h"
#include <dlfcn.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PAIRS = 31, STARTS = 41, ROUNDS = 21, BYTES = 65536, CALLS = 100000 };

extern char **environ;

typedef int (*sleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

static int by_value(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n)
{
  qsort(v, (size_t)n, sizeof *v, by_value);
  return v[n / 2];
}

/* ns per getc over BYTES bytes a pipe holds, one round. */
static double getc_round(int w, FILE *in)
{
  static char block[BYTES];
  double t;
  CHECK(write(w, block, sizeof block) == (ssize_t)sizeof block); /* the pipe holds 64 KiB */
  t = mono();
  for (int i = 0; i < BYTES; i++)
    if (getc(in) == EOF)
      abort();
  return (mono() - t) / BYTES * 1e9;
}

/* ns per call of libc's own clock_nanosleep, refused, one round. */
static double call_round(sleep_fn volatile fn)
{
  struct timespec ts = {0, 1};
  double t = mono();
  for (int i = 0; i < CALLS; i++)
    if (fn(CLOCK_THREAD_CPUTIME_ID, 0, &ts, NULL) != EINVAL)
      abort();
  return (mono() - t) / CALLS * 1e9;
}

/* The measuring copy: the median round of each, on a real OS thread. */
static void *measure(void *arg)
{
  double *out = arg, g[ROUNDS], c[ROUNDS];
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  sleep_fn own = libc ? (sleep_fn)dlsym(libc, "clock_nanosleep") : NULL;
  int p[2];
  FILE *in;
  CHECK(own != NULL && pipe(p) == 0 && (in = fdopen(p[0], "r")) != NULL);
  for (int r = 0; r < ROUNDS; r++) {
    g[r] = getc_round(p[1], in);
    c[r] = call_round(own);
  }
  out[0] = median(g, ROUNDS);
  out[1] = median(c, ROUNDS);
  fclose(in);
  close(p[1]);
  return NULL;
}

/* Run argv to its end; its stdout (one line) in line, if given; seconds,
   and in *cpu (if given) the CPU seconds it used (user and system). */
static double run(char **argv, char *line, size_t len, double *cpu)
{
  posix_spawn_file_actions_t fa;
  struct rusage ru;
  int p[2], st;
  pid_t pid;
  double t = mono();
  CHECK(pipe(p) == 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  CHECK(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  ssize_t n = read(p[0], line ? line : (char[64]){0}, line ? len - 1 : 63);
  close(p[0]);
  CHECK(wait4(pid, &st, 0, &ru) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  t = mono() - t;
  if (cpu)
    *cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  if (line)
    line[n > 0 ? n : 0] = 0;
  return t;
}

int main(int argc, char **argv)
{
  static double startup[STARTS], startup_cpu[STARTS], getcs[PAIRS], calls[PAIRS];
  char self[4096];
  if (argc == 2 && !strcmp(argv[1], "--measure")) {
    double res[2];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, measure, res) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("%.4f %.4f\n", res[0], res[1]);
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: bench_libc_patch LAUNCHER\n");
    return 2;
  }
  snprintf(self, sizeof self, "/proc/%d/exe", (int)getpid());
  char *on[] = {argv[1], "-p", "all,-thread", "--", self, "--measure", NULL};
  char *off[] = {argv[1], "-p", "all,-thread,-libc", "--", self, "--measure", NULL};
  char *t_on[] = {argv[1], "--", "true", NULL};
  char *t_off[] = {argv[1], "-p", "all,-libc", "--", "true", NULL};
  double best_on = 1e9, best_off = 1e9;
  for (int i = 0; i < STARTS; i++) {
    double a, b, ca, cb;
    if (i & 1)
      b = run(t_off, NULL, 0, &cb), a = run(t_on, NULL, 0, &ca);
    else
      a = run(t_on, NULL, 0, &ca), b = run(t_off, NULL, 0, &cb);
    best_on = a < best_on ? a : best_on;
    best_off = b < best_off ? b : best_off;
    startup[i] = (a - b) * 1e6;
    startup_cpu[i] = (ca - cb) * 1e6;
  }
  for (int i = 0; i < PAIRS; i++) {
    char la[64], lb[64];
    double ga, ca, gb, cb;
    if (i & 1)
      run(off, lb, sizeof lb, NULL), run(on, la, sizeof la, NULL);
    else
      run(on, la, sizeof la, NULL), run(off, lb, sizeof lb, NULL);
    CHECK(sscanf(la, "%lf %lf", &ga, &ca) == 2 && sscanf(lb, "%lf %lf", &gb, &cb) == 2);
    getcs[i] = ga - gb;
    calls[i] = ca - cb;
  }
  fprintf(stderr, "launcher with `true`: best %.0f us patched, %.0f us unpatched; CPU time, median of the pairs: %.0f us more\n",
          best_on * 1e6, best_off * 1e6, median(startup_cpu, STARTS));
  printf("libc_patch_startup_us\t%.0f\tus\n", median(startup, STARTS));
  printf("libc_patch_overhead_ns\t%.3f\tns\n", median(getcs, PAIRS));
  printf("libc_patch_call_overhead_ns\t%.2f\tns\n", median(calls, PAIRS));
  return 0;
}
