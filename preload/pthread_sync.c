/* pthread_sync.c: mutexes, condition variables, read-write locks, barriers,
 * spinlocks and unnamed semaphores for green threads, shared with real OS
 * threads (family "thread").
 *
 * The program's glibc objects stay the one source of truth: real threads
 * (the runtime's workers, threads of an unpatched family, hub callbacks) use
 * them with the real functions.  A green thread never blocks its OS thread
 * on one: it makes the non-blocking attempt (trylock, trywait, tryrdlock),
 * and when the object is taken it queues itself in the wait table under the
 * object's address, tries once more, and parks.  Every interposed release
 * (unlock, post, signal, broadcast), from whatever thread, makes the real
 * call and then wakes the green waiters of that address: directly on the
 * waker's own hub, through kz__hub_post on any other.
 *
 * Notes.
 * A. glibc records a mutex's owner as the OS thread (its TID), which the
 *    green threads of a hub share: glibc would let green B into a recursive
 *    mutex green A holds, and would let B unlock A's error-checking mutex.
 *    So the green owner of recursive and error-checking mutexes (and the
 *    recursion count, glibc's staying at 1) is kept in an owner table;
 *    normal mutexes need none (a second trylock from the same OS thread is
 *    EBUSY).  Kinds: __data.__kind & 3 (normal 0, recursive 1, errorcheck 2,
 *    adaptive 3), bit 7 process-shared.
 * B. Lost wake-ups: a waiter queues itself (a seq_cst increment of nqueued)
 *    before its last attempt; a releaser makes the real release (an atomic
 *    read-modify-write) and then, after a full fence, reads nqueued.  One of
 *    the two sees the other.  When nobody waits anywhere, a release costs
 *    one fence and one load more than glibc's.
 * C. Condition variables wait in the table, also for real threads (on a
 *    futex of their own), because glibc's pthread_cond_wait releases the
 *    mutex internally, where the shim cannot wake the green threads queued
 *    on that mutex.  signal/broadcast wake table waiters and also call the
 *    real function; spurious wake-ups are allowed by POSIX.  The clock
 *    attribute is bit 1 of __data.__wrefs (bit 0: process-shared), checked
 *    against glibc 2.36.  Realtime deadlines are converted once, at the
 *    call, to the hub's monotonic clock.
 * D. Process-shared objects (PTHREAD_PROCESS_SHARED, sem_init(.., 1, ..),
 *    sem_open): another process releases them with glibc's own functions,
 *    which only wake the kernel's futex waiters, never this table.  A green
 *    thread that finds one taken waits in one of two ways, and the program
 *    always acquires it on the green thread's own OS thread (the real call,
 *    or a non-blocking attempt on the hub), so ownership (the owner TID, the
 *    robust list, error checks) is the program's, as natively:
 *    - alone on its hub (kz_shim_alone: no other green thread, callback or
 *      remote completion: the pre-fork worker) it makes the real blocking
 *      call, in the kernel, exactly as natively (its timeout, EINTR);
 *    - otherwise a worker of a pool of their own (pw_pool) announces itself as
 *      a waiter in the object's own protocol, sleeps on its futex word
 *      (shared, not FUTEX_PRIVATE_FLAG) until a release wakes it, the word
 *      changes, the object's deadline passes (on its clock) or the green
 *      thread gives up, and returns; the green thread then tries again.
 *      The worker sleeps with futex_waitv on the object's word and on a
 *      private word of its own request, which the green thread sets and
 *      wakes when it gives up (signal, cancellation), so an abandoned
 *      worker never lingers; before Linux 5.16 (no futex_waitv) it sleeps
 *      on the object alone and the green thread wakes every sleeper of the
 *      word instead (spurious wake-ups, which every glibc waiter allows).
 *      A green thread that gives up after its worker was woken passes the
 *      wake-up on (one more FUTEX_WAKE): glibc's releases wake one waiter.
 *    glibc's x86_64 layouts used here are ABI (static initialisers and the
 *    objects in shared memory between programs built against different
 *    glibc releases depend on them), checked against glibc 2.36:
 *    - sem_t: a 64-bit word at offset 0, the value in its low half (the
 *      futex word) and the number of waiters in its high half; sem_post
 *      adds 1 and wakes one futex waiter when the high half is non-zero.
 *      The int at offset 8 is 0 for a private semaphore.  The worker adds
 *      itself to the high half around its sleep.
 *    - pthread_mutex_t: __kind (offset 16): type in bits 0-1, robust 16,
 *      priority inheritance 32, priority protection 64, process-shared 128.
 *      __lock (offset 0): 0 free, 1 locked, 2 locked with waiters (unlock
 *      exchanges 0 and wakes one if it was 2); for a robust mutex the
 *      owner's TID | FUTEX_WAITERS | FUTEX_OWNER_DIED (the kernel's robust
 *      futex protocol).  The worker marks the word 2 (FUTEX_WAITERS) and
 *      sleeps on that value; a green thread that acquires after a wait
 *      marks it again, since its own trylock stored 1 (the TID alone),
 *      and others may still sleep.  Priority-inheritance and priority-
 *      protection mutexes have no such protocol (the kernel acquires for
 *      the waiter): the worker takes one and lets it go at once (not a
 *      robust one: an orphan let go unrepaired becomes unrecoverable; that
 *      waits in the kernel).
 *    - pthread_rwlock_t: glibc counts a waiter only as a pending owner, so
 *      the worker takes it (for reading or writing, as asked) and lets go
 *      at once.  __shared marks it process-shared.
 *    - pthread_cond_t (__wrefs bit 0: process-shared): glibc must register
 *      a waiter before the mutex is released, which no hand-off from the
 *      outside can do, so the worker makes glibc's wait with the program's
 *      mutex and releases it as soon as it has it back.  Only with a normal
 *      or adaptive mutex: glibc checks the owner of the other kinds on the
 *      release inside the wait, so those wait in the kernel.
 *    - Barriers are the shim's own (note E): a process-shared one's waiters
 *      sleep on its round word, which the last arrival wakes (shared).
 *    No wait on a process-shared object is ever timed to re-check it.
 * E. Barriers are the shim's own, in the program's pthread_barrier_t (32
 *    bytes): an arrival count and a generation.  Real threads wait in the
 *    table too, so green and real threads may share one barrier; every
 *    process using a process-shared one must run under the shim.
 * F. A contended spinlock yields to the hub's other green threads between
 *    attempts: the holder may be a green thread parked on this OS thread.
 * G. fork(): the child keeps the waiters of the forking thread's hub only
 *    (sync_atfork_child); bucket locks another thread held are released.
 *    In the child of a process that never had another thread
 *    (kz__fork_threaded) every waiter is of that hub and no bucket lock is
 *    held: the table is not even read (its pages, never touched, would
 *    each cost the child a fault).
 * H. Before a green thread that is not alone on its hub hands a
 *    process-shared semaphore or mutex wait to a worker, it tries again for
 *    up to PSHARED_SPIN_S (20 us), letting the hub's other ready green
 *    threads run between tries, pausing when none is ready.  A hand-off
 *    costs three thread wake-ups (the worker's, the release's of the
 *    worker, the hub's), each an exit from an idle CPU on a quiet machine,
 *    where another process's reply usually comes within the spin: two
 *    processes ping-ponging through two semaphores, each with three more
 *    green threads, took 70-90 us a round trip with the hand-off alone
 *    (native: 4-9 us) and 0.3-1.9 us with the spin (scripts/bench,
 *    pshared_sem_roundtrip_busy_us).  Bounded, then a real wait: not
 *    polling; what it costs is up to 20 us of one core per wait that the
 *    spin does not catch.
 * I. The table of libc's own functions (rs) is filled by the constructor,
 *    not at the first call: a pre-fork server's parent never locks, and
 *    each child then made its first lock call with thirty dlsym lookups,
 *    faulting in pages of libc's symbol table, in every child anew.
 */
