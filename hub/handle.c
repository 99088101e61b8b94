/* handle.c: 64-bit handles with generations for green threads, callbacks and
 * futures.
 *
 * A handle is  1 | generation (31 bits) | slot index (32 bits).  Slots live in
 * chunks that are never freed, so looking up any 64-bit value is safe: a
 * malformed, stale or foreign handle is recognised (NULL) instead of being
 * dereferenced.  Bit 63 is always set, which no user-space address has: the
 * shim can tell a green pthread_t from a real one.
 *
 * Notes.
 * A. Allocation is per OS thread: each thread keeps a LIFO of free slots and
 *    a private range of fresh indices taken 64 at a time from a global
 *    counter, so spawning never takes a lock in the steady state.  A slot
 *    freed on another thread joins that thread's list, which passes full
 *    batches on (note D).
 * B. Lookups from other threads read gen/type/obj with relaxed atomics,
 *    then the generation again: a racing release can only turn a valid
 *    answer into NULL (obj shares its word with the free list's link, which
 *    a release writes), and the hub that owns an object is the only one
 *    that frees it.  What such a lookup returns is a pointer to compare,
 *    never to follow: the owner may release the object the next moment.
 * C. A slot also records the hub that owns its object (green threads):
 *    another hub must find a green thread's hub without touching the
 *    struct, which its own hub may release and unmap at any moment (a
 *    stack of its own size goes back with munmap).  The slot's memory is
 *    never freed, so kz__handle_owner reads the owner, then checks that
 *    the generation did not move meanwhile.
 * D. Slots go back to where they are wanted.  A green thread one hub makes
 *    for another is freed on the other hub's OS thread (green.c, note E),
 *    so with every free joining the freeing thread's list, a hub that
 *    placed its threads elsewhere (an acceptor handing each connection to
 *    the other hubs) took fresh indices for ever, while the others' lists
 *    grew: 24 bytes a connection that never came back (bench_hubs spawn
 *    2,000,000 under --hubs 2: 28 MB of resident memory against 5 MB for
 *    200,000), and after 64 Mi spawns, about twenty minutes at 50,000
 *    connections a second, no handle at all: pthread_create failing with
 *    EAGAIN.  So each thread's free slots are two lists, as the magazines
 *    of Bonwick's allocators: the one it allocates from and frees to
 *    (cur), and a full one of BATCH slots (prev).  A free finding cur full
 *    passes prev to a depot shared by every thread (a spinlocked array of
 *    batches) and cur becomes prev; an allocation finding cur empty takes
 *    prev, or a batch from the depot, before fresh indices.  One lock per
 *    64 slots on each side; a depot that is full leaves the batches where
 *    they are, as before.  The slots then come back warm and already
 *    mapped, where fresh ones cost a page fault each 170 of them (the
 *    chunk's first touch) and a miss each.  A fork child makes the depot's
 *    lock and the chunks' lock anew (kz__handle_forked): another thread
 *    may have held them.
 */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define CHUNK_BITS 12
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define DIR_SLOTS (1u << 14) /* 64 Mi handles */
#define BATCH 64
#define NONE UINT32_MAX

struct slot {
  _Atomic uint32_t gen;   /* bumped on every free */
  _Atomic uint32_t type;  /* KZ__H_*, 0 when free */
  union {
    void *_Atomic obj;    /* while allocated */
    uint32_t next_free;   /* while on a free list */
  };
  void *_Atomic owner;    /* the hub that owns obj, or NULL (note C) */
};

static struct slot *_Atomic dir[DIR_SLOTS];
static _Atomic uint32_t next_fresh;
/* Taken with kz__os_lock, never the shim's interposer (internal.h): a spawn
   from a green thread must not become a green wait on the runtime's lock. */
static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;

/* This OS thread's slots (notes A, D), reached through kz__os_tls: a green
   thread with TLS of its own allocates from its OS thread's (tls.c, D). */
struct mine {
  uint32_t cur, ncur;             /* free slots: allocated from, freed to */
  uint32_t prev, nprev;           /* a batch of free slots, or NONE */
  uint32_t fresh_next, fresh_end; /* fresh range */
};
static KZ_TLS struct mine mine_tls = {NONE, 0, NONE, 0, 0, 0};

/* Note D: batches of free slots any thread may take. */
#define DEPOT_BATCHES 16384
struct batch {
  uint32_t head, n;
};
static struct {
  _Atomic bool lock;
  unsigned n;
  struct batch b[DEPOT_BATCHES];
} depot;

static void depot_lock(void)
{
  while (atomic_exchange_explicit(&depot.lock, true, memory_order_acquire))
    while (atomic_load_explicit(&depot.lock, memory_order_relaxed))
      __builtin_ia32_pause();
}

static void depot_unlock(void) { atomic_store_explicit(&depot.lock, false, memory_order_release); }

static bool depot_put(uint32_t head, uint32_t n)
{
  bool room;
  depot_lock();
  if ((room = depot.n < DEPOT_BATCHES))
    depot.b[depot.n++] = (struct batch){head, n};
  depot_unlock();
  return room;
}

static bool depot_take(uint32_t *head, uint32_t *n)
{
  bool some;
  depot_lock();
  if ((some = depot.n > 0)) {
    struct batch b = depot.b[--depot.n];
    *head = b.head, *n = b.n;
  }
  depot_unlock();
  return some;
}

/* Written only if held: a page the child does not write is not copied. */
void kz__handle_forked(void)
{
  if (atomic_load_explicit(&depot.lock, memory_order_relaxed))
    atomic_store_explicit(&depot.lock, false, memory_order_relaxed);
  if (chunk_lock.__data.__lock)
    pthread_mutex_init(&chunk_lock, NULL);
}

