/* test_hubs.c: the process's set of hubs through the API: kz_set_hubs,
 * kz_hub_count and KUDZU_HUBS; spawning on hub k or on the least loaded
 * (KZ_HUB_ANY); join, detach, cancel, state and names of green threads of
 * other hubs.  Every behaviour runs twice, with 2 and with 4 hubs (test
 * sets hubs2 and hubs4): more hubs than the machine's cores must work too.
 * Each test runs in a process of its own, so each starts a set afresh. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define P(i) ((void *)(intptr_t)(i))

/* One body, run with 2 hubs (hubs2) and with 4 (hubs4). */
#define BOTH(name)                                                                                \
  static void name(unsigned n);                                                                   \
  Test(hubs2, name, .timeout = 60) { name(2); }                                                   \
  Test(hubs4, name, .timeout = 60) { name(4); }                                                   \
  static void name(unsigned n)

static long tid(void) { return syscall(SYS_gettid); }

static void *my_tid(void *arg)
{
  (void)arg;
  return P(tid());
}

static struct kz_spawn_opts on(int hub) { return (struct kz_spawn_opts){.hub = hub}; }

static kz_green_t spawn_on(int hub, kz_fn fn, void *arg)
{
  struct kz_spawn_opts o = on(hub);
  kz_green_t g = kz_spawn_with(fn, arg, &o);
  cr_assert_neq(g, 0, "spawn on %d: %s", hub, strerror(errno));
  return g;
}

/* Wait (bounded, not timed: each round lets the others run) until g's
   state is want. */
static void wait_state(kz_green_t g, int want)
{
  int s = -2;
  for (int i = 0; i < 100000 && (s = kz_state(g)) != want; i++)
    kz_sleep(0.0001);
  cr_assert_eq(s, want, "state %d, not %d", s, want);
}

BOTH(spawn_on_each_hub_runs_on_its_os_thread)
{
  long tids[8];
  void *res;
  cr_assert_eq(kz_set_hubs(n), 0);
  cr_assert_eq(kz_hub_count(), 1); /* nothing started yet */
  for (unsigned k = 0; k < n; k++) {
    kz_green_t g = spawn_on(KZ_HUB(k), my_tid, NULL);
    cr_assert_eq(kz_hub_count(), n);
    cr_assert_eq(kz_join(g, &res, 10), 0, "join: %s", strerror(errno));
    tids[k] = (long)(intptr_t)res;
  }
  cr_assert_eq(tids[0], tid(), "hub 0 is the hub of the thread that started the set");
  for (unsigned k = 1; k < n; k++)
    for (unsigned j = 0; j < k; j++)
      cr_assert_neq(tids[k], tids[j], "hubs %u and %u share an OS thread", j, k);
}

static atomic_int started;

/* Note the OS thread, then wait for cancellation. */
static void *tid_then_sleep(void *arg)
{
  *(long *)arg = tid();
  atomic_fetch_add(&started, 1);
  kz_sleep(1000);
  return P(errno);
}

BOTH(any_spreads_over_every_hub)
{
  enum { PER = 3 };
  long tids[4 * PER], seen[4] = {0};
  int count[4] = {0};
  kz_green_t g[4 * PER];
  void *res;
  cr_assert_eq(kz_set_hubs(n), 0);
  for (unsigned i = 0; i < n * PER; i++)
    g[i] = spawn_on(KZ_HUB_ANY, tid_then_sleep, &tids[i]);
  cr_assert_eq(kz_hub_count(), n);
  for (int i = 0; i < 100000 && atomic_load(&started) < (int)(n * PER); i++)
    kz_sleep(0.0001);
  cr_assert_eq(atomic_load(&started), n * PER);
  for (unsigned i = 0; i < n * PER; i++) {
    unsigned k = 0;
    while (k < n && seen[k] && seen[k] != tids[i])
      k++;
    cr_assert_lt(k, n, "more OS threads than hubs");
    seen[k] = tids[i];
    count[k]++;
  }
  for (unsigned k = 0; k < n; k++) /* live ones only grow: exact turns */
    cr_assert_eq(count[k], PER, "hub of thread %ld got %d of %u", seen[k], count[k], n * PER);
  for (unsigned i = 0; i < n * PER; i++) {
    cr_assert_eq(kz_cancel(g[i]), 0);
    cr_assert_eq(kz_join(g[i], &res, 10), -1);
    cr_assert_eq(errno, ECANCELED);
    cr_assert_eq((intptr_t)res, ECANCELED);
  }
}