#include "thread.h"

#include <dlfcn.h>
#include <limits.h>
#include <linux/futex.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT KZ_THR_EXPORT

/* ---- The real functions ----------------------------------------------------- */

#define SYNC_REAL(X)                                                                            \
  X(int, pthread_mutex_lock, (pthread_mutex_t *))                                               \
  X(int, pthread_mutex_trylock, (pthread_mutex_t *))                                            \
  X(int, pthread_mutex_timedlock, (pthread_mutex_t *, const struct timespec *))                 \
  X(int, pthread_mutex_clocklock, (pthread_mutex_t *, clockid_t, const struct timespec *))      \
  X(int, pthread_mutex_unlock, (pthread_mutex_t *))                                             \
  X(int, pthread_cond_wait, (pthread_cond_t *, pthread_mutex_t *))                              \
  X(int, pthread_cond_timedwait, (pthread_cond_t *, pthread_mutex_t *, const struct timespec *)) \
  X(int, pthread_cond_clockwait,                                                                \
    (pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *))                  \
  X(int, pthread_cond_signal, (pthread_cond_t *))                                               \
  X(int, pthread_cond_broadcast, (pthread_cond_t *))                                            \
  X(int, pthread_rwlock_rdlock, (pthread_rwlock_t *))                                           \
  X(int, pthread_rwlock_tryrdlock, (pthread_rwlock_t *))                                        \
  X(int, pthread_rwlock_timedrdlock, (pthread_rwlock_t *, const struct timespec *))             \
  X(int, pthread_rwlock_clockrdlock, (pthread_rwlock_t *, clockid_t, const struct timespec *))  \
  X(int, pthread_rwlock_wrlock, (pthread_rwlock_t *))                                           \
  X(int, pthread_rwlock_trywrlock, (pthread_rwlock_t *))                                        \
  X(int, pthread_rwlock_timedwrlock, (pthread_rwlock_t *, const struct timespec *))             \
  X(int, pthread_rwlock_clockwrlock, (pthread_rwlock_t *, clockid_t, const struct timespec *))  \
  X(int, pthread_rwlock_unlock, (pthread_rwlock_t *))                                           \
  X(int, pthread_spin_lock, (pthread_spinlock_t *))                                             \
  X(int, pthread_spin_trylock, (pthread_spinlock_t *))                                          \
  X(int, pthread_barrier_init, (pthread_barrier_t *, const pthread_barrierattr_t *, unsigned))  \
  X(int, pthread_barrier_destroy, (pthread_barrier_t *))                                        \
  X(int, pthread_barrier_wait, (pthread_barrier_t *))                                           \
  X(int, sem_wait, (sem_t *))                                                                   \
  X(int, sem_trywait, (sem_t *))                                                                \
  X(int, sem_timedwait, (sem_t *, const struct timespec *))                                     \
  X(int, sem_clockwait, (sem_t *, clockid_t, const struct timespec *))                          \
  X(int, sem_post, (sem_t *))                                                                   \
  X(int, sched_yield, (void))

static struct {
#define X(ret, name, args) ret(*name) args;
  SYNC_REAL(X)
#undef X
  _Atomic bool filled;
} rs;

/* dlsym is thread-safe and every filler stores the same values.  The first
   call may be on a success path of the program's: errno is kept. */
static void sync_real_fill(void)
{
  int saved = errno;
#define X(ret, name, args) rs.name = (ret(*) args)dlsym(RTLD_NEXT, #name);
  SYNC_REAL(X)
#undef X
  atomic_store_explicit(&rs.filled, true, memory_order_release);
  errno = saved;
}

#define RS(name)                                                                        \
  (KZ_LIKELY(atomic_load_explicit(&rs.filled, memory_order_acquire)) ? rs.name          \
                                                                     : (sync_real_fill(), rs.name))

/* ---- Futexes (real threads waiting in the table) ------------------------------- */

/* These leave errno as it was: they run on the success paths of the
   program's calls. */
static void futex_wait(_Atomic uint32_t *word, uint32_t val, const struct timespec *rel)
{
  int saved = errno;
  kz__syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, rel, NULL, 0);
  errno = saved;
}

static void futex_wake(_Atomic uint32_t *word, int n)
{
  int saved = errno;
  kz__syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
  errno = saved;
}

/* The same on a word another process may wait on or release (note D). */
static void futex_wait_shared(void *word, uint32_t val)
{
  int saved = errno;
  kz__syscall(SYS_futex, word, FUTEX_WAIT, val, NULL, NULL, 0);
  errno = saved;
}

static void futex_wake_shared(void *word, int n)
{
  int saved = errno;
  kz__syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
  errno = saved;
}

/* ---- The wait table (note B) ------------------------------------------------------ */

/* A thread waiting in the table.  state is also a real waiter's futex word:
 *   W_QUEUED   in its bucket's list, nobody has chosen it
 *   W_CLAIMED  taken off the list by a waker; the wake-up is on its way
 *              (a post to its hub), so the waiter's memory must stay put
 *   W_WOKEN    the wake-up arrived
 *   W_LEFT     it left the list itself (timed out, cancelled, acquired) */
enum { W_QUEUED, W_CLAIMED, W_WOKEN, W_LEFT };

struct waiter {
  struct kz__link link;       /* in its bucket's list, while W_QUEUED */
  const void *addr;           /* the object waited on */
  struct kz_green *g;         /* the green thread, or NULL: a real thread */
  struct kz__hub *hub;        /* g's hub */
  _Atomic uint32_t state;     /* W_* */
  struct waiter *next_claimed; /* a waker's private list */
  struct kz__post post;       /* the wake-up sent to another hub */
};

/* The green owner of a recursive or error-checking mutex (note A). */
struct owner {
  struct owner *next;   /* in its bucket */
  const void *addr;     /* the mutex */
  kz_green_t g;         /* the green thread holding it */
  unsigned count;       /* its recursion depth */
};

#define NBUCKET 256

struct bucket {
  atomic_bool lock;       /* short critical sections only */
  struct kz__link waiters; /* struct waiter, FIFO; lazily initialised */
  struct owner *owners;   /* struct owner */
};

static struct bucket buckets[NBUCKET];
static _Atomic size_t nqueued; /* waiters in every list: 0 makes releases cheap */

static struct bucket *bucket_of(const void *addr)
{
  uintptr_t a = (uintptr_t)addr;
  return &buckets[(a >> 3 ^ a >> 12) % NBUCKET];
}

static void bucket_lock(struct bucket *b)
{
  unsigned spins = 0;
  while (atomic_exchange_explicit(&b->lock, true, memory_order_acquire))
    if (++spins % 64 == 0)
      RS(sched_yield)(); /* the holder's OS thread was preempted */
  if (KZ_UNLIKELY(!b->waiters.next))
    kz__list_init(&b->waiters);
}

static void bucket_unlock(struct bucket *b)
{
  atomic_store_explicit(&b->lock, false, memory_order_release);
}

/* Runs on the waiter's hub: the wake-up arrives. */
static void post_wake(struct kz__post *p)
{
  struct waiter *w = kz__container_of(p, struct waiter, post);
  struct kz_green *g = w->g;
  atomic_store_explicit(&w->state, W_WOKEN, memory_order_release);
  kz__wake(g, 0);
}

