/* stack.c: green-thread stacks: lazily committed mappings, guard pages, the
 * per-hub cache of warm stacks, and Valgrind/ASan registration.
 *
 * Layout of one stack: [guard page][usable bytes ........ top)
 * Stacks of the hub's default size are carved from slabs (one mapping for
 * many stacks) and recycled; other sizes get a mapping each.
 *
 * Notes.
 * A. vm.max_map_count defaults to 65530.  A guard made with mprotect splits
 *    its mapping, costing two map entries per stack, so mprotect guards run
 *    out near 32k stacks.  Linux 6.13 added MADV_GUARD_INSTALL: guard pages
 *    that live in the page tables and split nothing, so slabs stay one map
 *    entry however many stacks they hold.  kudzu uses it where the kernel has
 *    it, falls back to mprotect while a budget of map entries lasts (3/8 of
 *    max_map_count), and past that hands out stacks protected by a canary
 *    word at the bottom, checked whenever their green thread is switched
 *    out.  The switch to canaries is said once on stderr.  KUDZU_STACK_GUARD
 *    (madvise, mprotect, canary, none) forces a mode, for tests.
 * B. Pages are committed on first touch (MAP_NORESERVE: no swap reservation
 *    for address space that is mostly never used), and transparent huge
 *    pages are refused: one 2 MiB page under a mostly idle stack would cost
 *    more than five hundred idle green threads.
 * C. The cache keeps up to KZ__WARM stacks as they are (their touched pages
 *    make the next spawn cheap).  Stacks returned beyond that are given back
 *    to the kernel with MADV_DONTNEED (guard pages survive it) and kept, cold,
 *    for reuse: slab memory is unmapped only when the hub ends.
 * E. A stack's top page is written at once (the green thread's struct and
 *    first frames live there), so a stack that has no pages yet (fresh from
 *    a slab, or cold) gets that one page with MADV_POPULATE_WRITE instead of
 *    a page fault.  On a virtual machine with a paravirtualized MMU a fault
 *    is the expensive way in: 15 us a page against 3 us for the system call
 *    here (Linux 6.18, a 2-core VM), which made a cold spawn cost 20 us.  On
 *    bare metal the two cost about the same.  Kernels before 5.14 refuse the
 *    advice (EINVAL): then the fault it always was.
 * D. Under Valgrind every stack is registered (VALGRIND_STACK_REGISTER), so
 *    a switch is not mistaken for a huge stack-pointer change, and mprotect
 *    guards are used (Valgrind does not know MADV_GUARD_INSTALL).
 * F. Sizes are checked against KZ_STACK_MIN..KZ_STACK_MAX where they enter
 *    (KUDZU_STACK_SIZE, kz_set_default_stack_size, kz_spawn_with), so
 *    rounding up to pages and adding the guard page never wrap.
 * G. The depot: a cache of the same kind, shared by every hub under a
 *    lock, for the green threads one hub makes for another (green.c, note
 *    E).  Such a stack is taken on the maker's OS thread and put back on
 *    the other hub's when the thread is released.  Through the hubs' own
 *    caches it would drain the maker's, which would map slab after slab,
 *    while the other hub's filled and went cold for good: a server whose
 *    acceptor places every connection elsewhere would grow without end.
 *    Its stacks always go back to it (their depot bit), so each hub's own
 *    cache keeps only its own slabs, and a hub torn down (kz_run
 *    returning) never unmaps a stack another still uses.  The depot's
 *    slabs live as long as the process.  A fork child makes its lock anew
 *    (kz__stack_forked): the forking thread may have raced another hub's
 *    thread holding it.
 */
#include "internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef KZ_VALGRIND
#include <valgrind/valgrind.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define KZ__DEFAULT_STACK (128 * 1024)
#define KZ__WARM 256
#define KZ__SLAB_BYTES (32u << 20)
#define KZ__CANARY 0x6b75647a75cafe5dull

struct slab {
  char *base;
  size_t len;
};

