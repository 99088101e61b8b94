/* thread.c: pthreads become green threads (family "thread").
 *
 * In a green thread, pthread_create spawns a green thread on the same hub,
 * and the calls that take a pthread_t, wait for a thread, or block on a
 * mutex or condition variable work on green threads without blocking the OS
 * thread.  Everywhere else (a thread with no hub, --no-threads) every call
 * passes straight through.
 *
 * Notes.
 * A. A green pthread_t is the green thread's handle, which has bit 63 set:
 *    no real pthread_t (an address) does, so each function tells green
 *    identities from real ones and passes real ones through.
 * B. Mutexes and condition variables stay the program's real glibc objects,
 *    so real threads keep using them with the real functions.  A green
 *    thread never blocks its OS thread on one: it uses trylock, and when the
 *    mutex is held it parks in a side table keyed by the object's address;
 *    every unlock made by a green thread wakes the next green waiter.
 *    glibc's owner of a mutex is the OS thread, which all green threads of a
 *    hub share, so the green owner of recursive and error-checking mutexes
 *    (and its count) is kept in the side table too.
 * C. A condition variable wait by a green thread unlocks the mutex, parks in
 *    the side table until signalled, broadcast or timed out, and locks the
 *    mutex again; signal and broadcast wake green waiters and also call the
 *    real function for real threads (a spurious wake-up is allowed).
 * D. Keys: each green thread has its own values (in its struct kz_green's
 *    ext slot); key numbers come from the real pthread_key_create so they
 *    stay unique, and destructors run when the green thread finishes.
 * E. Thread-local variables (__thread, thread_local) are the OS thread's:
 *    the green threads of one hub share them.  Only errno is switched.
 * F. Stacks: a pthread_attr with an explicit stack size gets that size; the
 *    glibc default (8 MiB, from RLIMIT_STACK) becomes KZ_PTHREAD_STACK, since
 *    thousands of threads are the point.  A stack the program supplies is
 *    used as is.
 * G. Limits (docs/THREADS.md): waking a green thread parked on a mutex or
 *    condition variable from a real OS thread, or joining a green thread
 *    from one, is not supported yet; green threads of one hub work with each
 *    other, and real threads with each other.
 */
#include "shim.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define KZ_PTHREAD_STACK (256 * 1024)

static bool is_green(pthread_t t) { return ((uint64_t)t >> 63) != 0; }

static struct kz_green *thread_active(void) { return shim_active(KZ_PATCH_THREAD); }

/* ---- The real functions this file needs ---------------------------------- */

#define THREAD_REAL(X)                                                                    \
  X(int, pthread_create, (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *)) \
  X(int, pthread_join, (pthread_t, void **))                                              \
  X(int, pthread_detach, (pthread_t))                                                     \
  X(void, pthread_exit, (void *))                                                         \
  X(pthread_t, pthread_self, (void))                                                      \
  X(int, pthread_setname_np, (pthread_t, const char *))                                   \
  X(int, pthread_getname_np, (pthread_t, char *, size_t))                                 \
  X(int, pthread_mutex_lock, (pthread_mutex_t *))                                         \
  X(int, pthread_mutex_trylock, (pthread_mutex_t *))                                      \
  X(int, pthread_mutex_timedlock, (pthread_mutex_t *, const struct timespec *))           \
  X(int, pthread_mutex_unlock, (pthread_mutex_t *))                                       \
  X(int, pthread_cond_wait, (pthread_cond_t *, pthread_mutex_t *))                        \
  X(int, pthread_cond_timedwait, (pthread_cond_t *, pthread_mutex_t *, const struct timespec *)) \
  X(int, pthread_cond_signal, (pthread_cond_t *))                                         \
  X(int, pthread_cond_broadcast, (pthread_cond_t *))                                      \
  X(int, pthread_key_create, (pthread_key_t *, void (*)(void *)))                         \
  X(int, pthread_key_delete, (pthread_key_t))                                             \
  X(void *, pthread_getspecific, (pthread_key_t))                                         \
  X(int, pthread_setspecific, (pthread_key_t, const void *))                              \
  X(int, sched_yield, (void))                                                             \
  X(int, sem_wait, (sem_t *))                                                             \
  X(int, sem_trywait, (sem_t *))                                                          \
  X(int, sem_timedwait, (sem_t *, const struct timespec *))                               \
  X(int, sem_clockwait, (sem_t *, clockid_t, const struct timespec *))                    \
  X(int, sem_post, (sem_t *))                                                             \
  X(int, pthread_cond_clockwait, (pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *))

