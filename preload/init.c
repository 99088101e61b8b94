/* init.c: start-up of the shim: configuration from the environment, the
 * table of real functions, the main thread's hub, statistics at exit.
 *
 * Notes.
 * A. Configuration is read with secure_getenv, and a process started with
 *    AT_SECURE (set-user-ID, set-group-ID, file capabilities) ignores every
 *    KUDZU_* variable and stays passive: every call passes straight through.
 * B. The main thread becomes the hub's main green thread here, before main()
 *    runs, so its blocking calls park like any other green thread's while
 *    green threads spawned later (by the API, or by pthread_create under the
 *    thread family) run.  exit(), atexit handlers and stdio flushing are
 *    untouched: they run on the main thread as usual.
 * C. Statistics are printed by an atexit handler registered before main,
 *    summed over every hub, then hub by hub when there are several (each
 *    hub's counts are on its own OS thread: the shim's counters in that
 *    thread's TLS, found from the hub's thread pointer; its own spawns and
 *    preemptions in the hub); it runs after the program's own, which may
 *    have closed stderr
 *    (coreutils' close_stdout does): they go to a copy of stderr made at
 *    start-up, one of the runtime's descriptors (hub/rtfd.c), so the low
 *    numbers a program may expect to be free stay free and the program's
 *    closefrom() spares it.
 * D. Fairness.  Green threads switch where they wait; a green thread that
 *    never waits holds its hub, timers included, as in gevent.  Natively
 *    the kernel's scheduler preempts it, and programs rely on that in one
 *    common way: a thread waiting for a lock with a timeout asks the holder
 *    to let go when the timeout fires (CPython's interpreter lock, 5 ms),
 *    while the holder computes and calls nothing that waits (CPython's
 *    test_signal: signal.signal or signal.raise_signal in a loop).  So
 *    every interposed call, even one that does not wait, is counted
 *    (shim_active, kz_shim_switch_point), and every KZ_SHIM_FAIR_CALLS of
 *    them the caller yields to the hub if nothing has switched on the hub
 *    since the previous check: the same green thread is running, the hub
 *    has not polled, and no direct switch was made (the hub's budget is
 *    unchanged).  A starved hub runs its timers within that many calls.
 *    A busy hub is never disturbed: it switches on every wait, and the
 *    batch of green threads one poll woke runs to its end before the next
 *    poll (docs/ARCHITECTURE.md, Scheduling); a check that only asked
 *    whether the hub had polled made a thousand echo connections poll
 *    mid-batch and lose a quarter of their requests.  The cost in a call
 *    is one increment and one test of a thread-local counter.  A thread
 *    that computes without calling anything is preempted instead
 *    (hub/preempt.c): note E.
 * E. Preemption.  Threads (the main green thread and those pthread_create
 *    makes) that compute a whole slice of CPU time without switching are
 *    made to yield where they compute, as the kernel would (hub/preempt.c
 *    says how and where it is safe).  The slice is KZ_SHIM_SLICE, Go's
 *    10 ms, unless KUDZU_PREEMPT says otherwise (0: never).  Without the
 *    thread family no thread is a green thread but the main one, and the
 *    green threads the program spawns through the API are cooperative by
 *    contract: nothing is preempted then.
 */
#include "shim.h"
#include "parse.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/auxv.h>

struct kz_shim_config kz_shim = {.patch = KZ_PATCH_ALL};
KZ_TLS struct kz_shim_stats kz_shim_stats_tls;
/* The hub's state at the last fairness check (note D): the OS thread's
   (hub/tls.c, note D), reached through kz__os_tls. */
static KZ_TLS struct {
  struct kz_green *current; /* the green thread running */
  uint64_t pass;            /* the hub's loop passes */
  size_t budget;            /* its direct switches left */
} fair;
void (*kz_shim_on_cancel)(void);

void kz_shim_fair(void)
{
  struct kz__hub *hub = kz__tls_hub;
  __typeof__(fair) *f = kz__os_tls(&fair);
  if (hub->current == f->current && hub->pass == f->pass && hub->budget == f->budget)
    kz__yield_poll(); /* nothing else has run for KZ_SHIM_FAIR_CALLS calls */
  f->current = hub->current;
  f->pass = hub->pass;
  f->budget = hub->budget;
}

