/* tls.c: thread-local storage of their own for the green threads that stand
 * for pthreads (the shim's pthread_create): glibc's TLS blocks and thread
 * descriptor, made and freed with glibc's own functions, and the thread
 * pointer the switch loads (sched.c).  Green threads spawned through the
 * API, the main green thread and the hub context run with the OS thread's.
 *
 * Notes.
 * A. Allocation is ld.so's, as pthread_create's: _dl_allocate_tls(NULL)
 *    (GLIBC_PRIVATE) allocates the static TLS area with the thread
 *    descriptor (struct pthread, the TCB: on x86_64 the thread pointer
 *    points at it and the modules' blocks lie below), copies every loaded
 *    module's TLS image into its block, zeroes the rest, zeroes the
 *    descriptor and gives the thread a dtv of its own, so that
 *    __tls_get_addr allocates a dlopen'ed module's block for this green
 *    thread on its first access.  _dl_deallocate_tls(tp, true) frees the
 *    dynamic blocks, the dtv and the area.  Nothing is copied by hand.
 * B. The descriptor starts zeroed, as a fresh thread's; what glibc's code
 *    reads of it is then set here (offsets from libc's _thread_db_*
 *    descriptors, the ones libthread_db reads, or the ABI's):
 *      header.tcb, header.self  the descriptor itself (%fs:0, %fs:16)
 *      header.dtv               glibc's (A)
 *      header.multiple_threads  1, and 1 in the OS thread's descriptor too,
 *                               as pthread_create leaves the two: glibc's
 *                               single-thread fast paths (x86's atomics
 *                               without a lock prefix, in malloc among
 *                               others) read it, and a real thread may be
 *                               started from any of the contexts, setting
 *                               only that context's flag
 *      header.sysinfo, stack_guard (%fs:0x28, -fstack-protector's canary),
 *      pointer_guard (%fs:0x30, setjmp's and atexit's mangling),
 *      feature_1 (CET)          copied from the OS thread: a function
 *                               whose frame sees the thread pointer change
 *                               (the switch, fork's and robust mutexes'
 *                               calls, H and I) checks the canary it
 *                               stored, and a jmp_buf or atexit entry one
 *                               thread mangled is demangled by another
 *      tid                      the OS thread's: libc's mutexes, raise()
 *                               and pthread_kill act on the OS thread
 *      specific[0]              the descriptor's first block of key values
 *                               (tss_* and libc's own keys are per green
 *                               thread; the shim keeps pthread keys)
 *      specific_used            read at the end: set by glibc when a key's
 *                               value was set, so the key destructors are
 *                               looked for only then (its place, after
 *                               specific[], is checked once with a probe)
 *      robust_head              an empty list (its place is where the
 *                               kernel's get_robust_list reports the OS
 *                               thread's); futex_offset copied
 *      stackblock, _size        the green thread's stack (glibc's alloca
 *                               limit is a quarter of it; zero would mean
 *                               256 KiB on a 128 KiB stack); found as the
 *                               word that holds __libc_stack_end in the
 *                               main thread's descriptor, as glibc sets it
 *      rseq_area.cpu_id         RSEQ_CPU_ID_REGISTRATION_FAILED (G)
 *    Left zero: list (not on glibc's lists of threads: fork, setxid and
 *    dlclose's scope wait only look at OS threads), cancelhandling (the
 *    shim cancels), result, start_routine, joinid, flags.
 * C. The layout is checked before any of it is used: the symbols exist,
 *    the running thread's descriptor has the ABI's self pointers, its dtv
 *    at _thread_db_pthread_dtvp, its specific[0] at the first block, its
 *    robust list and stack block where B finds them.  Otherwise no green
 *    thread gets TLS of its own and the shim keeps threads of programs
 *    with TLS of their own as OS threads (preload/thread.c, note M).
 * D. The runtime's own TLS variables (libkudzu's and the shim's, all
 *    initial-exec, so at the same offset from every thread pointer) are
 *    per OS thread: once the thread pointer is a green thread's, they would
 *    read its copy.  Three kinds:
 *      - kz__tls_hub: a green thread stays on its hub, so its copy is set
 *        to the hub when its TLS is made, and reads cost what they did;
 *      - scope flags set and cleared around one call with no switch in
 *        between (kz__rtfd_scope, kz_shim_in_handler, real.c's filling):
 *        the running context's own copy is the right one;
 *      - state that lives across switches (the handle allocator's free
 *        list, the shim's statistics, sigwait's held signals): reached
 *        through kz__os_tls, which moves an address to the OS thread's own
 *        block, using kz__tls_os_tp (set in each green copy to the OS
 *        thread's pointer, NULL in the OS thread's own).
 *    Keeping the runtime off %fs altogether would mean a hub lookup
 *    through something else on every call, for state that is set once.
 * E. malloc: the thread cache (tcache) and arena pointers live in libc's
 *    TLS block, which has no symbols.  A fresh green thread would make a
 *    tcache of its own on its first malloc and, as libc frees it only in
 *    its thread-exit path, leak it when the green thread ends (576 bytes
 *    per thread per connection), and attach itself to a new arena.  So
 *    the green threads of a hub share the OS thread's tcache and arena, as
 *    they did before: their two words are copied into each green thread's
 *    libc block.  malloc never parks while it holds the tcache half-changed
 *    (a wait for an arena lock, preload/patch.c note H, happens between
 *    tcache operations), so sharing between the green threads of one OS
 *    thread is safe.  Their offsets are found once by a probe: a spare TLS
 *    area, loaded for one malloc and free; the word that changed to a
 *    tcache holding exactly that chunk is tcache, the one other word that
 *    changed is the arena.  Anything else and the probe fails (C).
 * F. The switch loads a green thread's thread pointer only when it differs
 *    from the one loaded.  wrfsbase when AT_HWCAP2 has HWCAP2_FSGSBASE (the
 *    kernel sets it once it enabled the instruction for user space, Linux
 *    5.9 and later; not under Valgrind, which does not run it), else
 *    arch_prctl(ARCH_SET_FS), a system call
 *    (bench/bench_core's switch_tls_ns measures the one in use).  errno is
 *    then each green thread's own for free: the hub saves and restores it
 *    only for the contexts that share the OS thread's TLS (sched.c).
 * G. rseq: the kernel updates only the area the OS thread registered (in
 *    its own descriptor), never a green thread's copy, so a green thread's
 *    area says "not registered" (cpu_id -2) and sched_getcpu asks the
 *    kernel.  The launcher also turns glibc's registration off
 *    (glibc.pthread.rseq=0): __rseq_size is then 0 and a program that
 *    reads %fs:__rseq_offset itself (librseq, tcmalloc) knows not to.
 * H. fork() from a green thread with TLS of its own: glibc's fork takes
 *    THREAD_SELF as the thread that goes on in the child (the kernel writes
 *    the child's tid into it, it is put back on glibc's list of threads,
 *    its robust list is registered), which must be the OS thread's own
 *    descriptor, or the child's glibc would keep a green thread's, freed
 *    when that green thread ends.  So the shim's fork handlers, registered
 *    from its constructor, before the program's (so their prepare step
 *    runs after the program's, their parent and child steps before), load
 *    the OS thread's thread pointer for glibc's part of the fork and the
 *    green thread's again after it; the runtime's own fork handlers work
 *    with either (note D).  errno crosses over: a failed fork
 *    sets it in the OS thread's TLS.  In the child, the green thread's
 *    descriptor takes the child's tid.
 * I. Robust mutexes: glibc puts one on the robust list of THREAD_SELF,
 *    and the kernel walks only the list the OS thread registered when the
 *    process dies.  So the shim takes and releases robust mutexes for a
 *    green thread with the OS thread's TLS loaded for the call
 *    (kz__tls_os_enter and _leave): they go on the OS thread's list, as
 *    they did when green threads shared its descriptor, and another
 *    process still gets EOWNERDEAD.
 * J. Memory: why the area is malloc'd (A) and not put at the top of the
 *    green thread's stack, as pthread_create puts it (_dl_allocate_tls(tp)
 *    initialises an area the caller provides).  An idle green pthread with
 *    100 bytes of __thread data (bench_idle_tls, glibc 2.36, x86_64) costs
 *    9,073 bytes: its stack page (the green thread's record and the frames
 *    of a read parked on a pipe, 1.6 KiB), the area (4,416 bytes: the
 *    2,368-byte descriptor, 0.4 KiB of the modules' blocks, and 1,520
 *    bytes glibc reserves below them for modules dlopen'ed later with
 *    static TLS), its dtv and the shim's record (which has since moved
 *    into the stack page, green.c note L: 9,034 bytes).  What is written
 *    of the area, the descriptor and the blocks (2.7 KiB), lies above
 *    the reserve, so at the top of the stack the reserve separates it
 *    from the frames and the two still take two pages: 8,672 bytes
 *    measured (a prototype), for a slot of every pooled stack grown by the
 *    area and a spawn that must make the area before the green thread may
 *    run.  Trimming glibc's reserve to 144 bytes
 *    (GLIBC_TUNABLES=glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0) gives 7,729 bytes with the area
 *    malloc'd (8,672 at the top of the stack: 1.6 + 2.7 KiB is still over
 *    a page), and makes a module with initial-exec TLS over 144 bytes fail
 *    to dlopen where it loads natively, so the launcher does not set it.
 *    One page for the stack and the area together would need both that
 *    trim and about 0.5 KiB less of frames in a parked read (the shim's
 *    read_in_green keeps 432 bytes, kz__wait_fd 224).
 * K. Areas are used again.  A spawn on another hub allocates the area on
 *    the maker's OS thread and the release frees it on the other hub's:
 *    the two threads then met on the lock of malloc's arena at every
 *    spawn (a futex call a spawn + join, and a futex wait whenever they
 *    collided, which put the maker's OS thread to sleep: spawn + join on
 *    another hub took 3.5 to 35 us, bimodal from run to run; bench_hubs
 *    spawn, --hubs 2).  So a finished thread's area goes to its hub's
 *    areas (hub->tls_areas, a struct kz__depot of up to AREAS_MAX), and a
 *    spawn for that hub, from any OS thread, takes one from there first.
 *    The area is made new on the hub, by kz__tls_bind as the hub adopts
 *    its thread, where its lines were last used and where the thread will
 *    use them; one depot for all hubs, with the area made by the maker,
 *    made spawn + join on the maker's own hub 1.5 us rather than 1.2 (a
 *    spawn found an area another hub's thread had used last; bench_hubs
 *    spawn, ten pairs).  It is made as glibc makes the area of a stack it
 *    caches (nptl's get_cached_stack): on the way in, the blocks of
 *    dlopen'ed modules are freed and the dtv emptied, kept for the next
 *    use; on the way out, the descriptor is zeroed but for its dtv pointer
 *    (its size is _thread_db_sizeof_pthread, what _dl_allocate_tls_storage
 *    zeroes), and _dl_allocate_tls_init copies every module's TLS image
 *    again (and grows the dtv if modules came meanwhile), with the flag
 *    nptl gives it in glibc 2.35 to 2.38: copy the images (init_known:
 *    areas are used again only where that meaning is known).  Nothing is
 *    allocated then.  A new area from _dl_allocate_tls is made once more
 *    the same way, which changes nothing.  The word after the descriptor,
 *    where ld.so keeps what to free, is never touched; the depot's link
 *    is the descriptor's first word.  Up to AREAS_MAX areas (4.4 KiB each
 *    here) per hub stay allocated after a burst of threads has ended, as
 *    glibc keeps up to 40 MiB of stacks; a hub that goes away frees them
 *    (kz__tls_hub_term).
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <stdio.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <threads.h>
#include <unistd.h>

#ifdef KZ_VALGRIND
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#ifndef HWCAP2_FSGSBASE
#define HWCAP2_FSGSBASE (1 << 1)
#endif
#define RSEQ_CPU_ID_REGISTRATION_FAILED ((uint32_t)-2)

KZ_TLS void *kz__tls_os_tp;

/* The x86_64 ABI's tcbhead_t, at the thread pointer. */
enum {
  H_TCB = 0,
  H_DTV = 8,
  H_SELF = 16,
  H_MULTIPLE_THREADS = 24,
  H_SYSINFO = 32,
  H_STACK_GUARD = 40,
  H_POINTER_GUARD = 48,
  H_FEATURE_1 = 72,
};