static struct {
#define X(ret, name, args) ret(*name) args;
  THREAD_REAL(X)
#undef X
} rt;

#define RT(name) (KZ_LIKELY(rt.name != NULL) ? rt.name : (thread_real_init(), rt.name))

static void thread_real_fill(void)
{
#define X(ret, name, args) rt.name = (ret(*) args)dlsym(RTLD_NEXT, #name);
  THREAD_REAL(X)
#undef X
}

static pthread_once_t rt_once = PTHREAD_ONCE_INIT;
static void thread_real_init(void) { pthread_once(&rt_once, thread_real_fill); }

/* ---- Per-green data (ext) ------------------------------------------------- */

/* What a green pthread carries: its key values (note D). */
struct green_ext {
  struct kz__done_hook hook;    /* runs the key destructors */
  void *values[PTHREAD_KEYS_MAX];
  bool any;                     /* some value was set */
};

static void (*key_destructor[PTHREAD_KEYS_MAX])(void *);
static _Atomic bool key_live[PTHREAD_KEYS_MAX];

static void run_destructors(struct kz__done_hook *h, struct kz_green *g)
{
  struct green_ext *e = kz__container_of(h, struct green_ext, hook);
  for (int round = 0; round < PTHREAD_DESTRUCTOR_ITERATIONS && e->any; round++) {
    e->any = false;
    for (int k = 0; k < PTHREAD_KEYS_MAX; k++) {
      void *v = e->values[k];
      if (v && key_destructor[k] && atomic_load(&key_live[k])) {
        e->values[k] = NULL;
        key_destructor[k](v);
      }
    }
  }
  g->ext = NULL;
  free(e);
}

static struct green_ext *ext_of(struct kz_green *g, bool create)
{
  struct green_ext *e = g->ext;
  if (!e && create && (e = calloc(1, sizeof *e))) {
    e->hook.fn = run_destructors;
    kz__list_push(&g->done_hooks, &e->hook.link);
    g->ext = e;
  }
  return e;
}

EXPORT int pthread_key_create(pthread_key_t *key, void (*destructor)(void *))
{
  int r = RT(pthread_key_create)(key, destructor);
  if (r == 0 && *key < PTHREAD_KEYS_MAX) {
    key_destructor[*key] = destructor;
    atomic_store(&key_live[*key], true);
  }
  return r;
}

EXPORT int pthread_key_delete(pthread_key_t key)
{
  if (key < PTHREAD_KEYS_MAX)
    atomic_store(&key_live[key], false);
  return RT(pthread_key_delete)(key);
}

EXPORT void *pthread_getspecific(pthread_key_t key)
{
  struct kz_green *g = kz_shim.ready && (kz_shim.patch & KZ_PATCH_THREAD) ? kz__self() : NULL;
  struct green_ext *e;
  if (!g || (g->flags & KZ__G_MAIN) || key >= PTHREAD_KEYS_MAX)
    return RT(pthread_getspecific)(key);
  e = ext_of(g, false);
  return e ? e->values[key] : NULL;
}

EXPORT int pthread_setspecific(pthread_key_t key, const void *value)
{
  struct kz_green *g = kz_shim.ready && (kz_shim.patch & KZ_PATCH_THREAD) ? kz__self() : NULL;
  struct green_ext *e;
  if (!g || (g->flags & KZ__G_MAIN) || key >= PTHREAD_KEYS_MAX)
    return RT(pthread_setspecific)(key, value);
  if (!atomic_load(&key_live[key]))
    return EINVAL;
  if (!(e = ext_of(g, true)))
    return ENOMEM;
  e->values[key] = (void *)value;
  e->any |= value != NULL;
  return 0;
}

/* ---- Creating, joining, leaving ---------------------------------------------- */

EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
  struct kz_green *self = thread_active(), *g;
  struct kz_spawn_opts opts = {0};
  void *stack = NULL;
  size_t size = 0, def_size = 0;
  int detach = PTHREAD_CREATE_JOINABLE, err = 0;
  if (!self)
    return RT(pthread_create)(t, attr, fn, arg);
  if (attr) {
    pthread_attr_t def;
    pthread_attr_getdetachstate(attr, &detach);
    pthread_attr_getstack(attr, &stack, &size);
    if ((uintptr_t)stack + size == 0) /* glibc: no stack set gives NULL - size */
      stack = NULL;
    if (!stack) {
      pthread_attr_getstacksize(attr, &size);
      if (pthread_attr_init(&def) == 0) { /* note F */
        pthread_attr_getstacksize(&def, &def_size);
        pthread_attr_destroy(&def);
      }
      if (size == def_size)
        size = 0;
    }
  }
  opts.stack_size = stack ? 0 : size ? (size < KZ_STACK_MIN ? KZ_STACK_MIN : size) : KZ_PTHREAD_STACK;
  opts.detached = detach == PTHREAD_CREATE_DETACHED;
  g = kz__spawn(self->hub, fn, arg, &opts, stack, stack ? size : 0, &err);
  if (!g)
    return err == -EINVAL ? EINVAL : EAGAIN;
  *t = (pthread_t)g->id;
  return 0;
}

/* Join green thread t from a green thread: kz_join's semantics with
   pthread's error numbers; deadline < 0 waits without limit. */
static int green_join(pthread_t t, void **ret, double timeout)
{
  struct kz_green *g = kz__green_get((kz_green_t)t);
  void *r = NULL;
  if (!g)
    return ESRCH;
  if (!kz__self() || g->hub != kz__hub())
    return EINVAL; /* note G */
  if (kz_join((kz_green_t)t, &r, timeout) == 0 || errno == ECANCELED) {
    if (ret)
      *ret = errno == ECANCELED && r == NULL ? PTHREAD_CANCELED : r;
    return 0;
  }
  return errno == ETIMEDOUT ? (timeout == 0 ? EBUSY : ETIMEDOUT) : errno;
}

EXPORT int pthread_join(pthread_t t, void **ret)
{
  if (!is_green(t))
    return RT(pthread_join)(t, ret);
  return green_join(t, ret, KZ_FOREVER);
}

EXPORT int pthread_tryjoin_np(pthread_t t, void **ret)
{
  if (!is_green(t)) {
    int (*real)(pthread_t, void **) = (int (*)(pthread_t, void **))dlsym(RTLD_NEXT, "pthread_tryjoin_np");
    return real(t, ret);
  }
  return green_join(t, ret, 0);
}

EXPORT int pthread_timedjoin_np(pthread_t t, void **ret, const struct timespec *abstime)
{
  struct timespec now;
  if (!is_green(t)) {
    int (*real)(pthread_t, void **, const struct timespec *) =
        (int (*)(pthread_t, void **, const struct timespec *))dlsym(RTLD_NEXT, "pthread_timedjoin_np");
    return real(t, ret, abstime);
  }
  if (!abstime)
    return green_join(t, ret, KZ_FOREVER);
  clock_gettime(CLOCK_REALTIME, &now);
  double left = (double)(abstime->tv_sec - now.tv_sec) + (double)(abstime->tv_nsec - now.tv_nsec) * 1e-9;
  return green_join(t, ret, left > 0 ? left : 0);
}

EXPORT int pthread_detach(pthread_t t)
{
  if (!is_green(t))
    return RT(pthread_detach)(t);
  if (!kz__green_get((kz_green_t)t))
    return ESRCH;
  return kz_detach((kz_green_t)t) == 0 ? 0 : EINVAL;
}

EXPORT void pthread_exit(void *ret)
{
  if (thread_active())
    kz_exit(ret); /* the main green thread waits for the others, then exits */
  RT(pthread_exit)(ret);
  __builtin_unreachable();
}

EXPORT pthread_t pthread_self(void)
{
  struct kz_green *g = kz_shim.ready && (kz_shim.patch & KZ_PATCH_THREAD) ? kz__self() : NULL;
  if (!g || (g->flags & KZ__G_MAIN))
    return RT(pthread_self)();
  return (pthread_t)g->id;
}

EXPORT int pthread_setname_np(pthread_t t, const char *name)
{
  if (!is_green(t))
    return RT(pthread_setname_np)(t, name);
  if (strlen(name) > 15)
    return ERANGE;
  return kz_set_name((kz_green_t)t, name) == 0 ? 0 : ESRCH;
}