/* Hand a claimed waiter its wake-up.  After this, w may be gone. */
static void deliver(struct waiter *w)
{
  if (!w->g) {
    atomic_store_explicit(&w->state, W_WOKEN, memory_order_release);
    futex_wake(&w->state, 1); /* a stale address at worst: a spurious wake */
  } else if (kz__hub() == w->hub) {
    atomic_store_explicit(&w->state, W_WOKEN, memory_order_release);
    kz__wake(w->g, 0);
  } else {
    w->post.fn = post_wake;
    kz__hub_post(w->hub, &w->post);
  }
}

size_t kz_sync_wake(const void *addr, size_t n)
{
  struct waiter *claimed = NULL, **tail = &claimed;
  struct bucket *b;
  struct kz__link *l, *next;
  size_t k = 0;
  atomic_thread_fence(memory_order_seq_cst); /* note B */
  if (atomic_load_explicit(&nqueued, memory_order_relaxed) == 0)
    return 0;
  b = bucket_of(addr);
  bucket_lock(b);
  for (l = b->waiters.next; l != &b->waiters && k < n; l = next) {
    struct waiter *w = kz__container_of(l, struct waiter, link);
    next = l->next;
    if (w->addr != addr)
      continue;
    kz__list_remove(l);
    atomic_fetch_sub(&nqueued, 1);
    atomic_store_explicit(&w->state, W_CLAIMED, memory_order_relaxed);
    w->next_claimed = NULL;
    *tail = w;
    tail = &w->next_claimed;
    k++;
  }
  bucket_unlock(b);
  while (claimed) {
    struct waiter *w = claimed;
    claimed = w->next_claimed; /* before w can go away */
    deliver(w);
  }
  return k;
}

static void enqueue(struct waiter *w)
{
  struct bucket *b = bucket_of(w->addr);
  bucket_lock(b);
  kz__list_push(&b->waiters, &w->link);
  atomic_fetch_add(&nqueued, 1); /* seq_cst: note B */
  bucket_unlock(b);
}

/* Park green g until woken or deadline; cancellable only with
   KZ_SYNC_CANCEL (otherwise a scoped deadline does not apply either: a
   plain lock has no timeout).  The hub is held: the waker may be another
   OS thread. */
int kz_sync_park(struct kz_green *g, double deadline, int opts, const char *what)
{
  struct kz__hub *hub = g->hub;
  uint8_t saved_flags = g->flags;
  double saved_deadline = g->deadline;
  int r;
  if (!(opts & KZ_SYNC_CANCEL)) {
    g->flags |= KZ__G_NO_CANCEL;
    g->deadline = 0;
  }
  g->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = what};
  kz__hub_hold(hub);
  r = kz__park(deadline);
  kz__hub_unhold(hub);
  if (!(opts & KZ_SYNC_CANCEL)) {
    g->flags = (uint8_t)((g->flags & ~KZ__G_NO_CANCEL) | (saved_flags & KZ__G_NO_CANCEL));
    g->deadline = saved_deadline;
  }
  return r;
}

/* Sleep a real thread until its waiter leaves W_QUEUED or deadline. */
static int park_real(struct waiter *w, double deadline)
{
  while (atomic_load_explicit(&w->state, memory_order_acquire) == W_QUEUED) {
    struct timespec rel, *rp = NULL;
    if (deadline >= 0) {
      double left = deadline - kz__now();
      if (left <= 0)
        return -ETIMEDOUT;
      rel.tv_sec = (time_t)left;
      rel.tv_nsec = (long)((left - (double)rel.tv_sec) * 1e9);
      rp = &rel;
    }
    futex_wait(&w->state, W_QUEUED, rp);
  }
  return 0;
}

/* Leave the table.  Returns true if a wake-up was meant for w (then waits
   for it to arrive, so that nothing refers to w any more). */
static bool leave(struct waiter *w)
{
  struct bucket *b = bucket_of(w->addr);
  uint32_t s;
  bucket_lock(b);
  s = atomic_load_explicit(&w->state, memory_order_relaxed);
  if (s == W_QUEUED) {
    kz__list_remove(&w->link);
    atomic_fetch_sub(&nqueued, 1);
    atomic_store_explicit(&w->state, W_LEFT, memory_order_relaxed);
  }
  bucket_unlock(b);
  if (s == W_QUEUED)
    return false;
  while ((s = atomic_load_explicit(&w->state, memory_order_acquire)) != W_WOKEN) {
    if (w->g)
      kz_sync_park(w->g, -1, 0, "a wake-up on its way");
    else
      futex_wait(&w->state, s, NULL);
  }
  return true;
}

int kz_sync_wait(const void *addr, kz_sync_check check, void *ctx, double deadline, int opts,
                 bool pass_on, const char *what)
{
  struct kz_green *g = kz__self();
  struct waiter w = {.addr = addr, .g = g, .hub = g ? g->hub : NULL, .state = W_QUEUED};
  int r, c = 0;
  bool woken;
  enqueue(&w);
  if (check)
    c = check(ctx);
  if (c != 0)
    r = 0;
  else if (g)
    r = atomic_load_explicit(&w.state, memory_order_acquire) == W_QUEUED
            ? kz_sync_park(g, deadline, opts, what)
            : 0;
  else
    r = park_real(&w, deadline);
  woken = leave(&w);
  if (c != 0) {
    if (woken && pass_on)
      kz_sync_wake(addr, 1); /* the wake-up belongs to someone else */
    return c > 0 ? 0 : c;
  }
  return woken || r == 0 ? 1 : r;
}

/* In a forked child only the forking thread exists: locks other threads
   held are free, and their waiters (real threads, green threads of other
   hubs) are gone. */
static void sync_atfork_child(void)
{
  struct kz__hub *hub;
  if (!kz__fork_threaded())
    return; /* note G: no other thread held a lock or waited */
  hub = kz__hub();
  /* Only what must change is written: a page the child only reads stays
     shared with the parent, where a write costs a copy (about 2 us each;
     a fork child that writes every bucket made four copies per fork). */
  for (struct bucket *b = buckets; b < buckets + NBUCKET; b++) {
    struct kz__link *l, *next;
    if (atomic_load_explicit(&b->lock, memory_order_relaxed))
      atomic_store_explicit(&b->lock, false, memory_order_relaxed);
    if (!b->waiters.next || kz__list_empty(&b->waiters))
      continue;
    for (l = b->waiters.next; l != &b->waiters; l = next) {
      struct waiter *w = kz__container_of(l, struct waiter, link);
      next = l->next;
      if (!w->g || w->hub != hub) {
        kz__list_remove(l);
        atomic_fetch_sub(&nqueued, 1);
      }
    }
  }
}

__attribute__((constructor)) static void sync_init(void)
{
  sync_real_fill(); /* note I */
  pthread_atfork(NULL, NULL, sync_atfork_child);
}

/* ---- Time ----------------------------------------------------------------------- */

double kz_thr_deadline(clockid_t clk, const struct timespec *abstime)
{
  struct timespec now;
  if (!abstime)
    return -1;
  clock_gettime(clk, &now);
  return kz__now() + (double)(abstime->tv_sec - now.tv_sec) +
         (double)(abstime->tv_nsec - now.tv_nsec) * 1e-9;
}

static bool bad_time(const struct timespec *t)
{
  return t && (t->tv_nsec < 0 || t->tv_nsec >= 1000000000L);
}

static bool bad_clock(clockid_t clk) { return clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC; }

