/* monitor.c: the process-wide list of hubs, and the diagnostics thread on
 * it: the blocked-hub monitor (gevent's monitor thread and
 * max_blocking_time) and the dump signal.
 *
 * Every hub is on one process-wide list from creation to teardown (also
 * used to tell the other hubs of a close: io.c, note F).  When a
 * blocking threshold or a dump signal is configured (kz_monitor, or
 * KUDZU_MONITOR and KUDZU_DUMP_SIGNAL at the first hub's creation), one real
 * OS thread, with no hub, watches them:
 *
 *   - a hub whose loop has not made a pass for longer than the threshold,
 *     while it is not waiting in libev, is blocked: a green thread computes
 *     without yielding, or makes a call that blocks the OS thread.  The
 *     monitor says so once per stall, and signals the hub's thread, whose
 *     handler prints the running green thread's name and a backtrace of what
 *     it is doing;
 *   - the dump signal makes every hub write kz_dump() to stderr the next time
 *     it runs (a blocked hub is reported as such at once; one that has not
 *     run DUMP_WAIT after the request is reported then, with a backtrace of
 *     what it does instead, as the monitor reports one: note H).
 *
 * Notes.
 * A. Watching costs the hub nothing it did not do anyway: the monitor reads
 *    the loop-pass counter and the in-libev flag that the hub loop keeps
 *    (hub.c), with relaxed atomic loads.  A healthy hub makes a pass at least
 *    once per batch of ready green threads (hub.c, note C), so an unchanged
 *    count outside libev means nothing has switched back to the hub.
 * B. Only the blocked thread can unwind its own stack, so the backtrace is
 *    taken there, in a handler for BT_SIGNAL, run on the hub's alternate
 *    signal stack (debug.c) with SA_RESTART so that a call blocking the OS
 *    thread is resumed, not failed with EINTR.  libunwind's unw_init_local,
 *    unw_step and unw_get_proc_name are signal-safe for the local address
 *    space; the lines are formatted into a stack buffer and written with
 *    write(2).  libunwind's own calls into libc (the pipe it checks
 *    addresses with, its mutex) are the runtime's (sched.c, note H): a
 *    handler that interrupted a green thread must not have them take the
 *    shim's green paths.  If the program installs its own handler for
 *    BT_SIGNAL, the monitor notices and reports without a backtrace.
 * C. The dump signal's handler only increments a futex word and wakes the
 *    monitor (both async-signal-safe, no descriptor the program could close
 *    or reuse).  The monitor posts a dump message to each hub's mailbox; the
 *    hub runs it between passes, outside green threads, so kz_dump() sees
 *    every green thread suspended.  A global lock keeps two hubs' dumps from
 *    interleaving.
 * D. Teardown: a hub leaves the list (under its lock) before it is freed,
 *    and the monitor posts only under that lock, so no post reaches a freed
 *    hub.  A dump message already in the mailbox dies with the mailbox.
 * E. fork(): the child has only the forking thread.  Its list is reset to
 *    that thread's hub, if any, and the monitor thread is started again in
 *    the child when it ran in the parent.  After a fork of a process that
 *    never had another thread (kz__fork_threaded), the monitor never ran,
 *    no lock can be held and the list holds that hub alone: only the hub's
 *    thread id changes (each write in the child copies a page).
 * F. The monitor thread is a real OS thread with every signal blocked
 *    (kz__os_thread_start): handlers run on the program's own threads, and
 *    the shim passes its calls through since it has no hub.
 * G. It must not keep the process alive.  When the main thread leaves with
 *    pthread_exit, the process natively ends with its last own thread; the
 *    monitor, which nothing joins and no signal reaches, would keep it
 *    running (as a zombie main thread) forever.  So it ends then
 *    (kz__monitor_main_left, from worker.c's note G), and is not restarted.
 * H. A dump request is most wanted when a program seems stuck, and a hub
 *    whose green thread computes without yielding never runs the dump: with
 *    the dump signal alone, nothing at all was printed.  So a hub that has
 *    made no loop pass, outside libev, DUMP_WAIT seconds after its dump was
 *    posted is reported once, and its thread signalled for a backtrace of
 *    the running green thread (BT_SIGNAL's handler is installed along with
 *    the dump signal's).
 * I. Nothing is allocated while mon.lock is held: kz__hubs_post_others makes its messages first and
 *    frees the spare ones after.  Its callers (a descriptor's creation,
 *    classification or close: io.c, note F) can run where libc holds a
 *    lock of its own: glibc reads /proc/sys/vm/overcommit_memory while it
 *    trims a malloc arena, holding that arena's lock, and the read reached
 *    the shim, which classified the descriptor and told the other hubs.
 *    Allocating under mon.lock there gave two ways to deadlock: the
 *    allocation waited for an arena and, through the lock wait's walk of
 *    the stack (libunwind making its pipe through the shim), came back
 *    here for mon.lock, which its own thread held; and two threads each
 *    trimming an arena, each waiting for the other's arena while one held
 *    mon.lock, made an ABBA.  Now mon.lock is the innermost lock: taken
 *    with an arena held, never the other way round (posting takes no
 *    lock: kz__hub_post).  The walk no longer comes back either (sched.c, note H),
 *    and a file's classification tells no hub (preload/fd.c, note E).
 */
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef UNW_LOCAL_ONLY
#define UNW_LOCAL_ONLY
#endif
#include <libunwind.h>

