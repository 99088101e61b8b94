/* real.c: the table of the real libc functions the shim replaces, found
 * with dlsym(RTLD_NEXT) once.
 *
 * Notes.
 * A. Every real call goes through kz_real, so the shim never calls its own
 *    interposers by accident, and one place knows how each was found.
 * B. The table is filled from the constructor, before main and before the
 *    shim acts (kz_shim.ready).  An interposed function called earlier, by
 *    another library's constructor, fills it first (REAL() in shim.h), and
 *    other threads wait until it is full.  The wait is a three-state atomic,
 *    not pthread_once, which the thread family interposes.
 * C. dlsym may allocate (glibc's dlerror state), and a malloc replacement
 *    preloaded next to the shim may, while initialising, call functions the
 *    shim interposes (read, write, close...).  Those calls come back here on
 *    the thread that is filling the table: waiting on the pthread_once would
 *    deadlock and filling again would recurse.  Such a nested call gets a
 *    raw system call instead (the boot table below) for the functions an
 *    allocator may need, and a direct dlsym of its one name for the rest
 *    (glibc's loader lock is recursive).  The boot entries are replaced by
 *    the real functions as soon as the outer fill reaches them.
 */
#include "shim.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct kz_shim_real kz_real;
static _Atomic int real_state; /* 0 empty, 1 being filled, 2 full (note B) */
static KZ_TLS bool filling;     /* this thread is inside fill() (note C) */

/* ---- Raw system calls for nested bootstrap calls (note C) ---------------- */

static ssize_t raw_read(int fd, void *b, size_t n) { return kz__syscall(SYS_read, fd, b, n); }
static ssize_t raw_write(int fd, const void *b, size_t n) { return kz__syscall(SYS_write, fd, b, n); }
static ssize_t raw_readv(int fd, const struct iovec *v, int n) { return kz__syscall(SYS_readv, fd, v, n); }
static ssize_t raw_writev(int fd, const struct iovec *v, int n) { return kz__syscall(SYS_writev, fd, v, n); }
static ssize_t raw_pread(int fd, void *b, size_t n, off_t o) { return kz__syscall(SYS_pread64, fd, b, n, o); }
static int raw_close(int fd) { return (int)kz__syscall(SYS_close, fd); }
static int raw_poll(struct pollfd *p, nfds_t n, int ms) { return (int)kz__syscall(SYS_poll, p, n, ms); }
static int raw_nanosleep(const struct timespec *r, struct timespec *m)
{
  return (int)kz__syscall(SYS_nanosleep, r, m);
}
static int raw_openat(int dirfd, const char *path, int flags, ...)
{
  va_list ap;
  unsigned long mode;
  va_start(ap, flags);
  mode = va_arg(ap, unsigned long);
  va_end(ap);
  return (int)kz__syscall(SYS_openat, dirfd, path, flags, mode);
}
static int raw_fcntl(int fd, int cmd, ...)
{
  va_list ap;
  unsigned long arg;
  va_start(ap, cmd);
  arg = va_arg(ap, unsigned long);
  va_end(ap);
  return (int)kz__syscall(SYS_fcntl, fd, cmd, arg);
}

static const struct {
  const char *name;
  void *fn;
} boot[] = {
    {"read", (void *)raw_read},   {"write", (void *)raw_write}, {"readv", (void *)raw_readv},
    {"writev", (void *)raw_writev}, {"pread", (void *)raw_pread}, {"close", (void *)raw_close},
    {"poll", (void *)raw_poll},   {"nanosleep", (void *)raw_nanosleep},
    {"fcntl", (void *)raw_fcntl}, {"openat", (void *)raw_openat},
};

static void *boot_lookup(const char *name)
{
  for (size_t i = 0; i < sizeof boot / sizeof *boot; i++)
    if (!strcmp(boot[i].name, name))
      return boot[i].fn;
  return dlsym(RTLD_NEXT, name);
}

/* A call made while this thread fills the table: complete the empty
   entries from the boot table (note C). */
static void fill_nested(void)
{
#define X(ret, name, args)                                                            \
  if (!kz_real.name)                                                                  \
    kz_real.name = (ret(*) args)boot_lookup(#name);
  KZ_SHIM_REAL_FUNCS(X)
#undef X
}

static void fill(void)
{
  filling = true;
#define X(ret, name, args) kz_real.name = (ret(*) args)dlsym(RTLD_NEXT, #name);
  KZ_SHIM_REAL_FUNCS(X)
#undef X
  filling = false;
}

void kz_shim_real_init(void)
{
  int empty = 0;
  if (atomic_load_explicit(&real_state, memory_order_acquire) == 2)
    return;
  if (KZ_UNLIKELY(filling)) {
    fill_nested();
  } else if (atomic_compare_exchange_strong(&real_state, &empty, 1)) {
    fill();
    atomic_store_explicit(&real_state, 2, memory_order_release);
  } else {
    while (atomic_load_explicit(&real_state, memory_order_acquire) != 2)
      kz__syscall(SYS_sched_yield); /* another thread is filling: microseconds */
  }
}