static void *add_one_later(void *arg)
{
  kz_sleep(0.01);
  return (char *)arg + 1;
}

/* On hub 1: join the green thread given (on hub 0), return its result. */
static void *join_it(void *arg)
{
  void *res = NULL;
  if (kz_join((kz_green_t)(uintptr_t)arg, &res, 10) != 0)
    return P(-errno);
  return res;
}

BOTH(cross_hub_join_returns_the_result)
{
  void *res = NULL;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t far = spawn_on(KZ_HUB(n - 1), add_one_later, P(41));
  cr_assert_eq(kz_join(far, &res, 10), 0, "%s", strerror(errno));
  cr_assert_eq((intptr_t)res, 42);
  cr_assert_eq(kz_state(far), -1, "released after the join");
  cr_assert_eq(errno, EINVAL);
  /* a green thread of hub 1 joins one of hub 0 */
  kz_green_t here = spawn_on(KZ_HUB_THIS, add_one_later, P(99));
  kz_green_t joiner = spawn_on(KZ_HUB(1), join_it, (void *)(uintptr_t)here);
  cr_assert_eq(kz_join(joiner, &res, 10), 0);
  cr_assert_eq((intptr_t)res, 100);
  cr_assert_eq(kz_state(here), -1);
}

static void *fail_now(void *arg)
{
  kz_fail((int)(intptr_t)arg);
}

BOTH(join_of_one_that_already_finished)
{
  void *res = NULL;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = spawn_on(KZ_HUB(n - 1), my_tid, NULL);
  wait_state(g, KZ_DONE);
  cr_assert_eq(kz_join(g, &res, 0), 0, "a timeout of 0 still gets the answer: %s", strerror(errno));
  cr_assert_neq((long)(intptr_t)res, tid());
  g = spawn_on(KZ_HUB(1), fail_now, P(EPROTO));
  wait_state(g, KZ_DONE);
  cr_assert_eq(kz_join(g, NULL, 0), -1);
  cr_assert_eq(errno, EPROTO);
}

static void *sleeper(void *arg)
{
  (void)arg;
  int r = kz_sleep(1000);
  return P(r == 0 ? 0 : errno);
}

BOTH(cancel_across_hubs_while_it_sleeps)
{
  void *res = NULL;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = spawn_on(KZ_HUB(n - 1), sleeper, NULL);
  wait_state(g, KZ_BLOCKED);
  cr_assert_eq(kz_cancel(g), 0);
  cr_assert_eq(kz_join(g, &res, 10), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq((intptr_t)res, ECANCELED, "its kz_sleep failed with ECANCELED");
  cr_assert_eq(kz_cancel(g), -1, "stale now");
  cr_assert_eq(errno, EINVAL);
}

BOTH(join_timeout_leaves_it_joinable)
{
  void *res = NULL;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = spawn_on(KZ_HUB(1), sleeper, NULL);
  wait_state(g, KZ_BLOCKED);
  cr_assert_eq(kz_join(g, &res, 0.01), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_join(g, &res, 0), -1, "retried at once: not 'being joined'");
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_eq(kz_state(g), KZ_BLOCKED);
  cr_assert_eq(kz_cancel(g), 0);
  cr_assert_eq(kz_join(g, &res, 10), -1);
  cr_assert_eq(errno, ECANCELED);
}

/* On another hub: join the sleeper, to be the one "being joined". */
static void *join_long(void *arg)
{
  void *res;
  return P(kz_join((kz_green_t)(uintptr_t)arg, &res, 100) == -1 && errno == ECANCELED ? 0 : 1);
}

BOTH(detach_across_hubs)
{
  void *res;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = spawn_on(KZ_HUB(n - 1), sleeper, NULL);
  wait_state(g, KZ_BLOCKED);
  cr_assert_eq(kz_detach(g), 0);
  cr_assert_eq(kz_detach(g), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_join(g, NULL, 0), -1, "detached: not joinable");
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_cancel(g), 0);
  for (int i = 0; i < 100000 && kz_state(g) != -1; i++) /* released when it finishes */
    kz_sleep(0.0001);
  cr_assert_eq(kz_state(g), -1);
  cr_assert_eq(errno, EINVAL);
  /* a finished one is released by the detach */
  g = spawn_on(KZ_HUB(1), my_tid, NULL);
  wait_state(g, KZ_DONE);
  cr_assert_eq(kz_detach(g), 0);
  cr_assert_eq(kz_state(g), -1);
  /* one being joined from this hub's other green thread cannot be
     detached or joined again: that join's request left this OS thread
     first, and its hub takes one thread's requests in order */
  g = spawn_on(KZ_HUB(n - 1), sleeper, NULL);
  kz_green_t joiner = spawn_on(KZ_HUB_THIS, join_long, (void *)(uintptr_t)g);
  cr_assert_eq(kz_yield(), 0); /* the joiner runs: posts its request, parks */
  cr_assert_eq(kz_detach(g), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_join(g, NULL, 0), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_cancel(g), 0);
  cr_assert_eq(kz_join(joiner, &res, 10), 0);
  cr_assert_eq((intptr_t)res, 0, "the joiner's join settled");
}