struct kz__stack_cache {
  size_t size;             /* usable size of the stacks pooled here */
  struct kz__stack *warm;  /* LIFO of warm stacks */
  size_t nwarm;
  struct kz__stack *cold;  /* LIFO of stacks given back to the kernel */
  size_t ncold, capcold;
  char *fresh;             /* next never-used slot of the newest slab */
  size_t nfresh;           /* slots left there */
  struct slab *slabs;      /* every slab, unmapped at the end */
  size_t nslabs, capslabs;
};

static size_t page_size;
static _Atomic size_t default_size;
static int guard_mode;                 /* enum kz__guard chosen at start-up */
static long mprotect_budget;           /* guards mprotect may still make */
static _Atomic long mprotect_used;
static atomic_flag said_canary = ATOMIC_FLAG_INIT;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;

/* Note G. */
static struct {
  pthread_mutex_t lock;
  struct kz__stack_cache c; /* c.size 0 until first used */
  struct kz__stack warm[KZ__WARM];
} depot = {.lock = PTHREAD_MUTEX_INITIALIZER};

void kz__stack_depot_prefetch(void) { kz__prefetch(&depot, offsetof(__typeof__(depot), warm)); }

static size_t round_page(size_t n) { return (n + page_size - 1) & ~(page_size - 1); }

static long read_max_map_count(void)
{
  char buf[32] = {0};
  long v = 65530;
  /* A raw openat: the shim interposes open (hub/internal.h, "Reaching libc,
     not the shim"). */
  int fd = (int)kz__syscall(SYS_openat, AT_FDCWD, "/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (kz__os_read(fd, buf, sizeof buf - 1) > 0)
      v = strtol(buf, NULL, 10);
    kz__os_close(fd);
  }
  return v;
}

static void stack_global_init(void)
{
  const char *env;
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  if (!atomic_load(&default_size)) {
    size_t n = KZ__DEFAULT_STACK;
    const char *why;
    char lo[24], hi[24], def[24];
    if ((env = secure_getenv("KUDZU_STACK_SIZE")) && *env &&
        (why = kz__parse_size(env, KZ_STACK_MIN, KZ_STACK_MAX, &n)))
      kz__say("ignoring KUDZU_STACK_SIZE=%s: %s (accepted: %s to %s, " KZ__SIZE_FORM "); using %s",
              env, why, kz__size_text(KZ_STACK_MIN, lo), kz__size_text(KZ_STACK_MAX, hi),
              kz__size_text(KZ__DEFAULT_STACK, def));
    atomic_store(&default_size, round_page(n));
  }
  mprotect_budget = read_max_map_count() * 3 / 8;
  guard_mode = KZ__GUARD_MADVISE; /* probed on the first stack */
#ifdef KZ_VALGRIND
  if (RUNNING_ON_VALGRIND)
    guard_mode = KZ__GUARD_MPROTECT; /* note D */
#endif
  if ((env = secure_getenv("KUDZU_STACK_GUARD"))) {
    if (!strcmp(env, "madvise")) guard_mode = KZ__GUARD_MADVISE;
    else if (!strcmp(env, "mprotect")) guard_mode = KZ__GUARD_MPROTECT;
    else if (!strcmp(env, "canary")) guard_mode = KZ__GUARD_CANARY;
    else if (!strcmp(env, "none")) guard_mode = KZ__GUARD_NONE;
    else kz__say("ignoring KUDZU_STACK_GUARD=%s (madvise, mprotect, canary or none)", env);
  }
}

/* libc's once, not the shim's (internal.h). */
static void stack_init_once(void) { kz__os_once(&stack_once, stack_global_init); }

size_t kz__stack_default_size(void)
{
  stack_init_once();
  return atomic_load_explicit(&default_size, memory_order_relaxed);
}

int kz_set_default_stack_size(size_t bytes)
{
  if (bytes < KZ_STACK_MIN || bytes > KZ_STACK_MAX)
    return kz__fail_errno(-EINVAL);
  stack_init_once();
  atomic_store(&default_size, round_page(bytes));
  return 0;
}