/* glibc's key tables (nptl's struct pthread_key_struct, pthread_key_data). */
struct key_struct {
  uintptr_t seq;
  void (*destr)(void *);
};
struct key_data {
  uintptr_t seq;
  void *data;
};

static struct {
  bool ok;
  const char *why;
  void *(*allocate)(void *);
  void (*deallocate)(void *, bool);
  void *(*init)(void *, bool); /* _dl_allocate_tls_init, or NULL: areas not used again (K) */
  void (*call_tls_dtors)(void);
  void (*ctype_init)(void);
  struct key_struct *keys;  /* __pthread_keys */
  size_t nkeys;
  size_t size;              /* sizeof (struct pthread) */
  size_t tid, specific, first_block, level2, robust, stackblock;
  size_t nspecific;         /* first-level entries of specific */
  size_t specific_used;     /* the bool glibc sets with a key's value */
  long rseq;                /* __rseq_offset, or -1 */
  ptrdiff_t libc_block;     /* libc's TLS block, from the thread pointer */
  size_t libc_modid, libc_size;
  ptrdiff_t tcache, arena;  /* in libc's block (E) */
} L;

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Note K. */
#define AREAS_MAX 128

/* errno of the thread pointer loaded now (a call of its own: the compiler
   takes __errno_location's result as constant within a function). */