#define BT_SIGNAL (SIGRTMAX - 2) /* note B */
#define BT_FRAMES 32
#define DUMP_TICK 1.0 /* seconds between checks when only the dump signal is set */
#define DUMP_WAIT 1.0 /* a hub that has not run a dump after this long is reported (note H) */

KZ_INTERNAL const char *kz__green_name(struct kz_green *g, char buf[24]);

static struct {
  pthread_mutex_t lock;          /* guards everything below but the atomics */
  struct kz__link hubs;          /* every live hub, by hub->watch.link */
  bool started;                  /* the monitor thread runs */
  double threshold;              /* seconds a hub may not run; <= 0: not watched */
  int dump_signal;               /* 0: none */
  struct sigaction old_dump;     /* the disposition the dump handler replaced */
  _Atomic unsigned dumps;        /* futex word: dump requests so far (note C) */
  _Atomic unsigned changes;      /* bumped when the configuration changes */
  _Atomic bool quit;             /* the main thread has left (note G) */
} mon = {.lock = PTHREAD_MUTEX_INITIALIZER, .hubs = {&mon.hubs, &mon.hubs}};

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER; /* note C */
static _Atomic size_t nhubs; /* on mon.hubs; read without the lock */

/* ---- The blocked thread's side (note B) ------------------------------------ */

static void bt_write(const char *s, size_t n) { (void)!kz__os_write(2, s, n); }

static void bt_handler(int sig, siginfo_t *si, void *ucv)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  /* libunwind's calls (and the lines' writes) are the runtime's (sched.c, note H) */
  struct kz_green *hidden = kz__runtime_enter();
  int saved = errno;
  unw_cursor_t cur;
  char line[320], nbuf[24];
  int n;
  (void)sig;
  (void)si;
  if (g)
    n = snprintf(line, sizeof line, "kudzu: monitor: blocked in green thread %u \"%s\":\n",
                 (unsigned)g->id, kz__green_name(g, nbuf));
  else
    n = snprintf(line, sizeof line, "kudzu: monitor: blocked on the hub's own context (a callback):\n");
  bt_write(line, (size_t)n);
  if (unw_init_local2(&cur, (unw_context_t *)ucv, UNW_INIT_SIGNAL_FRAME) == 0) {
    for (int i = 0; i < BT_FRAMES; i++) {
      unw_word_t ip = 0, off = 0;
      char name[200];
      unw_get_reg(&cur, UNW_REG_IP, &ip);
      if (!ip)
        break;
      if (unw_get_proc_name(&cur, name, sizeof name, &off) == 0)
        n = snprintf(line, sizeof line, "    #%-2d 0x%016lx %s+0x%lx\n", i, (unsigned long)ip, name,
                     (unsigned long)off);
      else
        n = snprintf(line, sizeof line, "    #%-2d 0x%016lx ?\n", i, (unsigned long)ip);
      bt_write(line, (size_t)n);
      if (unw_step(&cur) <= 0)
        break;
    }
  }
  kz__runtime_leave(hidden);
  errno = saved;
}

