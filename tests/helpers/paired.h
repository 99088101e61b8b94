/* paired.h: the median over pairs of back-to-back rounds of two ways to
 * make one call (bench_passthrough.c explains why pairs, not the best
 * rounds).  round(fn) times one round of fn, in nanoseconds per call. */
#ifndef HELPER_PAIRED_H
#define HELPER_PAIRED_H
#include <stdlib.h>

static int paired_by_value(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* out[0]: the best round of a, out[1]: the best of b, out[2]: the median of
   (a - b) over pairs rounds, alternating which goes first. */
static void paired_median(double (*round)(void *fn), void *a, void *b, int pairs, double out[3])
{
  double *diff = malloc(sizeof *diff * (size_t)pairs);
  if (!diff)
    abort();
  out[0] = out[1] = 1e9;
  for (int r = 0; r < pairs; r++) {
    double x, y;
    if (r & 1) {
      y = round(b);
      x = round(a);
    } else {
      x = round(a);
      y = round(b);
    }
    out[0] = x < out[0] ? x : out[0];
    out[1] = y < out[1] ? y : out[1];
    diff[r] = x - y;
  }
  qsort(diff, (size_t)pairs, sizeof *diff, paired_by_value);
  out[2] = diff[pairs / 2];
  free(diff);
}
#endif
