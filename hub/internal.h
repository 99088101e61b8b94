/* internal.h: kz__ declarations shared across the files of libkudzu and the
 * preload shim.  Never included from include/.
 *
 * Conventions: internal functions return 0 / a value >= 0, or -errno.  Public
 * functions (kz_*) convert with kz__fail_errno() in one place.  "Hub thread
 * only" means: call it on the OS thread that owns the hub.  "May switch"
 * means other green threads can run before the call returns.
 */
#ifndef KZ_INTERNAL_H
#define KZ_INTERNAL_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include <ev.h>

#include "kudzu.h"
#include "switch.h"

/* kz__ functions are shared by libkudzu's files and the preload shim
   (libkudzu-preload links against libkudzu so that a program using both
   has one runtime).  They are exported in the version node KUDZU_PRIVATE
   (hub/libkudzu.map): not API, no compatibility promise. */
#define KZ_INTERNAL __attribute__((visibility("default")))
#include "parse.h" /* shared with the launcher */
#define KZ_LIKELY(x) __builtin_expect(!!(x), 1)
#define KZ_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Thread-locals read on every interposed call: the library is loaded at
   start-up (a dependency of the program or of the preload), so the static
   TLS model is available and avoids __tls_get_addr. */
#define KZ_TLS __thread __attribute__((tls_model("initial-exec")))

#define kz__container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ---- Intrusive lists ---------------------------------------------------- */

/* A circular doubly linked list node; a lone node points at itself. */
struct kz__link {
  struct kz__link *prev, *next;
};

static inline void kz__list_init(struct kz__link *l) { l->prev = l->next = l; }
static inline bool kz__list_empty(const struct kz__link *l) { return l->next == l; }
static inline void kz__list_push(struct kz__link *head, struct kz__link *n)
{
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
static inline void kz__list_remove(struct kz__link *n)
{
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

/* Ask for the cache lines of [p, p + n) ahead of their use, for writing
   (prefetchw; a no-op on processors without it): lines another CPU
   holds then come in together, where the accesses one after another
   would wait for each in turn (green.c, note K). */
static inline void kz__prefetch(const void *p, size_t n)
{
  for (uintptr_t a = (uintptr_t)p & ~(uintptr_t)63; a < (uintptr_t)p + n; a += 64)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)a));
}

/* A bounded list of free objects of one kind shared by every OS thread,
   for memory one thread allocates and another frees: through malloc the
   two would meet on its arena's lock at every object (tls.c, note K).  A
   spinlock guards a push or a pop; an object is linked through its first
   word.  kz__depot_reserve counts an object in before it is pushed, so
   work on it can be done outside the lock; a fork child calls
   kz__depot_forked (another thread may have held the lock). */
struct kz__depot {
  _Atomic bool lock;
  void *head;
  unsigned n;   /* listed, and reserved */
  unsigned max;
};

static inline void kz__depot_lock(struct kz__depot *d)
{
  while (atomic_exchange_explicit(&d->lock, true, memory_order_acquire))
    while (atomic_load_explicit(&d->lock, memory_order_relaxed))
      __builtin_ia32_pause();
}
static inline void kz__depot_unlock(struct kz__depot *d)
{
  atomic_store_explicit(&d->lock, false, memory_order_release);
}
/* Room for one more (then push it), or false: full. */
static inline bool kz__depot_reserve(struct kz__depot *d)
{
  bool room;
  kz__depot_lock(d);
  if ((room = d->n < d->max))
    d->n++;
  kz__depot_unlock(d);
  return room;
}
static inline void kz__depot_push(struct kz__depot *d, void *obj)
{
  kz__depot_lock(d);
  *(void **)obj = d->head;
  d->head = obj;
  kz__depot_unlock(d);
}
/* obj in, in one step, or false: full. */
static inline bool kz__depot_put(struct kz__depot *d, void *obj)
{
  bool room;
  kz__depot_lock(d);
  if ((room = d->n < d->max)) {
    d->n++;
    *(void **)obj = d->head;
    d->head = obj;
  }
  kz__depot_unlock(d);
  return room;
}
static inline void *kz__depot_pop(struct kz__depot *d)
{
  void *obj;
  kz__depot_lock(d);
  if ((obj = d->head)) {
    d->head = *(void **)obj;
    d->n--;
  }
  kz__depot_unlock(d);
  return obj;
}
static inline void kz__depot_forked(struct kz__depot *d)
{
  if (atomic_load_explicit(&d->lock, memory_order_relaxed)) /* written only then: no page copied */
    atomic_store_explicit(&d->lock, false, memory_order_relaxed);
}

/* ---- Green threads -------------------------------------------------------- */

struct kz__hub;

/* A message posted to a hub from any thread (kz__hub_post). */
struct kz__post {
  struct kz__post *next;            /* intrusive, owned by the hub until run */
  void (*fn)(struct kz__post *p);   /* runs on the hub thread, outside green threads */
};

/* A parked green thread's entry in a wait queue.  Lives on the waiter's stack.
   In a queue of one hub (kz__waitq_wait) the waiter unlinks it after kz__park
   returns, whatever woke it, and only link, g and data are used.  In the
   queue of an object any OS thread uses (kz__xwait_park, sched.c note F) the
   object's lock guards link, and the fields below carry the wake. */
struct kz__waiter {
  struct kz__link link;  /* in the queue; self-linked when not queued */
  struct kz_green *g;    /* who waits */
  void *data;            /* what the waker hands over (queues), or NULL */
  struct kz__hub *hub;   /* g's hub, where the wake must land */
  int r;                 /* the result the claiming waker gives the wait */
  _Atomic int state;     /* KZ__W_* (sched.c, note F) */
  struct kz__post post;  /* the wake, sent to hub from another OS thread */
};

/* A FIFO of waiters. */
struct kz__waitq {
  struct kz__link head;
};

/* What a parked green thread waits on, for kz_dump and the gdb extension
   (gdb/kudzu-gdb.py, which reads these fields by name). */
enum kz__wait_kind {
  KZ__WAIT_NONE,
  KZ__WAIT_SLEEP,  /* timer only */
  KZ__WAIT_FD,     /* arg = descriptor, arg2 = events */
  KZ__WAIT_JOIN,   /* arg2 = handle joined */
  KZ__WAIT_SYNC,   /* a lock, event, queue...: what names it, arg2 = its address or 0 */
  KZ__WAIT_REMOTE, /* another OS thread (worker, future) */
  KZ__WAIT_YIELD,  /* not parked: ready to run */
};

struct kz__wait_info {
  uint8_t kind;     /* enum kz__wait_kind */
  int arg;          /* descriptor */
  uint64_t arg2;    /* events, or a handle */
  const char *what; /* static description for KZ__WAIT_SYNC */
};

/* Flags of a green thread. */
enum {
  KZ__G_MAIN = 1 << 0,       /* the hub's main green thread (OS thread's stack) */
  KZ__G_DETACHED = 1 << 1,   /* released when it finishes */
  KZ__G_JOINING = 1 << 2,    /* a kz_join is waiting on it */
  KZ__G_CANCEL = 1 << 3,     /* cancellation requested */
  KZ__G_OWN_STRUCT = 1 << 4, /* struct malloc'd, not at the top of its stack */
  KZ__G_FAILED = 1 << 5,     /* finished with kz_fail */
  KZ__G_STARTED = 1 << 6,    /* its function has been entered */
  KZ__G_NO_CANCEL = 1 << 7,  /* cancellation deferred (cleanup code) */
};

/* A stack: [guard page][usable ... top).  Owned by stack.c. */
struct kz__stack {
  char *base;      /* lowest usable byte (above the guard, if any) */
  size_t size;     /* usable bytes */
  uint32_t vg_id;  /* Valgrind's stack id, 0 if none */
  uint8_t guard;   /* enum kz__guard of this stack */
  uint8_t pooled;  /* from a slab of default-size stacks (recycled) */
  uint8_t user;    /* supplied by the program: never freed by kudzu */
  uint8_t depot;   /* pooled in the depot, not a hub's cache (stack.c, note G) */
};

/* A green thread's signals (sigmask.c; the shim's preload/signal.c acts on
   them).  Signal s is bit s-1, as in the kernel's mask. */
struct kz__green_sig {
  uint64_t mask;     /* the signals it blocks, if own (kz__sig_owner) */
  uint64_t pend;     /* sent to it (pthread_kill) while it blocks them, if own */
  uint32_t park;     /* bumped at each park of an interposed call (signal.c) */
  uint32_t req;      /* park a handler interrupted (EINTR to give), 0: none */
  uint32_t handled;  /* handlers run on its behalf (pause, sigsuspend) */
  uint64_t waiting;  /* signals it waits for in sigwait and the like */
  uint8_t intr;      /* enum kz_shim_intr of the call it is parked in, 0: none */
  uint8_t own;       /* a thread with a mask of its own; else mask and pend are unused */
};

/* Green thread states (enum kz_state) plus the internal ones. */
enum {
  KZ__S_READY = 16, /* started and in the run queue */
  KZ__S_GONE = 17,  /* left behind in a fork child: never runs again (kz__green_forget) */
  KZ__S_AWAY = 18,  /* in a system call on the OS thread its hub left (handoff.c) */
};

