/* os.c: the OS-call table, libkudzu's one way to call libc's own functions
 * past the preload shim (kz__os_*, declared in internal.h).
 *
 * The contract.
 * - Which calls: every libc function that libkudzu needs and that
 *   libkudzu-preload also defines (kudzu-preload.map).  Nothing else: a
 *   function the shim does not interpose (pthread_mutex_init, mmap...) is
 *   called by name; the signal mask is changed with raw system calls.
 * - Why: a call by name from libkudzu.so would reach the shim's interposer
 *   first (note A), so the runtime's own locks, threads, keys, diagnostics
 *   output and signal handlers would be the program's: green waits, wrapped
 *   handlers, recursion into the runtime itself.
 * - How: each entry is looked up once, by name, in libc's own handle
 *   (note B), filled before first use by whoever needs it first (note C);
 *   the kz__os_ functions below call through it.  The shim does not use
 *   this table: it has its own, of the next definitions (preload/real.c).
 * - Checked: tests/test_os_calls.c interposes the pthread functions in the
 *   executable and counts calls coming from libkudzu.so (none allowed);
 *   tests/shim/own_names.sh fails if libkudzu.so leaves any name the shim
 *   defines for the dynamic linker to resolve.
 *
 * Why each entry exists:
 *   pthread_mutex_lock/unlock,      the runtime's locks (handle chunks, stacks,
 *   pthread_cond_*                  worker pools, remote hubs, the monitor):
 *                                   the shim makes them green waits, which a
 *                                   real thread's unlock or signal cannot end
 *   pthread_create/join/detach,     worker, monitor and remote-hub threads must
 *   pthread_self                    be real OS threads, never green threads
 *   pthread_exit                    kz_exit on a hub's main green thread ends
 *                                   the OS thread itself, not a green thread
 *   pthread_once, pthread_key_create, the runtime's own once-controls and keys
 *   pthread_setspecific             (the shim keeps a green thread's values in
 *                                   its record, not in the OS thread's)
 *   read, write, close              diagnostics output and /proc reads: never
 *                                   parked; the hub's own eventfd, which the
 *                                   shim's close refuses (a runtime
 *                                   descriptor, rtfd.c); kz_close, which has
 *                                   already done what the shim's close adds
 *   sigaction                       the runtime's own handlers (overflow,
 *                                   dump signal, the blocking pool's
 *                                   interrupt) are not the program's, which
 *                                   the shim wraps for EINTR
 *   sched_yield                     a real spin step between OS threads
 *   raise                           the default action of a fatal signal,
 *                                   on a stack that may have overflowed (the
 *                                   shim's raise is a switch point)
 *
 * Notes.
 * A. A call from libkudzu.so to, say, pthread_mutex_lock by name goes
 *    through libkudzu's PLT/GOT, which the dynamic linker fills with the
 *    first definition in the global search order: the executable, then
 *    LD_PRELOAD objects (libkudzu-preload.so), then the program's
 *    dependencies (libc), then theirs (libkudzu.so, loaded as the preload's
 *    dependency, comes after libc).  An address taken of such a name
 *    resolves the same way.
 * B. dlsym(RTLD_NEXT) from libkudzu does not help: it searches only the
 *    objects after libkudzu, where no pthread function is (the old fallback,
 *    libkudzu's own reference, resolved to the interposer: the pool's
 *    threads were green threads under the launcher).  A handle's lookup
 *    searches that object and its dependencies, never the preloads, so the
 *    table uses dlopen(LIBC_SO, RTLD_NOLOAD) + dlsym; before glibc 2.34 the
 *    thread functions are in libpthread, tried second.
 * C. A constructor of another object may reach libkudzu before libkudzu's
 *    own constructors ran, so every use checks an acquire flag and fills the
 *    table if it is not set.  Filling is idempotent (every filler stores the
 *    same values).  Once libkudzu's constructor ran, the table is full and
 *    the kz__os_ functions are safe in a signal handler (read, write,
 *    close, sigaction are async-signal-safe in libc).
 */
#include "internal.h"

#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Every function of this table has an interposer in libkudzu-preload (its
   map lists them); the others libkudzu may call by name. */
#define OS_REAL(X)                                                                            \
  X(int, pthread_mutex_lock, (pthread_mutex_t *))                                             \
  X(int, pthread_mutex_unlock, (pthread_mutex_t *))                                           \
  X(int, pthread_cond_wait, (pthread_cond_t *, pthread_mutex_t *))                            \
  X(int, pthread_cond_timedwait, (pthread_cond_t *, pthread_mutex_t *, const struct timespec *)) \
  X(int, pthread_cond_signal, (pthread_cond_t *))                                             \
  X(int, pthread_cond_broadcast, (pthread_cond_t *))                                          \
  X(int, pthread_create, (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))    \
  X(int, pthread_join, (pthread_t, void **))                                                  \
  X(int, pthread_detach, (pthread_t))                                                         \
  X(pthread_t, pthread_self, (void))                                                          \
  X(int, pthread_once, (pthread_once_t *, void (*)(void)))                                    \
  X(int, pthread_key_create, (pthread_key_t *, void (*)(void *)))                             \
  X(int, pthread_setspecific, (pthread_key_t, const void *))                                  \
  X(void, pthread_exit, (void *))                                                             \
  X(ssize_t, read, (int, void *, size_t))                                                     \
  X(ssize_t, write, (int, const void *, size_t))                                              \
  X(int, close, (int))                                                                        \
  X(int, sigaction, (int, const struct sigaction *, struct sigaction *))                      \
  X(int, sched_yield, (void))                                                                 \
  X(int, raise, (int))

