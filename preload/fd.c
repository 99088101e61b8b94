/* fd.c: what the shim knows of each descriptor: its kind, the program's own
 * O_NONBLOCK view, its SO_RCVTIMEO/SO_SNDTIMEO, and whether the program
 * created it or found it open (inherited).
 *
 * Notes.
 * A. kudzu never changes the status flags of an open file (only transiently,
 *    inside connect()): a socket is driven with MSG_DONTWAIT per call, and
 *    anything else is polled for readiness before the real call.  So stdio
 *    on a socket (fdopen, getline), a pipe shared with a child process, or
 *    an inherited terminal never see EAGAIN because of kudzu, and a child
 *    that inherits a descriptor gets it exactly as the program left it.
 * B. Descriptors created through the shim (socket, accept, pipe, ...) are
 *    recorded with what is known of them; any other one is classified on
 *    first sight (fstat, F_GETFL, and for sockets the two timeouts).
 *    Descriptors opened and closed by libc internally are not seen: a cached
 *    "socket" that turns out not to be one (ENOTSOCK) is classified again.
 * C. The table is two-level (chunks of 4096 entries that never move) and is
 *    read without locks: entries are written by the thread that creates or
 *    closes the descriptor, as the kernel's own table is.  A chunk is
 *    mapped, never allocated with malloc: the first descriptor of a chunk
 *    may be seen inside libc while it holds a malloc arena's lock (its own
 *    read of a /proc file, note E), where an allocation waits for that
 *    lock for good.
 * D. The cached view belongs to a descriptor number, while O_NONBLOCK and
 *    the socket timeouts belong to the open file, which dup() shares.  dup,
 *    dup2, dup3 and F_DUPFD classify the new number afresh, so the copy
 *    starts right; a flag changed later through one number is seen through
 *    the other once that one is classified again.  Reading the kernel's
 *    flags on every call would close this gap at one system call per call.
 * E. A number the shim sees created, or classifies, is new to the hub too:
 *    if the hub still watches it, the old file was closed where the shim
 *    could not see (a raw system call, inside libc), and its registration is
 *    stale (hub/io.c, notes A and E).  Both paths forget it on the hub.
 *    A number classified as a file is not forgotten: no hub waits on a
 *    file (always ready), and a stale registration of the number matters
 *    only once it names something a hub waits on, which is then created
 *    or classified again, and forgotten there.  libc reads files for
 *    itself while it holds its own locks (/proc/sys/vm/overcommit_memory
 *    while trimming a malloc arena, its lock held): the forget told the
 *    other hubs with messages it allocated, which must not happen there
 *    (hub/monitor.c, note I).
 */
#include "shim.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define CHUNK_BITS 12
#define NCHUNKS 512 /* 2 Mi descriptors */
#define CHUNK_BYTES ((size_t)sizeof(struct kz_fd) << CHUNK_BITS)

static struct kz_fd *_Atomic chunks[NCHUNKS];

static struct kz_fd *slot(int fd, bool create)
{
  unsigned c = (unsigned)fd >> CHUNK_BITS;
  struct kz_fd *chunk, *fresh;
  if (fd < 0 || c >= NCHUNKS)
    return NULL;
  chunk = atomic_load_explicit(&chunks[c], memory_order_acquire);
  if (!chunk && create) { /* mapped, not allocated: note C */
    fresh = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh == MAP_FAILED)
      return NULL;
    if (atomic_compare_exchange_strong(&chunks[c], &chunk, fresh))
      chunk = fresh;
    else
      munmap(fresh, CHUNK_BYTES); /* another thread won; chunk holds its table */
  }
  return chunk ? &chunk[fd & ((1 << CHUNK_BITS) - 1)] : NULL;
}

static double timeout_of(int fd, int opt)
{
  struct timeval tv = {0, 0};
  socklen_t len = sizeof tv;
  if (REAL(getsockopt)(fd, SOL_SOCKET, opt, &tv, &len) < 0)
    return 0;
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static const char *const kind_name[] = {"unknown", "socket", "pipe", "file", "other"};

/* Note B. */
static bool classify(int fd, struct kz_fd *f)
{
  struct stat st;
  int fl;
  if (fstat(fd, &st) < 0 || (fl = REAL(fcntl)(fd, F_GETFL)) < 0)
    return false;
  f->owned = 0;
  f->drained = 0;
  f->accmode = (uint8_t)(fl & O_ACCMODE);
  f->pending_err = 0;
  f->user_nb = (fl & O_NONBLOCK) != 0;
  f->rcvtimeo = f->sndtimeo = 0;
  if (S_ISSOCK(st.st_mode)) {
    f->kind = KZ_FD_SOCKET;
    f->rcvtimeo = timeout_of(fd, SO_RCVTIMEO);
    f->sndtimeo = timeout_of(fd, SO_SNDTIMEO);
  } else if (S_ISFIFO(st.st_mode)) {
    f->kind = KZ_FD_PIPE;
  } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
    f->kind = KZ_FD_FILE;
  } else {
    f->kind = KZ_FD_OTHER;
  }
  f->known = 1;
  if (f->kind != KZ_FD_FILE)
    kz__fd_forget(fd); /* note E */
  if (KZ_UNLIKELY(kz_shim.debug))
    kz__say("fd %d found open: %s, %s", fd, kind_name[f->kind], f->user_nb ? "non-blocking" : "blocking");
  return true;
}

struct kz_fd *kz_fd_get(int fd)
{
  struct kz_fd *f = slot(fd, true);
  if (!f)
    return NULL;
  if (!f->known && !classify(fd, f))
    return NULL;
  return f;
}

void kz_fd_reclassify(int fd)
{
  struct kz_fd *f = slot(fd, false);
  if (f)
    f->known = 0;
}

void kz_fd_created(int fd, int kind, bool user_nb, int accmode)
{
  struct kz_fd *f = slot(fd, true);
  if (!f)
    return;
  *f = (struct kz_fd){.known = 1, .kind = (uint8_t)kind, .user_nb = user_nb, .owned = 1,
                      .accmode = (uint8_t)accmode};
  kz__fd_forget(fd); /* note E */
}

void kz_fd_forget(int fd)
{
  struct kz_fd *f = slot(fd, false);
  if (f && f->known) /* a page only read stays shared with a fork child */
    f->known = 0;
  kz__fd_forget(fd);
}

void kz_fd_forget_range(unsigned first, unsigned last)
{
  for (unsigned c = first >> CHUNK_BITS; c < NCHUNKS && c <= last >> CHUNK_BITS; c++) {
    unsigned lo = c << CHUNK_BITS, hi = lo + (1u << CHUNK_BITS) - 1;
    if (!atomic_load_explicit(&chunks[c], memory_order_acquire))
      continue; /* no descriptor of this chunk was ever seen */
    for (unsigned fd = lo > first ? lo : first; fd <= hi && fd <= last; fd++)
      kz_fd_forget((int)fd);
  }
}