static const struct {
  const char *name;
  unsigned bits;
} families[] = {
    {"all", KZ_PATCH_ALL},     {"io", KZ_PATCH_IO},         {"socket", KZ_PATCH_IO},
    {"poll", KZ_PATCH_POLL},   {"select", KZ_PATCH_POLL},   {"sleep", KZ_PATCH_SLEEP},
    {"time", KZ_PATCH_SLEEP},  {"thread", KZ_PATCH_THREAD}, {"dns", KZ_PATCH_DNS},
    {"proc", KZ_PATCH_PROC},   {"subprocess", KZ_PATCH_PROC}, {"ipc", KZ_PATCH_IPC},
    {"libc", KZ_PATCH_LIBC},
};

/* "all", "io,sleep", "-thread", "all,-thread": a list applied left to right
   to an empty set; a list of only removals starts from "all". */
static unsigned parse_patch(const char *s)
{
  unsigned set = 0;
  bool added = false;
  char buf[256], *save = NULL, *tok;
  snprintf(buf, sizeof buf, "%s", s);
  for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    bool minus = *tok == '-';
    const char *name = tok + (minus || *tok == '+');
    size_t i;
    for (i = 0; i < sizeof families / sizeof *families; i++)
      if (!strcmp(name, families[i].name))
        break;
    if (i == sizeof families / sizeof *families) {
      kz__say("KUDZU_PATCH: unknown family \"%s\" (all, io, poll, sleep, thread, dns, proc, ipc, libc)", name);
      continue;
    }
    if (minus) {
      if (!added)
        set = KZ_PATCH_ALL, added = true;
      set &= ~families[i].bits;
    } else {
      set |= families[i].bits;
      added = true;
    }
  }
  return added ? set : KZ_PATCH_ALL;
}

