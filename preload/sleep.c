/* sleep.c: sleep, usleep, nanosleep, clock_nanosleep in green threads park
 * only the calling green thread.
 *
 * The remaining time is reported as natively when the sleep is cut short
 * (ECANCELED for a cancelled green thread; ETIMEDOUT never: a scoped
 * deadline that ends a sleep ends it early, like an interruption, and the
 * call fails with EINTR and the time left, which every caller of
 * nanosleep already handles).
 */
#include "shim.h"

#include <math.h>

#define EXPORT __attribute__((visibility("default")))

/* Sleep until deadline; 0, or -1 with errno (EINTR or ECANCELED). */
static int park_until(double deadline)
{
  struct kz_green *g = kz__self();
  int r;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SLEEP};
  kz_shim_stats.parks++;
  r = kz__park(deadline);
  if (r == -ETIMEDOUT && kz__now() >= deadline)
    return 0;
  errno = r == -ECANCELED ? ECANCELED : EINTR;
  return -1;
}

static void left(struct timespec *rem, double deadline)
{
  double l = deadline - kz__now();
  if (!rem)
    return;
  if (l < 0)
    l = 0;
  rem->tv_sec = (time_t)l;
  rem->tv_nsec = (long)((l - (double)rem->tv_sec) * 1e9);
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
  double deadline;
  if (!shim_active(KZ_PATCH_SLEEP) || !req || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L ||
      req->tv_sec < 0)
    return REAL(nanosleep)(req, rem);
  deadline = kz__now() + (double)req->tv_sec + (double)req->tv_nsec * 1e-9;
  if (park_until(deadline) == 0)
    return 0;
  left(rem, deadline);
  return -1;
}

EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                           struct timespec *rem)
{
  struct timespec now;
  double deadline;
  int err;
  if (!shim_active(KZ_PATCH_SLEEP) || !req || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L ||
      clock_gettime(clk, &now) < 0)
    return REAL(clock_nanosleep)(clk, flags, req, rem);
  deadline = (double)req->tv_sec + (double)req->tv_nsec * 1e-9;
  if (flags & TIMER_ABSTIME) /* to the monotonic clock the hub uses */
    deadline = kz__now() + (deadline - ((double)now.tv_sec + (double)now.tv_nsec * 1e-9));
  else
    deadline += kz__now();
  if (park_until(deadline) == 0)
    return 0;
  err = errno;
  if (!(flags & TIMER_ABSTIME))
    left(rem, deadline);
  return err; /* clock_nanosleep returns the error number */
}

EXPORT int usleep(useconds_t us)
{
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  if (!shim_active(KZ_PATCH_SLEEP))
    return REAL(usleep)(us);
  return nanosleep(&ts, NULL);
}

EXPORT unsigned sleep(unsigned s)
{
  struct timespec ts = {(time_t)s, 0}, rem = {0, 0};
  if (!shim_active(KZ_PATCH_SLEEP))
    return REAL(sleep)(s);
  if (nanosleep(&ts, &rem) == 0)
    return 0;
  return (unsigned)rem.tv_sec + (rem.tv_nsec > 0);
}
