/* check.h: the helpers' one assertion macro.  Helpers are plain programs,
 * built without kudzu, that exit 0 when the behaviour they name holds; the
 * shim tests run each natively and under the launcher. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef HELPER_CHECK_H
#define HELPER_CHECK_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "%s:%d: check failed: %s (errno %d %s)\n", __FILE__, __LINE__, #cond, \
              errno, strerror(errno));                                                    \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

static inline double mono(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#endif