static bool flag(const char *name)
{
  const char *v = secure_getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Preemption's veto (hub/preempt.c, note C): never inside the program's
   signal handler, which the shim's wrapper is running. */
static bool may_preempt(void) { return !kz_shim_in_handler; }

/* KUDZU_PREEMPT: the slice, in seconds of CPU time; 0 turns it off. */
static void config_preempt(void)
{
  const char *v = secure_getenv("KUDZU_PREEMPT"), *why;
  double slice = KZ_SHIM_SLICE;
  if (v && *v && ((why = kz__parse_seconds(v, 0, KZ__PREEMPT_MAX, &slice)) ||
                  (slice > 0 && slice < KZ__PREEMPT_MIN && (why = "out of range")))) {
    kz__say("ignoring KUDZU_PREEMPT=%s: %s (accepted: 0, or %g to %g seconds)", v, why, KZ__PREEMPT_MIN,
            KZ__PREEMPT_MAX);
    slice = KZ_SHIM_SLICE;
  }
  if (kz_shim.patch & KZ_PATCH_THREAD) /* else no thread is a green thread but main */
    kz__preempt_config(slice, may_preempt);
}

static struct kz__hub *main_hub;
static int stats_fd = 2; /* note C */

/* One hub's counts for the statistics (note C). */
struct hub_stats {
  pid_t tid;                  /* its OS thread */
  struct kz_shim_stats shim;  /* the shim's counters of that OS thread */
  unsigned long long spawned; /* green threads spawned on it, the program's */
  unsigned long preempted;
};

#define STATS_HUBS KZ__HUBS_MAX /* hubs with a line of their own, at most */

static struct {
  size_t n;                       /* hubs seen */
  struct hub_stats sum;           /* all of them */
  struct hub_stats hub[STATS_HUBS]; /* each of the first STATS_HUBS */
} stats;

/* Counters another thread may be incrementing (plain increments): a word
   read whole, a moment's value. */
static unsigned long peek(const unsigned long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* kz__hubs_each's step: one hub's counts, under the hub list's lock.  The
   shim's counters are the hub's OS thread's own TLS block: at the same
   offset from its thread pointer (hub->home_tp) as ours from ours, since
   they are initial-exec TLS.  An extra hub (a remote hub: hubs.c) runs its
   own kz_run green thread, spawned there and not the program's. */
static void stats_add(struct kz__hub *hub, void *arg)
{
  const struct kz_shim_stats *c =
      (const void *)((char *)hub->home_tp + ((char *)&kz_shim_stats_tls - (char *)__builtin_thread_pointer()));
  unsigned long long spawned = __atomic_load_n(&hub->nspawned, __ATOMIC_RELAXED);
  struct hub_stats h = {.tid = hub->watch.tid,
                        .shim = {peek(&c->calls), peek(&c->parks), peek(&c->eintr), peek(&c->worker)},
                        .spawned = spawned - (hub != main_hub && hub->in_run && spawned > 0),
                        .preempted = peek(&hub->preempts)};
  (void)arg;
  stats.sum.shim.calls += h.shim.calls;
  stats.sum.shim.parks += h.shim.parks;
  stats.sum.shim.eintr += h.shim.eintr;
  stats.sum.shim.worker += h.shim.worker;
  stats.sum.spawned += h.spawned;
  stats.sum.preempted += h.preempted;
  if (stats.n < STATS_HUBS)
    stats.hub[stats.n] = h;
  stats.n++;
}

static void stats_line(const char *who, const struct hub_stats *h)
{
  dprintf(stats_fd,
          "kudzu: pid %d, %s: %lu interposed calls in green threads, %lu parks, "
          "%lu interrupted by signals, %lu on worker threads; %llu green threads spawned, "
          "%lu preempted\n",
          (int)getpid(), who, h->shim.calls, h->shim.parks, h->shim.eintr, h->shim.worker, h->spawned,
          h->preempted);
}

/* Every hub's counts, summed (the main thread's hub alone is the main
   thread's line, as with one hub), then one line per hub when there are
   several.  Green threads run on the hub of the OS thread that counts
   them; a thread that is not a hub counts nothing (its calls pass
   through). */
static void print_stats(void)
{
  char who[64];
  stats.n = 0;
  stats.sum = (struct hub_stats){0};
  kz__hubs_each(stats_add, NULL);
  if (stats.n <= 1) {
    stats_line("main thread", &stats.sum);
    return;
  }
  snprintf(who, sizeof who, "%zu hubs", stats.n);
  stats_line(who, &stats.sum);
  for (size_t i = 0; i < stats.n && i < STATS_HUBS; i++) {
    snprintf(who, sizeof who, "hub %zu (OS thread %d%s)", i + 1, (int)stats.hub[i].tid,
             stats.hub[i].tid == getpid() ? ", the main thread" : "");
    stats_line(who, &stats.hub[i]);
  }
  if (stats.n > STATS_HUBS)
    dprintf(stats_fd, "kudzu: pid %d, ... and %zu more hubs\n", (int)getpid(), stats.n - STATS_HUBS);
}

int kz_shim_give_fd(int fd)
{
  int moved;
  if (fd != stats_fd || fd == 2 || (moved = kz__rtfd_dup(fd, NULL)) < 0)
    return -1;
  kz__rtfd_drop(fd);
  stats_fd = moved; /* the program's dup2 closes the old number */
  return 0;
}

__attribute__((constructor(101))) static void kz_shim_init(void)
{
  const char *patch;
  int err = 0;
  kz_shim_real_init();
  if (getauxval(AT_SECURE)) /* note A */
    return;
  if ((patch = secure_getenv("KUDZU_PATCH")))
    kz_shim.patch = parse_patch(patch);
  kz_shim.debug = flag("KUDZU_DEBUG");
  kz_shim.stats = flag("KUDZU_STATS");
  kz_shim.torture = flag("KUDZU_TORTURE");
  kz_shim_patch_libc(); /* before the hub: no other thread may exist (patch.c) */
  config_preempt();
  kz__hubs_config_hold(true); /* KUDZU_HUBS is libkudzu's (hub/hubs.c, note C) */
  struct kz__hub *hub = main_hub = kz__hub_get(&err);
  if (!hub) { /* note B */
    kz__say("cannot create the main thread's hub (%s); running unpatched", strerror(-err));
    return;
  }
  if (kz_shim.stats) { /* note C */
    int fd = kz__rtfd_adopt(REAL(fcntl)(2, F_DUPFD_CLOEXEC, 3));
    stats_fd = fd >= 0 ? fd : 2;
    atexit(print_stats);
  }
  if (kz_shim.debug)
    kz__say("shim active in pid %d: families %#x", (int)getpid(), kz_shim.patch);
  /* The io family sees the descriptors the program creates and forgets
     their numbers on the hub (fd.c, note E): watchers may stay armed
     between waits (hub/io.c, note E). */
  kz__fd_sticky = (kz_shim.patch & KZ_PATCH_IO) != 0;
  kz_shim.ready = true;
}