/* A green thread.  For stacks kudzu allocates, this struct lives at the top
   of the stack itself: an idle green thread then costs one page of stack plus
   its handle slot.  The fields a park, a wake and a resume touch fill the
   first two cache lines, which the scheduler prefetches (sched.c note E). */
struct kz_green {
  void *sp;                   /* saved stack pointer while not running */
  int err;                    /* saved errno while not running */
  uint8_t state;              /* enum kz_state, or KZ__S_READY */
  uint8_t flags;              /* KZ__G_* */
  int16_t wake;               /* why the last park ended: 0 or -errno */
  struct kz_green *run_next;  /* next in the hub's run queue */
  void *run_next_sp;          /* run_next's sp when it was queued (sched.c note E) */
  struct kz__hub *hub;        /* the hub it belongs to */
  void *tp;                   /* its own thread pointer (tls.c), or NULL: the OS thread's */
  struct kz__wait_info waiting; /* what it is parked on, for kz_dump */
  /* second cache line */
  ev_timer timer;             /* park deadline, or delayed start */
  double deadline;            /* scoped deadline (kz__now seconds), or 0: none */
  double until;               /* deadline of the current park (kz__now seconds) */
  /* touched when it starts or finishes, or rarely */
  kz_green_t id;              /* its handle */
  kz_fn fn;                   /* body */
  void *arg;                  /* body's argument */
  void *result;               /* return value once finished */
  int error;                  /* kz_fail's error once finished */
  struct kz__link all;        /* in hub->all */
  struct kz__waitq joiners;   /* kz_join waiting for it to finish */
  struct kz__link done_hooks; /* struct kz__done_hook, run when it finishes */
  struct kz__stack stack;     /* its stack (none for the main green thread) */
  void *ext;                  /* per-green data of the shim (pthread emulation) */
  void *ext_room;             /* kz__ext_size bytes under the struct for it, or NULL (green.c, note L) */
  void *handoff;              /* the spare that took its hub over, once (handoff.c) */
  struct kz__green_sig sig;   /* its own signal mask (sigmask.c) */
  struct kz__post adopt;      /* made by another hub: the message that hands it over (green.c, note E) */
  unsigned adopt_gen;         /* kz__hubs_forks() when it was made */
#ifdef KZ_ASAN
  void *asan_fake;            /* ASan fake stack while switched out */
  const void *asan_bottom;    /* stack bounds for the fiber API */
  size_t asan_size;
#endif
  char name[16];              /* NUL-terminated */
};

/* Runs when a green thread finishes, in its context just before it leaves
   for good; must not block. */
struct kz__done_hook {
  struct kz__link link;
  void (*fn)(struct kz__done_hook *h, struct kz_green *g);
};

/* ---- The hub ---------------------------------------------------------------- */

/* What the diagnostics thread knows of a hub (monitor.c).  The monitor's
   fields are the monitor thread's, under its lock; dump and dump_queued are
   the dump message and whether it is in the hub's mailbox. */
struct kz__hub_watch {
  struct kz__link link;         /* on the monitor's list of live hubs */
  int tid;                      /* the hub's OS thread, for tgkill */
  uint64_t seen_pass;           /* hub->pass when last seen to move */
  double seen_at;               /* kz__now() then */
  bool reported;                /* this stall has been reported */
  struct kz__post dump;         /* the dump message (runs kz_dump on the hub) */
  _Atomic bool dump_queued;     /* dump is posted and has not run yet */
  double dump_at;               /* kz__now() when it was posted */
  uint64_t dump_pass;           /* hub->pass then */
  bool dump_late;               /* the hub has been reported as not running it */
};

/* The signal masks of a hub's green threads, summed up (sigmask.c), and
   the shim's deliveries of signals to them (preload/signal.c). */
struct kz__hub_sig {
  uint32_t block[64];        /* per signal (index s-1): how many of them block it */
  uint32_t n;                /* how many are counted: the threads (sig.own) not finished */
  uint32_t nmasked;          /* how many of them have a mask that is not empty */
  uint64_t any;              /* the signals whose block count is not 0 */
  uint64_t os;               /* what sigmask.c has blocked on the OS thread */
  uint64_t lag;              /* of those, what it has yet to unblock (sigmask.c, note D) */
  uint64_t keep;             /* what the shim keeps blocked there besides (signal waits) */
  uint32_t held[64];         /* per signal: green threads waiting for it (preload/sigwait.c) */
  /* delivery, preload/signal.c */
  struct kz__post post;      /* runs the deliveries below on the hub context */
  _Atomic int posted;        /* post is in the mailbox */
  _Atomic uint64_t deferred; /* signals taken by a handler and held for the hub context */
  kz_green_t deferred_to[64]; /* the green thread each is for, 0: any that takes it */
  siginfo_t info[64];        /* what came with each */
  kz_green_t wake[16];       /* green threads a handler interrupted (a hint: sig.req) */
  volatile unsigned nwake;   /* entries in wake; more: look at every green thread */
  struct kz_green *direct;   /* who a signal sent to this very thread is for */
  int direct_sig;            /* that signal */
};

struct kz__fdtab; /* io.c */
struct kz__stack_cache; /* stack.c */

/* What the preemption tick saw of a hub (preempt.c, note B). */
struct kz__preempt_seen {
  struct kz_green *current;
  uint64_t pass;
  size_t budget;
  unsigned ticks; /* ticks in a row that saw the same */
};

/* One per OS thread that uses kudzu: the scheduler, its event loop, stacks,
   descriptor watchers and the mailbox other threads post to. */
struct kz__hub {
  struct kz_green *current;     /* running green thread, or NULL on the hub context */
  void *sp;                     /* hub context's saved stack pointer */
  int err;                      /* hub context's saved errno */
  int *errnop;                  /* this OS thread's errno (cached __errno_location) */
  void *os_tp;                  /* the hub context's thread pointer: its OS thread's own
                                   descriptor (tls.c), home_tp but while the main green
                                   thread is handed off (handoff.c, note G) */
  void *home_tp;                /* the descriptor libc made for its first OS thread: the
                                   main green thread's, where the runtime's per-OS-thread
                                   state lives (tls.c, note D) */
  void *tp;                     /* the thread pointer loaded now: os_tp or a green's */
  struct kz_green *run_head;    /* run queue (FIFO, singly linked) */
  struct kz_green *run_tail;
  size_t nready;                /* how many are on it */
  size_t budget;                /* direct switches left before the loop polls */
  struct ev_loop *loop;         /* its own loop, never libev's default one */
  struct kz_green *main;        /* the OS thread's own green thread */
  struct kz_green *prev;        /* the context that switched to the current one */
  struct kz__link all;          /* every unfinished green thread (kz_list, kz_dump) */
  size_t nlive;                 /* how many are on it, the main one included */
  _Atomic size_t taken;         /* of those other hubs made for it, how many it adopted
                                   (green.c, note E): next to nlive, which placement reads */
  size_t nshared;               /* of those, how many but the main one run with os_tp
                                   (no TLS of their own: the API's, handoff.c note G) */
  struct kz__link zombies;      /* finished, not yet joined */
  struct kz__waitq quiesce;     /* kz_run/kz_exit waiting for nlive to drop to 1 */
  bool in_run;                  /* kz_run is active on this hub */
  struct kz__link soon;         /* kz_call_soon callbacks, FIFO */
  struct kz__link timed;        /* kz_call_later/at callbacks still armed */
  struct kz__fdtab *fds;        /* descriptor watchers (io.c) */
  struct kz__stack_cache *stacks; /* stack cache (stack.c) */
  struct kz__depot tls_areas;   /* TLS areas of its finished green threads (tls.c, note K) */
  struct kz__stack hub_stack;   /* the hub context's stack */
  ev_io wakeup;                 /* watches wake_fd */
  _Atomic int backend_fd;       /* libev's epoll instance, if the shim saw it made; else -1 */
  bool forked;                  /* a fork child that has not yet re-created its backend */
  bool fork_child;              /* ... nor renewed its wake-up eventfd (hub.c, note I) */
  int holds;                    /* remote completions expected (keeps the loop alive) */
  unsigned xwaiters;            /* green threads parked on objects of any hub (sched.c, note F) */
  bool xheld;                   /* the loop pass holds the hub for them (hub.c, note J) */
  bool spin_fed;                /* the last spin brought messages (hub.c, note L) */
  bool post_woke;               /* a post ended the sleep after a spin (hub.c, note O) */
  double spin_s;                /* how long it spins now (hub.c, note O) */
  double spin_at;               /* when the last spin began (kz__now seconds) */
  unsigned char poll_skips;     /* polls skipped in a row after spins (hub.c, note L) */
  bool stopping;                /* kz__hub_destroy in progress */
  bool in_loop;                 /* the hub context is inside ev_run (read by monitor.c) */
  uint64_t pass;                /* hub loop passes so far (io.c, note D; monitor.c) */
  struct kz__hub_watch watch;   /* the monitor's view of this hub (monitor.c) */
  void *dying;                  /* a finished green thread's struct to release */
  uint64_t nspawned;            /* for default names */
  void *altstack;               /* sigaltstack installed for this thread, or NULL */
  struct kz__hub_sig sig;       /* its green threads' masks, and the OS thread's (sigmask.c) */
  int preempt_timer;            /* its CPU-time slice timer (preempt.c), or -1: not armed */
  struct kz__preempt_seen preempt_seen; /* at the last tick (preempt.c, note B) */
  struct kz_green *preempted;   /* preempted, queued after the next poll (preempt.c, note D) */
  unsigned long preempts;       /* green threads it preempted */
  double soonest;               /* the earliest deadline of a park shorter than KZ__FINE_WAIT
                                   (kz__now seconds), or 0: the poll's precision (sched.c, note G) */
  /* hand-off to another OS thread (handoff.c) */
  _Atomic uintptr_t sys;        /* the green thread in a system call it may be handed off in
                                   (| KZ__SYS_AWAY once it was, | KZ__SYS_PIN in its handler), or 0 */
  unsigned long sys_seq;        /* such calls entered so far */
  bool handoff_ok;              /* its OS thread may change (the shim's hubs, never joined) */
  bool ho_moved;                /* taken over, the new OS thread not yet set up */
  void *ho_spare;               /* the spare that took it over (handoff.c) */
  uintptr_t ho_seen;            /* sys and sys_seq at the last look of the watcher */
  unsigned long ho_seen_seq;
  unsigned long handoffs;       /* times it was handed to another OS thread */
  unsigned ho_away;             /* its green threads in KZ__S_AWAY */
  /* deadlock of a set of hubs (hub.c, note K) */
  unsigned q_holds;             /* its holds that are the other hubs' */
  _Atomic bool q_member;        /* in the set */
#ifdef KZ_ASAN
  void *asan_fake;
  const void *asan_bottom;
  size_t asan_size;
#endif
  /* Last, on two cache lines of their own (the struct is allocated
     aligned): what other OS threads write to post to it and to spawn on
     it (hub.c, note N).  The first is the one the hub watches as it spins. */
  _Alignas(64) struct kz__post *_Atomic inbox; /* posted messages, LIFO until drained */
  _Atomic bool wake_pending;    /* awake, or wake_fd written: posters skip the write (hub.c, note D) */
  _Alignas(64) _Atomic bool q_stuck; /* only a post can wake it, and it counts so */
  _Atomic int posters;          /* threads inside kz__hub_post (hub.c, note H) */
  _Atomic int wake_fd;          /* eventfd other threads post through (a runtime descriptor) */
  _Atomic size_t sent;          /* green threads other hubs made for it (green.c, note E) */
};