static __attribute__((noinline)) void set_errno(int e) { errno = e; }

#define AT(tp, off, type) (*(type *)((char *)(tp) + (off)))

/* One _thread_db_ descriptor: {bits, count, offset}, or a size. */
static const uint32_t *db(const char *name)
{
  return dlvsym(RTLD_DEFAULT, name, "GLIBC_PRIVATE");
}

static bool fail(const char *why)
{
  L.why = why;
  return false;
}

/* The offset of stackblock (B): the one word of the main thread's
   descriptor that holds __libc_stack_end, followed by room for the size. */
static bool find_stackblock(char *tp)
{
  void **end = dlsym(RTLD_DEFAULT, "__libc_stack_end");
  size_t found = 0, n = 0;
  if (!end || getpid() != (pid_t)kz__syscall(SYS_gettid))
    return fail("the layout is learnt on the main thread");
  for (size_t off = L.tid; off + 16 <= L.size; off += 8)
    if (AT(tp, off, void *) == *end)
      found = off, n++;
  if (n != 1)
    return fail("the stack block of glibc's thread descriptor is not where expected");
  L.stackblock = found - 8; /* stackblock, then stackblock_size */
  return true;
}

/* Where glibc keeps what B sets, checked on the running thread (C). */
static bool learn_layout(char *tp)
{
  const uint32_t *size = db("_thread_db_sizeof_pthread"), *tid = db("_thread_db_pthread_tid"),
                 *dtvp = db("_thread_db_pthread_dtvp"), *spec = db("_thread_db_pthread_specific"),
                 *kd = db("_thread_db_sizeof_pthread_key_data"),
                 *l2 = db("_thread_db_sizeof_pthread_key_data_level2"),
                 *keys = db("_thread_db___pthread_keys");
  const int *rseq_offset = dlsym(RTLD_DEFAULT, "__rseq_offset");
  void *head = NULL;
  size_t len = 0;
  if (!size || !tid || !dtvp || !spec || !kd || !l2 || !keys)
    return fail("libc has no _thread_db_ layout descriptors");
  L.size = *size;
  L.tid = tid[2];
  L.specific = spec[2];
  L.level2 = *l2;
  L.first_block = L.specific - L.level2;
  L.nspecific = spec[0] / (8 * sizeof(void *));
  L.nkeys = keys[1];
  if (AT(tp, H_TCB, char *) != tp || AT(tp, H_SELF, char *) != tp || dtvp[2] != H_DTV ||
      *kd != sizeof(struct key_data) || L.level2 % *kd || L.specific >= L.size ||
      AT(tp, L.specific, char *) != tp + L.first_block || L.tid + 4 > L.size ||
      AT(tp, L.tid, pid_t) != (pid_t)kz__syscall(SYS_gettid))
    return fail("glibc's thread descriptor is not the one known");
  if (kz__syscall(SYS_get_robust_list, 0, &head, &len) != 0 || (char *)head < tp + L.tid ||
      (char *)head + 24 > tp + L.size)
    return fail("the robust list is not in glibc's thread descriptor");
  L.robust = (size_t)((char *)head - tp);
  L.rseq = rseq_offset && *rseq_offset > 0 && (size_t)*rseq_offset + 32 <= L.size ? *rseq_offset : -1;
  return find_stackblock(tp);
}