/* Is the absolute time abs on clock clk already past? */
static bool past(clockid_t clk, const struct timespec *abs)
{
  struct timespec now;
  clock_gettime(clk, &now);
  return now.tv_sec > abs->tv_sec || (now.tv_sec == abs->tv_sec && now.tv_nsec >= abs->tv_nsec);
}

/* One wait of a green thread on a retry-able object: 0 acquired by check,
   1 woken (try again), -ETIMEDOUT, -ECANCELED, check's error. */
static int wait_retry(const void *addr, kz_sync_check check, void *ctx, double deadline,
                      int opts, const char *what)
{
  return kz_sync_wait(addr, check, ctx, deadline, opts, true, what);
}

/* ---- Process-shared objects (note D) ------------------------------------------------- */

/* Note H: how long a green thread tries a process-shared object again
   before handing its wait to a worker. */
#define PSHARED_SPIN_S 20e-6

/* Try check(ctx) for up to PSHARED_SPIN_S, letting the hub's ready green
   threads run between tries (or pausing when none is): check's result,
   0 when the time ran out. */
static int pshared_spin(struct kz_green *g, kz_sync_check check, void *ctx)
{
  double until = kz__now() + PSHARED_SPIN_S;
  for (unsigned i = 1;; i++) {
    int r = check(ctx);
    if (r != 0)
      return r;
    if (g->hub->nready > 0)
      kz__yield();
    else
      __builtin_ia32_pause();
    if (i % 16 == 0 && kz__now() >= until)
      return 0;
  }
}

/* What a worker does for a green thread's wait. */
enum {
  PW_SEM,    /* sem_t: count itself a waiter, sleep while the value is 0 */
  PW_LOCK,   /* a mutex's __lock, 0/1/2: mark it 2, sleep while it is 2 */
  PW_ROBUST, /* a robust mutex's __lock: set FUTEX_WAITERS, sleep on it */
  PW_WORD,   /* sleep while the word holds val (the shim's barriers) */
  PW_TAKE,   /* a mutex without a waiter protocol: lock it, unlock it at once */
  PW_RD,     /* a rwlock: take it for reading, let go at once */
  PW_WR,     /* a rwlock: take it for writing, let go at once */
  PW_COND,   /* a condition variable: wait with the program's mutex, let it go */
};

/* One wait handed to a worker.  Freed by whichever of the green thread and
   the worker lets go last. */
struct pwait {
  _Atomic int refs;       /* 2 at first: the green thread's and the worker's */
  int kind;               /* PW_* */
  void *word;             /* the object's futex word (a semaphore's 64-bit word; for
                             PW_TAKE, PW_RD, PW_WR and PW_COND the object itself) */
  uint32_t val;           /* PW_WORD: the value to sleep on */
  bool timed;             /* abs is the object's deadline, on clock clk */
  clockid_t clk;
  struct timespec abs;
  _Atomic uint32_t stop;  /* 1: the green thread gave up (a private futex word) */
  void *mutex;            /* PW_COND: the program's mutex */
  int result;             /* PW_COND, PW_TAKE, PW_RD, PW_WR: the real call's result */
};

static _Atomic bool no_waitv; /* the kernel has no futex_waitv (before 5.16) */

static void pw_drop(void *arg)
{
  struct pwait *p = arg;
  if (atomic_fetch_sub(&p->refs, 1) == 1)
    free(p);
}

static void pw_discard(void *arg, void *result)
{
  (void)result;
  pw_drop(arg);
}

/* The pool the workers come from: a wait on a shared object may last as
   long as the program likes, so these have a pool of their own, sized for
   every wait at once (threads start only when needed), and never hold up
   a lookup on the default pool nor queue behind one.  A wait queued
   behind busy workers would not see its object released until one ends. */
#define PW_POOL_SIZE 1024

static struct kz_executor *pw_pool(void)
{
  static struct kz_executor *_Atomic pool;
  struct kz_executor *ex = atomic_load_explicit(&pool, memory_order_acquire), *none = NULL;
  if (ex || !(ex = kz_executor_new(PW_POOL_SIZE)))
    return ex;
  if (!atomic_compare_exchange_strong(&pool, &none, ex)) {
    kz_executor_free(ex); /* another thread made one first */
    ex = none;
  }
  return ex;
}

/* On the worker: sleep while *word holds val, until a wake-up, p's
   deadline, or p->stop. */
static void pw_sleep(struct pwait *p, void *word, uint32_t val)
{
  const struct timespec *ts = p->timed ? &p->abs : NULL;
  if (!atomic_load_explicit(&no_waitv, memory_order_relaxed)) {
    struct futex_waitv v[2] = {
        {.val = val, .uaddr = (uintptr_t)word, .flags = FUTEX_32},
        {.val = 0, .uaddr = (uintptr_t)&p->stop, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG},
    };
    if (kz__syscall(SYS_futex_waitv, v, 2, 0, ts, p->clk) >= 0 || errno != ENOSYS)
      return;
    atomic_store(&no_waitv, true);
  }
  if (!atomic_load(&p->stop))
    kz__syscall(SYS_futex, word, FUTEX_WAIT_BITSET | (p->clk == CLOCK_REALTIME ? FUTEX_CLOCK_REALTIME : 0),
            val, ts, NULL, FUTEX_BITSET_MATCH_ANY);
}

#define SEM_WAITER ((uint64_t)1 << 32) /* one waiter, in sem_t's word (note D) */

/* On the worker: the wait itself, in the object's protocol (note D). */
static void *pw_run(void *arg)
{
  struct pwait *p = arg;
  _Atomic uint32_t *lock = p->word;
  uint32_t v;
  switch (p->kind) {
  case PW_SEM: {
    _Atomic uint64_t *data = p->word;
    if ((uint32_t)atomic_fetch_add(data, SEM_WAITER) == 0) /* sem_post now wakes a waiter */
      pw_sleep(p, data, 0);
    atomic_fetch_sub(data, SEM_WAITER);
    break;
  }
  case PW_LOCK:
    v = atomic_load(lock);
    while (v == 1 && !atomic_compare_exchange_weak(lock, &v, 2))
      ;
    if (v != 0) /* 2 now, or the CAS above made it so */
      pw_sleep(p, lock, 2);
    break;
  case PW_ROBUST:
    v = atomic_load(lock);
    while (v != 0 && !(v & (FUTEX_WAITERS | FUTEX_OWNER_DIED)) &&
           !atomic_compare_exchange_weak(lock, &v, v | FUTEX_WAITERS))
      ;
    if (v != 0 && !(v & FUTEX_OWNER_DIED)) /* free or orphaned: the trylock decides */
      pw_sleep(p, lock, v | FUTEX_WAITERS);
    break;
  case PW_TAKE:
    p->result = p->timed ? RS(pthread_mutex_clocklock)(p->word, p->clk, &p->abs)
                         : RS(pthread_mutex_lock)(p->word);
    if (p->result == 0)
      RS(pthread_mutex_unlock)(p->word);
    break;
  case PW_RD:
  case PW_WR:
    if (p->kind == PW_WR)
      p->result = p->timed ? RS(pthread_rwlock_clockwrlock)(p->word, p->clk, &p->abs)
                           : RS(pthread_rwlock_wrlock)(p->word);
    else
      p->result = p->timed ? RS(pthread_rwlock_clockrdlock)(p->word, p->clk, &p->abs)
                           : RS(pthread_rwlock_rdlock)(p->word);
    if (p->result == 0)
      RS(pthread_rwlock_unlock)(p->word);
    break;
  case PW_COND: /* glibc registers, releases the mutex, sleeps, takes it back */
    p->result = p->timed ? RS(pthread_cond_clockwait)(p->word, p->mutex, p->clk, &p->abs)
                         : RS(pthread_cond_wait)(p->word, p->mutex);
    if (p->result == 0 || p->result == ETIMEDOUT)
      RS(pthread_mutex_unlock)(p->mutex);
    break;
  default:
    pw_sleep(p, p->word, p->val);
    break;
  }
  return NULL;
}