/* This OS thread's hub, or NULL.  Cheap: one TLS load.  A green thread with
   TLS of its own has its own copy, set to its hub (tls.c, note D). */
extern KZ_TLS struct kz__hub *kz__tls_hub KZ_INTERNAL;

/* ---- Thread-local storage of green threads (tls.c) ---------------------------- */

/* NULL in an OS thread's own TLS; in a green thread's own TLS, the thread
   pointer of the OS thread it runs on (tls.c, note D): its hub's home_tp.
   Also home_tp in a spare's own TLS while it runs a hub context whose main
   green thread is handed off (handoff.c, note G). */
extern KZ_TLS void *kz__tls_os_tp KZ_INTERNAL;
/* wrfsbase may be used (tls.c, note F); read by kz__tp_set. */
extern bool kz__fsgsbase __attribute__((visibility("hidden")));

/* Load tp as the thread pointer (switch_x86_64.S). */
KZ_INTERNAL void kz__tp_set(void *tp);

/* The address, in the TLS of the OS thread the caller runs on, of the
   runtime's per-OS-thread TLS variable at addr (an initial-exec variable of
   libkudzu or the shim): addr itself, unless the caller runs with a green
   thread's own TLS (tls.c, note D). */
static inline void *kz__os_tls(void *addr)
{
  char *os = (char *)kz__tls_os_tp;
  return KZ_LIKELY(os == NULL) ? addr : (char *)addr - (char *)__builtin_thread_pointer() + os;
}

/* Can green threads get TLS of their own here (glibc's layout is the one
   tls.c knows)?  Decided once; *why says what is missing when not. */
KZ_INTERNAL bool kz__tls_available(const char **why);
/* A TLS area for a green thread of hub (from any OS thread of the
   process): one of hub's finished threads' (note K), or a new one.
   Returns its thread pointer, or NULL (out of memory).  It is made and
   bound by kz__tls_bind, then given its stack (kz__tls_stack), before a
   green thread runs with it. */
KZ_INTERNAL void *kz__tls_new(struct kz__hub *hub);
/* Make tp's the TLS of a green thread of hub (hub's OS thread): every
   module's static TLS block from its image, a dtv of its own, a thread
   descriptor (note K), then its thread id, malloc's cache and arena (note
   E), the hub. */
KZ_INTERNAL void kz__tls_bind(void *tp, struct kz__hub *hub);
/* The stack of the green thread that runs with tp (glibc's alloca limit
   follows it). */
KZ_INTERNAL void kz__tls_stack(void *tp, void *base, size_t size);
/* First thing in the green thread that owns tp: libc's per-thread set-up. */
KZ_INTERNAL void kz__tls_started(void);
/* Last thing in that green thread: thread_local destructors (C++), then
   the destructors of libc's own keys (C11 tss_*), as at a thread's exit. */
KZ_INTERNAL void kz__tls_exiting(void);
/* Free a TLS area no context runs with any more: to hub's areas if it is
   not NULL and they have room. */
KZ_INTERNAL void kz__tls_free(void *tp, struct kz__hub *hub);
/* A fork child: hub's areas (tls.c, note K) are the child's. */
KZ_INTERNAL void kz__tls_forked(struct kz__hub *hub);
/* hub's areas, at its creation (note K). */
KZ_INTERNAL void kz__tls_hub_init(struct kz__hub *hub);
/* hub's areas freed: it goes away. */
KZ_INTERNAL void kz__tls_hub_term(struct kz__hub *hub);
/* fork() handlers (tls.c, note H), to be registered before the program's:
   the OS thread's TLS for glibc's part of a fork from a green thread with
   TLS of its own, the green thread's again after it. */
KZ_INTERNAL void kz__tls_fork_prepare(void);
KZ_INTERNAL void kz__tls_fork_done(bool child);
/* In a fork's parent and child steps: whether the process had other
   threads than the forking one (worker.c, note H).  When not, nothing
   another thread holds or half-changed needs putting right in the child. */
KZ_INTERNAL bool kz__fork_threaded(void);
/* Load the OS thread's TLS for a call made for the running green thread
   (tls.c, note I): returns what kz__tls_os_leave takes to load the green
   thread's again (NULL if nothing changed).  errno follows.  No switch to
   another green thread in between. */
KZ_INTERNAL void *kz__tls_os_enter(void);
KZ_INTERNAL void kz__tls_os_leave(void *tp);

static inline struct kz__hub *kz__hub(void) { return kz__tls_hub; }

/* The running green thread, or NULL when not in one (no hub, or on the hub
   context).  This is the shim's "should I intercept?" test. */
static inline struct kz_green *kz__self(void)
{
  struct kz__hub *h = kz__tls_hub;
  return h ? h->current : NULL;
}

/* The runtime's own scope (sched.c, note H): around a call the runtime
   makes, from a green thread, into a library that calls libc through the
   PLT (libunwind).  The running green thread is hidden for its duration:
   kz__self() is NULL, so the shim's interposers take the call for the
   hub's own and pass it straight to libc (no descriptor is recorded, no
   other hub told, no wait parks: kz__park fails with EPERM outside green
   threads), and a preemption tick lets it be.  Returns what
   kz__runtime_leave takes (NULL when there was nothing to hide: no hub,
   the hub's context, a scope already open).  No switch in between. */
static inline struct kz_green *kz__runtime_enter(void)
{
  struct kz__hub *h = kz__tls_hub;
  struct kz_green *g = h ? h->current : NULL;
  if (g)
    __atomic_store_n(&h->current, NULL, __ATOMIC_RELAXED); /* a handler on this thread reads it */
  return g;
}

static inline void kz__runtime_leave(struct kz_green *g)
{
  if (g)
    __atomic_store_n(&kz__tls_hub->current, g, __ATOMIC_RELAXED);
}

/* Create this OS thread's hub, the thread becoming its main green thread.
   NULL with -errno in *err on failure. */
KZ_INTERNAL struct kz__hub *kz__hub_create(int *err);

/* This OS thread's hub, created if needed (see kz__hub_create). */
static inline struct kz__hub *kz__hub_get(int *err)
{
  struct kz__hub *h = kz__tls_hub;
  return KZ_LIKELY(h != NULL) ? h : kz__hub_create(err);
}

/* Tear the hub of this OS thread down: every green thread must be finished
   but the main one.  Hub thread only, from the main green thread. */