static struct mine *mine(void) { return kz__os_tls(&mine_tls); }

static struct slot *slot_at(uint32_t idx)
{
  struct slot *chunk;
  if (KZ_UNLIKELY((idx >> CHUNK_BITS) >= DIR_SLOTS))
    return NULL;
  chunk = atomic_load_explicit(&dir[idx >> CHUNK_BITS], memory_order_acquire);
  return chunk ? &chunk[idx & (CHUNK_SLOTS - 1)] : NULL;
}

/* Make sure the chunk holding idx exists.  Returns false when out of memory
   or out of slots. */
static bool chunk_ensure(uint32_t idx)
{
  struct slot *chunk;
  if ((idx >> CHUNK_BITS) >= DIR_SLOTS)
    return false;
  if (atomic_load_explicit(&dir[idx >> CHUNK_BITS], memory_order_acquire))
    return true;
  kz__os_lock(&chunk_lock);
  if (!atomic_load_explicit(&dir[idx >> CHUNK_BITS], memory_order_relaxed)) {
    chunk = mmap(NULL, CHUNK_SLOTS * sizeof(struct slot), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (chunk != MAP_FAILED) {
      for (uint32_t i = 0; i < CHUNK_SLOTS; i++)
        atomic_init(&chunk[i].gen, 1);
      atomic_store_explicit(&dir[idx >> CHUNK_BITS], chunk, memory_order_release);
    }
  }
  kz__os_unlock(&chunk_lock);
  return atomic_load_explicit(&dir[idx >> CHUNK_BITS], memory_order_acquire) != NULL;
}

static uint32_t index_alloc(void)
{
  struct mine *m = mine();
  uint32_t idx;
  if (m->ncur == 0) { /* note D: cur is NONE */
    if (m->prev != NONE) {
      m->cur = m->prev, m->ncur = m->nprev;
      m->prev = NONE, m->nprev = 0;
    } else {
      depot_take(&m->cur, &m->ncur); /* else it stays empty */
    }
  }
  if ((idx = m->cur) != NONE) {
    m->cur = slot_at(idx)->next_free;
    m->ncur--;
    return idx;
  }
  if (m->fresh_next == m->fresh_end) {
    m->fresh_next = atomic_fetch_add_explicit(&next_fresh, BATCH, memory_order_relaxed);
    m->fresh_end = m->fresh_next + BATCH;
    if (m->fresh_end < m->fresh_next) /* wrapped: out of indices */
      return m->fresh_next = m->fresh_end = NONE;
  }
  idx = m->fresh_next;
  if (!chunk_ensure(idx))
    return NONE;
  m->fresh_next++;
  return idx;
}

uint64_t kz__handle_new(int type, void *obj) { return kz__handle_new_owned(type, obj, NULL); }

uint64_t kz__handle_new_owned(int type, void *obj, void *owner)
{
  uint32_t idx = index_alloc();
  struct slot *s;
  if (KZ_UNLIKELY(idx == NONE))
    return 0;
  s = &atomic_load_explicit(&dir[idx >> CHUNK_BITS], memory_order_relaxed)[idx & (CHUNK_SLOTS - 1)];
  atomic_store_explicit(&s->obj, obj, memory_order_relaxed);
  atomic_store_explicit(&s->owner, owner, memory_order_relaxed);
  atomic_store_explicit(&s->type, (uint32_t)type, memory_order_release);
  return (1ull << 63) | ((uint64_t)(atomic_load_explicit(&s->gen, memory_order_relaxed) & 0x7fffffffu) << 32) | idx;
}

static struct slot *slot_of(uint64_t h, int type)
{
  struct slot *s;
  if (!(h >> 63))
    return NULL;
  s = slot_at((uint32_t)h);
  if (!s || atomic_load_explicit(&s->type, memory_order_acquire) != (uint32_t)type ||
      (atomic_load_explicit(&s->gen, memory_order_relaxed) & 0x7fffffffu) != ((h >> 32) & 0x7fffffffu))
    return NULL;
  return s;
}

/* A field of slot s, read from any thread, or NULL if h's generation moved
   meanwhile: freed, the field may be another object's, or obj the free
   list's link (notes B, C). */
static void *checked(const struct slot *s, uint64_t h, void *_Atomic const *field)
{
  void *v = atomic_load_explicit(field, memory_order_relaxed);
  atomic_thread_fence(memory_order_acquire);
  if ((atomic_load_explicit(&s->gen, memory_order_relaxed) & 0x7fffffffu) != ((h >> 32) & 0x7fffffffu))
    return NULL;
  return v;
}

void *kz__handle_get(uint64_t h, int type)
{
  struct slot *s = slot_of(h, type);
  return s ? checked(s, h, &s->obj) : NULL;
}

void *kz__handle_owner(uint64_t h, int type)
{
  struct slot *s = slot_of(h, type);
  return s ? checked(s, h, &s->owner) : NULL;
}

void kz__handle_free(uint64_t h)
{
  uint32_t idx = (uint32_t)h;
  struct slot *s = slot_at(idx);
  struct mine *m;
  if (!s)
    return;
  atomic_store_explicit(&s->type, 0, memory_order_release);
  /* Only the owning thread frees a slot (note B): no locked increment. */
  atomic_store_explicit(&s->gen, atomic_load_explicit(&s->gen, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  m = mine();
  /* note D: a depot found full is tried again BATCH frees later */
  if (m->ncur >= BATCH && m->ncur % BATCH == 0 && (m->prev == NONE || depot_put(m->prev, m->nprev))) {
    m->prev = m->cur, m->nprev = m->ncur;
    m->cur = NONE, m->ncur = 0;
  }
  s->next_free = m->cur;
  m->cur = idx;
  m->ncur++;
}
