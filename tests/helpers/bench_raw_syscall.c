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
 * Natively both are libc's, and the difference is noise around 0.  The
 * pairing is paired.h's. */
#include "check.h"
#include "paired.h"
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { PAIRS = 101, CALLS = 20000 };

typedef long (*syscall_fn)(long, ...);

/* Nanoseconds per call of fn (a syscall_fn), one round. */
static double round_of(void *fnp)
{
  syscall_fn volatile fn = (syscall_fn)fnp;
  struct timespec zero = {0, 0};
  double t = mono();
  for (int i = 0; i < CALLS; i++)
    if (fn(SYS_ppoll, NULL, 0, &zero, NULL, 8) != 0)
      abort();
  return (mono() - t) / CALLS * 1e9;
}

static void *measure(void *arg)
{
  double *out = arg;
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  syscall_fn named = syscall, own = libc ? (syscall_fn)dlsym(libc, "syscall") : NULL;
  CHECK(own != NULL);
  paired_median(round_of, (void *)named, (void *)own, PAIRS, out);
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