/* Park green g while a worker waits for the process-shared object at word
   (note D).  abs: the object's deadline on clock clk, or NULL.  cancel: a
   cancellation point (and a scoped deadline applies); intr: how a signal
   handler interrupts (enum kz_shim_intr, 0: never).  Returns 0 when the
   worker came back (try again), 1 if the wait must be made in the kernel
   (nothing could be handed over, or the worker could not take the
   object), or -EINTR, -ECANCELED, -ETIMEDOUT (a scoped
   deadline) when g gave up first.  PW_COND: mutex is the program's, and
   *result the real wait's result. */
static int pshared_park(struct kz_green *g, int kind, void *word, uint32_t val, clockid_t clk,
                        const struct timespec *abs, bool cancel, int intr, void *mutex,
                        int *result)
{
  int saved_errno = errno; /* the allocations below may set it: callers succeed after */
  struct kz_executor *ex;
  struct pwait *p = malloc(sizeof *p);
  uint8_t saved_flags = g->flags;
  double saved_deadline = g->deadline;
  int r;
  errno = saved_errno;
  if (!p)
    return 1;
  *p = (struct pwait){.kind = kind, .word = word, .val = val, .timed = abs != NULL, .clk = clk,
                      .mutex = mutex};
  atomic_init(&p->refs, 2);
  atomic_init(&p->stop, 0);
  if (abs)
    p->abs = *abs;
  if (!cancel) {
    g->flags |= KZ__G_NO_CANCEL;
    g->deadline = 0;
  }
  if (intr)
    kz_shim_intr_begin(g, intr);
  r = (ex = pw_pool()) ? kz_run_in_executor(ex, pw_run, p, pw_discard, NULL, -1) : -1;
  r = r == 0 ? 0 : ex ? -errno : -ENOMEM;
  errno = saved_errno;
  if (intr)
    kz_shim_intr_end(g);
  if (!cancel) {
    g->flags = (uint8_t)((g->flags & ~KZ__G_NO_CANCEL) | (saved_flags & KZ__G_NO_CANCEL));
    g->deadline = saved_deadline;
  }
  if (r == 0) {
    if (result)
      *result = p->result;
    /* a worker that could not take the object (a priority ceiling below
       its own, too many readers) cannot wait for it: the kernel will */
    r = (kind == PW_TAKE || kind == PW_RD || kind == PW_WR) && p->result != 0 &&
        p->result != ETIMEDOUT;
    free(p); /* the worker is done with it */
    return r;
  }
  if (!ex) {
    free(p); /* no pool: wait in the kernel */
    return 1;
  }
  if (r == -ENOMEM || r == -EAGAIN) {
    pw_drop(p); /* no job or no worker (discard ran): wait in the kernel */
    return 1;
  }
  atomic_store(&p->stop, 1);
  futex_wake(&p->stop, 1);
  if (kind <= PW_WORD) { /* a futex word of the object's own protocol */
    if (atomic_load_explicit(&no_waitv, memory_order_relaxed))
      futex_wake_shared(word, INT_MAX);
    futex_wake_shared(word, 1); /* the wake-up its worker may have taken (note D) */
  }
  pw_drop(p);
  return r;
}

/* ---- Mutexes (note A) --------------------------------------------------------------- */

static int mutex_kind(const pthread_mutex_t *m) { return m->__data.__kind & 3; }
static bool mutex_tracked(const pthread_mutex_t *m)
{
  int k = mutex_kind(m);
  return k == PTHREAD_MUTEX_RECURSIVE || k == PTHREAD_MUTEX_ERRORCHECK;
}
static bool mutex_pshared(const pthread_mutex_t *m) { return (m->__data.__kind & 128) != 0; }
static bool mutex_robust(const pthread_mutex_t *m) { return (m->__data.__kind & 16) != 0; }

/* The real call expr on mutex m, made with the OS thread's TLS loaded when m
   is robust: glibc then puts it on the OS thread's robust list, the one the
   kernel knows (hub/tls.c, note I). */
#define ON_OS_LIST(m, expr)                                                    \
  ({                                                                           \
    void *tp_ = mutex_robust(m) ? kz__tls_os_enter() : NULL;                   \
    int r_ = (expr);                                                           \
    kz__tls_os_leave(tp_);                                                     \
    r_;                                                                        \
  })

/* The owner record of addr in b (locked), or NULL. */
static struct owner **owner_slot(struct bucket *b, const void *addr)
{
  struct owner **o;
  for (o = &b->owners; *o && (*o)->addr != addr; o = &(*o)->next)
    ;
  return o;
}

/* The green owner of addr (0: none) and its count. */
static kz_green_t owner_get(const void *addr, unsigned *count)
{
  struct bucket *b = bucket_of(addr);
  struct owner *o;
  kz_green_t g = 0;
  bucket_lock(b);
  if ((o = *owner_slot(b, addr))) {
    g = o->g;
    *count = o->count;
  }
  bucket_unlock(b);
  return g;
}

/* Record (count > 0) or forget (count 0) the green owner of addr.  Returns
   ENOMEM if it cannot be recorded. */
static int owner_set(const void *addr, kz_green_t g, unsigned count)
{
  int saved = errno; /* malloc may set it even when it succeeds */
  struct bucket *b = bucket_of(addr);
  struct owner **slot, *o, *fresh = count ? malloc(sizeof *fresh) : NULL;
  errno = saved;
  bucket_lock(b);
  slot = owner_slot(b, addr);
  if ((o = *slot) && !count) {
    *slot = o->next;
  } else if (!o && count && fresh) {
    *fresh = (struct owner){.next = b->owners, .addr = addr};
    b->owners = o = fresh;
    fresh = NULL;
  } else if (!count) {
    o = NULL;
  }
  if (o && count) {
    o->g = g;
    o->count = count;
  }
  bucket_unlock(b);
  free(fresh);
  if (!count)
    free(o);
  return count && !o ? ENOMEM : 0;
}

/* One attempt by green g to take m: 0, EBUSY, or trylock's error. */
static int mutex_try(pthread_mutex_t *m, struct kz_green *g)
{
  unsigned count;
  int r;
  if (!mutex_tracked(m))
    return ON_OS_LIST(m, RS(pthread_mutex_trylock)(m));
  if (owner_get(m, &count)) /* another green thread of some hub holds it */
    return EBUSY;
  if ((r = ON_OS_LIST(m, RS(pthread_mutex_trylock)(m))) != 0)
    return r;
  if (owner_set(m, g->id, 1) != 0) {
    ON_OS_LIST(m, RS(pthread_mutex_unlock)(m));
    return EAGAIN;
  }
  return 0;
}

struct mutex_ctx {
  pthread_mutex_t *m;
  struct kz_green *g;
};

static int mutex_check(void *c)
{
  struct mutex_ctx *x = c;
  int r = mutex_try(x->m, x->g);
  return r == 0 ? 1 : r == EBUSY ? 0 : -r;
}

/* How a worker waits for process-shared mutex m, or -1: only in the kernel
   (note D). */
static int mutex_pw_kind(const pthread_mutex_t *m)
{
  int k = m->__data.__kind;
  if (k & (32 | 64))
    return k & 16 ? -1 : PW_TAKE;
  return k & 16 ? PW_ROBUST : PW_LOCK;
}