/* The thread pointer's descriptor fields of B, for a green thread of the
   OS thread whose thread pointer is os. */
static void describe(char *tp, char *os)
{
  void **robust = &AT(tp, L.robust, void *);
  AT(tp, H_TCB, char *) = tp;
  AT(tp, H_SELF, char *) = tp;
  AT(tp, H_MULTIPLE_THREADS, int) = 1;
  AT(tp, H_SYSINFO, uintptr_t) = AT(os, H_SYSINFO, uintptr_t);
  AT(tp, H_STACK_GUARD, uintptr_t) = AT(os, H_STACK_GUARD, uintptr_t);
  AT(tp, H_POINTER_GUARD, uintptr_t) = AT(os, H_POINTER_GUARD, uintptr_t);
  AT(tp, H_FEATURE_1, uint32_t) = AT(os, H_FEATURE_1, uint32_t);
  AT(tp, L.tid, pid_t) = AT(os, L.tid, pid_t);
  AT(tp, L.specific, char *) = tp + L.first_block;
  robust[0] = robust;                          /* list: empty */
  robust[1] = AT(os, L.robust + 8, void *);    /* futex_offset */
  robust[2] = NULL;                            /* list_op_pending */
  if (L.rseq >= 0)
    AT(tp, L.rseq + 4, uint32_t) = RSEQ_CPU_ID_REGISTRATION_FAILED;
}