EXPORT int pthread_getname_np(pthread_t t, char *buf, size_t len)
{
  if (!is_green(t))
    return RT(pthread_getname_np)(t, buf, len);
  return kz_get_name((kz_green_t)t, buf, len) == 0 ? 0 : errno == ERANGE ? ERANGE : ESRCH;
}

EXPORT int sched_yield(void)
{
  if (thread_active()) {
    kz__yield();
    return 0;
  }
  return RT(sched_yield)();
}

/* ---- The side table of green waiters (note B) -------------------------------- */

/* Green threads parked on one mutex or condition variable. */
struct waiters {
  struct waiters *next;    /* hash chain */
  const void *addr;        /* the object */
  struct kz__waitq q;      /* parked green threads, FIFO */
  kz_green_t owner;        /* green owner of a recursive/error-checking mutex */
  unsigned count;          /* its recursion count */
};

#define NBUCKET 1024
static struct waiters *table[NBUCKET];
static atomic_flag table_lock = ATOMIC_FLAG_INIT;

static void lock_table(void)
{
  while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire))
    ;
}
static void unlock_table(void) { atomic_flag_clear_explicit(&table_lock, memory_order_release); }

/* The entry of addr, created if asked. */
static struct waiters *entry(const void *addr, bool create)
{
  size_t b = ((uintptr_t)addr >> 4) % NBUCKET;
  struct waiters *w;
  lock_table();
  for (w = table[b]; w && w->addr != addr; w = w->next)
    ;
  if (!w && create && (w = calloc(1, sizeof *w))) {
    w->addr = addr;
    kz__waitq_init(&w->q);
    w->next = table[b];
    table[b] = w;
  }
  unlock_table();
  return w;
}

/* glibc's mutex kind (PTHREAD_MUTEX_NORMAL, _RECURSIVE, _ERRORCHECK). */
static int mutex_kind(const pthread_mutex_t *m) { return m->__data.__kind & 3; }

static int green_lock(pthread_mutex_t *m, struct kz_green *self, double deadline, bool try_only)
{
  int kind = mutex_kind(m);
  struct waiters *w = kind ? entry(m, true) : NULL;
  if (kind && w && w->owner == self->id && w->count) {
    if (kind == PTHREAD_MUTEX_ERRORCHECK)
      return EDEADLK;
    w->count++;
    return 0;
  }
  for (;;) {
    int r = RT(pthread_mutex_trylock)(m);
    if (r == 0 && kind && w && w->count) /* glibc let the OS thread in again */
      r = EBUSY, RT(pthread_mutex_unlock)(m);
    if (r == 0) {
      if (kind && w) {
        w->owner = self->id;
        w->count = 1;
      }
      return 0;
    }
    if (r != EBUSY || try_only)
      return r;
    if (!w && !(w = entry(m, true)))
      return ENOMEM;
    struct kz__waiter wt;
    self->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "a pthread mutex"};
    r = kz__waitq_wait(&w->q, &wt, deadline);
    if (r == -ETIMEDOUT)
      return ETIMEDOUT;
  }
}

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
  struct kz_green *self = thread_active();
  return self ? green_lock(m, self, -1, false) : RT(pthread_mutex_lock)(m);
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
  struct kz_green *self = thread_active();
  return self ? green_lock(m, self, -1, true) : RT(pthread_mutex_trylock)(m);
}

static double abs_deadline(const struct timespec *abstime, clockid_t clk)
{
  struct timespec now;
  clock_gettime(clk, &now);
  return kz__now() + (double)(abstime->tv_sec - now.tv_sec) + (double)(abstime->tv_nsec - now.tv_nsec) * 1e-9;
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
  struct kz_green *self = thread_active();
  if (!self)
    return RT(pthread_mutex_timedlock)(m, abstime);
  return green_lock(m, self, abs_deadline(abstime, CLOCK_REALTIME), false);
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
  struct kz_green *self = kz_shim.ready && (kz_shim.patch & KZ_PATCH_THREAD) ? kz__self() : NULL;
  int kind = mutex_kind(m), r;
  struct waiters *w = self ? entry(m, false) : NULL;
  if (self && kind && w && w->count) {
    if (w->owner != self->id)
      return EPERM;
    if (--w->count)
      return 0;
    w->owner = 0;
  } else if (self && kind == PTHREAD_MUTEX_ERRORCHECK) {
    return EPERM; /* not locked by this green thread */
  }
  r = RT(pthread_mutex_unlock)(m);
  if (r == 0 && w)
    kz__waitq_wake_one(&w->q, 0, NULL);
  return r;
}

