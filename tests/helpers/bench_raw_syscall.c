/* bench_raw_syscall.c: what the shim adds to a raw system call it does not
 * translate, made by a thread (hub/handoff.c: kz__sys_enter and
 * kz__sys_exit around it, so that its hub may be handed off if it blocks).
 *
 *   kudzu --hubs 1 bench_raw_syscall
 *
 * A thread times syscall(SYS_ppoll) with no descriptor and a zero timeout
 * (a call that may wait, so the shim prepares for a hand-off around it,
 * and returns at once) called two ways, in pairs of
 * back-to-back rounds (alternating which goes first, as bench_passthrough
 * does, for the reasons given there): through the name, which under the
 * launcher is the shim's syscall(); and libc's own syscall(), looked up in
 * libc.  Prints the median over the pairs of the difference:
 *   raw_syscall_overhead_ns<TAB>value<TAB>ns
 * Natively both are libc's, and the difference is noise around 0. */
#include "check.h"
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { PAIRS = 101, CALLS = 20000 };

typedef long (*syscall_fn)(long, ...);

static double round_of(syscall_fn volatile fn)
{
  struct timespec zero = {0, 0};
  double t = mono();
  for (int i = 0; i < CALLS; i++)
    if (fn(SYS_ppoll, NULL, 0, &zero, NULL, 8) != 0)
      abort();
  return (mono() - t) / CALLS * 1e9;
}

static int by_value(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void *measure(void *arg)
{
  double *out = arg;
  static double diff[PAIRS];
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  syscall_fn named = syscall, own = libc ? (syscall_fn)dlsym(libc, "syscall") : NULL;
  CHECK(own != NULL);
  out[0] = out[1] = 1e9;
  for (int r = 0; r < PAIRS; r++) {
    double a, b;
    if (r & 1) {
      b = round_of(own);
      a = round_of(named);
    } else {
      a = round_of(named);
      b = round_of(own);
    }
    out[0] = a < out[0] ? a : out[0];
    out[1] = b < out[1] ? b : out[1];
    diff[r] = a - b;
  }
  qsort(diff, PAIRS, sizeof *diff, by_value);
  out[2] = diff[PAIRS / 2];
  return NULL;
}

int main(void)
{
  double res[3];
  pthread_t t;
  CHECK(pthread_create(&t, NULL, measure, res) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  fprintf(stderr, "raw ppoll: best %.1f ns through the name, %.1f ns libc's own\n", res[0], res[1]);
  printf("raw_syscall_overhead_ns\t%.1f\tns\n", res[2]);
  return 0;
}
