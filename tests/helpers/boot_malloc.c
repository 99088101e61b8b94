/* boot_malloc.c: a stand-in for a malloc replacement (jemalloc, tcmalloc)
 * preloaded next to the shim: its allocation functions call functions the
 * shim interposes (close, write, poll) on every call, also while the shim
 * is still finding libc's functions.  The shim must neither recurse nor
 * deadlock.  Built as a shared library; tests/shim runs helpers with it
 * preloaded before and after the shim. */
#define _GNU_SOURCE
#include <poll.h>
#include <stddef.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static __thread int inside; /* our own calls below must not loop back here */

static void touch(void)
{
  if (inside++ == 0) {
    close(-1);
    (void)!write(-1, "", 0);
    poll(NULL, 0, 0);
  }
  inside--;
}

void *malloc(size_t n)
{
  touch();
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t s)
{
  touch();
  return __libc_calloc(n, s);
}

void *realloc(void *p, size_t n)
{
  touch();
  return __libc_realloc(p, n);
}

void free(void *p)
{
  touch();
  __libc_free(p);
}