BOTH(bad_hub_numbers)
{
  struct kz_spawn_opts o = on(KZ_HUB(n));
  cr_assert_eq(kz_set_hubs(n), 0);
  cr_assert_eq(kz_spawn_with(my_tid, NULL, &o), 0);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_hub_count(), n, "asking for hub k started the set");
  o = on(-2);
  cr_assert_eq(kz_spawn_with(my_tid, NULL, &o), 0);
  cr_assert_eq(errno, EINVAL);
  o = on(KZ_HUB(1000));
  cr_assert_eq(kz_spawn_with(my_tid, NULL, &o), 0);
  cr_assert_eq(errno, EINVAL);
  o = on(KZ_HUB(n));
  cr_assert_eq(kz_spawn_future(my_tid, NULL, &o), 0, "nor a future on one");
  cr_assert_eq(errno, EINVAL);
}

static atomic_int body_ran;

static void *count_run(void *arg)
{
  atomic_fetch_add(&body_ran, 1);
  return arg;
}

static _Atomic kz_green_t handed;

/* On the other hub: join the green thread whose handle comes in handed,
   which its hub may not have taken in yet (hub/green.c, note E). */
static void *join_handed(void *arg)
{
  kz_green_t g;
  void *res = NULL;
  (void)arg;
  while (!(g = atomic_load(&handed)))
    kz_yield();
  if (kz_join(g, &res, 10) != 0)
    return P(-errno);
  return res;
}

/* A spawn on another hub returns before that hub has the green thread
   (hub/green.c, note E): whatever is asked of it at once acts on it. */
BOTH(a_spawn_elsewhere_is_there_at_once)
{
  void *res = NULL;
  cr_assert_eq(kz_set_hubs(n), 0);
  for (int i = 0; i < 50; i++) {
    struct kz_spawn_opts o = {.hub = KZ_HUB(n - 1), .delay = 1000};
    kz_green_t g = kz_spawn_with(count_run, P(i), &o);
    cr_assert_neq(g, 0, "%s", strerror(errno));
    cr_assert_eq(kz_cancel(g), 0);
    cr_assert_eq(kz_join(g, &res, 10), -1);
    cr_assert_eq(errno, ECANCELED);
  }
  cr_assert_eq(atomic_load(&body_ran), 0, "cancelled before they started: never run");
  for (int i = 0; i < 50; i++) {
    cr_assert_eq(kz_join(spawn_on(KZ_HUB(n - 1), count_run, P(i)), &res, 10), 0);
    cr_assert_eq((intptr_t)res, i);
  }
  for (int i = 0; i < 50; i++)
    cr_assert_eq(kz_detach(spawn_on(KZ_HUB(n - 1), count_run, NULL)), 0);
  for (int i = 0; i < 100000 && atomic_load(&body_ran) < 100; i++)
    kz_sleep(0.0001);
  cr_assert_eq(atomic_load(&body_ran), 100, "the detached ones ran too");
  for (int i = 0; i < 20; i++) { /* a green thread of that hub joins it */
    kz_green_t joiner = spawn_on(KZ_HUB(n - 1), join_handed, NULL);
    atomic_store(&handed, spawn_on(KZ_HUB(n - 1), count_run, P(1000 + i)));
    cr_assert_eq(kz_join(joiner, &res, 10), 0);
    cr_assert_eq((intptr_t)res, 1000 + i);
    atomic_store(&handed, 0);
  }
}

/* Placement counts the green threads on their way to a hub (hubs.c, note
   A): a burst of spawns, with no pause for the other hubs to take them
   in, fills them up to this hub's load and no further. */