/* Is there mapped memory for a tcache_perthread_struct at p? */
static bool readable(void *p)
{
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)p, first = a & ~(uintptr_t)(page - 1);
  unsigned char vec[2];
  return a % 16 == 0 && a >= (uintptr_t)page &&
         mincore((void *)first, a + 640 - first, vec) == 0;
}

/* Where glibc notes that a thread set a key's value (specific_used, the
   bool after specific[]): checked on the probe, with a key of C11's, which
   glibc's own setspecific sets (note B, key destructors). */
static bool learn_specific_used(char *probe, char *os)
{
  tss_t k;
  size_t off = L.specific + L.nspecific * sizeof(void *);
  bool before = AT(probe, off, bool), after;
  if (tss_create(&k, NULL) != thrd_success)
    return fail("no key for a probe");
  kz__tp_set(probe); /* nothing but glibc's setspecific runs with it */
  tss_set(k, &k);
  kz__tp_set(os);
  after = AT(probe, off, bool);
  tss_delete(k);
  if (before || !after)
    return fail("glibc's thread descriptor does not say where keys were set");
  L.specific_used = off;
  return true;
}

/* glibc's own malloc, whatever malloc the program uses. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

/* E: find tcache and the arena in libc's block with a probe area.  Through
   __libc_malloc: a malloc of the program's (jemalloc) would set up its own
   thread state in the probe and keep it listed after the probe is gone. */