/* After acquiring process-shared m with trylock following a wait: mark it
   contended, as glibc's own waiters do, for the waiters still asleep. */
static void mutex_mark_contended(pthread_mutex_t *m)
{
  _Atomic uint32_t *lock = (_Atomic uint32_t *)&m->__data.__lock;
  uint32_t one = 1;
  if (mutex_pw_kind(m) == PW_ROBUST)
    atomic_fetch_or(lock, FUTEX_WAITERS);
  else if (mutex_pw_kind(m) == PW_LOCK)
    atomic_compare_exchange_strong(lock, &one, 2);
}

/* Lock process-shared m in the kernel, for green g (note D): the real call's
   result; the green owner recorded (note A). */
static int mutex_in_kernel(pthread_mutex_t *m, struct kz_green *g, clockid_t clk,
                           const struct timespec *abs)
{
  bool alone = kz_shim_alone(g);
  int r;
  if (alone)
    kz_shim_kernel_begin(g);
  r = ON_OS_LIST(m, abs ? RS(pthread_mutex_clocklock)(m, clk, abs) : RS(pthread_mutex_lock)(m));
  if (alone)
    kz_shim_kernel_end(g);
  if ((r == 0 || r == EOWNERDEAD) && mutex_tracked(m) && owner_set(m, g->id, 1) != 0) {
    ON_OS_LIST(m, RS(pthread_mutex_unlock)(m));
    return EAGAIN;
  }
  return r;
}

/* pthread_mutex_lock/trylock/timedlock/clocklock for green g (abs: the
   deadline on clock clk, or NULL). */
static int green_mutex_lock(pthread_mutex_t *m, struct kz_green *g, clockid_t clk,
                            const struct timespec *abs, bool try_only)
{
  struct mutex_ctx ctx = {m, g};
  unsigned count = 0;
  bool waited = false;
  int r, kind;
  if (mutex_tracked(m) && owner_get(m, &count) == g->id) {
    if (mutex_kind(m) == PTHREAD_MUTEX_ERRORCHECK)
      return try_only ? EBUSY : EDEADLK;
    if (count == UINT_MAX)
      return EAGAIN;
    return owner_set(m, g->id, count + 1);
  }
  for (;;) {
    if ((r = mutex_try(m, g)) != EBUSY || try_only) {
      if (r == 0 && waited)
        mutex_mark_contended(m);
      return r;
    }
    if (abs && past(clk, abs)) {
      if (waited && mutex_pw_kind(m) != PW_TAKE)
        futex_wake_shared(&m->__data.__lock, 1); /* a wake-up its worker took */
      return ETIMEDOUT;
    }
    if (!mutex_pshared(m)) {
      r = wait_retry(m, mutex_check, &ctx, kz_thr_deadline(clk, abs), 0, "a pthread mutex");
      if (r <= 0)
        return -r; /* acquired (0), or ETIMEDOUT, or trylock's error */
      continue;
    }
    if ((kind = mutex_pw_kind(m)) >= 0 && !kz_shim_alone(g) &&
        (r = pshared_spin(g, mutex_check, &ctx)) != 0) { /* note H */
      if (r < 0)
        return -r; /* trylock's error */
      if (waited)
        mutex_mark_contended(m);
      return 0;
    }
    if (kind < 0 || kz_shim_alone(g) ||
        pshared_park(g, kind, &m->__data.__lock, 0, clk, abs, false, 0, NULL, NULL) > 0)
      return mutex_in_kernel(m, g, clk, abs);
    waited = true;
  }
}

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_mutex_lock(m, g, CLOCK_REALTIME, NULL, false) : RS(pthread_mutex_lock)(m);
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_mutex_lock(m, g, CLOCK_REALTIME, NULL, true) : RS(pthread_mutex_trylock)(m);
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(pthread_mutex_timedlock)(m, abstime);
  if (bad_time(abstime))
    return EINVAL;
  return green_mutex_lock(m, g, CLOCK_REALTIME, abstime, false);
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(pthread_mutex_clocklock)(m, clk, abstime);
  if (bad_time(abstime) || bad_clock(clk))
    return EINVAL;
  return green_mutex_lock(m, g, clk, abstime, false);
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
  struct kz_green *g = kz_thr_active();
  int r;
  if (g && mutex_tracked(m)) {
    unsigned count = 0;
    kz_green_t o = owner_get(m, &count);
    if (o && o != g->id)
      return EPERM; /* another green thread's (glibc cannot tell) */
    if (o && count > 1)
      return owner_set(m, o, count - 1);
    if (o)
      owner_set(m, 0, 0); /* before the release: the next owner records itself */
  }
  r = g ? ON_OS_LIST(m, RS(pthread_mutex_unlock)(m)) : RS(pthread_mutex_unlock)(m);
  if (r == 0)
    kz_sync_wake(m, 1);
  return r;
}

/* Lock m again after a condition wait, ignoring cancellation. */
static void mutex_relock(pthread_mutex_t *m)
{
  struct kz_green *g = kz__self();
  if (g)
    green_mutex_lock(m, g, CLOCK_REALTIME, NULL, false);
  else
    RS(pthread_mutex_lock)(m);
}

/* ---- Condition variables (note C) ----------------------------------------------------- */

static bool cond_monotonic(const pthread_cond_t *c) { return (c->__data.__wrefs & 2) != 0; }
static bool cond_pshared(const pthread_cond_t *c) { return (c->__data.__wrefs & 1) != 0; }

static int cond_release(void *m)
{
  int r = pthread_mutex_unlock(m);
  return r ? -r : 0;
}

/* Wait on c, m held, until signalled or deadline.  0, ETIMEDOUT, EPERM
   (m not held); a cancelled green thread unwinds with m held again. */
static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, double deadline)
{
  int r = kz_sync_wait(c, cond_release, m, deadline, KZ_SYNC_CANCEL, false,
                       "a condition variable");
  if (r < 0 && r != -ETIMEDOUT && r != -ECANCELED)
    return -r; /* the mutex could not be released: still as it was */
  mutex_relock(m);
  if (r == -ECANCELED) {
    kz_thr_cancel_point();
    return ECANCELED; /* cancelled through the API, not pthread_cancel */
  }
  return r == -ETIMEDOUT ? ETIMEDOUT : 0;
}

/* Should a condition wait go through the table?  Whenever threads are
   patched, for real threads too (note C), except process-shared ones. */
static bool cond_ours(const pthread_cond_t *c)
{
  return kz_shim.ready && kz_thr_patching() && !cond_pshared(c);
}

/* A process-shared condition wait of green g (note D; abs: the deadline on
   clock clk, or NULL).  With a normal mutex and other green threads on the
   hub, a worker makes glibc's wait with the program's mutex (registering
   before the mutex is released, as the wait must) and lets the mutex go as
   soon as it has it back; g then takes it on the hub.  The worker is never
   abandoned: one that gave up could not know whether its wait had begun,
   to end it, or whether the mutex was still held, so a cancellation of g
   (or its scoped deadline) takes effect when the wait ends.  glibc checks
   the owner of the other kinds on release, so those (and a private mutex,
   whose release inside glibc would not wake the table) take the real wait,
   in the kernel.  0, ETIMEDOUT, or the real wait's error; a cancelled g
   unwinds with m held again. */