BOTH(a_burst_of_spawns_balances_the_hubs)
{
  enum { PER = 6 };
  long here_tids[PER], tids[3 * PER], seen[4] = {0};
  int count[4] = {0};
  kz_green_t here[PER], g[3 * PER];
  unsigned burst = PER * (n - 1);
  void *res;
  cr_assert_eq(kz_set_hubs(n), 0);
  cr_assert_eq(kz_join(spawn_on(KZ_HUB_ANY, my_tid, NULL), NULL, 10), 0); /* starts the set */
  for (unsigned i = 0; i < PER; i++)
    here[i] = spawn_on(KZ_HUB_THIS, tid_then_sleep, &here_tids[i]);
  for (unsigned i = 0; i < burst; i++)
    g[i] = spawn_on(KZ_HUB_ANY, tid_then_sleep, &tids[i]);
  for (int i = 0; i < 100000 && atomic_load(&started) < (int)(PER + burst); i++)
    kz_sleep(0.0001);
  cr_assert_eq(atomic_load(&started), PER + burst);
  for (unsigned i = 0; i < burst; i++) {
    unsigned k = 0;
    cr_assert_neq(tids[i], tid(), "spawn %u of the burst went to the loaded hub", i);
    while (k < n - 1 && seen[k] && seen[k] != tids[i])
      k++;
    cr_assert_lt(k, n - 1, "more OS threads than other hubs");
    seen[k] = tids[i];
    count[k]++;
  }
  for (unsigned k = 0; k < n - 1; k++)
    cr_assert_eq(count[k], PER, "hub of thread %ld got %d of %u", seen[k], count[k], burst);
  for (unsigned i = 0; i < PER + burst; i++) {
    kz_green_t x = i < PER ? here[i] : g[i - PER];
    cr_assert_eq(kz_cancel(x), 0);
    cr_assert_eq(kz_join(x, &res, 10), -1);
    cr_assert_eq(errno, ECANCELED);
  }
}