size_t kz_get_default_stack_size(void) { return kz__stack_default_size(); }

/* Protect the page below s->base (note A).  Sets s->guard. */
static void guard_install(struct kz__stack *s)
{
  char *guard = s->base - page_size;
  int mode = guard_mode;
  if (mode == KZ__GUARD_MADVISE) {
    if (madvise(guard, page_size, MADV_GUARD_INSTALL) == 0) {
      s->guard = KZ__GUARD_MADVISE;
      return;
    }
    guard_mode = mode = KZ__GUARD_MPROTECT; /* an older kernel: EINVAL */
  }
  if (mode == KZ__GUARD_MPROTECT) {
    if (atomic_fetch_add(&mprotect_used, 1) < mprotect_budget &&
        mprotect(guard, page_size, PROT_NONE) == 0) {
      s->guard = KZ__GUARD_MPROTECT;
      return;
    }
    if (!atomic_flag_test_and_set(&said_canary))
      kz__say("vm.max_map_count allows no more guard pages; further stacks are "
              "checked by a canary instead (raise vm.max_map_count, or use Linux >= 6.13)");
    mode = KZ__GUARD_CANARY;
  }
  if (mode == KZ__GUARD_CANARY) {
    atomic_store_explicit(&kz__stack_canaries, true, memory_order_relaxed);
    *(uint64_t *)s->base = KZ__CANARY;
    s->guard = KZ__GUARD_CANARY;
    return;
  }
  s->guard = KZ__GUARD_NONE;
}

/* Whether any stack has a canary: the switch checks a stack's canary only
   then, without touching the struct's cold line where the guard kind is. */
_Atomic bool kz__stack_canaries;

static void stack_register(struct kz__stack *s)
{
#ifdef KZ_VALGRIND
  s->vg_id = VALGRIND_STACK_REGISTER(s->base, s->base + s->size);
#endif
}

static void stack_deregister(struct kz__stack *s)
{
#ifdef KZ_VALGRIND
  if (s->vg_id)
    VALGRIND_STACK_DEREGISTER(s->base);
#endif
  s->vg_id = 0;
}

static void *map(size_t len)
{
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  madvise(p, len, MADV_NOHUGEPAGE); /* note B */
  return p;
}

int kz__stack_cache_init(struct kz__hub *hub)
{
  struct kz__stack_cache *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->size = kz__stack_default_size();
  c->warm = malloc(KZ__WARM * sizeof *c->warm);
  if (!c->warm) {
    free(c);
    return -ENOMEM;
  }
  hub->stacks = c;
  return 0;
}

void kz__stack_cache_term(struct kz__hub *hub)
{
  struct kz__stack_cache *c = hub->stacks;
  if (!c)
    return;
  for (size_t i = 0; i < c->nwarm + c->ncold; i++) {
    struct kz__stack *s = i < c->nwarm ? &c->warm[i] : &c->cold[i - c->nwarm];
    stack_deregister(s);
    if (s->guard == KZ__GUARD_MPROTECT)
      atomic_fetch_sub(&mprotect_used, 1);
  }
  for (size_t i = 0; i < c->nslabs; i++)
    munmap(c->slabs[i].base, c->slabs[i].len);
  free(c->slabs);
  free(c->warm);
  free(c->cold);
  free(c);
  hub->stacks = NULL;
}

static bool no_populate; /* the kernel refused MADV_POPULATE_WRITE (note E) */

/* Commit the top page of a stack that has no pages (note E). */
static void populate_top(const struct kz__stack *s)
{
  if (!no_populate && madvise(s->base + s->size - page_size, page_size, MADV_POPULATE_WRITE) < 0 &&
      errno == EINVAL)
    no_populate = true;
}