static bool learn_malloc(char *os)
{
  enum { WORDS = 64 };
  char *probe = L.allocate(NULL), *block;
  uintptr_t before[WORDS], *after;
  size_t n;
  void *p;
  if (!probe)
    return fail("no memory for a probe");
  describe(probe, os);
  block = probe - L.libc_block;
  n = L.libc_size / 8 < WORDS ? L.libc_size / 8 : WORDS;
  memcpy(before, block, n * 8);
  kz__tp_set(probe); /* nothing but glibc's malloc runs with it */
  p = __libc_malloc(24);
  __libc_free(p);
  kz__tp_set(os);
  after = (uintptr_t *)block;
  L.tcache = L.arena = -1;
  for (size_t i = 0; i < n; i++) {
    uint16_t *counts = (uint16_t *)after[i];
    if (after[i] == before[i])
      continue;
    /* only what is a pointer to mapped memory is read through */
    if (L.tcache < 0 && readable(counts) && counts[0] == 1 && ((void **)(counts + 64))[0] == p)
      L.tcache = (ptrdiff_t)i * 8;
    else if (L.arena < 0)
      L.arena = (ptrdiff_t)i * 8;
    else
      return fail("malloc's thread state is not the one known");
  }
  /* The probe's tcache and arena stay behind: one chunk, once. */
  if (L.tcache < 0 || L.arena < 0)
    return fail("malloc's thread cache was not found");
  if (!learn_specific_used(probe, os))
    return false;
  kz__tls_free(probe, NULL);
  return true;
}

/* dl_iterate_phdr callback: libc's TLS segment's size into L.libc_size. */
static int tls_size_cb(struct dl_phdr_info *info, size_t size, void *data)
{
  (void)size;
  (void)data;
  if (info->dlpi_tls_modid != L.libc_modid)
    return 0;
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_TLS)
      L.libc_size = info->dlpi_phdr[i].p_memsz;
  return L.libc_size != 0;
}

/* libc's TLS block's distance below the thread pointer, and its size. */
static bool learn_libc_block(char *tp)
{
  void *h = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY), *block = NULL;
  if (!h)
    return fail("libc.so.6 not found");
  if (dlinfo(h, RTLD_DI_TLS_DATA, &block) != 0 || !block || (char *)block >= tp) {
    dlclose(h);
    return fail("libc's TLS block not found");
  }
  L.libc_block = tp - (char *)block;
  if (dlinfo(h, RTLD_DI_TLS_MODID, &L.libc_modid) != 0 || !dl_iterate_phdr(tls_size_cb, NULL)) {
    dlclose(h);
    return fail("libc's TLS segment not found");
  }
  dlclose(h);
  return true;
}

/* The thread pointer loaded now, read as memory the compiler cannot see.
   Not __builtin_thread_pointer(): GCC takes that for a constant of the
   function and reads it again wherever it likes, also after a kz__tp_set.
   At -O3, learn's tp, passed to learn_malloc as os, was read again after
   kz__tp_set(probe), so kz__tp_set(os) left the probe loaded: the program
   then ran on it, without a hub. */