static int cond_pshared_wait(struct kz_green *g, pthread_cond_t *c, pthread_mutex_t *m,
                             clockid_t clk, const struct timespec *abs)
{
  bool alone = kz_shim_alone(g);
  int r, res = 0;
  if (!alone && mutex_pshared(m) && mutex_kind(m) != PTHREAD_MUTEX_RECURSIVE &&
      mutex_kind(m) != PTHREAD_MUTEX_ERRORCHECK && !(m->__data.__kind & (16 | 32 | 64)) &&
      pshared_park(g, PW_COND, c, 0, clk, abs, false, 0, m, &res) == 0) {
    mutex_relock(m);
    if ((g->flags & (KZ__G_CANCEL | KZ__G_NO_CANCEL)) == KZ__G_CANCEL) {
      kz_thr_cancel_point();
      return ECANCELED; /* cancelled through the API, not pthread_cancel */
    }
    return res;
  }
  if (alone)
    kz_shim_kernel_begin(g);
  r = ON_OS_LIST(m, abs ? RS(pthread_cond_clockwait)(c, m, clk, abs) : RS(pthread_cond_wait)(c, m));
  if (alone)
    kz_shim_kernel_end(g);
  return r;
}

EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
  struct kz_green *g;
  if (!cond_ours(c))
    return (g = kz_thr_active()) ? cond_pshared_wait(g, c, m, CLOCK_REALTIME, NULL)
                                 : RS(pthread_cond_wait)(c, m);
  return cond_wait(c, m, -1);
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abstime)
{
  struct kz_green *g;
  clockid_t clk = cond_monotonic(c) ? CLOCK_MONOTONIC : CLOCK_REALTIME;
  if (!cond_ours(c)) {
    if (!(g = kz_thr_active()))
      return RS(pthread_cond_timedwait)(c, m, abstime);
    return bad_time(abstime) ? EINVAL : cond_pshared_wait(g, c, m, clk, abstime);
  }
  if (bad_time(abstime))
    return EINVAL;
  return cond_wait(c, m, kz_thr_deadline(clk, abstime));
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                                  const struct timespec *abstime)
{
  struct kz_green *g;
  if (!cond_ours(c)) {
    if (!(g = kz_thr_active()))
      return RS(pthread_cond_clockwait)(c, m, clk, abstime);
    return bad_time(abstime) || bad_clock(clk) ? EINVAL : cond_pshared_wait(g, c, m, clk, abstime);
  }
  if (bad_time(abstime) || bad_clock(clk))
    return EINVAL;
  return cond_wait(c, m, kz_thr_deadline(clk, abstime));
}

EXPORT int pthread_cond_signal(pthread_cond_t *c)
{
  kz_sync_wake(c, 1);
  return RS(pthread_cond_signal)(c);
}

EXPORT int pthread_cond_broadcast(pthread_cond_t *c)
{
  kz_sync_wake(c, SIZE_MAX);
  return RS(pthread_cond_broadcast)(c);
}

/* ---- Read-write locks --------------------------------------------------------------- */

/* The green writer of a read-write lock is recorded in the owner table, so
   that it relocking gets EDEADLK (glibc's owner is the OS thread). */

struct rw_ctx {
  pthread_rwlock_t *rw;
  bool write;
};

static int rw_try(pthread_rwlock_t *rw, bool write)
{
  return write ? RS(pthread_rwlock_trywrlock)(rw) : RS(pthread_rwlock_tryrdlock)(rw);
}

static int rw_check(void *c)
{
  struct rw_ctx *x = c;
  int r = rw_try(x->rw, x->write);
  return r == 0 ? 1 : r == EBUSY ? 0 : -r;
}

/* Lock process-shared rw in the kernel (note D): the real call's result. */
static int rw_in_kernel(pthread_rwlock_t *rw, struct kz_green *g, bool write, clockid_t clk,
                        const struct timespec *abs)
{
  bool alone = kz_shim_alone(g);
  int r;
  if (alone)
    kz_shim_kernel_begin(g);
  if (abs)
    r = write ? RS(pthread_rwlock_clockwrlock)(rw, clk, abs) : RS(pthread_rwlock_clockrdlock)(rw, clk, abs);
  else
    r = write ? RS(pthread_rwlock_wrlock)(rw) : RS(pthread_rwlock_rdlock)(rw);
  if (alone)
    kz_shim_kernel_end(g);
  return r;
}

/* The rwlock calls for green g (abs: the deadline on clock clk, or NULL). */
static int green_rw_lock(pthread_rwlock_t *rw, struct kz_green *g, bool write, clockid_t clk,
                         const struct timespec *abs, bool try_only)
{
  struct rw_ctx ctx = {rw, write};
  unsigned count;
  int r;
  if (owner_get(rw, &count) == g->id)
    return try_only ? EBUSY : EDEADLK;
  for (;;) {
    r = rw_try(rw, write);
    if (r == EBUSY && !try_only && rw->__data.__shared != 0) {
      if (abs && past(clk, abs))
        return ETIMEDOUT;
      if (kz_shim_alone(g) ||
          pshared_park(g, write ? PW_WR : PW_RD, rw, 0, clk, abs, false, 0, NULL, NULL) > 0)
        r = rw_in_kernel(rw, g, write, clk, abs);
      else
        continue;
    } else if (r == EBUSY && !try_only) {
      r = wait_retry(rw, rw_check, &ctx, kz_thr_deadline(clk, abs), 0,
                     write ? "a pthread rwlock (write)" : "a pthread rwlock (read)");
      if (r > 0)
        continue;
      r = -r;
    }
    if (r == 0 && write)
      owner_set(rw, g->id, 1);
    return r;
  }
}

EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *rw)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_rw_lock(rw, g, false, CLOCK_REALTIME, NULL, false) : RS(pthread_rwlock_rdlock)(rw);
}

EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *rw)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_rw_lock(rw, g, false, CLOCK_REALTIME, NULL, true) : RS(pthread_rwlock_tryrdlock)(rw);
}

EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *rw)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_rw_lock(rw, g, true, CLOCK_REALTIME, NULL, false) : RS(pthread_rwlock_wrlock)(rw);
}

EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *rw)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_rw_lock(rw, g, true, CLOCK_REALTIME, NULL, true) : RS(pthread_rwlock_trywrlock)(rw);
}

EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *rw, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(pthread_rwlock_timedrdlock)(rw, abstime);
  if (bad_time(abstime))
    return EINVAL;
  return green_rw_lock(rw, g, false, CLOCK_REALTIME, abstime, false);
}

EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *rw, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(pthread_rwlock_timedwrlock)(rw, abstime);
  if (bad_time(abstime))
    return EINVAL;
  return green_rw_lock(rw, g, true, CLOCK_REALTIME, abstime, false);
}

EXPORT int pthread_rwlock_clockrdlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(pthread_rwlock_clockrdlock)(rw, clk, abstime);
  if (bad_time(abstime) || bad_clock(clk))
    return EINVAL;
  return green_rw_lock(rw, g, false, clk, abstime, false);
}

EXPORT int pthread_rwlock_clockwrlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(pthread_rwlock_clockwrlock)(rw, clk, abstime);
  if (bad_time(abstime) || bad_clock(clk))
    return EINVAL;
  return green_rw_lock(rw, g, true, clk, abstime, false);
}

EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *rw)
{
  struct kz_green *g = kz_thr_active();
  unsigned count;
  int r;
  if (g && owner_get(rw, &count) == g->id)
    owner_set(rw, 0, 0);
  r = RS(pthread_rwlock_unlock)(rw);
  if (r == 0)
    kz_sync_wake(rw, SIZE_MAX); /* readers and writers try again */
  return r;
}

/* ---- Spinlocks (note F) --------------------------------------------------------------- */