static struct {
#define X(ret, name, args) ret(*name) args;
  OS_REAL(X)
#undef X
  _Atomic bool filled;
} real;

/* name as libc defines it (note B).  Without them the runtime cannot work
   at all. */
static void *real_sym(void *libc, void *libpthread, const char *name)
{
  void *p = libc ? dlsym(libc, name) : NULL;
  if (!p && libpthread)
    p = dlsym(libpthread, name);
  if (!p) {
    kz__say("libc's %s not found", name);
    abort();
  }
  return p;
}

/* Fill the table (note C). */
static void real_fill(void)
{
  void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  void *libpthread = dlopen(LIBPTHREAD_SO, RTLD_LAZY | RTLD_NOLOAD);
#define X(ret, name, args) real.name = (ret(*) args)real_sym(libc, libpthread, #name);
  OS_REAL(X)
#undef X
  atomic_store_explicit(&real.filled, true, memory_order_release);
  /* the handles stay open: libc is never unloaded anyway */
}

#define OS(name)                                                                        \
  (KZ_LIKELY(atomic_load_explicit(&real.filled, memory_order_acquire)) ? real.name      \
                                                                       : (real_fill(), real.name))

__attribute__((constructor)) static void real_init(void) { real_fill(); }

void kz__os_lock(pthread_mutex_t *m) { OS(pthread_mutex_lock)(m); }
void kz__os_unlock(pthread_mutex_t *m) { OS(pthread_mutex_unlock)(m); }
void kz__os_signal(pthread_cond_t *c) { OS(pthread_cond_signal)(c); }
void kz__os_broadcast(pthread_cond_t *c) { OS(pthread_cond_broadcast)(c); }
int kz__os_once(pthread_once_t *once, void (*init)(void)) { return -OS(pthread_once)(once, init); }

int kz__os_key_create(pthread_key_t *key, void (*destructor)(void *))
{
  return -OS(pthread_key_create)(key, destructor);
}

int kz__os_setspecific(pthread_key_t key, const void *value)
{
  return -OS(pthread_setspecific)(key, value);
}

int kz__os_cond_init(pthread_cond_t *c)
{
  pthread_condattr_t a;
  int r;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  r = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return -r;
}

int kz__os_wait(pthread_cond_t *c, pthread_mutex_t *m, double deadline)
{
  struct timespec ts;
  double whole;
  if (deadline < 0)
    return -OS(pthread_cond_wait)(c, m);
  ts.tv_nsec = (long)(modf(deadline, &whole) * 1e9);
  ts.tv_sec = (time_t)whole;
  return OS(pthread_cond_timedwait)(c, m, &ts) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

int kz__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
  uint64_t all = ~0ull, old;
  int r;
  /* The new thread inherits the mask: the runtime's threads take no signal,
     so handlers run on the program's own threads and their blocking calls
     are never interrupted with EINTR.  Raw system calls: pthread_sigmask is
     the shim's, for green threads' own masks (sigmask.c). */
  kz__syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
  r = OS(pthread_create)(t, NULL, fn, arg);
  kz__syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
  return -r;
}

int kz__os_thread_join(pthread_t t, void **result) { return -OS(pthread_join)(t, result); }
/* The OS thread's own pthread_t, also from a green thread with TLS of its
   own, whose thread pointer (what libc's pthread_self returns) is its own
   descriptor (tls.c, note D): the OS thread's thread pointer is glibc's
   pthread_t on x86-64. */
pthread_t kz__os_thread_self(void)
{
  void *os = kz__tls_os_tp;
  return os ? (pthread_t)os : OS(pthread_self)();
}
int kz__os_thread_detach(pthread_t t) { return -OS(pthread_detach)(t); }

void kz__os_thread_exit(void *result)
{
  OS(pthread_exit)(result);
  __builtin_unreachable();
}

void kz__os_divert(void *libc_fn, void *fn)
{
  if (!atomic_load_explicit(&real.filled, memory_order_acquire))
    real_fill();
#define X(ret, name, args)                \
  if ((void *)real.name == libc_fn)       \
    real.name = (ret(*) args)fn;
  OS_REAL(X)
#undef X
}

ssize_t kz__os_read(int fd, void *buf, size_t n) { return OS(read)(fd, buf, n); }
ssize_t kz__os_write(int fd, const void *buf, size_t n) { return OS(write)(fd, buf, n); }
int kz__os_close(int fd) { return OS(close)(fd); }

int kz__os_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
  return OS(sigaction)(sig, act, old);
}

void kz__os_sched_yield(void) { OS(sched_yield)(); }
int kz__os_raise(int sig) { return OS(raise)(sig); }

/* A system call made here (internal.h, kz__syscall): the kernel's result,
   or -1 with errno.  Out of line, so that every caller treats it as a call
   that may write through any pointer it was given. */
long kz__syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  if ((unsigned long)ret > -4096UL) {
    errno = (int)-ret;
    return -1;
  }
  return ret;
}