KZ_INTERNAL void kz__hub_destroy(struct kz__hub *hub);

/* Post p to hub from any thread (also the hub's own); p->fn runs on the hub
   thread, on the hub context, in posting order per poster.  Never blocks. */
KZ_INTERNAL void kz__hub_post(struct kz__hub *hub, struct kz__post *p);

/* hub belongs to a set of hubs that wake each other (the shim's), of
   which its holds holds are the others' (hub.c, note K); first: the hub
   whose main green thread fails with EDEADLK when none can wake another.
   Any thread.  kz__quiesce_forked: a fork child's hub is alone. */
KZ_INTERNAL void kz__quiesce_join(struct kz__hub *hub, unsigned holds, bool first);
KZ_INTERNAL void kz__quiesce_forked(struct kz__hub *hub);

/* While holds > 0 the hub's loop stays alive waiting for posts even when no
   watcher is active (a green thread waits for another OS thread).  Hub thread
   only. */
KZ_INTERNAL void kz__hub_hold(struct kz__hub *hub);
KZ_INTERNAL void kz__hub_unhold(struct kz__hub *hub);

/* ---- Signal masks (sigmask.c) ---------------------------------------------------- */

/* A thread has its own mask (g->sig.mask, g->sig.own): the main green thread
   and each green thread made by the shim's pthread_create.  Green threads
   spawned through the API are not threads: they share the main green
   thread's (as without the shim they share the OS thread's).  The OS thread
   blocks the signals that every thread of its hub blocks, plus
   hub->sig.keep, never the runtime's own (sigmask.c, note A).  All hub
   thread only. */

/* Add (by 1) or take (by -1) mask's signals to or from hub's counts. */
KZ_INTERNAL void kz__sigmask_count(struct kz__hub *hub, uint64_t mask, int by);
/* kz__sig_leave's slow half. */
KZ_INTERNAL void kz__sigmask_leave(struct kz__hub *hub, struct kz_green *g);

/* The green thread whose mask g follows: itself, or its hub's main one. */
static inline struct kz_green *kz__sig_owner(struct kz_green *g)
{
  return g->sig.own ? g : g->hub->main;
}

/* Green thread g of hub finishes (or is left behind in a fork child): its
   mask counts no more, and the OS thread may block what all the others
   block.  Costs a test unless it had a mask of its own while some thread
   of the hub has one that is not empty. */
static inline void kz__sig_leave(struct kz__hub *hub, struct kz_green *g)
{
  if (!g->sig.own)
    return;
  hub->sig.n--;
  if (KZ_UNLIKELY(hub->sig.nmasked != 0))
    kz__sigmask_leave(hub, g);
}

/* Green thread g (just made, on the calling hub) becomes a thread with a
   mask of its own, mask (its creator's); the main green thread of a new
   hub takes the OS thread's (kz__sigmask_os_read). */
KZ_INTERNAL void kz__sigmask_adopt(struct kz_green *g, uint64_t mask);
/* The calling OS thread's mask, from the kernel. */
KZ_INTERNAL uint64_t kz__sigmask_os_read(void);
/* Give g's owner (kz__sig_owner) the mask mask: counts, then the OS
   thread's mask (a system call only when that changes).  A signal the OS
   thread unblocks that is pending for the process is delivered before
   this returns, as natively. */
KZ_INTERNAL void kz__sigmask_set(struct kz_green *g, uint64_t mask);
/* Add add to hub->sig.keep and take drop from it, then bring the OS
   thread's mask in line. */
KZ_INTERNAL void kz__sigmask_keep(struct kz__hub *hub, uint64_t add, uint64_t drop);
/* Count the unfinished threads of hub again (a fork child, whose other
   threads were left behind), and bring the OS thread's mask in line. */
KZ_INTERNAL void kz__sigmask_recount(struct kz__hub *hub);
/* The OS thread's mask as it should be now. */
KZ_INTERNAL uint64_t kz__sigmask_want(const struct kz__hub *hub);
/* Make the unblocks a new thread's adoption put off (sigmask.c, note D). */
KZ_INTERNAL void kz__sigmask_catch_up(struct kz__hub *hub);

/* The hub context's main loop (hub.c); entered on the hub stack, never
   returns. */
KZ_INTERNAL void *kz__hub_loop(void *hub);

/* Monotonic seconds. */
KZ_INTERNAL double kz__now(void);

/* ---- Scheduling (sched.c) ------------------------------------------------- */

/* Append g to its hub's run queue (state becomes ready).  Hub thread only. */
KZ_INTERNAL void kz__ready(struct kz_green *g);

/* Parks shorter than this (seconds) tell the hub's poll their deadline
   (hub->soonest, sched.c note G). */
#define KZ__FINE_WAIT 2e-3

/* Park the running green thread until kz__wake(g, r) (returns r), the
   deadline passes (-ETIMEDOUT) or it is cancelled (-ECANCELED; returned at
   once, without parking, if cancellation is already pending).  deadline is
   kz__now() seconds, < 0 for none; the green thread's scoped deadline applies
   too (-ETIMEDOUT at once if it already passed).  -EPERM outside a green
   thread.  May switch. */
KZ_INTERNAL int kz__park(double deadline);

/* Wake g if it is parked, with result r for kz__park.  A second wake before
   it runs is ignored, so every wake source may fire.  Returns true if g was
   woken by this call.  Hub thread only. */
KZ_INTERNAL bool kz__wake(struct kz_green *g, int r);

/* Yield: requeue the running green thread behind the ready ones. */
KZ_INTERNAL void kz__yield(void);
/* Yield to the hub itself: it polls (timers, descriptors, messages) before
   any green thread runs again, the caller included.  May switch. */
KZ_INTERNAL void kz__yield_poll(void);

/* Leave the running green thread for the next ready one, or the hub.  The
   caller has already queued itself somewhere (or is finishing). */
KZ_INTERNAL void kz__schedule(struct kz__hub *hub);

/* Switch from the running context to green thread `to` (NULL: the hub). */
KZ_INTERNAL void kz__switch_to(struct kz__hub *hub, struct kz_green *to);
/* What every context does first after being switched to (also a fresh one,
   with fake NULL): finish the sanitizer's fiber switch, free a dead green. */
KZ_INTERNAL void kz__switched(struct kz__hub *hub, void *fake);
/* Give a green thread's embedded timer its callback (park deadline and
   delayed start). */
KZ_INTERNAL void kz__park_timer_init(struct kz_green *g);

/* Direct switches between green threads before the hub polls libev, beyond
   the green threads that were ready when it last polled (hub.c, note C). */
#define KZ__BUDGET 128

/* Timeout (seconds) to an absolute deadline: -1 (none) for a negative
   timeout or one above KZ_TIMEOUT_MAX, NaN for NaN (kz__park then fails
   with EINVAL, so every wait refuses it in one place). */
KZ_INTERNAL double kz__deadline(double timeout);

/* A wake-up for a green thread that may live on another hub: the message
   to its hub, and the flag that says it was delivered. */
struct kz__remote_wake {
  struct kz__post post; /* to g's hub (filled by kz__wake_remote) */
  struct kz_green *g;   /* who is woken: parked, or about to park, until arrived */
  int r;                /* what its kz__park returns */
  bool arrived;         /* written on g's hub when delivered; g's hub thread only */
};
/* Wake w->g with w->r from any thread: at once when called on g's own hub
   (any of its contexts), else through g's hub's mailbox.  The waiter must
   not leave (and w, often on its stack, must stay valid) until w->arrived
   is set on its own hub, which is the delivery's last touch of w: after
   that nothing refers to w.  Does not switch. */
KZ_INTERNAL void kz__wake_remote(struct kz__remote_wake *w);
/* Park the running green thread until w->arrived: shielded (no
   cancellation, no scoped deadline), its hub held meanwhile (the wake
   comes through the mailbox).  what names the wait for kz_dump.  Returns
   0.  Hub thread only, in a green thread.  May switch. */
KZ_INTERNAL int kz__wait_remote(struct kz__remote_wake *w, const char *what);

/* Wait queues.  Hub thread only. */
static inline void kz__waitq_init(struct kz__waitq *q) { kz__list_init(&q->head); }
static inline bool kz__waitq_empty(const struct kz__waitq *q) { return kz__list_empty(&q->head); }
/* Queue the running green thread on q and park (see kz__park).  On return the
   waiter is unlinked; w->data holds what the waker handed over. */
KZ_INTERNAL int kz__waitq_wait(struct kz__waitq *q, struct kz__waiter *w, double deadline);
/* Wake the first waiter still parked, handing it data; false if none.
   Waiters woken by something else meanwhile are skipped (left for their
   owner to unlink). */
KZ_INTERNAL bool kz__waitq_wake_one(struct kz__waitq *q, int r, void *data);
/* Wake every parked waiter with r; returns how many. */
KZ_INTERNAL size_t kz__waitq_wake_all(struct kz__waitq *q, int r);