/* Whether BT_SIGNAL still reaches bt_handler (the program may have taken it). */
static bool bt_ours(void)
{
  struct sigaction cur;
  return kz__os_sigaction(BT_SIGNAL, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
         cur.sa_sigaction == bt_handler;
}

/* ---- Dumps (note C) ---------------------------------------------------------- */

static void dump_handler(int sig)
{
  int saved = errno;
  (void)sig;
  atomic_fetch_add_explicit(&mon.dumps, 1, memory_order_release);
  kz__syscall(SYS_futex, &mon.dumps, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  errno = saved;
}

/* Runs on the hub, between passes. */
static void dump_run(struct kz__post *p)
{
  struct kz__hub *hub = kz__container_of(p, struct kz__hub, watch.dump);
  kz__os_lock(&dump_lock);
  dprintf(2, "kudzu: dump of the hub of OS thread %d:\n", (int)hub->watch.tid);
  kz_dump(2);
  kz__os_unlock(&dump_lock);
  atomic_store_explicit(&hub->watch.dump_queued, false, memory_order_release);
}

/* Post a dump to every hub; mon.lock held. */
static void dump_all(double now)
{
  for (struct kz__link *l = mon.hubs.next; l != &mon.hubs; l = l->next) {
    struct kz__hub *hub = kz__container_of(l, struct kz__hub, watch.link);
    struct kz__hub_watch *w = &hub->watch;
    if (w->reported)
      kz__say("monitor: the hub of OS thread %d is blocked (%.3f s); its dump follows when it runs",
              (int)w->tid, now - w->seen_at);
    if (!atomic_exchange_explicit(&w->dump_queued, true, memory_order_acq_rel)) {
      w->dump_at = now;
      w->dump_pass = __atomic_load_n(&hub->pass, __ATOMIC_RELAXED);
      w->dump_late = w->reported;
      kz__hub_post(hub, &w->dump);
    }
  }
}

/* A hub that has not run its dump DUMP_WAIT after the request (note H). */
static void dump_late(struct kz__hub *hub, double now)
{
  struct kz__hub_watch *w = &hub->watch;
  if (w->dump_late || !atomic_load_explicit(&w->dump_queued, memory_order_acquire) ||
      now - w->dump_at < DUMP_WAIT || __atomic_load_n(&hub->in_loop, __ATOMIC_RELAXED) ||
      __atomic_load_n(&hub->pass, __ATOMIC_RELAXED) != w->dump_pass)
    return;
  w->dump_late = true;
  kz__say("monitor: the hub of OS thread %d has not run for %.3f s since the dump request "
          "(a green thread computes without yielding, or a call blocks the OS thread); "
          "its dump follows when it runs",
          (int)w->tid, now - w->dump_at);
  if (bt_ours())
    kz__syscall(SYS_tgkill, getpid(), w->tid, BT_SIGNAL);
}

/* ---- Watching (note A) --------------------------------------------------------- */

static void watch_one(struct kz__hub *hub, double now)
{
  struct kz__hub_watch *w = &hub->watch;
  uint64_t pass = __atomic_load_n(&hub->pass, __ATOMIC_RELAXED);
  if (__atomic_load_n(&hub->in_loop, __ATOMIC_RELAXED) || pass != w->seen_pass) {
    w->seen_pass = pass;
    w->seen_at = now;
    w->reported = false;
    return;
  }
  if (w->reported || now - w->seen_at < mon.threshold)
    return;
  w->reported = true;
  kz__say("monitor: the hub of OS thread %d has not run for %.3f s (threshold %.3f s)",
          (int)w->tid, now - w->seen_at, mon.threshold);
  if (bt_ours())
    kz__syscall(SYS_tgkill, getpid(), w->tid, BT_SIGNAL);
  else
    kz__say("monitor: no backtrace: the program handles signal %d itself", BT_SIGNAL);
}

/* Sleep until a dump request (the word moves from seen) or timeout seconds
   (< 0: no limit). */
static void monitor_sleep(unsigned seen, double timeout)
{
  struct timespec ts, *tp = NULL;
  if (timeout >= 0) {
    ts.tv_sec = (time_t)timeout;
    ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
    tp = &ts;
  }
  kz__syscall(SYS_futex, &mon.dumps, FUTEX_WAIT_PRIVATE, seen, tp, NULL, 0);
}

static void *monitor_main(void *arg)
{
  unsigned dumps = atomic_load_explicit(&mon.dumps, memory_order_acquire);
  (void)arg;
  for (;;) {
    double now, tick;
    unsigned d;
    kz__os_lock(&mon.lock);
    if (atomic_load_explicit(&mon.quit, memory_order_acquire)) { /* note G */
      mon.started = false;
      kz__os_unlock(&mon.lock);
      return NULL;
    }
    tick = mon.threshold > 0 ? mon.threshold / 4 : DUMP_TICK;
    now = kz__now();
    d = atomic_load_explicit(&mon.dumps, memory_order_acquire);
    if (mon.threshold > 0)
      for (struct kz__link *l = mon.hubs.next; l != &mon.hubs; l = l->next)
        watch_one(kz__container_of(l, struct kz__hub, watch.link), now);
    if (d != dumps) {
      dumps = d;
      dump_all(now);
    }
    if (mon.dump_signal)
      for (struct kz__link *l = mon.hubs.next; l != &mon.hubs; l = l->next)
        dump_late(kz__container_of(l, struct kz__hub, watch.link), now);
    kz__os_unlock(&mon.lock);
    monitor_sleep(dumps, tick);
  }
  return NULL;
}

/* ---- Configuration ---------------------------------------------------------- */

/* mon.lock held.  0 or -errno. */
static int start_locked(void)
{
  pthread_t t;
  int r;
  if (mon.started || atomic_load_explicit(&mon.quit, memory_order_acquire)) /* note G */
    return 0;
  if ((r = kz__os_thread_start(&t, monitor_main, NULL)) < 0)
    return r; /* never joined: it lives as long as the process */
  mon.started = true;
  return 0;
}

/* Install or remove the dump handler; mon.lock held.  0 or -errno. */
static int set_dump_signal(int sig)
{
  struct sigaction sa = {.sa_handler = dump_handler, .sa_flags = SA_RESTART};
  if (sig == mon.dump_signal)
    return 0;
  if (mon.dump_signal)
    kz__os_sigaction(mon.dump_signal, &mon.old_dump, NULL);
  mon.dump_signal = 0;
  if (!sig)
    return 0;
  sigemptyset(&sa.sa_mask);
  if (kz__os_sigaction(sig, &sa, &mon.old_dump) < 0)
    return -errno;
  mon.dump_signal = sig;
  return 0;
}

static void install_bt_handler(void)
{
  struct sigaction sa = {.sa_sigaction = bt_handler,
                         .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART};
  sigemptyset(&sa.sa_mask);
  kz__os_sigaction(BT_SIGNAL, &sa, NULL);
}

int kz_monitor(double max_blocking, int dump_signal)
{
  int r = 0, had_dump;
  if (max_blocking != max_blocking ||
      (max_blocking > 0 && (max_blocking < KZ__MONITOR_MIN || max_blocking > KZ__MONITOR_MAX)) ||
      dump_signal < 0 || dump_signal >= NSIG ||
      dump_signal == SIGKILL || dump_signal == SIGSTOP || dump_signal >= KZ__SIG_PREEMPT ||
      (dump_signal >= SIGRTMIN - 2 && dump_signal < SIGRTMIN)) {
    errno = EINVAL;
    return -1;
  }
  kz__os_lock(&mon.lock);
  had_dump = mon.dump_signal;
  if ((r = set_dump_signal(dump_signal)) < 0)
    goto out;
  /* when the first of the two starts: the dump signal wants backtraces too (note H) */
  if ((max_blocking > 0 || dump_signal) && mon.threshold <= 0 && !had_dump)
    install_bt_handler();
  mon.threshold = max_blocking > 0 ? max_blocking : 0;
  if (mon.threshold > 0 || mon.dump_signal)
    r = start_locked();
  atomic_fetch_add_explicit(&mon.changes, 1, memory_order_relaxed);
out:
  kz__os_unlock(&mon.lock);
  if (r < 0) {
    errno = -r;
    return -1;
  }
  /* Wake the monitor so a new threshold takes effect now. */
  kz__syscall(SYS_futex, &mon.dumps, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  return 0;
}

/* The environment, read once at the first hub's creation (parse.h). */
static void configure_from_env(void)
{
  const char *t = secure_getenv("KUDZU_MONITOR"), *d = secure_getenv("KUDZU_DUMP_SIGNAL"), *why;
  double threshold = 0;
  int sig = 0;
  if (t && *t && (why = kz__parse_seconds(t, KZ__MONITOR_MIN, KZ__MONITOR_MAX, &threshold)))
    kz__say("ignoring KUDZU_MONITOR=%s: %s (accepted: %g to %.0f seconds)", t, why, KZ__MONITOR_MIN,
            KZ__MONITOR_MAX);
  if (d && *d && (why = kz__parse_signal(d, &sig)))
    kz__say("ignoring KUDZU_DUMP_SIGNAL=%s: %s (accepted: " KZ__SIGNAL_FORM ")", d, why);
  if ((threshold > 0 || sig) && kz_monitor(threshold, sig) < 0)
    kz__say("cannot start the monitor: %s", strerror(errno));
}

/* Note E. */
static void monitor_atfork_child(void)
{
  struct kz__hub *hub = kz__tls_hub;
  if (!kz__fork_threaded()) {
    if (hub)
      hub->watch.tid = (pid_t)kz__syscall(SYS_gettid);
    return;
  }
  pthread_mutex_init(&mon.lock, NULL);
  pthread_mutex_init(&dump_lock, NULL);
  kz__list_init(&mon.hubs);
  atomic_store(&nhubs, hub ? 1 : 0);
  if (hub) {
    hub->watch.tid = (pid_t)kz__syscall(SYS_gettid);
    atomic_store(&hub->watch.dump_queued, false);
    kz__list_push(&mon.hubs, &hub->watch.link);
  }
  if (mon.started) {
    mon.started = false;
    start_locked();
  }
}

void kz__monitor_main_left(void)
{
  atomic_store_explicit(&mon.quit, true, memory_order_release);
  atomic_fetch_add_explicit(&mon.dumps, 1, memory_order_release); /* the futex word moves */
  kz__syscall(SYS_futex, &mon.dumps, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void kz__monitor_init(void)
{
  pthread_atfork(NULL, NULL, monitor_atfork_child);
  configure_from_env();
}

void kz__monitor_add(struct kz__hub *hub)
{
  struct kz__hub_watch *w = &hub->watch;
  w->tid = (pid_t)kz__syscall(SYS_gettid);
  w->dump.fn = dump_run;
  w->seen_at = kz__now();
  kz__os_lock(&mon.lock);
  kz__list_push(&mon.hubs, &w->link);
  atomic_fetch_add_explicit(&nhubs, 1, memory_order_relaxed);
  kz__os_unlock(&mon.lock);
}

struct kz__hub *kz__monitor_post_to_owner(int fd, struct kz__post *p)
{
  struct kz__hub *found = NULL;
  kz__os_lock(&mon.lock); /* a hub leaves the list before it is freed */
  for (struct kz__link *l = mon.hubs.next; l != &mon.hubs && !found; l = l->next) {
    struct kz__hub *hub = kz__container_of(l, struct kz__hub, watch.link);
    if (hub->wake_fd == fd || hub->backend_fd == fd)
      found = hub;
  }
  if (found)
    kz__hub_post(found, p);
  kz__os_unlock(&mon.lock);
  return found;
}

void kz__monitor_remove(struct kz__hub *hub)
{
  kz__os_lock(&mon.lock);
  kz__list_remove(&hub->watch.link);
  atomic_fetch_sub_explicit(&nhubs, 1, memory_order_relaxed);
  kz__os_unlock(&mon.lock);
}

size_t kz__hubs_count(void) { return atomic_load_explicit(&nhubs, memory_order_relaxed); }

/* The hubs on the list but self; mon.lock held. */
static size_t others_locked(const struct kz__hub *self)
{
  size_t n = 0;
  for (struct kz__link *l = mon.hubs.next; l != &mon.hubs; l = l->next)
    n += kz__container_of(l, struct kz__hub, watch.link) != self;
  return n;
}

/* Notes D and I: the messages are made before mon.lock is taken (again,
   with more, if hubs came meanwhile), posted under it, so no hub can be
   freed meanwhile, and the ones left over are dropped after it. */
void kz__hubs_post_others(struct kz__hub *self, struct kz__post *(*make)(void *arg),
                          void (*drop)(struct kz__post *p), void *arg)
{
  struct kz__post *spare = NULL, *p;
  size_t have = 0, want = atomic_load_explicit(&nhubs, memory_order_relaxed);
  if (self && want > 0)
    want--; /* self is on the list: a first guess, checked under the lock */
  bool short_of_memory = false;
  for (;;) {
    while (have < want && !short_of_memory) {
      if ((p = make(arg))) {
        p->next = spare;
        spare = p;
        have++;
      } else {
        short_of_memory = true; /* make said so; the hubs beyond go without */
      }
    }
    kz__os_lock(&mon.lock);
    if ((want = others_locked(self)) <= have || short_of_memory)
      break;
    kz__os_unlock(&mon.lock);
  }
  for (struct kz__link *l = mon.hubs.next; l != &mon.hubs && spare; l = l->next) {
    struct kz__hub *hub = kz__container_of(l, struct kz__hub, watch.link);
    if (hub == self)
      continue;
    p = spare;
    spare = p->next;
    kz__hub_post(hub, p);
  }
  kz__os_unlock(&mon.lock);
  for (; spare; spare = p) {
    p = spare->next;
    drop(spare);
  }
}

/* Note D: under mon.lock, no hub can be freed meanwhile. */
void kz__hubs_each(void (*fn)(struct kz__hub *hub, void *arg), void *arg)
{
  kz__os_lock(&mon.lock);
  for (struct kz__link *l = mon.hubs.next; l != &mon.hubs; l = l->next)
    fn(kz__container_of(l, struct kz__hub, watch.link), arg);
  kz__os_unlock(&mon.lock);
}
