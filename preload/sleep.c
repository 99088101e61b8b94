/* sleep.c: sleep, usleep, nanosleep, clock_nanosleep in green threads park
 * only the calling green thread.
 *
 * The remaining time is reported as natively when the sleep is cut short: by
 * a signal handler (any handler: signal(7) says sleeps are never restarted),
 * by a cancellation (ECANCELED), or by a scoped deadline, which ends the
 * sleep early like an interruption (EINTR and the time left, which every
 * caller of nanosleep already handles; ETIMEDOUT would be new to them).
 *
 * Notes.
 * A. The hub's clock is CLOCK_MONOTONIC.  An absolute CLOCK_REALTIME
 *    deadline is converted once, when the call starts: a change of the wall
 *    clock during the sleep does not move it (natively it would).
 */
#include "shim.h"

#include <math.h>

#define EXPORT KZ_SHIM_EXPORT

int kz_shim_park(double deadline, int intr)
{
  struct kz_green *g = kz__self();
  int r;
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SLEEP};
  kz_shim_stats().parks++;
  kz_shim_intr_begin(g, intr);
  r = kz__park(deadline);
  kz_shim_intr_end(g);
  kz_shim_cancel_point(r);
  return r;
}

/* Sleep until deadline; 0, or -1 with errno (EINTR or ECANCELED). */
static int park_until(double deadline)
{
  int r = kz_shim_park(deadline, KZ_INTR_ALWAYS);
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

KZ_INTERPOSE(int, nanosleep, (const struct timespec *req, struct timespec *rem), (req, rem))
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

/* The clocks a sleep can be parked on; CPU-time clocks pass through. */
static bool wall_clock(clockid_t clk)
{
  return clk == CLOCK_REALTIME || clk == CLOCK_MONOTONIC || clk == CLOCK_BOOTTIME || clk == CLOCK_TAI;
}

KZ_INTERPOSE(int, clock_nanosleep, (clockid_t clk, int flags, const struct timespec *req, struct timespec *rem), (clk, flags, req, rem))
{
  struct timespec now;
  double deadline;
  int err;
  if (!shim_active(KZ_PATCH_SLEEP) || !req || req->tv_nsec < 0 || req->tv_nsec >= 1000000000L ||
      req->tv_sec < 0 || !wall_clock(clk) || clock_gettime(clk, &now) < 0)
    return REAL(clock_nanosleep)(clk, flags, req, rem);
  deadline = (double)req->tv_sec + (double)req->tv_nsec * 1e-9;
  if (flags & TIMER_ABSTIME) /* note A */
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

KZ_INTERPOSE(int, usleep, (useconds_t us), (us))
{
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  if (!shim_active(KZ_PATCH_SLEEP))
    return REAL(usleep)(us);
  return nanosleep(&ts, NULL);
}

KZ_INTERPOSE(unsigned, sleep, (unsigned s), (s))
{
  struct timespec ts = {(time_t)s, 0}, rem = {0, 0};
  if (!shim_active(KZ_PATCH_SLEEP))
    return REAL(sleep)(s);
  if (nanosleep(&ts, &rem) == 0)
    return 0;
  return (unsigned)rem.tv_sec + (rem.tv_nsec > 0);
}