/* Objects any OS thread uses (sched.c, note F): a lock for the object's
   state, held for a few instructions and never across a switch, and a
   kz__waitq of struct kz__waiter under it, whose waiters any thread may
   wake.  States of such a waiter (w->state):
     KZ__W_QUEUED   in the queue; nobody has chosen it
     KZ__W_CLAIMED  taken off the queue by a waker, with w->r and w->data
                    given; its wake is on its way to w->hub
     KZ__W_WOKEN    the wake arrived: the waiter may return and drop w
     KZ__W_LEFT     off the queue without a wake: it timed out, was
                    cancelled or was skipped (note F) */
enum { KZ__W_QUEUED, KZ__W_CLAIMED, KZ__W_WOKEN, KZ__W_LEFT };

struct kz__spin {
  _Atomic bool held;
};
KZ_INTERNAL void kz__spin_wait(struct kz__spin *l);
/* Take / release an object's lock.  Any thread; never switches, and nothing
   that may switch is called while it is held. */
static inline void kz__spin_lock(struct kz__spin *l)
{
  if (KZ_UNLIKELY(atomic_exchange_explicit(&l->held, true, memory_order_acquire)))
    kz__spin_wait(l);
}
static inline void kz__spin_unlock(struct kz__spin *l)
{
  atomic_store_explicit(&l->held, false, memory_order_release);
}

/* With l held: queue the running green thread (g) at the tail of q. */
static inline void kz__xwait_queue(struct kz__waitq *q, struct kz__waiter *w, struct kz_green *g)
{
  w->g = g;
  w->hub = g->hub;
  w->data = NULL;
  w->r = 0;
  atomic_store_explicit(&w->state, KZ__W_QUEUED, memory_order_relaxed);
  kz__list_push(&q->head, &w->link);
}
/* With l released: park the green thread queued with w until a waker claims
   w (returns w->r, with w->data), or the deadline passes, or it is
   cancelled (-ETIMEDOUT, -ECANCELED: w left the queue, nothing was given).
   A claim wins over a timeout it races with: the wait then returns w->r.
   Returns only once no wake for w is in flight.  The hub is held meanwhile:
   the waker may be another OS thread.  In a green thread; may switch. */
KZ_INTERNAL int kz__xwait_park(struct kz__waiter *w, struct kz__spin *l, double deadline);
/* With l held: take the first waiter of q that still waits off the queue,
   claimed with result r; NULL if none.  The caller may set w->data (what it
   hands over) before delivering the wake with kz__xwake_deliver, best after
   releasing l.  Any thread. */
KZ_INTERNAL struct kz__waiter *kz__xwake_claim_first(struct kz__waitq *q, int r);
static inline struct kz__waiter *kz__xwake_claim(struct kz__waitq *q, int r)
{
  return kz__list_empty(&q->head) ? NULL : kz__xwake_claim_first(q, r); /* no call when none waits */
}
/* Deliver a claimed waiter's wake: at once on the caller's own hub, else
   through a post to the waiter's hub.  w may be gone once it returns.  Any
   thread; does not switch. */
KZ_INTERNAL void kz__xwake_deliver(struct kz__waiter *w);
/* With l held: claim every waiter of q with r onto the private list out
   (kz__list_init'ed by the caller); then, l released, kz__xwake_deliver_all
   delivers them.  Returns how many. */
KZ_INTERNAL size_t kz__xwake_claim_all(struct kz__waitq *q, int r, struct kz__link *out);
KZ_INTERNAL void kz__xwake_deliver_all(struct kz__link *claimed);

/* ---- Green thread lifecycle (green.c) ---------------------------------------- */

/* Handle -> green thread, or NULL if the handle is 0, stale or malformed. */
KZ_INTERNAL struct kz_green *kz__green_get(kz_green_t h);
/* In a fork child: g stands for a thread that does not exist there (a
   pthread of the parent other than the forking one).  It never runs again:
   out of the run queue, its timer stopped, every wake of it ignored (wait
   queues skip it), and, unless it is the main green thread, out of the
   hub's live list.  Not the running green thread.  Hub thread; does not
   switch. */
KZ_INTERNAL void kz__green_forget(struct kz_green *g);

/* Spawn on hub; returns the green thread (state pending, queued or delayed)
   or NULL with -errno in *err.  user_stack/user_size: a stack the caller owns
   (pthread_attr_setstack), or NULL.  From another hub's OS thread (green.c,
   note E) the green thread is made but not yet hub's: the caller finishes
   it, reads what it needs of it, then hands it over with kz__spawn_post,
   its last touch. */
/* The hub that a spawn option's hub field (KZ_HUB_THIS, KZ_HUB_ANY,
   KZ_HUB(k)) names for a spawn from hub here; NULL with -EINVAL in *err if
   none.  May start the set's other hubs (hubs.c). */
KZ_INTERNAL struct kz__hub *kz__spawn_target(struct kz__hub *here, int which, int *err);
KZ_INTERNAL struct kz_green *kz__spawn(struct kz__hub *hub, kz_fn fn, void *arg,
                                     const struct kz_spawn_opts *opts, void *user_stack,
                                     size_t user_size, int *err);
KZ_INTERNAL void kz__spawn_post(struct kz_green *g);
/* g, just made by kz__spawn, runs with the TLS area tp (tls.c) rather
   than its OS thread's: set before it first runs. */
KZ_INTERNAL void kz__green_own_tls(struct kz_green *g, void *tp);
/* How many forks this process descends from (hubs.c): a green thread made
   for a hub by a thread a fork child does not have is never adopted there. */
KZ_INTERNAL unsigned kz__hubs_forks(void);

/* The body of every green thread (green.c, note C): runs its function,
   finishes it, and returns its hub for the trampoline's last switch. */
KZ_INTERNAL void *kz__green_entry(void *g);

/* Finish the running green thread (result, or error > 0).  Never returns. */
KZ_INTERNAL _Noreturn void kz__green_finish(void *result, int error);

/* Release a finished green thread (its handle becomes stale). */
KZ_INTERNAL void kz__green_release(struct kz_green *g);
/* Set by the preload shim: frees g->ext when g is released, whoever
   releases it (API or shim).  Hub thread; must not switch. */
extern KZ_INTERNAL void (*kz__ext_release)(struct kz_green *g);
/* Set by the preload shim: finishes, on its hub, a green thread with
   g->ext that another hub made (green.c, note E).  Hub context; must not
   switch. */
extern KZ_INTERNAL void (*kz__ext_adopt)(struct kz_green *g);
extern KZ_INTERNAL size_t kz__ext_size; /* bytes at g->ext (green.c, note K) */

/* Create the main green thread for a new hub. */
KZ_INTERNAL struct kz_green *kz__green_main(struct kz__hub *hub);

/* Generic handle table (handle.c): 64-bit handles with a generation, to
   detect stale use without touching freed memory. */
enum { KZ__H_GREEN = 1, KZ__H_CALL = 2, KZ__H_FUTURE = 3 };
KZ_INTERNAL uint64_t kz__handle_new(int type, void *obj);
/* The same, recording owner (the hub that owns obj) in the slot. */
KZ_INTERNAL uint64_t kz__handle_new_owned(int type, void *obj, void *owner);
KZ_INTERNAL void *kz__handle_get(uint64_t h, int type);
/* The owner recorded for h, or NULL if h is 0, stale or malformed (or has
   none).  Any thread: reads only the handle table (handle.c, note C). */
KZ_INTERNAL void *kz__handle_owner(uint64_t h, int type);
KZ_INTERNAL void kz__handle_free(uint64_t h);
/* A fork child: the locks of the depot of free slots and of the table's
   growth (handle.c, note D). */
KZ_INTERNAL void kz__handle_forked(void);

/* ---- Stacks (stack.c) ------------------------------------------------------ */

enum kz__guard { KZ__GUARD_NONE, KZ__GUARD_MADVISE, KZ__GUARD_MPROTECT, KZ__GUARD_CANARY };

/* Get a stack of size bytes (0: default) from hub's cache, or from the
   depot if hub is NULL (any OS thread: stack.c, note G).  Returns 0 or
   -errno. */
KZ_INTERNAL int kz__stack_get(struct kz__hub *hub, size_t size, struct kz__stack *out);
/* Ask for the lines of the depot (stack.c, note G) ahead of a spawn on
   another hub (green.c, note K). */
KZ_INTERNAL void kz__stack_depot_prefetch(void);
/* Return a stack to the hub's cache, the depot it came from, or the OS
   (hub's OS thread). */
KZ_INTERNAL void kz__stack_put(struct kz__hub *hub, struct kz__stack *s);
/* In a fork child: the depot's lock anew. */
KZ_INTERNAL void kz__stack_forked(void);
/* Stack used by a hub context. */
KZ_INTERNAL int kz__stack_cache_init(struct kz__hub *hub);
KZ_INTERNAL void kz__stack_cache_term(struct kz__hub *hub);
/* Is addr inside the guard page (or below the canary) of s? */
KZ_INTERNAL bool kz__stack_in_guard(const struct kz__stack *s, const void *addr);
/* False if a canary-protected stack's canary was overwritten. */
KZ_INTERNAL bool kz__stack_canary_ok(const struct kz__stack *s);
extern _Atomic bool kz__stack_canaries; /* some stack has a canary (stack.c) */
KZ_INTERNAL size_t kz__stack_default_size(void);

