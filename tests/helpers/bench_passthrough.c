/* bench_passthrough.c: what an interposed call costs outside a green thread.
 *
 *   bench_passthrough PRELOAD_LIBRARY
 *
 * Runs a copy of itself with LD_PRELOAD=PRELOAD_LIBRARY (thread family off,
 * so its measuring thread is a real OS thread without a hub), which times
 * the same libc function called two ways, in alternating rounds:
 *   - as the program calls it: the name resolves to the shim, which finds
 *     it is not in a green thread and calls libc's;
 *   - libc's own function, looked up in libc directly: the native cost;
 * and prints the difference of the best rounds:
 *   passthrough_overhead_ns<TAB>value<TAB>ns
 * The function is clock_nanosleep on CLOCK_THREAD_CPUTIME_ID, which glibc
 * refuses (EINVAL) without entering the kernel, so the difference is the
 * shim's own path rather than the noise of a system call.  Both are called
 * through a function pointer, so neither gets a cheaper call site. */
#include "check.h"
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

enum { ROUNDS = 40, CALLS = 500000 };

typedef int (*sleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

/* Nanoseconds per call of fn, one round. */
static double round_of(sleep_fn volatile fn)
{
  struct timespec ts = {0, 1};
  double t = mono();
  for (int i = 0; i < CALLS; i++)
    if (fn(CLOCK_THREAD_CPUTIME_ID, 0, &ts, NULL) != EINVAL)
      abort();
  return (mono() - t) / CALLS * 1e9;
}

static void *measure(void *arg)
{
  double *best = arg; /* [0] through the shim, [1] libc's own */
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  sleep_fn shim = clock_nanosleep, native = libc ? (sleep_fn)dlsym(libc, "clock_nanosleep") : NULL;
  CHECK(native != NULL);
  best[0] = best[1] = 1e9;
  for (int r = 0; r < ROUNDS; r++) {
    double a = round_of(shim), b = round_of(native);
    best[0] = a < best[0] ? a : best[0];
    best[1] = b < best[1] ? b : best[1];
  }
  return NULL;
}

int main(int argc, char **argv)
{
  char cmd[4096];
  double best[2];
  pthread_t t;
  if (argc == 2 && !strcmp(argv[1], "--measure")) {
    CHECK(pthread_create(&t, NULL, measure, best) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    fprintf(stderr, "clock_nanosleep (refused in libc): %.2f ns through the shim, %.2f ns libc's own\n",
            best[0], best[1]);
    printf("passthrough_overhead_ns\t%.2f\tns\n", best[0] - best[1]);
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: bench_passthrough PRELOAD_LIBRARY\n");
    return 2;
  }
  snprintf(cmd, sizeof cmd, "KUDZU_PATCH=all,-thread LD_PRELOAD='%s' '/proc/%d/exe' --measure",
           argv[1], (int)getpid());
  return system(cmd) == 0 ? 0 : 1;
}
