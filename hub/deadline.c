/* deadline.c: scoped deadlines (gevent.Timeout, asyncio.timeout) and
 * wait_for (a wait whose timeout cancels what it waited for).
 *
 * Notes.
 * A. A green thread's scoped deadline is one field, g->deadline (kz__now()
 *    seconds, 0 for none), which kz__park applies to every park: so every
 *    blocking call of the API, and every libc call the preload shim turns
 *    into a park, fails with ETIMEDOUT once it passes.  Entering a scope
 *    keeps the tighter of the old and new deadlines; the token it returns
 *    holds the old one, which leaving restores.  So scopes nest and the
 *    tightest wins, with no allocation.
 * B. The token is the old deadline's bit pattern with bit 63 set (a
 *    deadline is never negative, so its own bit 63 is clear): 0 is never a
 *    valid token.
 * C. kz_deadline_leave tells whether this scope's own deadline expired:
 *    the deadline in force is this scope's when it is tighter than the
 *    outer one, and it expired when it has passed.  An expiry of an outer
 *    scope is the outer scope's business (gevent: `except Timeout as t: if
 *    t is not mine: raise`).
 */
#include "internal.h"

#include <math.h>
#include <string.h>

static uint64_t token_of(double deadline)
{
  uint64_t bits;
  memcpy(&bits, &deadline, sizeof bits);
  return bits | (1ull << 63);
}

static double deadline_of(uint64_t token)
{
  double d;
  token &= ~(1ull << 63);
  memcpy(&d, &token, sizeof d);
  return d;
}

kz_scope_t kz_deadline_enter(double timeout)
{
  int err = 0;
  struct kz__hub *hub = kz__hub_get(&err);
  struct kz_green *g = hub ? hub->current : NULL;
  kz_scope_t token;
  double dl;
  if (!g) {
    errno = hub ? EPERM : -err;
    return 0;
  }
  if (isnan(timeout)) {
    errno = EINVAL;
    return 0;
  }
  token = token_of(g->deadline);
  dl = kz__deadline(timeout);
  if (dl >= 0 && (g->deadline <= 0 || dl < g->deadline))
    g->deadline = dl > 0 ? dl : 1e-9; /* 0 means none: keep an expired one expired */
  return token;
}

int kz_deadline_leave(kz_scope_t token)
{
  struct kz_green *g = kz__self();
  double prev, cur;
  bool mine;
  if (!g)
    return kz__fail_errno(-EPERM);
  if (!(token >> 63))
    return kz__fail_errno(-EINVAL);
  prev = deadline_of(token);
  cur = g->deadline;
  mine = cur > 0 && (prev <= 0 || cur < prev); /* note C */
  g->deadline = prev;
  return mine && kz__now() >= cur;
}

double kz_deadline_left(void)
{
  struct kz_green *g = kz__self();
  double left;
  if (!g || g->deadline <= 0)
    return KZ_FOREVER;
  left = g->deadline - kz__now();
  return left > 0 ? left : 0;
}

/* ---- wait_for ---------------------------------------------------------------- */

/* Wait for green thread h; on failure with h still alive, cancel it and
   wait (shielded) until it has finished, then release it. */
static int wait_for_green(kz_green_t h, void **result, double timeout)
{
  struct kz_green *self = kz__self();
  struct kz__shield s;
  int err;
  if (kz_join(h, result, timeout) == 0)
    return 0;
  err = errno;
  if (!self || kz_state(h) < 0 || (err != ETIMEDOUT && err != ECANCELED))
    return kz__fail_errno(-err); /* released already, or a misuse */
  kz_cancel(h);
  kz__shield_up(self, &s);
  kz_join(h, NULL, KZ_FOREVER);
  kz__shield_down(self, &s);
  return kz__fail_errno(-err);
}

/* The same for a future: a green thread's future cancels its green thread
   and is waited for until it completes. */
static int wait_for_future(kz_future_t f, void **result, double timeout)
{
  struct kz_green *self = kz__self();
  struct kz__shield s;
  int err;
  if (kz_future_wait(f, result, timeout) == 0)
    return 0;
  err = errno;
  if (!self || kz_future_state(f) != KZ_PENDING || (err != ETIMEDOUT && err != ECANCELED))
    return kz__fail_errno(-err);
  if (kz_future_cancel(f) == 0) {
    kz__shield_up(self, &s);
    kz_future_wait(f, NULL, KZ_FOREVER);
    kz__shield_down(self, &s);
  }
  return kz__fail_errno(-err);
}

int kz_wait_for(uint64_t h, void **result, double timeout)
{
  if (kz__handle_get(h, KZ__H_FUTURE))
    return wait_for_future(h, result, timeout);
  return wait_for_green(h, result, timeout);
}