/* ---- Descriptors (io.c) ----------------------------------------------------- */

/* Park until fd is ready for events; returns the ready events or -errno
   (-ETIMEDOUT, -ECANCELED, -EBADF).  May switch. */
KZ_INTERNAL int kz__wait_fd(int fd, int events, double deadline);
/* One descriptor of a kz__wait_fds call. */
struct kz__fdev {
  int fd;      /* < 0: ignored */
  int events;  /* KZ_READ | KZ_WRITE wanted */
  int revents; /* out: ready events, or -EBADF if fd is not open */
};

/* Park until any of n descriptors is ready (or, with -EBADF in revents, not
   open), or the deadline passes.  Returns 0 (see revents) or -ETIMEDOUT,
   -ECANCELED, -ENOMEM, -EPERM.  Readiness is a hint: the caller retries its
   non-blocking call.  May switch. */
KZ_INTERNAL int kz__wait_fds(struct kz__fdev *fds, int n, double deadline);
/* fd is being closed (or replaced by dup2): wake its waiters on this hub with
   -EBADF and stop watching it, so the number can be reused safely. */
KZ_INTERNAL void kz__fd_forget(int fd);
/* Watchers outlive their waiters (io.c, note E): set by the shim, which sees
   every descriptor the program creates, before any green thread waits. */
extern KZ_INTERNAL bool kz__fd_sticky;
KZ_INTERNAL int kz__fdtab_init(struct kz__hub *hub);
KZ_INTERNAL void kz__fdtab_term(struct kz__hub *hub);
KZ_INTERNAL void kz__fd_flush(struct kz__hub *hub); /* wakes of the last loop pass */

/* ---- The runtime's own descriptors (rtfd.c) ------------------------------------ */

/* Numbers below this are recorded; above it a runtime descriptor is not
   protected (rtfd.c, note D). */
#define KZ__RTFD_MAX 65536
/* One bit per runtime descriptor (a hub's epoll instance and wake-up
   eventfd, the shim's statistics copy of stderr).  Read by any thread. */
extern KZ_INTERNAL _Atomic uint64_t kz__rtfd_bits[KZ__RTFD_MAX / 64];
/* > 0 while this thread makes libev calls that create or close the
   runtime's descriptors and run none of the program's code (rtfd.c, note A):
   the shim's creation interposers adopt what they create. */
extern KZ_TLS int kz__rtfd_scope KZ_INTERNAL;
/* The last descriptor kz__rtfd_adopt recorded on this thread (how the hub
   learns the number of libev's epoll instance, which libev does not tell). */
extern KZ_TLS int kz__rtfd_last KZ_INTERNAL;
/* The field that takes the number of what kz__rtfd_adopt records on this
   thread, before the record (rtfd.c, note F): a hub's backend_fd while libev
   runs in scope; NULL otherwise. */
extern KZ_TLS _Atomic int *kz__rtfd_into KZ_INTERNAL;

/* Is fd one of the runtime's descriptors?  A load and a test; any thread. */
static inline bool kz__rtfd_is(int fd)
{
  return (unsigned)fd < KZ__RTFD_MAX &&
         ((atomic_load_explicit(&kz__rtfd_bits[(unsigned)fd >> 6], memory_order_relaxed) >>
           ((unsigned)fd & 63)) & 1);
}
/* Record fd as the runtime's / forget the record.  Any thread. */
KZ_INTERNAL void kz__rtfd_add(int fd);
KZ_INTERNAL void kz__rtfd_drop(int fd);
/* Move fd to the runtime's high numbers, close-on-exec (rtfd.c, note B);
   returns the new number, or fd itself where it cannot move. */
KZ_INTERNAL int kz__rtfd_move(int fd);
/* kz__rtfd_move, then record: for a descriptor created for the runtime. */
KZ_INTERNAL int kz__rtfd_adopt(int fd);
/* A close of fd, a runtime descriptor or any descriptor in scope: 0 if the
   runtime itself closes it (in scope; the record is dropped), 1 if the close
   must be skipped (in scope, a number given to the program), else -1 with
   errno EBADF (the program must not see it). */
KZ_INTERNAL int kz__rtfd_refuse(int fd);
/* A copy of fd at the runtime's numbers (anywhere free if none is free
   there), close-on-exec and recorded, its number stored in *into first
   (unless NULL: rtfd.c, note F); fd stays open.  -errno on failure. */
KZ_INTERNAL int kz__rtfd_dup(int fd, _Atomic int *into);
/* The program wants runtime descriptor fd's number (dup2 onto it): the hub
   that holds it moves its descriptor out of the way, at once from one of
   its green threads, else through its mailbox (waiting up to a second).
   0 when done (the number is the caller's to take), -EBUSY if no hub holds
   fd or its hub did not answer (hub.c, note G). */
KZ_INTERNAL int kz__hub_give_fd(int fd);
/* Post p to the live hub whose wake-up eventfd or epoll instance is fd:
   that hub, or NULL if none (monitor.c, which lists the live hubs). */
KZ_INTERNAL struct kz__hub *kz__monitor_post_to_owner(int fd, struct kz__post *p);
/* The lowest runtime descriptor in [from, to], or -1. */
KZ_INTERNAL int kz__rtfd_next(int from, int to);
/* A runtime descriptor is gone: say which and why on stderr, and abort. */
KZ_INTERNAL void kz__rtfd_lost(int fd, const char *what) __attribute__((noreturn));

/* ---- Timers and callbacks (timer.c) ----------------------------------------- */

KZ_INTERNAL void kz__run_soon(struct kz__hub *hub);
KZ_INTERNAL void kz__calls_term(struct kz__hub *hub);

/* ---- Worker threads (worker.c) --------------------------------------------- */

/* Run fn(arg) on the process's pool of worker OS threads while the calling
   green thread parks.  Returns 0 once fn has returned; -ETIMEDOUT or
   -ECANCELED if the wait ended first: fn still runs to completion on its
   worker, which then calls discard(arg) if discard is not NULL, so arg must
   stay valid until then (allocate it on the heap and free it in discard).
   -EPERM outside a green thread: the caller should simply call fn itself.
   Worker threads have no hub, so the shim passes their calls through.
   May switch. */
KZ_INTERNAL int kz__worker_call(void (*fn)(void *), void *arg, void (*discard)(void *),
                                double deadline);

/* Threads of the pool for calls that block in the kernel (worker.c, note I). */
#define KZ__BLOCKING_MAX 256
/* The signal that interrupts such a call on its worker (worker.c, note I);
   the runtime's, like SIGRTMAX-2 (monitor.c). */
#define KZ__SIG_INTERRUPT (SIGRTMAX - 3)
/* Run fn(arg), a call that blocks in the kernel where the hub cannot wait,
   on a worker of the blocking pool while the calling green thread parks.
   The wait ends when fn returns; a deadline, a cancellation or a wake with
   an error (a signal handler's -EINTR) interrupts fn's system call instead
   of leaving it behind, then still waits for fn to return, so whatever fn
   did (a lock taken, a message received) reaches the caller.  Returns 0
   once fn has returned, with *cut = the -errno that interrupted it (0: it
   ran undisturbed; if its system call failed with EINTR and *cut is 0, the
   program's own signal did it); or -errno if fn never ran (-ECANCELED,
   -ETIMEDOUT, -EINTR before a worker took it, -ENOMEM, -EAGAIN; -EPERM
   outside a green thread).  May switch. */
KZ_INTERNAL int kz__worker_call_blocking(void (*fn)(void *), void *arg, double deadline, int *cut);

/* The main thread has left with pthread_exit or kz_exit (worker.c, note
   G); kz__on_main_left, if set, runs then, on it. */
KZ_INTERNAL bool kz__main_gone(void);
extern void (*kz__on_main_left)(void) KZ_INTERNAL;

/* ---- The set of hubs (hubs.c) ---------------------------------------------------- */

/* Read KUDZU_HUBS, unless the program called kz_set_hubs; once, before the
   first hub (hub.c). */
KZ_INTERNAL void kz__hubs_config_env(void);
/* Hold hub 0 once the others run (hubs.c, note C): the shim's choice,
   before the first placement. */
KZ_INTERNAL void kz__hubs_config_hold(bool hold);
/* Where a green thread spawned from hub here goes by the placement policy
   (hubs.c, note A): here with one hub; the first call with several wanted
   starts the others.  Any thread with a hub. */
KZ_INTERNAL struct kz__hub *kz__hubs_place(struct kz__hub *here);
/* Hub k of the set (starting it as kz__hubs_place does), NULL if there is
   no such hub; with one hub, hub 0 is here. */
