/* ticks.h: what the libc_* helpers share: the main thread's ticker, which
 * must keep its pace while another thread blocks inside libc, and the
 * count of the process's OS threads. */
#ifndef HELPER_TICKS_H
#define HELPER_TICKS_H
#include "check.h"
#include <dirent.h>

/* Tick n times, every 100 ms; the seconds all the ticks took. */
static inline double tick(int n)
{
  double t0 = mono();
  for (int i = 0; i < n; i++) {
    struct timespec ts = {0, 100000000};
    CHECK(nanosleep(&ts, NULL) == 0);
  }
  return mono() - t0;
}

/* The fastest of up to three rounds of n ticks, stopping at the first
   under bound seconds: the other thread stays blocked throughout (what
   unblocks it comes after the ticks), so any round shows whether this
   thread runs meanwhile, and a round a loaded machine delays for other
   reasons is taken again. */
static inline double tick_rounds(int n, double bound)
{
  double best = 1e9;
  for (int r = 0; r < 3 && best >= bound; r++) {
    double t = tick(n);
    best = t < best ? t : best;
  }
  return best;
}

/* The OS threads of this process (/proc/self/task). */
static inline int os_threads(void)
{
  int n = 0;
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  CHECK(d != NULL);
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* With a bound given on the command line (under the launcher: 3), check it. */
static inline void check_os_threads(int argc, char **argv)
{
  if (argc > 1)
    CHECK(os_threads() <= atoi(argv[1]));
}
#endif
