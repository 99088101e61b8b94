/* dir.c: listings of the process's own descriptors (/proc/self/fd,
 * /dev/fd, /proc/PID/fd) leave out the runtime's descriptors.
 *
 * A program that lists its descriptors (to close them, to check what a
 * child inherited, as CPython's subprocess tests do) would natively find
 * only its own.  The runtime's (hub/rtfd.c) would be there too, and the
 * closes of them fail with EBADF; so the listing hides them, and the
 * program sees what it would see natively.
 *
 * Notes.
 * A. opendir() of such a directory records the DIR (a few slots; more
 *    listings open at once than that go unfiltered); readdir() of a
 *    recorded one skips the names of runtime descriptors; closedir() forgets
 *    it.  A readdir of any other directory costs one load and one test.
 * B. The directory is recognised by its path, resolved (realpath): the
 *    forms a program uses, /proc/self/fd, /proc/thread-self/fd, /dev/fd and
 *    /proc/PID/fd, all resolve to /proc/<this pid>/fd or
 *    /proc/<this pid>/task/<tid>/fd.  Another process's listing is left
 *    whole.  readdir_r, deprecated, is not filtered.
 */
#include "shim.h"

#include <dirent.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT KZ_SHIM_EXPORT
#define SLOTS 8

static DIR *_Atomic listings[SLOTS]; /* note A */
static _Atomic int nlistings;

/* Note B: is path this process's descriptor directory? */
static bool own_fd_dir(const char *path)
{
  char real[PATH_MAX], mine[64];
  size_t n;
  if (!path || !realpath(path, real))
    return false;
  n = (size_t)snprintf(mine, sizeof mine, "/proc/%d/", (int)getpid());
  if (strncmp(real, mine, n))
    return false;
  if (!strcmp(real + n, "fd"))
    return true;
  return !strncmp(real + n, "task/", 5) && strlen(real) > 3 && !strcmp(real + strlen(real) - 3, "/fd");
}

static void remember(DIR *d)
{
  for (int i = 0; i < SLOTS; i++) {
    DIR *empty = NULL;
    if (atomic_compare_exchange_strong(&listings[i], &empty, d)) {
      atomic_fetch_add(&nlistings, 1);
      return;
    }
  }
}

static bool filtered(DIR *d)
{
  if (KZ_LIKELY(atomic_load_explicit(&nlistings, memory_order_relaxed) == 0))
    return false;
  for (int i = 0; i < SLOTS; i++)
    if (atomic_load(&listings[i]) == d)
      return true;
  return false;
}

/* Is name a runtime descriptor's number? */
static bool hidden(const char *name)
{
  char *end;
  long fd = strtol(name, &end, 10);
  return *name && !*end && fd >= 0 && fd <= INT_MAX && kz__rtfd_is((int)fd);
}

EXPORT DIR *opendir(const char *path)
{
  DIR *d = REAL(opendir)(path);
  if (d && kz_shim.ready && own_fd_dir(path))
    remember(d);
  return d;
}

EXPORT DIR *fdopendir(int fd)
{
  DIR *d = REAL(fdopendir)(fd);
  char link[64];
  if (d && kz_shim.ready) {
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if (own_fd_dir(link))
      remember(d);
  }
  return d;
}

EXPORT struct dirent *readdir(DIR *d)
{
  struct dirent *e = REAL(readdir)(d);
  if (KZ_UNLIKELY(filtered(d)))
    while (e && hidden(e->d_name))
      e = REAL(readdir)(d);
  return e;
}

EXPORT struct dirent64 *readdir64(DIR *d)
{
  struct dirent64 *e = REAL(readdir64)(d);
  if (KZ_UNLIKELY(filtered(d)))
    while (e && hidden(e->d_name))
      e = REAL(readdir64)(d);
  return e;
}

EXPORT int closedir(DIR *d)
{
  if (KZ_UNLIKELY(atomic_load_explicit(&nlistings, memory_order_relaxed) != 0)) {
    for (int i = 0; i < SLOTS; i++) {
      DIR *mine = d;
      if (atomic_compare_exchange_strong(&listings[i], &mine, NULL)) {
        atomic_fetch_sub(&nlistings, 1);
        break;
      }
    }
  }
  return REAL(closedir)(d);
}