KZ_INTERNAL struct kz__hub *kz__hubs_at(struct kz__hub *here, unsigned k);
/* More than one hub runs: the set was started with others. */
KZ_INTERNAL bool kz__hubs_many(void);
/* Is hub in the set (then it lives as long as the process: hubs.c, note F)? */
KZ_INTERNAL bool kz__hubs_member(const struct kz__hub *hub);
/* Run fn(arg) on hub's OS thread, on its context (outside green threads),
   and wait until it has run (hubs.c, note G): a green thread of another
   hub parks shielded (kz__wait_remote), a thread without a hub blocks; on
   hub's own thread fn runs at once, in the caller's context.  0, or -EPERM
   on another hub's context (a hub callback cannot wait).  May switch. */
KZ_INTERNAL int kz__hub_call(struct kz__hub *hub, void (*fn)(void *arg), void *arg);

/* The hub of a remote hub (remote.c), once kz_remote_start has returned. */
struct kz_remote;
KZ_INTERNAL struct kz__hub *kz__remote_hub(struct kz_remote *r);

/* ---- Time slices (preempt.c) ------------------------------------------------- */

/* The signal of the hubs' slice timers (preempt.c, note F). */
#define KZ__SIG_PREEMPT (SIGRTMAX - 4)
/* Preempt threads (g->sig.own) that compute a whole slice (seconds of CPU
   time; 0: never), unless allowed() says no (the shim: not inside the
   program's signal handler).  Before the first hub arms. */
KZ_INTERNAL void kz__preempt_config(double slice, bool (*allowed)(void));
KZ_INTERNAL bool kz__preempt_on(void);
/* Arm hub's slice timer, if preemption is on and it is not armed yet; on
   hub's OS thread.  Errors leave it unarmed: the hub runs as before. */
KZ_INTERNAL void kz__preempt_arm(struct kz__hub *hub);
KZ_INTERNAL void kz__preempt_disarm(struct kz__hub *hub);
/* Queue hub->preempted at the end of the run queue; the hub loop, after a
   poll. */
KZ_INTERNAL void kz__preempted_queue(struct kz__hub *hub);
/* In a fork child: the timer was not inherited. */
KZ_INTERNAL void kz__preempt_forked(struct kz__hub *hub);
/* Block (true) or unblock the slice signal on the calling OS thread, around
   a call that sleeps in the kernel (preempt.c, note E). */
KZ_INTERNAL void kz__preempt_hold(bool hold);

/* ---- Hand-off of a hub to another OS thread (handoff.c) ------------------------ */

#define KZ__SYS_AWAY ((uintptr_t)1) /* hub->sys: its OS thread was left behind */
#define KZ__SYS_PIN ((uintptr_t)2)  /* hub->sys: a handler runs on it (no take-over) */
/* The watcher sleeps for good (handoff.c, note C). */
extern _Atomic int kz__sysmon_sleeping KZ_INTERNAL;
KZ_INTERNAL void kz__sysmon_wake(struct kz__hub *hub);
/* hub's green threads may make calls that hand it over (the shim's hubs:
   their OS threads are never joined).  Any thread. */
KZ_INTERNAL void kz__handoff_enable(struct kz__hub *hub);
/* The hub context's first step on the OS thread that took it over. */
KZ_INTERNAL void kz__handoff_moved(struct kz__hub *hub);
/* kz__sys_exit's slow half: the hub left; come back to it. */
KZ_INTERNAL void kz__sys_rejoin(struct kz_green *g);
/* Signal handlers of the program (the shim's wrapper): 1 if the handler
   runs in a green thread that is in such a call and the hub stays until
   kz__handoff_unpin; 0 if that is not the case (nothing to undo); -1 if
   the hub left this OS thread: the handler runs for a thread of its own,
   as outside kudzu (handoff.c, note D). */
KZ_INTERNAL int kz__handoff_pin(struct kz__hub *hub);
KZ_INTERNAL void kz__handoff_unpin(struct kz__hub *hub);
/* The OS thread running green thread g's call if g is away, else 0. */
KZ_INTERNAL pid_t kz__handoff_away_tid(struct kz_green *g);
/* Set by the shim: send sig to g, which is back on its hub (note F). */
extern KZ_INTERNAL void (*kz__away_signal)(struct kz__hub *hub, kz_green_t id, int sig);

/* Around a system call that may block (a raw syscall() the shim does not
   translate): if it blocks long, the hub's other green threads go on on
   another OS thread (handoff.c).  Returns what kz__sys_exit takes.  The
   call in between must not touch the hub. */
static inline struct kz_green *kz__sys_enter(void)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g;
  if (!hub || !hub->handoff_ok || !(g = hub->current))
    return NULL;
  if (!g->tp && (g != hub->main || hub->nshared)) /* handoff.c, note G */
    return NULL;
  __atomic_store_n(&hub->sys_seq, hub->sys_seq + 1, __ATOMIC_RELAXED);
  atomic_store_explicit(&hub->sys, (uintptr_t)g, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst); /* the watcher's membarrier does the rest (handoff.c, note C) */
  if (atomic_load_explicit(&kz__sysmon_sleeping, memory_order_relaxed))
    kz__sysmon_wake(hub);
  return g;
}

static inline void kz__sys_exit(struct kz_green *g)
{
  uintptr_t v = (uintptr_t)g;
  if (g && KZ_UNLIKELY(!atomic_compare_exchange_strong(&g->hub->sys, &v, 0)))
    kz__sys_rejoin(g);
}

/* The watcher and spares in a fork child: none. */
KZ_INTERNAL void kz__handoff_forked(struct kz__hub *hub);

/* TLS area tp (a green thread's) reads kz__tls_hub as hub from now on. */
KZ_INTERNAL void kz__tls_set_hub(void *tp, struct kz__hub *hub);
/* The thread id libc reads in the TLS area tp (its descriptor's). */
KZ_INTERNAL void kz__tls_set_tid(void *tp, pid_t tid);

/* ---- Diagnostics (debug.c) -------------------------------------------------- */

/* The diagnostics thread (monitor.c).  kz__monitor_init reads KUDZU_MONITOR
   and KUDZU_DUMP_SIGNAL; called once, before the first hub.  Every hub is
   added when created and removed before it is freed.  Do not switch. */
KZ_INTERNAL void kz__monitor_init(void);
KZ_INTERNAL void kz__monitor_add(struct kz__hub *hub);
KZ_INTERNAL void kz__monitor_remove(struct kz__hub *hub);
/* The main thread leaves with pthread_exit: the monitor thread ends, so it
   does not keep the process alive (monitor.c, note G).  Any thread. */
KZ_INTERNAL void kz__monitor_main_left(void);
/* The hubs that exist now, and posting to every one but self a message
   make(arg) builds (NULL: out of memory, the hubs left go without one);
   drop frees one that was made but not posted.  make and drop run with no
   lock of the runtime held (monitor.c, note I).  Any thread; do not
   switch. */
KZ_INTERNAL size_t kz__hubs_count(void);
KZ_INTERNAL void kz__hubs_post_others(struct kz__hub *self, struct kz__post *(*make)(void *arg),
                                      void (*drop)(struct kz__post *p), void *arg);
/* Call fn(hub, arg) for every hub, in the order they were created, with
   the list's lock held (no hub is freed meanwhile; it may be running on
   its own thread): fn reads what it wants, and does not switch, post or
   lock.  Any thread. */
KZ_INTERNAL void kz__hubs_each(void (*fn)(struct kz__hub *hub, void *arg), void *arg);

/* The size of each hub's alternate signal stack (debug.c). */
#define KZ__ALTSTACK_SIZE (64 * 1024)
KZ_INTERNAL void kz__debug_thread_init(struct kz__hub *hub);
KZ_INTERNAL void kz__debug_thread_term(struct kz__hub *hub);
/* A hub went from OS thread from to OS thread to (handoff.c): the crash
   report asks the new one for the hub's part. */
KZ_INTERNAL void kz__debug_thread_moved(pid_t from, pid_t to);
/* Report a stack overflow of g on stderr (async-signal-safe enough for the
   crash path) and die with SIGSEGV. */
KZ_INTERNAL _Noreturn void kz__overflow_die(struct kz_green *g, const void *addr);
/* Write a line to stderr, prefixed "kudzu: ".  Async-signal-safe. */
KZ_INTERNAL void kz__say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Verify build: check the hub's invariants (no-op otherwise). */
KZ_INTERNAL void kz__verify(struct kz__hub *hub);

/* Public-layer error conversion: errno = -r, return -1. */
static inline int kz__fail_errno(int r)
{
  errno = -r;
  return -1;
}

/* ---- The toolbox (future.c, combine.c, deadline.c, sync.c, queue.c, group.c,
   worker.c, remote.c) ---------------------------------------------------------- */

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

/* Request cancellation of g (green.c); 0.  Hub thread only.  Does not switch. */
KZ_INTERNAL int kz__cancel(struct kz_green *g);