EXPORT int pthread_spin_lock(pthread_spinlock_t *s)
{
  struct kz_green *g = kz_thr_active();
  int r;
  if (!g)
    return RS(pthread_spin_lock)(s);
  while ((r = RS(pthread_spin_trylock)(s)) == EBUSY)
    kz__yield();
  return r;
}

/* ---- Barriers (note E) ------------------------------------------------------------------ */

/* The shim's barrier, inside the program's pthread_barrier_t. */
struct barrier {
  _Atomic uint32_t arrived; /* threads waiting in this round */
  _Atomic uint32_t round;   /* bumped when a round completes */
  uint32_t count;           /* threads per round */
  uint32_t magic;           /* BARRIER_MAGIC once initialised */
  uint32_t pshared;         /* PTHREAD_PROCESS_SHARED: waiters sleep on round (note D) */
};
_Static_assert(sizeof(struct barrier) <= sizeof(pthread_barrier_t), "barrier fits");
#define BARRIER_MAGIC 0x6b7a6272u

EXPORT int pthread_barrier_init(pthread_barrier_t *pb, const pthread_barrierattr_t *attr, unsigned count)
{
  struct barrier *b = (struct barrier *)pb;
  int pshared = PTHREAD_PROCESS_PRIVATE;
  if (!kz_thr_patching())
    return RS(pthread_barrier_init)(pb, attr, count);
  if (count == 0 || (attr && pthread_barrierattr_getpshared(attr, &pshared) != 0))
    return EINVAL;
  atomic_init(&b->arrived, 0);
  atomic_init(&b->round, 0);
  b->count = count;
  b->magic = BARRIER_MAGIC;
  b->pshared = pshared == PTHREAD_PROCESS_SHARED;
  return 0;
}

EXPORT int pthread_barrier_destroy(pthread_barrier_t *pb)
{
  struct barrier *b = (struct barrier *)pb;
  if (!kz_thr_patching() || b->magic != BARRIER_MAGIC)
    return RS(pthread_barrier_destroy)(pb);
  if (atomic_load(&b->arrived))
    return EBUSY;
  b->magic = 0;
  return 0;
}

struct barrier_ctx {
  struct barrier *b;
  uint32_t round;
};

static int barrier_check(void *c)
{
  struct barrier_ctx *x = c;
  return atomic_load_explicit(&x->b->round, memory_order_acquire) != x->round;
}

/* Wait for round to end on a process-shared barrier (note D): on its word,
   in the kernel or on a worker. */
static void barrier_pshared_wait(struct barrier_ctx *x)
{
  struct kz_green *g = kz_thr_active();
  while (!barrier_check(x)) {
    if (g && !kz_shim_alone(g) && pshared_park(g, PW_WORD, &x->b->round, x->round, CLOCK_MONOTONIC, NULL,
                                          false, 0, NULL, NULL) <= 0)
      continue;
    if (g)
      kz_shim_kernel_begin(g); /* alone, or nothing could be handed over */
    futex_wait_shared(&x->b->round, x->round);
    if (g)
      kz_shim_kernel_end(g);
  }
}

EXPORT int pthread_barrier_wait(pthread_barrier_t *pb)
{
  struct barrier *b = (struct barrier *)pb;
  struct barrier_ctx ctx = {b, 0};
  if (!kz_thr_patching() || b->magic != BARRIER_MAGIC)
    return RS(pthread_barrier_wait)(pb);
  ctx.round = atomic_load_explicit(&b->round, memory_order_acquire);
  if (atomic_fetch_add(&b->arrived, 1) + 1 == b->count) {
    atomic_store(&b->arrived, 0);
    atomic_store_explicit(&b->round, ctx.round + 1, memory_order_release);
    if (b->pshared)
      futex_wake_shared(&b->round, INT_MAX);
    kz_sync_wake(b, SIZE_MAX);
    return PTHREAD_BARRIER_SERIAL_THREAD;
  }
  if (b->pshared)
    barrier_pshared_wait(&ctx);
  while (!barrier_check(&ctx))
    kz_sync_wait(b, barrier_check, &ctx, -1, 0, false, "a pthread barrier");
  return 0;
}

/* ---- Semaphores ------------------------------------------------------------------------ */

static bool sem_pshared(const sem_t *s) { return ((const int *)s)[2] != 0; }

static int sem_check(void *s)
{
  if (RS(sem_trywait)(s) == 0)
    return 1;
  return errno == EAGAIN ? 0 : -errno;
}

/* Wait for process-shared s in the kernel (note D): the real call. */
static int sem_in_kernel(struct kz_green *g, sem_t *s, clockid_t clk, const struct timespec *abs)
{
  bool alone = kz_shim_alone(g);
  int r;
  if (alone)
    kz_shim_kernel_begin(g);
  r = abs ? RS(sem_clockwait)(s, clk, abs) : RS(sem_wait)(s);
  if (alone)
    kz_shim_kernel_end(g);
  return r;
}

/* One wait of green g for s, which it found at 0: 0 to try again, 1 when
   the kernel's call acquired it, or -errno. */
static int sem_wait_once(struct kz_green *g, sem_t *s, clockid_t clk, const struct timespec *abs)
{
  int r;
  if (!sem_pshared(s)) {
    r = wait_retry(s, sem_check, s, kz_thr_deadline(clk, abs), KZ_SYNC_CANCEL, "a semaphore");
    return r == 0 ? 1 : r > 0 ? 0 : r;
  }
  if (abs && past(clk, abs))
    return -ETIMEDOUT;
  if (!kz_shim_alone(g) && (r = pshared_spin(g, sem_check, s)) != 0) /* note H */
    return r > 0 ? 1 : r;
  if (!kz_shim_alone(g) &&
      (r = pshared_park(g, PW_SEM, s, 0, clk, abs, true, KZ_INTR_RESTART, NULL, NULL)) <= 0)
    return r;
  return sem_in_kernel(g, s, clk, abs) == 0 ? 1 : -errno;
}

/* sem_wait, sem_timedwait and sem_clockwait for green g (abs: the deadline
   on clock clk, or NULL).  0, or -1 with errno; errno is left as it was on
   success, whatever the attempts on the way set it to. */
static int green_sem_wait(struct kz_green *g, sem_t *s, clockid_t clk, const struct timespec *abs)
{
  int saved = errno, r;
  for (;;) {
    if (RS(sem_trywait)(s) == 0)
      break;
    if (errno != EAGAIN)
      return -1;
    if (abs && (bad_time(abs) || bad_clock(clk))) {
      errno = EINVAL;
      return -1;
    }
    if ((r = sem_wait_once(g, s, clk, abs)) > 0)
      break;
    if (r == -ECANCELED)
      kz_thr_cancel_point();
    if (r < 0) {
      errno = -r;
      return -1;
    }
  }
  errno = saved;
  return 0;
}

EXPORT int sem_wait(sem_t *s)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_sem_wait(g, s, CLOCK_REALTIME, NULL) : RS(sem_wait)(s);
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  return g ? green_sem_wait(g, s, CLOCK_REALTIME, abstime) : RS(sem_timedwait)(s, abstime);
}

EXPORT int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *abstime)
{
  struct kz_green *g = kz_thr_active();
  if (!g)
    return RS(sem_clockwait)(s, clk, abstime);
  if (bad_clock(clk)) { /* glibc refuses it before trying, even with a token there */
    errno = EINVAL;
    return -1;
  }
  return green_sem_wait(g, s, clk, abstime);
}

EXPORT int sem_post(sem_t *s)
{
  int r = RS(sem_post)(s);
  if (r == 0)
    kz_sync_wake(s, 1);
  return r;
}