static char *tp_read(void)
{
  char *tp;
  __asm__ volatile("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

/* Note K: _dl_allocate_tls_init's flag means "copy the images" up to glibc
   2.38 (nptl passes true for a cached stack; before 2.35 there is no flag,
   and the extra argument is ignored); later versions may mean otherwise. */
static bool init_known(void)
{
  unsigned major = 0, minor = 0;
  return sscanf(gnu_get_libc_version(), "%u.%u", &major, &minor) == 2 && major == 2 &&
         minor <= 38;
}

static bool learn(void)
{
  char *tp = tp_read();
  L.allocate = dlvsym(RTLD_DEFAULT, "_dl_allocate_tls", "GLIBC_PRIVATE");
  L.deallocate = dlvsym(RTLD_DEFAULT, "_dl_deallocate_tls", "GLIBC_PRIVATE");
  L.init = init_known() ? dlvsym(RTLD_DEFAULT, "_dl_allocate_tls_init", "GLIBC_PRIVATE") : NULL;
  L.call_tls_dtors = dlvsym(RTLD_DEFAULT, "__call_tls_dtors", "GLIBC_PRIVATE");
  L.ctype_init = dlvsym(RTLD_DEFAULT, "__ctype_init", "GLIBC_PRIVATE");
  L.keys = dlvsym(RTLD_DEFAULT, "__pthread_keys", "GLIBC_PRIVATE");
#ifdef KZ_ASAN
  return fail("the sanitizer's own thread state is thread-local");
#endif
  if (!L.allocate || !L.deallocate || !L.call_tls_dtors || !L.ctype_init || !L.keys)
    return fail("ld.so or libc lacks _dl_allocate_tls, _dl_deallocate_tls, __call_tls_dtors, "
                "__ctype_init or __pthread_keys");
  /* Valgrind passes the CPU's HWCAP2 on but does not run wrfsbase */
  kz__fsgsbase = (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) != 0 && !RUNNING_ON_VALGRIND;
  return learn_layout(tp) && learn_libc_block(tp) && learn_malloc(tp);
}

static void init(void) { L.ok = learn(); }

bool kz__tls_available(const char **why)
{
  kz__os_once(&once, init);
  if (why)
    *why = L.why;
  return L.ok;
}

/* ld.so's dtv entries (glibc's dtv_t): [-1] its length, [0] its
   generation, [1..] one per module. */
typedef union {
  size_t counter;
  struct {
    void *val;
    void *to_free;
  } pointer;
} dtv_t;

/* tp made new (note K): its descriptor zeroed but for the dtv, every
   module's image copied again, the dtv grown if modules came. */
static void make(char *tp)
{
  dtv_t *dtv = AT(tp, H_DTV, dtv_t *);
  memset(tp, 0, L.size);
  AT(tp, H_DTV, dtv_t *) = dtv;
  L.init(tp, true); /* fails only with no memory for a larger dtv, as glibc's own thread starts */
}

/* tp to hub's areas, unless they are full: its dynamic blocks freed and
   its dtv emptied, as glibc does for a stack it caches (note K). */
static bool areas_put(struct kz__hub *hub, char *tp)
{
  dtv_t *dtv = AT(tp, H_DTV, dtv_t *);
  if (!L.init || !hub || !kz__depot_reserve(&hub->tls_areas))
    return false;
  for (size_t i = 0; i < dtv[-1].counter; i++)
    free(dtv[1 + i].pointer.to_free);
  memset(dtv, 0, (dtv[-1].counter + 1) * sizeof *dtv);
  kz__depot_push(&hub->tls_areas, tp);
  return true;
}

void *kz__tls_new(struct kz__hub *hub)
{
  void *tp = kz__depot_pop(&hub->tls_areas); /* made on hub, where it was last used */
  return tp ? tp : L.allocate(NULL);
}

void kz__tls_hub_init(struct kz__hub *hub) { hub->tls_areas.max = AREAS_MAX; }

void kz__tls_forked(struct kz__hub *hub)
{
  if (hub)
    kz__depot_forked(&hub->tls_areas);
}

void kz__tls_hub_term(struct kz__hub *hub)
{
  void *tp;
  while ((tp = kz__depot_pop(&hub->tls_areas)))
    L.deallocate(tp, true); /* its dtv, emptied, and the area */
}

void kz__tls_bind(void *tp, struct kz__hub *hub)
{
  /* the hub's home descriptor, not os_tp, which is a spare's while the
     main green thread is handed off (handoff.c, note G): the runtime's
     state and the shared tcache are the home's */
  char *os = hub->home_tp;
  char *here = __builtin_thread_pointer();
  if (L.init) /* a new area is made already: made again, the same */
    make(tp);
  /* the fields describe copies are the same in every descriptor of the
     process but the thread id, set below */
  describe(tp, os);
  AT(os, H_MULTIPLE_THREADS, int) = 1; /* note B */
  AT(tp, L.tid, pid_t) = AT(hub->os_tp, L.tid, pid_t);
  AT(tp - L.libc_block, L.tcache, void *) = AT(os - L.libc_block, L.tcache, void *); /* note E */
  AT(tp - L.libc_block, L.arena, void *) = AT(os - L.libc_block, L.arena, void *);
  /* note D: the same offset from every thread pointer */
  AT(tp, (char *)&kz__tls_hub - here, struct kz__hub *) = hub;
  AT(tp, (char *)&kz__tls_os_tp - here, void *) = os;
}

void kz__tls_stack(void *tp, void *base, size_t size)
{
  AT(tp, L.stackblock, void *) = base;
  AT(tp, L.stackblock + 8, size_t) = size;
}

void kz__tls_started(void) { L.ctype_init(); }

/* glibc's key destructors for the running thread's values (C11 tss_*), in
   rounds while they set new values, as libc does at a thread's exit.  Only
   the blocks of values glibc allocated are looked at (the first always). */
static void key_destructors(char *tp)
{
  size_t per = L.level2 / sizeof(struct key_data);
  if (!AT(tp, L.specific_used, bool))
    return; /* no value was ever set: the usual case */
  for (int round = 0; round < 4; round++) {
    bool any = false;
    for (size_t i = 0; i < L.nspecific; i++) {
      struct key_data *block = AT(tp, L.specific + i * sizeof(void *), struct key_data *);
      for (size_t j = 0; block && j < per && i * per + j < L.nkeys; j++) {
        struct key_struct *k = &L.keys[i * per + j];
        void *v = block[j].data;
        if (!v)
          continue;
        block[j].data = NULL;
        if (block[j].seq == k->seq && (k->seq & 1) && k->destr) {
          k->destr(v);
          any = true;
        }
      }
    }
    if (!any)
      break;
  }
}

void kz__tls_exiting(void)
{
  L.call_tls_dtors();
  key_destructors(__builtin_thread_pointer());
}

void kz__tls_free(void *tp, struct kz__hub *hub)
{
  /* the second-level blocks of key values glibc allocated, if it set any */
  for (size_t i = 1; AT(tp, L.specific_used, bool) && i < L.nspecific; i++)
    free(AT(tp, L.specific + i * sizeof(void *), void *));
  AT(tp, L.specific_used, bool) = false; /* freed: an area not made again is freed again so */
  if (!areas_put(hub, tp)) /* note K */
    L.deallocate(tp, true);
}

/* Notes H and I: the OS thread's TLS for a moment.  The green thread's
   errno goes to the OS thread's, which is free while a green thread with
   TLS of its own runs (sched.c note A), and comes back. */
void *kz__tls_os_enter(void)
{
  struct kz__hub *hub = kz__tls_hub;
  struct kz_green *g = hub ? hub->current : NULL;
  int e;
  if (!g || !g->tp || hub->tp != g->tp)
    return NULL;
  e = errno;
  hub->tp = hub->os_tp;
  kz__tp_set(hub->os_tp);
  *hub->errnop = e;
  return g->tp;
}

void kz__tls_os_leave(void *tp)
{
  struct kz__hub *hub;
  int e;
  if (!tp)
    return;
  hub = kz__tls_hub;
  e = *hub->errnop;
  hub->tp = tp;
  kz__tp_set(tp);
  set_errno(e);
}

/* Note H. */
/* The forking green thread's tp, between prepare and done: in the OS
   thread's TLS, which is loaded then (a real thread may fork meanwhile). */
static KZ_TLS void *forking;

void kz__tls_fork_prepare(void) { forking = kz__tls_os_enter(); }

void kz__tls_fork_done(bool child)
{
  struct kz__hub *hub = kz__tls_hub;
  void *tp = forking;
  if (!tp)
    return; /* the OS thread's own TLS forked: nothing to put back, nothing written
               (a write after the fork copies the page, in the parent too) */
  forking = NULL;
  if (child)
    AT(tp, L.tid, pid_t) = AT(hub->os_tp, L.tid, pid_t);
  kz__tls_os_leave(tp);
}

/* handoff.c: a green thread whose hub left its OS thread, and back. */
void kz__tls_set_hub(void *tp, struct kz__hub *hub)
{
  char *here = __builtin_thread_pointer();
  __atomic_store_n(&AT(tp, (char *)&kz__tls_hub - here, struct kz__hub *), hub, __ATOMIC_RELEASE);
}

void kz__tls_set_tid(void *tp, pid_t tid)
{
  if (L.ok)
    AT(tp, L.tid, pid_t) = tid;
}