static long vm_kib(void)
{
  long pages = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  cr_assert_eq(fscanf(f, "%ld", &pages), 1);
  fclose(f);
  return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A green thread made for another hub takes its stack from the depot and
   gives it back there (hub/stack.c, note G): spawning on another hub for
   ever maps nothing more once warm. */
BOTH(spawns_elsewhere_reuse_their_stacks)
{
  long before, after;
  cr_assert_eq(kz_set_hubs(n), 0);
  for (int i = 0; i < 500; i++)
    cr_assert_eq(kz_join(spawn_on(KZ_HUB(n - 1), my_tid, NULL), NULL, 10), 0);
  before = vm_kib();
  for (int i = 0; i < 5000; i++)
    cr_assert_eq(kz_join(spawn_on(KZ_HUB(n - 1), my_tid, NULL), NULL, 10), 0);
  after = vm_kib();
  cr_assert_lt(after - before, 16 * 1024, "5,000 spawns on another hub mapped %ld KiB more",
               after - before);
}

static unsigned cpus(void)
{
  cpu_set_t s;
  cr_assert_eq(sched_getaffinity(0, sizeof s, &s), 0);
  return (unsigned)CPU_COUNT(&s);
}

BOTH(set_hubs_values_and_count)
{
  cr_assert_eq(kz_set_hubs(257), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_set_hubs(1000000), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_set_hubs(n + 1), 0, "changed freely before the start");
  cr_assert_eq(kz_set_hubs(n), 0);
  cr_assert_eq(kz_hub_count(), 1);
  kz_green_t g = spawn_on(KZ_HUB_ANY, my_tid, NULL);
  cr_assert_eq(kz_hub_count(), n);
  cr_assert_eq(kz_set_hubs(n), 0, "the same number once started");
  cr_assert_eq(kz_set_hubs(n + 1), -1);
  cr_assert_eq(errno, EBUSY);
  cr_assert_eq(kz_set_hubs(1), -1);
  cr_assert_eq(errno, EBUSY);
  cr_assert_eq(kz_set_hubs(0), cpus() == n ? 0 : -1);
  cr_assert_eq(kz_hub_count(), n);
  cr_assert_eq(kz_join(g, NULL, 10), 0);
}

Test(hubs, zero_is_one_per_cpu, .timeout = 60)
{
  cr_assert_eq(kz_set_hubs(0), 0);
  kz_green_t g = spawn_on(KZ_HUB_ANY, my_tid, NULL);
  cr_assert_eq(kz_hub_count(), cpus());
  cr_assert_eq(kz_join(g, NULL, 10), 0);
}

BOTH(kudzu_hubs_from_the_environment)
{
  char v[8];
  snprintf(v, sizeof v, "%u", n);
  setenv("KUDZU_HUBS", v, 1); /* before this process's first hub */
  kz_green_t g = spawn_on(KZ_HUB_ANY, my_tid, NULL);
  cr_assert_eq(kz_hub_count(), n);
  cr_assert_eq(kz_join(g, NULL, 10), 0);
}

Test(hubs, kz_set_hubs_wins_over_the_environment, .timeout = 60)
{
  setenv("KUDZU_HUBS", "3", 1);
  cr_assert_eq(kz_set_hubs(2), 0);
  kz_green_t g = spawn_on(KZ_HUB_ANY, my_tid, NULL);
  cr_assert_eq(kz_hub_count(), 2);
  cr_assert_eq(kz_join(g, NULL, 10), 0);
}

static void *self_join(void *arg)
{
  (void)arg;
  return P(kz_join(kz_self(), NULL, 0) == 0 ? 0 : errno);
}

BOTH(join_self_is_still_edeadlk)
{
  void *res;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = spawn_on(KZ_HUB(n - 1), self_join, NULL);
  cr_assert_eq(kz_join(g, &res, 10), 0);
  cr_assert_eq((intptr_t)res, EDEADLK);
  cr_assert_eq(kz_join(kz_self(), NULL, 0), -1);
  cr_assert_eq(errno, EDEADLK);
}

BOTH(names_and_state_across_hubs)
{
  char buf[16], small[4];
  struct kz_spawn_opts o = {.hub = KZ_HUB(n - 1), .name = "far", .delay = 1000};
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = kz_spawn_with(sleeper, NULL, &o);
  cr_assert_neq(g, 0);
  cr_assert_eq(kz_state(g), KZ_PENDING, "its delay runs on its hub");
  cr_assert_eq(kz_get_name(g, buf, sizeof buf), 0);
  cr_assert_str_eq(buf, "far");
  cr_assert_eq(kz_set_name(g, "renamed"), 0);
  cr_assert_eq(kz_get_name(g, buf, sizeof buf), 0);
  cr_assert_str_eq(buf, "renamed");
  cr_assert_eq(kz_get_name(g, small, sizeof small), -1);
  cr_assert_eq(errno, ERANGE);
  cr_assert_str_eq(small, "ren");
  cr_assert_eq(kz_cancel(g), 0); /* cancelled before it started: it never runs */
  cr_assert_eq(kz_join(g, NULL, 10), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(kz_set_name(g, "gone"), -1);
  cr_assert_eq(errno, EINVAL);
}

/* A plain OS thread (no hub) may cancel, detach and read another hub's
   green thread; it cannot join (not a green thread). */
static void *from_plain_thread(void *arg)
{
  kz_green_t g = (kz_green_t)(uintptr_t)arg;
  if (kz_state(g) < 0 || kz_join(g, NULL, 0) != -1 || errno != EPERM)
    return P(1);
  if (kz_cancel(g) != 0)
    return P(2);
  return P(0);
}

BOTH(a_thread_without_a_hub_reaches_them_too)
{
  pthread_t t;
  void *r;
  cr_assert_eq(kz_set_hubs(n), 0);
  kz_green_t g = spawn_on(KZ_HUB(1), sleeper, NULL);
  cr_assert_eq(pthread_create(&t, NULL, from_plain_thread, (void *)(uintptr_t)g), 0);
  cr_assert_eq(pthread_join(t, &r), 0); /* blocks the test's hub: g is on another */
  cr_assert_eq((intptr_t)r, 0);
  cr_assert_eq(kz_join(g, &r, 10), -1);
  cr_assert_eq(errno, ECANCELED);
}

/* A hub callback cannot wait for another hub: the calls that would wait
   fail with EPERM; cancelling and spawning there, which do not wait
   (hub/green.c, note E), work. */
struct in_cb {
  kz_green_t far, spawned;
  int state, state_err, cancel;
  atomic_int ran;
};

static void callback(void *arg)
{
  struct in_cb *c = arg;
  struct kz_spawn_opts o = on(KZ_HUB(1));
  c->state = kz_state(c->far);
  c->state_err = errno;
  c->spawned = kz_spawn_with(my_tid, NULL, &o);
  c->cancel = kz_cancel(c->far);
  atomic_store(&c->ran, 1);
}

BOTH(hub_callbacks_do_not_wait_for_other_hubs)
{
  struct in_cb c = {0};
  void *r;
  cr_assert_eq(kz_set_hubs(n), 0);
  c.far = spawn_on(KZ_HUB(1), sleeper, NULL);
  cr_assert_neq(kz_call_soon(callback, &c), 0);
  for (int i = 0; i < 100000 && !atomic_load(&c.ran); i++)
    kz_sleep(0.0001);
  cr_assert_eq(atomic_load(&c.ran), 1);
  cr_assert_eq(c.state, -1);
  cr_assert_eq(c.state_err, EPERM);
  cr_assert_neq(c.spawned, 0);
  cr_assert_eq(kz_join(c.spawned, &r, 10), 0);
  cr_assert_neq((long)(intptr_t)r, tid(), "it ran on hub 1");
  cr_assert_eq(c.cancel, 0);
  cr_assert_eq(kz_join(c.far, NULL, 10), -1);
  cr_assert_eq(errno, ECANCELED);
}

/* In kz_run: note the hub's main green thread (the OS thread's own). */
static void *run_main(void *arg)
{
  kz_green_t all[4];
  void *res;
  size_t n = kz_list(all, 4);
  for (size_t i = 0; i < n && i < 4; i++)
    if (all[i] != kz_self())
      *(kz_green_t *)arg = all[i];
  kz_green_t g = spawn_on(KZ_HUB_ANY, my_tid, NULL);
  if (kz_join(g, &res, 10) != 0)
    return P(1);
  return P(0);
}

/* Hub 0 lives on after the kz_run that created it returned: the set still
   leads to it (hub/hubs.c, note F). */
BOTH(hub_zero_outlives_its_kz_run)
{
  void *res;
  kz_green_t main_green = 0;
  cr_assert_eq(kz_set_hubs(n), 0);
  cr_assert_eq(kz_run(run_main, &main_green, &res), 0); /* creates this thread's hub */
  cr_assert_eq((intptr_t)res, 0);
  cr_assert_neq(main_green, 0);
  cr_assert_eq(kz_state(main_green), KZ_RUNNING, "the hub is still there");
  kz_green_t g = spawn_on(KZ_HUB(0), my_tid, NULL);
  cr_assert_eq(kz_join(g, &res, 10), 0);
  cr_assert_eq((long)(intptr_t)res, tid());
  for (unsigned k = 1; k < n; k++) {
    g = spawn_on(KZ_HUB(k), my_tid, NULL);
    cr_assert_eq(kz_join(g, &res, 10), 0);
  }
}

static void *yield_some(void *arg)
{
  for (intptr_t i = (intptr_t)arg % 7; i > 0; i--)
    kz_yield();
  return arg;
}

/* The races of hub/green.c, note H, shaken: joins with a timeout of 0,
   retried until they succeed, against targets that finish any moment on
   another hub; several joiners on two hubs at once.  Every join gets its
   target's own result exactly once, and every failed try leaves it
   joinable. */
static void *join_until_done(void *arg)
{
  intptr_t bad = 0;
  for (intptr_t i = 1; i <= 300; i++) {
    struct kz_spawn_opts o = on(KZ_HUB_ANY);
    kz_green_t g = kz_spawn_with(yield_some, P(i), &o);
    void *res = NULL;
    int r;
    if (!g)
      return P(-1);
    while ((r = kz_join(g, &res, 0)) == -1 && errno == ETIMEDOUT)
      kz_yield();
    if (r != 0 || res != P(i) || kz_state(g) != -1)
      bad++;
  }
  (void)arg;
  return P(bad);
}

BOTH(joins_racing_with_finishes)
{
  kz_green_t j[4];
  void *res;
  cr_assert_eq(kz_set_hubs(n), 0);
  for (unsigned i = 0; i < 4; i++)
    j[i] = spawn_on(i % 2 ? KZ_HUB(n - 1) : KZ_HUB_THIS, join_until_done, NULL);
  for (unsigned i = 0; i < 4; i++) {
    cr_assert_eq(kz_join(j[i], &res, 60), 0);
    cr_assert_eq((intptr_t)res, 0, "joiner %u: %ld bad joins", i, (long)(intptr_t)res);
  }
}