/* A never-used slot of a slab, mapping a new slab if needed. */
static int slab_take(struct kz__stack_cache *c, struct kz__stack *out)
{
  size_t slot = c->size + page_size;
  if (!c->nfresh) {
    size_t n = KZ__SLAB_BYTES / slot ? KZ__SLAB_BYTES / slot : 1;
    char *base;
    if (c->nslabs == c->capslabs) {
      size_t cap = c->capslabs ? 2 * c->capslabs : 16;
      struct slab *v = realloc(c->slabs, cap * sizeof *v);
      if (!v)
        return -ENOMEM;
      c->slabs = v;
      c->capslabs = cap;
    }
    if (!(base = map(n * slot)))
      return -ENOMEM;
    c->slabs[c->nslabs++] = (struct slab){base, n * slot};
    c->fresh = base;
    c->nfresh = n;
  }
  *out = (struct kz__stack){.base = c->fresh + page_size, .size = c->size, .pooled = 1};
  c->fresh += slot;
  c->nfresh--;
  guard_install(out);
  stack_register(out);
  populate_top(out);
  return 0;
}

static int cache_get(struct kz__stack_cache *c, size_t size, struct kz__stack *out)
{
  char *p;
  if (!size || round_page(size) == c->size) {
    if (c->nwarm) {
      *out = c->warm[--c->nwarm];
      return 0;
    }
    if (c->ncold) {
      *out = c->cold[--c->ncold];
      populate_top(out);
      if (out->guard == KZ__GUARD_CANARY)
        *(uint64_t *)out->base = KZ__CANARY;
      return 0;
    }
    return slab_take(c, out);
  }
  size = round_page(size);
  if (!(p = map(size + page_size)))
    return -ENOMEM;
  *out = (struct kz__stack){.base = p + page_size, .size = size};
  guard_install(out);
  stack_register(out);
  populate_top(out);
  return 0;
}

static void cache_put(struct kz__stack_cache *c, struct kz__stack *s)
{
  if (c->nwarm < KZ__WARM) {
    c->warm[c->nwarm++] = *s;
    return;
  }
  if (c->ncold == c->capcold) {
    size_t cap = c->capcold ? 2 * c->capcold : 256;
    struct kz__stack *v = realloc(c->cold, cap * sizeof *v);
    if (!v) { /* cannot track it: leave it mapped, lost until the hub ends */
      return;
    }
    c->cold = v;
    c->capcold = cap;
  }
  madvise(s->base, s->size, MADV_DONTNEED); /* note C */
  c->cold[c->ncold++] = *s;
}

int kz__stack_get(struct kz__hub *hub, size_t size, struct kz__stack *out)
{
  int r;
  if (hub)
    return cache_get(hub->stacks, size, out);
  kz__os_lock(&depot.lock); /* note G */
  if (!depot.c.size) {
    depot.c.size = kz__stack_default_size();
    depot.c.warm = depot.warm;
  }
  r = cache_get(&depot.c, size, out);
  kz__os_unlock(&depot.lock);
  if (r == 0 && out->pooled)
    out->depot = 1;
  return r;
}

void kz__stack_put(struct kz__hub *hub, struct kz__stack *s)
{
  if (s->user)
    return;
  if (!s->pooled) {
    stack_deregister(s);
    if (s->guard == KZ__GUARD_MPROTECT)
      atomic_fetch_sub(&mprotect_used, 1);
    munmap(s->base - page_size, s->size + page_size);
    return;
  }
  if (!s->depot) {
    cache_put(hub->stacks, s);
    return;
  }
  kz__os_lock(&depot.lock);
  cache_put(&depot.c, s);
  kz__os_unlock(&depot.lock);
}

/* Written only if held: a page the child does not write is not copied. */
void kz__stack_forked(void)
{
  if (depot.lock.__data.__lock)
    pthread_mutex_init(&depot.lock, NULL);
}

bool kz__stack_in_guard(const struct kz__stack *s, const void *addr)
{
  const char *a = addr;
  if (!s->base || s->user)
    return false;
  if (s->guard == KZ__GUARD_MADVISE || s->guard == KZ__GUARD_MPROTECT)
    return a >= s->base - page_size && a < s->base;
  return false;
}

bool kz__stack_canary_ok(const struct kz__stack *s)
{
  return *(const uint64_t *)s->base == KZ__CANARY;
}