/* OS-thread synchronisation that never goes through the preload shim
   (os.c, the OS-call table, with its contract).  libkudzu's own locks are taken from green threads, where the
   shim would turn pthread_mutex_lock into a green wait that a real thread's
   unlock cannot end; these call libc's functions directly.  Conditions made
   by kz__os_cond_init measure time on CLOCK_MONOTONIC.

   Reaching libc, not the shim.  A call from libkudzu.so to pthread_mutex_lock
   by name goes through libkudzu's PLT/GOT, which the dynamic linker fills
   with the first definition in the global search order: the executable,
   then LD_PRELOAD objects (libkudzu-preload.so), then the program's
   dependencies (libc), then theirs (libkudzu.so, loaded as the preload's
   dependency, comes after libc).  So under the shim every such call, and
   every address taken of such a name, reaches the shim's interposer: the
   runtime would run its own critical sections as green waits, and recurse
   into itself.  dlsym(RTLD_NEXT) from libkudzu does not help either: it
   searches only the objects after libkudzu, where no pthread function is.
   Rule: a libc function that libkudzu-preload exports (kudzu-preload.map)
   is called from hub/ only through these kz__os_ functions, which call
   pointers looked up once in libc's own handle (dlopen(LIBC_SO,
   RTLD_NOLOAD) + dlsym: a handle's lookup searches that object and its
   dependencies, never the preloads).  Functions the shim does not interpose
   (pthread_mutex_init, pthread_cond_destroy, pthread_sigmask...) may be
   called by name.  The same goes for read, write, close, sigaction,
   sched_yield, raise and pthread_exit: the shim would park the runtime's own
   diagnostics output, or wrap its signal handlers as the program's (a dump
   request would then interrupt the program's blocked call with EINTR).
   tests/test_os_calls.c checks the rule at run time for the pthread
   functions, tests/shim/own_names.sh for every name libkudzu links to. */
KZ_INTERNAL void kz__os_lock(pthread_mutex_t *m);
KZ_INTERNAL void kz__os_unlock(pthread_mutex_t *m);
/* pthread_once, pthread_key_create and pthread_setspecific of libc: 0 or
   -errno.  For the runtime's own once-controls and keys only (the shim's
   versions of these keep a green thread's values in its record). */
KZ_INTERNAL int kz__os_once(pthread_once_t *once, void (*init)(void));
KZ_INTERNAL int kz__os_key_create(pthread_key_t *key, void (*destructor)(void *));
KZ_INTERNAL int kz__os_setspecific(pthread_key_t key, const void *value);
KZ_INTERNAL int kz__os_cond_init(pthread_cond_t *c);
KZ_INTERNAL void kz__os_signal(pthread_cond_t *c);
KZ_INTERNAL void kz__os_broadcast(pthread_cond_t *c);
/* Wait on c (m held) until signalled or the kz__now() deadline (< 0: none)
   passes: 0 or -ETIMEDOUT.  Blocks the OS thread. */
KZ_INTERNAL int kz__os_wait(pthread_cond_t *c, pthread_mutex_t *m, double deadline);
/* Start a real OS thread (every signal blocked in it), join one.  0 or -errno. */
KZ_INTERNAL int kz__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
KZ_INTERNAL int kz__os_thread_join(pthread_t t, void **result);
KZ_INTERNAL pthread_t kz__os_thread_self(void);
KZ_INTERNAL int kz__os_thread_detach(pthread_t t); /* 0 or -errno */
/* The OS thread leaves (pthread_exit). */
KZ_INTERNAL _Noreturn void kz__os_thread_exit(void *result);
/* libc's own, with libc's conventions (-1 and errno).  Safe in a signal
   handler once libkudzu's constructor ran (the table is filled by then). */
KZ_INTERNAL ssize_t kz__os_read(int fd, void *buf, size_t n);
KZ_INTERNAL ssize_t kz__os_write(int fd, const void *buf, size_t n);
KZ_INTERNAL int kz__os_close(int fd);
KZ_INTERNAL int kz__os_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
KZ_INTERNAL void kz__os_sched_yield(void);
KZ_INTERNAL int kz__os_raise(int sig);
/* A system call made here, never through libc's syscall(): the shim
   interposes syscall() for the program's raw calls (preload/syscall.c), and
   the runtime's own raw calls (its eventfd, its runtime descriptors, the
   futex words of its once-controls and the monitor, gettid) must neither be
   redirected there nor refused as the program's (a raw close of a runtime
   descriptor).  libc's conventions: -1 and errno on failure.  Signal-safe.
   x86-64, as the context switch (hub/switch_x86_64.S).  Use kz__syscall(nr,
   up to six arguments); arguments are passed as long.  A function of its
   own (os.c), never inlined: a pointer passed as a number into an inline
   asm does not make the compiler reload what the kernel wrote there (a
   local's address given to get_robust_list read back as NULL). */
KZ_INTERNAL long kz__syscall6(long nr, long a, long b, long c, long d, long e, long f);
#define KZ__SYSCALL_(nr, a, b, c, d, e, f, ...)                                            \
  kz__syscall6((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define kz__syscall(...) KZ__SYSCALL_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)

/* From now on, reach libc's function at libc_fn through fn instead: the
   shim patched libc's entry to lead to its interposer, and fn runs the
   original code (preload/patch.c).  Before any other thread exists. */
KZ_INTERNAL void kz__os_divert(void *libc_fn, void *fn);

/* A shield: while it is up, the running green thread's parks ignore its
   cancellation and scoped deadline (both stay pending and apply to the next
   park after kz__shield_down).  For waits that must finish to keep memory
   safe or a promise kept: relocking a mutex after a condition wait, waiting
   for a completion already under way.  Hub thread only, in a green thread. */
struct kz__shield {
  double deadline; /* the green thread's scoped deadline, restored on the way down */
  uint8_t nocancel; /* KZ__G_NO_CANCEL as it was */
};
static inline void kz__shield_up(struct kz_green *g, struct kz__shield *s)
{
  s->deadline = g->deadline;
  s->nocancel = g->flags & KZ__G_NO_CANCEL;
  g->deadline = 0;
  g->flags |= KZ__G_NO_CANCEL;
}
static inline void kz__shield_down(struct kz_green *g, const struct kz__shield *s)
{
  g->deadline = s->deadline;
  if (!s->nocancel)
    g->flags &= ~KZ__G_NO_CANCEL;
}

/* Futures (future.c).  A future completes on its owner hub and runs its
   callbacks there; green threads of every hub wait on it, and any thread
   watches, cancels or adds callbacks.  References are counted atomically,
   since a future made for another hub (remote.c) is held by OS threads
   that have none. */
struct kz__future;

/* Something notified synchronously, on the owner hub and under the
   future's lock, when a future completes (gather, wait, as_completed).
   Must not block; may take a lock of its own (future.c, note D). */
struct kz__fwatch {
  struct kz__link link; /* in the future's watch list; self-linked once run */
  void (*fn)(struct kz__fwatch *w, struct kz__future *f);
};

/* A new pending future owned by hub, with one reference (the caller's) and a
   handle; NULL with -ENOMEM in *err.  Any thread. */
KZ_INTERNAL struct kz__future *kz__future_new(struct kz__hub *hub, int *err);
/* The future for handle h, which may be a kz_future_t or a kz_green_t (the
   green thread's completion future, owned by the caller's hub; one of
   another hub's green thread is made by a round trip there, future.c note
   H), with a new reference the caller drops with kz__future_unref; NULL
   with -EINVAL (0, stale), -ENOMEM or -EPERM (a hub's context, for another
   hub's green thread) in *err.  Hub thread; may switch. */
KZ_INTERNAL struct kz__future *kz__future_get(uint64_t h, int *err);
KZ_INTERNAL void kz__future_ref(struct kz__future *f);
KZ_INTERNAL void kz__future_unref(struct kz__future *f);
KZ_INTERNAL uint64_t kz__future_id(struct kz__future *f);
/* Make f the completion of green thread g (both on the same hub): f
   completes when g finishes (at once if it has), and cancelling f cancels
   g.  Hub thread.  Does not switch. */
KZ_INTERNAL void kz__future_bind(struct kz__future *f, struct kz_green *g);
/* Mark f as the completion of a green thread still to be spawned (remote.c):
   kz_future_set_* refuse it.  Before f is shared. */
KZ_INTERNAL void kz__future_mark_bound(struct kz__future *f);
/* Complete f (hub thread, its owner's): error 0 with result, error > 0, or
   ECANCELED for cancelled.  false if it was already complete. */
KZ_INTERNAL bool kz__future_complete(struct kz__future *f, void *result, int error);
/* Is f complete?  Its outcome: 0 (and *result), an error, or ECANCELED.
   -EAGAIN while pending.  Any thread (acquire). */
KZ_INTERNAL int kz__future_outcome(struct kz__future *f, void **result);
/* Request f's cancellation: a pending plain future completes cancelled; a
   green thread's future cancels the green thread (and completes when it
   finishes; from another thread the request is posted to its hub).  false
   if f was already complete.  Any thread. */
KZ_INTERNAL bool kz__future_cancel(struct kz__future *f);
/* Watch f: w->fn runs when f completes, and true; false (not watched) if f
   is already complete.  kz__future_unwatch is harmless after it ran; once
   it returns, w->fn is not running and never will.  Any thread. */
KZ_INTERNAL bool kz__future_watch(struct kz__future *f, struct kz__fwatch *w);
KZ_INTERNAL void kz__future_unwatch(struct kz__future *f, struct kz__fwatch *w);

#endif