/* ---- Condition variables (note C) --------------------------------------------- */

static int green_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, struct kz_green *self,
                           double deadline)
{
  struct waiters *w = entry(c, true);
  struct kz__waiter wt;
  int r, lr;
  if (!w)
    return ENOMEM;
  if ((r = pthread_mutex_unlock(m)) != 0)
    return r;
  self->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "a pthread condition"};
  r = kz__waitq_wait(&w->q, &wt, deadline);
  while ((lr = green_lock(m, self, -1, false)) == ETIMEDOUT)
    ;
  if (lr)
    return lr;
  return r == -ETIMEDOUT ? ETIMEDOUT : 0;
}

EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
  struct kz_green *self = thread_active();
  return self ? green_cond_wait(c, m, self, -1) : RT(pthread_cond_wait)(c, m);
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abstime)
{
  struct kz_green *self = thread_active();
  clockid_t clk = CLOCK_REALTIME;
  if (!self)
    return RT(pthread_cond_timedwait)(c, m, abstime);
  /* glibc keeps the condition's clock in bit 0 of __wrefs. */
  if (c->__data.__wrefs & 1)
    clk = CLOCK_MONOTONIC;
  return green_cond_wait(c, m, self, abs_deadline(abstime, clk));
}

EXPORT int pthread_cond_signal(pthread_cond_t *c)
{
  struct waiters *w = kz__self() ? entry(c, false) : NULL;
  if (w)
    kz__waitq_wake_one(&w->q, 0, NULL);
  return RT(pthread_cond_signal)(c);
}

EXPORT int pthread_cond_broadcast(pthread_cond_t *c)
{
  struct waiters *w = kz__self() ? entry(c, false) : NULL;
  if (w)
    kz__waitq_wake_all(&w->q, 0);
  return RT(pthread_cond_broadcast)(c);
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                                  const struct timespec *abstime)
{
  struct kz_green *self = thread_active();
  if (!self)
    return RT(pthread_cond_clockwait)(c, m, clk, abstime);
  return green_cond_wait(c, m, self, abs_deadline(abstime, clk));
}

/* ---- Unnamed POSIX semaphores ------------------------------------------------
   The value stays in the program's sem_t: a green thread takes it with
   sem_trywait and parks in the side table while it is zero; every sem_post
   made by a green thread wakes the next green waiter. */

static int green_sem_wait(sem_t *s, struct kz_green *self, double deadline)
{
  struct waiters *w = NULL;
  for (;;) {
    struct kz__waiter wt;
    int r;
    if (RT(sem_trywait)(s) == 0)
      return 0;
    if (errno != EAGAIN)
      return -1;
    if (!w && !(w = entry(s, true))) {
      errno = ENOMEM;
      return -1;
    }
    self->waiting = (struct kz__wait_info){.kind = KZ__WAIT_SYNC, .what = "a semaphore"};
    r = kz__waitq_wait(&w->q, &wt, deadline);
    if (r < 0 && r != -EINTR) {
      errno = -r == ETIMEDOUT ? ETIMEDOUT : -r;
      return -1;
    }
  }
}

EXPORT int sem_wait(sem_t *s)
{
  struct kz_green *self = thread_active();
  return self ? green_sem_wait(s, self, -1) : RT(sem_wait)(s);
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime)
{
  struct kz_green *self = thread_active();
  if (!self)
    return RT(sem_timedwait)(s, abstime);
  if (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000L) {
    errno = EINVAL;
    return -1;
  }
  return green_sem_wait(s, self, abs_deadline(abstime, CLOCK_REALTIME));
}

EXPORT int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *abstime)
{
  struct kz_green *self = thread_active();
  if (!self)
    return RT(sem_clockwait)(s, clk, abstime);
  if (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000L) {
    errno = EINVAL;
    return -1;
  }
  return green_sem_wait(s, self, abs_deadline(abstime, clk));
}

EXPORT int sem_post(sem_t *s)
{
  int r = RT(sem_post)(s);
  struct waiters *w = r == 0 && kz__self() ? entry(s, false) : NULL;
  if (w)
    kz__waitq_wake_one(&w->q, 0, NULL);
  return r;
}
