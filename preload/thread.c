/* thread.c: pthreads become green threads (family "thread"): creation,
 * joining, detaching, exit, identity, names, keys, once, cancellation with
 * cleanup handlers, and the calls that take a pthread_t.  Synchronisation
 * objects are in pthread_sync.c.
 *
 * In a green thread, pthread_create spawns a green thread on the caller's
 * hub and returns its handle as the pthread_t.  Outside green threads (a
 * thread with no hub, the hub's callbacks, --no-threads) every call passes
 * straight through, except that any thread may join, detach, cancel or
 * signal a green thread, and pthread_once is the shim's for everyone.
 *
 * Notes.
 * A. A green pthread_t is the green thread's handle, with bit 63 set: no
 *    real pthread_t (an address) has it, so every function that takes a
 *    pthread_t tells green identities from real ones and passes real ones
 *    through; glibc never sees a green one (it would dereference it).  The
 *    main green thread keeps its real identity: it is the OS thread.
 * B. Each green pthread has a record (struct thr, in struct kz_green's ext
 *    slot, which belongs to this file): its start routine, key values,
 *    cancellation state and cleanup buffers.  A registry maps handles to
 *    records for other OS threads, which must not touch a green thread
 *    directly: they post what they want done (join, detach, cancel) to its
 *    hub.  A record lives until its green thread is released, and is freed
 *    then by the hub's release hook (kz__ext_release), exactly once whoever
 *    releases it: pthread_join here, kz_join or kz_detach of the API, a
 *    detached finish, kz_run's reaping or the hub's teardown.  (Freeing it
 *    in each of this file's own paths missed every release made through the
 *    API: a pthread joined with kz_join leaked its record, which stayed in
 *    the registry, so the stale pthread_t still answered pthread_kill.)
 *    The record lives in the room its green thread's stack keeps for it
 *    under the green thread's struct (hub/green.c, note L), so it is made
 *    with the stack and goes with it; only a green thread on a stack of
 *    the program's gets one allocated (a depot of freed ones, then
 *    malloc).  A pthread_create no longer takes a lock, and a record's
 *    link, that another OS thread may have written last: a spawn + join
 *    on the creator's own hub 0.82x of f6d99f2 with the steps that came
 *    after it (bench_hubs spawn --hubs 2, medians of twenty pairs), bursts
 *    and spawns on another hub within the noise; and an idle green
 *    pthread costs 177 bytes less (bench_idle_tls: 9,211 -> 9,034 bytes).
 * C. Stacks: an explicit stack size becomes max(size, the hub's default);
 *    glibc's default (RLIMIT_STACK, 8 MiB) becomes the hub's default (128
 *    KiB unless KUDZU_STACK_SIZE or --stack-size say otherwise), like
 *    musl's default thread stack: default-size stacks come from the hub's
 *    pooled slabs, so a thread per connection costs no mmap.  A stack the
 *    program supplies (pthread_attr_setstack) is used as it is.  Every
 *    kudzu stack has one guard page whatever the guard size asked.
 * D. Keys: numbers come from the real pthread_key_create, so they stay
 *    unique and keep working in real threads; a green thread's values live
 *    in its record, tagged with the key's sequence number (bumped by
 *    create and delete), so a deleted and re-created key reads NULL.
 *    Destructors run when the green thread returns or exits, up to
 *    PTHREAD_DESTRUCTOR_ITERATIONS rounds, in the green thread itself.
 * E. Thread-local storage: each green pthread gets its own (hub/tls.c):
 *    every module's static TLS block, dynamic TLS for dlopen'ed modules, a
 *    glibc thread descriptor (so errno, C11 tss_* values, stdio's lock
 *    owners and libc's other per-thread state are its own), and the switch
 *    loads its thread pointer.  It begins with libc's per-thread set-up
 *    (kz__tls_started) and ends with thread_local destructors and glibc's
 *    key destructors (kz__tls_exiting); the area goes with the record
 *    (note B).  Where glibc's layout is not the one known, green threads
 *    share the OS thread's (note M).
 * F. Cancellation (deferred; an asynchronous type is treated as deferred):
 *    pthread_cancel marks the record and cancels the green thread, so its
 *    current and later blocking calls end with ECANCELED; at a cancellation
 *    point (kz_thr_cancel_point) it unwinds.  glibc 2.36's C
 *    pthread_cleanup_push registers a __pthread_unwind_buf_t with
 *    __pthread_register_cancel after a setjmp; the shim keeps a green
 *    thread's buffers in a list of its own (linked through __pad[0]),
 *    longjmps to the innermost, whose code runs the handler and calls
 *    __pthread_unwind_next, which continues with the next one; after the
 *    last, key destructors run and the green thread finishes with
 *    PTHREAD_CANCELED.  pthread_exit unwinds the same way.  C++ and
 *    -fexceptions code registers no such buffers: their handlers do not run.
 *    The mark is made at once, under the registry's lock, also for a
 *    thread of another hub, whose cancellation is posted there: natively
 *    the flag is set when pthread_cancel returns, and a thread the
 *    canceller then lets go on (a write to the pipe it reads, with its
 *    cancellation disabled) must find it at its next pthread_testcancel.
 *    Posted alone, the request could arrive after the pipe's byte woke the
 *    thread (1 run in 20 to 90 of thread_cancel on two hubs).
 * G. pthread_once keeps glibc's encoding of the int: 0 never run, 2 done,
 *    an in-progress value has bit 0 set and the fork generation above bit
 *    1 (an init routine interrupted by fork() is run again in the child).
 *    Green threads wait for another's init routine in the wait table,
 *    real threads on a futex.
 * H. pthread_kill on a green thread: signal 0 checks that it exists; other
 *    signals are for that green thread alone (signal.c, note H): pending
 *    for it while it blocks them, then handled for it.  Each green thread
 *    has its own signal mask (pthread_sigmask is signal.c's).
 * I. Identity in signal handlers.  A handler runs in the thread it
 *    interrupted, natively and here (on the green thread's own stack), so
 *    pthread_self, pthread_getspecific and pthread_setspecific answer for
 *    the interrupted green thread there too (shim_identity, not
 *    kz_thr_active, which is NULL in a handler so that blocking calls pass
 *    through).  A JVM's SIGSEGV handler finds its current thread with
 *    pthread_getspecific before it resumes past a deliberate fault, and
 *    declines the fault when it finds none.  A handler that interrupted the
 *    hub context (every green thread parked, the hub in epoll_wait) answers
 *    for the OS thread, that is for the main green thread.
 * J. Some runtimes keep each thread's identity where the shim cannot follow:
 *    HotSpot (libjvm.so) reads its current Thread from a __thread variable
 *    (shared by the green threads of a hub before they had TLS of their
 *    own, note E) and plays its own tricks with signals and stack guard
 *    pages, so with its threads converted one thread soon acts as another
 *    (G1 found the heap lock "not owned by self" and aborted).  Once such a library is in the
 *    process, pthread_create makes real OS threads, for good, and says so
 *    once on stderr; green threads made before stay green, and real threads
 *    pass every call through.  The check costs one dl_iterate_phdr step per
 *    pthread_create (its load counter tells whether anything was loaded
 *    since the last look).
 * K. fork(): natively the child has one thread, the one that forked.  The
 *    fork copies the whole hub, with a green thread for every pthread of
 *    the parent, parked where the parent's were: left alone they would run
 *    on in the child, a copy of a reader taking the data of a socket the two
 *    processes share.  So in the child every green pthread but the forking
 *    one, and the main green thread if another thread forked, is left
 *    behind (kz__green_forget): it never runs again, as a thread that does
 *    not exist; a lock it held stays held, as natively.  Green threads spawned
 *    through the API stay, as gevent's greenlets do.  If the main green
 *    thread was left behind, the end of the forking thread (and of the
 *    threads it starts) ends the child with status 0, as natively.  The
 *    child's handler writes only what must change (a registry lock another
 *    thread held): a page it only reads stays shared with the parent, and
 *    each page written costs the child a copy.  With no other OS thread
 *    (kz__fork_threaded) and no other live green thread on the hub,
 *    nothing is left behind: no lock can be held, no once routine be half
 *    run by another thread (the once generation stays, as if the forking
 *    thread runs one, it finishes it in the child), and no green thread's
 *    signal state needs recounting: the handler writes nothing at all.
 * L. raise (signal.c, which sends it to the calling green thread) is also a
 *    switch point (init.c, note D): a thread raising a signal in a loop
 *    calls nothing else the shim sees (CPython's test_signal raises SIGUSR1
 *    in a loop in a thread holding the interpreter lock, while the thread
 *    waiting for the lock needs its 5 ms timer to fire to ask for it).
 * M. The safety net: where green threads cannot get TLS of their own
 *    (kz__tls_available says why: an unknown glibc layout, a symbol
 *    missing, a sanitizer build), note J holds for every module with
 *    thread-local variables of its own (a PT_TLS segment): the program, a
 *    library, a module loaded later with dlopen.  Green threads would share
 *    those variables, and a program that keeps a thread's number, buffers
 *    or epoll descriptor there breaks in ways nobody could trace back; as
 *    OS threads its threads keep them, as natively.  Exempt are libc's own
 *    (errno is switched; the rest is state no blocking call leaves
 *    half-changed) and the runtime's (libkudzu, the shim, libunwind).  A
 *    module loaded once green threads exist stops conversion from then on;
 *    the green threads made before stay green.  A sanitizer build, which
 *    tests the runtime itself, keeps green threads sharing the OS thread's
 *    TLS: the sanitizers' runtimes have TLS of their own in every program.
 * N. Thread ids (gettid, syscall(SYS_gettid), which CPython's
 *    threading.get_native_id uses): natively every thread has its own, and
 *    programs count on it (a set of native ids as large as the set of
 *    threads).  A hub's main green thread keeps its OS thread's id; any
 *    other green thread answers TID_BASE + its handle's slot index.
 *    TID_BASE is PID_MAX_LIMIT (2^22), which the kernel's pid_max cannot
 *    exceed, so such an id never equals a live process or thread id, and
 *    the slot index (below 2^26) is unique among live green threads and
 *    stable for the thread's life; it is reused once the thread is
 *    released, as the kernel reuses a joined thread's id.  The calls that
 *    take a thread id (tgkill, tkill, sched_setaffinity and the other
 *    scheduling calls, setpriority; tid.c) act on the hub's OS thread for
 *    a live green thread's id, as pthread_kill does for its pthread_t
 *    (note H), and pass any other id through, where the kernel answers
 *    ESRCH for one of ours that is gone.  A forked child inherits the
 *    records, so it can still signal its parent's green threads by id:
 *    tgkill with another process's id translates to the OS thread the
 *    green thread was made on (the kernel refuses it with ESRCH unless
 *    that process is the one it belongs to).  Not emulated:
 *    /proc/self/task/ID (ENOENT), ids handed to unrelated processes (ESRCH
 *    there), and in a forked child the ids of the parent's other threads,
 *    which natively do not exist there, still name the child's thread.
 * O. Joining a thread of another hub goes through its record (fin), not
 *    through its hub.  The record's fin says who has the thread's end:
 *    FIN_NO (running, joinable), FIN_DETACHED, FIN_WAITED (a joiner of
 *    another hub waits), FIN_READY (finished, joinable), FIN_CLAIMED
 *    (joined: gone for reg_find from then on, as natively for a joined
 *    thread).  Joiners change it under the registry's lock, one at a time;
 *    the thread's hub changes it with atomic operations only.
 *    - Finished already: as a joinable green pthread finishes that
 *      nobody waits for, its done hook publishes its result in the record
 *      (fin_result, FIN_READY); a joiner of another hub claims it there
 *      and posts its release to its hub, not waited for.
 *    - Still running: the joiner puts a struct jwait of its own stack in
 *      the record (FIN_NO to FIN_WAITED) and parks; the done hook finds
 *      it, hands it the result, marks the thread detached (its hub
 *      releases it once it has switched away, the record with it) and
 *      posts the wake-up to the joiner's hub in the jwait itself
 *      (jwait_deliver), which marks it done there: the joiner leaves only
 *      then, so the message never outlives it.  A real OS thread joining
 *      waits in the wait table instead (kz_sync_wait).  So nothing travels
 *      to the thread's hub but the thread, and nothing comes back but one
 *      message: the request that used to go there (rjoin, still the way
 *      of a tryjoin) ran on that hub before the new thread did, and a
 *      wake-up through the wait table touched its shared count and a
 *      bucket's lock on both sides.  bench_hubs spawn, --hubs 2, medians
 *      of eight pairs against 30c24c0: 2.26 against 3.0 us; 2.7 against
 *      3.0 with only the two changes before it (hub/green.c note K,
 *      hub/sigmask.c note D).
 *    - The wait is a cancellation point, as natively (the request was
 *      not: a thread cancelled in it stayed there until the other
 *      finished, thread_join_wait); a timeout or a cancellation takes it
 *      back (FIN_WAITED to FIN_NO) unless the done hook got there first,
 *      and then the join completes.
 *    - Everything else sees FIN_WAITED as a join under way: another join
 *      or a detach fails with EINVAL (joined_elsewhere; detach_op goes
 *      from FIN_NO to FIN_DETACHED, so the two cannot cross), and a done
 *      hook that finds the thread joined otherwise (the API's kz_join)
 *      ends the wait with EINVAL.
 *    - The hook finds the joiner with atomic operations in a loop, since
 *      a joiner may come or give up while it runs: a plain store of
 *      FIN_READY after a failed look for FIN_WAITED overwrote a joiner
 *      that came in between, which then waited for ever (bench_hubs
 *      spawn, 3 runs in 10).
 *    - A joiner's hook of the old way (rjoin) marks the record claimed
 *      before it wakes its joiner, since the hub releases the thread only
 *      after it has switched away from it: a tgkill or pthread_kill of the
 *      joined thread right after the join found it there (thread_tid on
 *      two hubs, now and then).  A tryjoin that gave up leaves its request
 *      hooked until the thread finishes; a later join or detach drops it
 *      (joined_elsewhere).
 *    - The thread's end writes three lines the other CPU wrote last, one
 *      after the other: the count of live threads, the joiner's jwait and
 *      the inbox of the joiner's hub.  So it asks for them first, all at
 *      once (hub/green.c, note K): the count as the thread starts (its
 *      creator counted it, and nobody else touches it meanwhile), the
 *      jwait and the inbox as it starts to end, once fin says a joiner
 *      waits (the joiner's hub is kept in the record with the jwait, so
 *      that it comes with fin).  A prefetch never faults, so a jwait taken
 *      back meanwhile is harmless.  bench_hubs spawn, ten pairs: 0.96x.
 * P. pthread_create on another hub does not wait for it (hub/green.c,
 *    note E).  The creator makes everything that can fail: the TLS area
 *    (hub/tls.c: kz__tls_new, from any OS thread), the record when the
 *    stack is the program's, the green thread, and then the record in
 *    the green thread's room (note B), which cannot fail; it stores the
 *    id where the program asked, as glibc does before the thread can run,
 *    and posts the green thread.  Its hub then
 *    gives it what is that hub's (thr_adopted, kz__ext_adopt): the TLS
 *    bound to it (its thread id, malloc's cache), the signal mask counted
 *    there, the slice timer, hand-off.  A burst of pthread_create on other
 *    hubs went from 2.2 us a thread to 0.5-0.8 (a round trip each before;
 *    bench_hubs burst), while one spawn + join costs what it did: the work
 *    moved to the creator, the two crossings stayed.
 * Q. Names.  A green thread's name is its own (g->name): it inherits its
 *    creator's, and pthread_setname_np, pthread_getname_np and prctl's
 *    PR_SET_NAME and PR_GET_NAME (also through syscall()) act on it, not
 *    on the OS thread its hub shares with other green threads (a thread
 *    renaming itself with prctl renamed the hub's OS thread, and so the
 *    main thread, before).  The main thread's name is its OS thread's, as
 *    natively.  A thread it makes inherits it: that name is read with
 *    PR_GET_NAME once and kept until a rename the shim sees (prctl's
 *    PR_SET_NAME from a thread with no green identity or from the main
 *    thread, pthread_setname_np of an OS thread); the read on every
 *    pthread_create of the main thread cost 0.3 us of its 1.2 (a system
 *    call, bench_hubs spawn).  A rename the shim does not see is a write to
 *    the main thread's /proc/self/task/TID/comm or /proc/self/comm (by the
 *    program or by another process): threads the main thread makes after
 *    it inherit the name it had before.
 */
#include "thread.h"

#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT KZ_THR_EXPORT

/* ---- The real functions ----------------------------------------------------- */

#define THR_REAL(X)                                                                           \
  X(int, pthread_create, (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))    \
  X(int, pthread_join, (pthread_t, void **))                                                  \
  X(int, pthread_tryjoin_np, (pthread_t, void **))                                            \
  X(int, pthread_timedjoin_np, (pthread_t, void **, const struct timespec *))                 \
  X(int, pthread_clockjoin_np, (pthread_t, void **, clockid_t, const struct timespec *))      \
  X(int, pthread_detach, (pthread_t))                                                         \
  X(void, pthread_exit, (void *))                                                             \
  X(pthread_t, pthread_self, (void))                                                          \
  X(int, pthread_setname_np, (pthread_t, const char *))                                       \
  X(int, pthread_getname_np, (pthread_t, char *, size_t))                                     \
  X(int, prctl, (int, unsigned long, unsigned long, unsigned long, unsigned long))            \
  X(int, pthread_getattr_np, (pthread_t, pthread_attr_t *))                                   \
  X(int, pthread_kill, (pthread_t, int))                                                      \
  X(int, pthread_sigqueue, (pthread_t, int, const union sigval))                              \
  X(int, pthread_cancel, (pthread_t))                                                         \
  X(int, pthread_setcancelstate, (int, int *))                                                \
  X(int, pthread_setcanceltype, (int, int *))                                                 \
  X(void, pthread_testcancel, (void))                                                         \
  X(void, __pthread_register_cancel, (__pthread_unwind_buf_t *))                              \
  X(void, __pthread_unregister_cancel, (__pthread_unwind_buf_t *))                            \
  X(void, __pthread_register_cancel_defer, (__pthread_unwind_buf_t *))                        \
  X(void, __pthread_unregister_cancel_restore, (__pthread_unwind_buf_t *))                    \
  X(void, __pthread_unwind_next, (__pthread_unwind_buf_t *))                                  \
  X(int, pthread_key_create, (pthread_key_t *, void (*)(void *)))                             \
  X(int, pthread_key_delete, (pthread_key_t))                                                 \
  X(void *, pthread_getspecific, (pthread_key_t))                                             \
  X(int, pthread_setspecific, (pthread_key_t, const void *))                                  \
  X(int, pthread_once, (pthread_once_t *, void (*)(void)))                                    \
  X(int, pthread_getschedparam, (pthread_t, int *, struct sched_param *))                     \
  X(int, pthread_setschedparam, (pthread_t, int, const struct sched_param *))                 \
  X(int, pthread_setschedprio, (pthread_t, int))                                              \
  X(int, pthread_getcpuclockid, (pthread_t, clockid_t *))                                     \
  X(int, pthread_setaffinity_np, (pthread_t, size_t, const cpu_set_t *))                      \
  X(int, pthread_getaffinity_np, (pthread_t, size_t, cpu_set_t *))                            \
  X(int, sched_yield, (void))

static struct {
#define X(ret, name, args) ret(*name) args;
  THR_REAL(X)
#undef X
  _Atomic bool filled;
} rt;

/* dlsym is thread-safe and every filler stores the same values. */
static void thr_real_fill(void)
{
#define X(ret, name, args) rt.name = (ret(*) args)dlsym(RTLD_NEXT, #name);
  THR_REAL(X)
#undef X
  atomic_store_explicit(&rt.filled, true, memory_order_release);
}

#define RT(name)                                                                        \
  (KZ_LIKELY(atomic_load_explicit(&rt.filled, memory_order_acquire)) ? rt.name          \
                                                                     : (thr_real_fill(), rt.name))

/* ---- Records and the registry (note B) ------------------------------------------- */

/* A key value of a green thread (note D). */
struct keyval {
  void *value;
  unsigned seq; /* the key's sequence number when it was set */
};

/* What the shim keeps for a green pthread. */
struct thr {
  kz_green_t id;                  /* its handle */
  struct kz__hub *hub;            /* its hub */
  pthread_t os_thread;            /* the hub's OS thread (pthread_kill) */
  pid_t tid;                      /* its hub's OS thread when it was made (note N) */
  void *(*fn)(void *);            /* start routine */
  void *arg;
  struct keyval *values;          /* indexed by key, grown on demand */
  unsigned nvalues;
  _Atomic bool cancel_pending;    /* pthread_cancel was called (from any thread: note F) */
  bool exiting;                   /* unwinding (cancelled or pthread_exit) */
  int cancel_state;               /* PTHREAD_CANCEL_ENABLE / _DISABLE */
  int cancel_type;                /* as the program set it (note F) */
  __pthread_unwind_buf_t *cleanup; /* innermost cleanup buffer */
  void *tp;                       /* its own TLS (hub/tls.c), or NULL */
  void *exit_value;               /* what it finishes with once unwound */
  struct thr *reg_next;           /* registry chain */
  struct kz__done_hook fin_hook;  /* sets fin as it finishes (note O) */
  _Atomic int fin;                /* FIN_*: who has its end (note O) */
  uint64_t start_mask;            /* its creator's signal mask, its own from the start */
  void *fin_result;               /* what pthread_join reports, once fin is FIN_READY */
  struct jwait *jw;               /* the joiner of another hub waiting, while fin is FIN_WAITED */
  struct kz__hub *jw_hub;         /* its hub (jw->hub), read with fin as the thread ends */
  bool in_room;                   /* in its green thread's ext_room, not allocated (note B) */
};

/* struct thr's fin (note O): running and joinable (NO), detached
   (DETACHED), waited for by a joiner of another hub (WAITED), finished
   and joinable (READY), joined (CLAIMED). */
enum { FIN_NO, FIN_READY, FIN_CLAIMED, FIN_WAITED, FIN_DETACHED };

/* A joiner of another hub waiting on a record (note O), on its own stack:
   the thread's hub fills it in as the thread finishes. */
struct jwait {
  _Atomic int done;     /* set last, on the joiner's hub for a green joiner */
  int err;              /* 0, or EINVAL: detached or joined otherwise meanwhile */
  void *result;
  struct kz_green *g;   /* the joiner, or NULL: a real thread (kz_sync_wait) */
  struct kz__hub *hub;  /* g's hub, which the wake-up is posted to */
  struct kz__post post; /* that wake-up */
};

#define NREG 256
static struct {
  atomic_bool lock;
  struct thr *head;
} registry[NREG];

/* By the handle's slot index alone (its low 32 bits), which no two live
   green threads share: a thread id finds its record (note N). */
/* Green threads the shim made that have not finished, on every hub
   (hub/hubs.c, note E). */
static _Atomic long live_threads;

static unsigned reg_index(kz_green_t id) { return (uint32_t)id % NREG; }

static void reg_lock(unsigned i)
{
  while (atomic_exchange_explicit(&registry[i].lock, true, memory_order_acquire))
    RT(sched_yield)();
}

static void reg_unlock(unsigned i) { atomic_store_explicit(&registry[i].lock, false, memory_order_release); }

static void reg_add(struct thr *t)
{
  unsigned i = reg_index(t->id);
  reg_lock(i);
  t->reg_next = registry[i].head;
  registry[i].head = t;
  reg_unlock(i);
}

static void reg_remove(struct thr *t)
{
  unsigned i = reg_index(t->id);
  struct thr **p;
  reg_lock(i);
  for (p = &registry[i].head; *p && *p != t; p = &(*p)->reg_next)
    ;
  if (*p)
    *p = t->reg_next;
  reg_unlock(i);
}

/* The record at handle slot index idx, whatever its state; its chain's
   lock held. */
static struct thr *reg_at(uint32_t idx)
{
  struct thr *t = registry[idx % NREG].head;
  while (t && (uint32_t)t->id != idx)
    t = t->reg_next;
  return t;
}

/* The record of the green thread at handle slot index idx (the low 32 bits
   of its handle), its chain's lock held; NULL if there is none, or if it
   was joined: gone, whatever its hub has yet to release (note O).  Joined
   is claimed by a pthread_join, or its handle made stale by the API's join
   from another hub (hub/green.c, note I), before the joiner wakes. */
static struct thr *reg_slot(uint32_t idx)
{
  struct thr *t = reg_at(idx);
  return t && atomic_load(&t->fin) != FIN_CLAIMED && kz__green_get(t->id) ? t : NULL;
}

/* The hub and OS thread of green pthread id, from any thread; false if it
   is unknown (never a pthread, or released). */
static bool reg_find(kz_green_t id, struct kz__hub **hub, pthread_t *os)
{
  unsigned i = reg_index(id);
  struct thr *t;
  reg_lock(i);
  if ((t = reg_slot((uint32_t)id)) && t->id != id)
    t = NULL; /* an older thread's handle */
  if (t) {
    *hub = t->hub;
    *os = t->os_thread;
  }
  reg_unlock(i);
  return t != NULL;
}

/* Is id a green pthread that was joined, and not yet released by its hub
   (note O)?  Its handle may still be live meanwhile. */
static bool reg_claimed(kz_green_t id)
{
  unsigned i = reg_index(id);
  struct thr *t;
  bool claimed;
  reg_lock(i);
  t = reg_at((uint32_t)id);
  claimed = t && t->id == id && atomic_load(&t->fin) == FIN_CLAIMED;
  reg_unlock(i);
  return claimed;
}

/* Records freed, for the next ones, where the green thread has no room
   for its record (note B): a record made on one hub's OS thread is often
   freed on another's (note P), and through malloc the two met on its
   arena's lock (hub/tls.c, note K). */
static struct kz__depot records = {.max = 256};

static void thr_free(struct thr *t)
{
  reg_remove(t);
  if (t->tp)
    kz__tls_free(t->tp, t->hub);
  free(t->values);
  if (!t->in_room && !kz__depot_put(&records, t))
    free(t);
}

/* kz__ext_release: g is being released, by whatever path (note B). */
static void thr_release(struct kz_green *g)
{
  struct thr *t = g->ext;
  g->ext = NULL;
  thr_free(t);
}

/* Bind t to g (hub thread). */
static void thr_attach(struct kz_green *g, struct thr *t)
{
  t->id = g->id;
  g->ext = t;
  reg_add(t);
}

/* The OS thread's own pthread_t, also from a green thread with TLS of its
   own, whose thread pointer (what libc's pthread_self returns) is its own
   descriptor (hub/tls.c, note D).  Through the shim's table, not
   libkudzu's: this runs in constructors, where libkudzu's table would be
   filled with a dlopen, which may call a malloc still being set up. */
static pthread_t os_self(void)
{
  void *os = kz__tls_os_tp;
  return os ? (pthread_t)os : RT(pthread_self)();
}

/* A new record for a green thread of hub, bound to g if not NULL: in g's
   room if it has one (note B), which never fails.  On the calling hub, or,
   for a g not yet posted to hub, on its maker's (note P). */
static struct thr *thr_new(struct kz__hub *hub, struct kz_green *g)
{
  struct thr *t = g ? g->ext_room : NULL;
  if (t || (t = kz__depot_pop(&records)))
    memset(t, 0, sizeof *t);
  else if (!(t = calloc(1, sizeof *t)))
    return NULL;
  t->in_room = g && t == g->ext_room;
  t->cancel_state = PTHREAD_CANCEL_ENABLE;
  t->cancel_type = PTHREAD_CANCEL_DEFERRED;
  t->hub = hub;
  t->os_thread = (pthread_t)hub->home_tp; /* set once, as the hub starts (hub/hub.c) */
  t->tid = __atomic_load_n(&hub->watch.tid, __ATOMIC_RELAXED);
  if (g)
    thr_attach(g, t);
  return t;
}

/* The record of green thread g, created for one spawned through the API
   if asked; NULL for the main green thread (it is the OS thread). */
static struct thr *thr_of(struct kz_green *g, bool create)
{
  if (g->flags & KZ__G_MAIN)
    return NULL;
  if (!g->ext && create)
    thr_new(g->hub, g);
  return g->ext;
}

/* The calling green thread's record if it has one (or can get one). */
static struct thr *self_thr(bool create)
{
  struct kz_green *g = kz_thr_active();
  return g ? thr_of(g, create) : NULL;
}

/* Who is running, for the identity calls (note I): the green thread, also
   inside a signal handler that interrupted it. */
static struct kz_green *identity(void) { return shim_identity(KZ_PATCH_THREAD); }

/* ---- Keys (note D) -------------------------------------------------------------- */

/* Per key: sequence number (odd while the key exists) and destructor. */
static struct {
  _Atomic unsigned seq;
  void (*_Atomic destructor)(void *);
} keys[PTHREAD_KEYS_MAX];

static unsigned key_seq(pthread_key_t k) { return atomic_load_explicit(&keys[k].seq, memory_order_acquire); }

EXPORT int pthread_key_create(pthread_key_t *key, void (*destructor)(void *))
{
  int r = RT(pthread_key_create)(key, destructor);
  if (r == 0 && *key < PTHREAD_KEYS_MAX) {
    atomic_store(&keys[*key].destructor, destructor);
    if (!(key_seq(*key) & 1))
      atomic_fetch_add(&keys[*key].seq, 1);
  }
  return r;
}

EXPORT int pthread_key_delete(pthread_key_t key)
{
  int r = RT(pthread_key_delete)(key);
  if (r == 0 && key < PTHREAD_KEYS_MAX && (key_seq(key) & 1))
    atomic_fetch_add(&keys[key].seq, 1);
  return r;
}

EXPORT void *pthread_getspecific(pthread_key_t key)
{
  struct kz_green *g = key < PTHREAD_KEYS_MAX ? identity() : NULL;
  struct thr *t = g ? thr_of(g, false) : NULL;
  if (!t) {
    if (g && !(g->flags & KZ__G_MAIN))
      return NULL; /* a green thread that never set anything */
    return RT(pthread_getspecific)(key);
  }
  if (key >= t->nvalues || t->values[key].seq != key_seq(key))
    return NULL;
  return t->values[key].value;
}

/* Make room for key in t's values. */
static int values_grow(struct thr *t, pthread_key_t key)
{
  unsigned n = t->nvalues ? t->nvalues : 16;
  struct keyval *v;
  while (n <= key)
    n *= 2;
  if (n > PTHREAD_KEYS_MAX)
    n = PTHREAD_KEYS_MAX;
  if (!(v = realloc(t->values, n * sizeof *v)))
    return ENOMEM;
  memset(v + t->nvalues, 0, (n - t->nvalues) * sizeof *v);
  t->values = v;
  t->nvalues = n;
  return 0;
}

EXPORT int pthread_setspecific(pthread_key_t key, const void *value)
{
  struct kz_green *g = identity();
  struct thr *t;
  if (!g || (g->flags & KZ__G_MAIN) || key >= PTHREAD_KEYS_MAX)
    return RT(pthread_setspecific)(key, value);
  if (!(key_seq(key) & 1))
    return EINVAL;
  if (!(t = thr_of(g, true)) || (key >= t->nvalues && values_grow(t, key) != 0))
    return ENOMEM;
  t->values[key] = (struct keyval){(void *)value, key_seq(key)};
  return 0;
}

/* Run the destructors of t's values, in rounds while they set new ones. */
static void run_key_destructors(struct thr *t);

/* What a thread runs as it exits, in this order natively too: C++
   thread_local destructors, then the keys' (the shim's for pthread keys,
   glibc's for C11 tss_*). */
static void thr_exiting(struct thr *t)
{
  /* note O: what the end writes on the joiner's side, asked for at once;
     read without the lock, for the prefetch alone */
  if (atomic_load_explicit(&t->fin, memory_order_relaxed) == FIN_WAITED) {
    struct kz__hub *hub = __atomic_load_n(&t->jw_hub, __ATOMIC_RELAXED);
    kz__prefetch(__atomic_load_n(&t->jw, __ATOMIC_RELAXED), sizeof *t->jw); /* never faults */
    if (hub)
      kz__prefetch(&hub->inbox, sizeof hub->inbox);
  }
  if (t->tp)
    kz__tls_exiting();
  run_key_destructors(t);
  if (t->fn && atomic_fetch_sub_explicit(&live_threads, 1, memory_order_acq_rel) == 1) {
    kz_sync_wake(&live_threads, SIZE_MAX); /* main_exit may wait for it */
    if (kz__main_gone() && kz__hubs_many())
      exit(0); /* the last thread, and the extra hubs would keep the process alive (hub/hubs.c, note E) */
  }
}


static void run_key_destructors(struct thr *t)
{
  for (int round = 0; round < PTHREAD_DESTRUCTOR_ITERATIONS; round++) {
    bool any = false;
    for (unsigned k = 0; k < t->nvalues; k++) {
      void (*d)(void *) = atomic_load(&keys[k].destructor);
      void *v = t->values[k].value;
      if (!v || t->values[k].seq != key_seq(k) || !d)
        continue;
      t->values[k].value = NULL;
      d(v);
      any = true;
    }
    if (!any)
      break;
  }
}

/* ---- Leaving: return, pthread_exit, cancellation (note F) ------------------------ */

/* The buffer registered before buf (kept in its padding). */
static __pthread_unwind_buf_t *buf_prev(__pthread_unwind_buf_t *buf) { return buf->__pad[0]; }

/* Finish the calling green thread with t->exit_value: destructors, then
   the hub's finish (joiners see the value). */
static _Noreturn void thr_finish(struct thr *t)
{
  thr_exiting(t);
  kz__green_finish(t->exit_value, 0);
}

/* Run the innermost cleanup handler left, or finish. */
static _Noreturn void unwind_next(struct thr *t)
{
  __pthread_unwind_buf_t *buf = t->cleanup;
  if (!buf)
    thr_finish(t);
  t->cleanup = buf_prev(buf);
  /* The buffer holds the leading fields of a jmp_buf (__jmpbuf and
     __mask_was_saved, which is 0: longjmp reads no saved mask). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
  longjmp((struct __jmp_buf_tag *)(void *)buf->__cancel_jmp_buf, 1);
#pragma GCC diagnostic pop
}

/* Leave the calling green thread with value, running its cleanup handlers
   and destructors.  Cancellation stays off meanwhile: a handler's blocking
   calls work. */
static _Noreturn void thr_unwind(struct kz_green *g, struct thr *t, void *value)
{
  g->flags |= KZ__G_NO_CANCEL;
  t->exiting = true;
  t->exit_value = value;
  unwind_next(t);
}

void kz_thr_cancel_point(void)
{
  struct kz_green *g = kz__self();
  struct thr *t = g && kz_thr_patching() ? thr_of(g, false) : NULL;
  if (t && t->cancel_pending && !t->exiting && t->cancel_state == PTHREAD_CANCEL_ENABLE)
    thr_unwind(g, t, PTHREAD_CANCELED);
}

EXPORT void __pthread_register_cancel(__pthread_unwind_buf_t *buf)
{
  struct thr *t = self_thr(true);
  if (!t) {
    RT(__pthread_register_cancel)(buf);
    return;
  }
  buf->__pad[0] = t->cleanup;
  t->cleanup = buf;
}

EXPORT void __pthread_unregister_cancel(__pthread_unwind_buf_t *buf)
{
  struct thr *t = self_thr(false);
  if (!t) {
    RT(__pthread_unregister_cancel)(buf);
    return;
  }
  if (t->cleanup == buf)
    t->cleanup = buf_prev(buf);
}

/* The _defer forms switch to deferred cancellation for the block; green
   cancellation is always deferred (note F). */
EXPORT void __pthread_register_cancel_defer(__pthread_unwind_buf_t *buf)
{
  if (!self_thr(false) && !kz_thr_active()) {
    RT(__pthread_register_cancel_defer)(buf);
    return;
  }
  __pthread_register_cancel(buf);
}

EXPORT void __pthread_unregister_cancel_restore(__pthread_unwind_buf_t *buf)
{
  if (!self_thr(false)) {
    RT(__pthread_unregister_cancel_restore)(buf);
    return;
  }
  __pthread_unregister_cancel(buf);
}

EXPORT void __pthread_unwind_next(__pthread_unwind_buf_t *buf)
{
  struct thr *t = self_thr(false);
  if (!t || !t->exiting)
    RT(__pthread_unwind_next)(buf);
  unwind_next(t);
}

/* Where a green pthread starts: the program's routine, then destructors. */
static void *thr_start(void *arg)
{
  struct thr *t = kz__self()->ext; /* made after the green thread (spawn) */
  (void)arg;
  kz__prefetch(&live_threads, sizeof live_threads); /* its creator counted it last (note O) */
  if (t->tp)
    kz__tls_started();
  t->exit_value = t->fn(t->arg);
  thr_exiting(t);
  return t->exit_value;
}

/* The main green thread leaves: like natively, the process lives on until
   the other threads have finished, then the OS thread exits. */
static int no_threads_left(void *c)
{
  (void)c;
  return atomic_load_explicit(&live_threads, memory_order_acquire) == 0;
}

static _Noreturn void main_exit(struct kz_green *g, void *value)
{
  struct kz__hub *hub = g->hub;
  struct kz__waiter w;
  g->flags |= KZ__G_NO_CANCEL;
  for (;;) {
    while (hub->nlive > 1)
      kz__waitq_wait(&hub->quiesce, &w, -1);
    if (!kz__hubs_many())
      break;
    if (no_threads_left(NULL)) /* and the other hubs' OS threads would keep it alive */
      exit(0);                 /* hub/hubs.c, note E */
    kz_sync_wait(&live_threads, no_threads_left, NULL, -1, 0, false, "the last thread");
  }
  RT(pthread_exit)(value);
  __builtin_unreachable();
}

EXPORT void pthread_exit(void *value)
{
  struct kz_green *g = kz_thr_active();
  struct thr *t;
  if (!g)
    RT(pthread_exit)(value);
  else if (g->flags & KZ__G_MAIN)
    main_exit(g, value);
  else if ((t = thr_of(g, true)))
    thr_unwind(g, t, value);
  else
    kz__green_finish(value, 0);
  __builtin_unreachable();
}

/* ---- Creating (note C) ------------------------------------------------------------ */

/* The stack of a new green pthread from attr: *size for kudzu to allocate
   (0: the hub's default), or a stack the program supplies in *stack. */
static void attr_stack(const pthread_attr_t *attr, void **stack, size_t *size)
{
  static _Atomic size_t glibc_default;
  size_t def = atomic_load_explicit(&glibc_default, memory_order_relaxed), hub_def;
  pthread_attr_t a;
  *stack = NULL;
  *size = 0;
  if (!attr)
    return;
  /* glibc reports top - size: the top (its stackaddr) is 0 when unset */
  if (pthread_attr_getstack(attr, stack, size) == 0 && (uintptr_t)*stack + *size != 0)
    return;
  *stack = NULL;
  if (!def && pthread_attr_init(&a) == 0) {
    pthread_attr_getstacksize(&a, &def);
    pthread_attr_destroy(&a);
    atomic_store_explicit(&glibc_default, def, memory_order_relaxed);
  }
  pthread_attr_getstacksize(attr, size);
  hub_def = kz__stack_default_size();
  if (*size == def || *size <= hub_def)
    *size = 0; /* the pooled default */
}

/* ---- Names (note Q) -------------------------------------------------------------- */

/* The main thread's name as last read, valid while gen is known - 1. */
static struct {
  char name[16];
  _Atomic unsigned gen;   /* bumped after each rename of an OS thread the shim sees */
  _Atomic unsigned known; /* gen + 1 when name was read; 0: never read */
} main_name;

static void names_changed(void) { atomic_fetch_add_explicit(&main_name.gen, 1, memory_order_release); }

/* The main thread's name (its OS thread's, which only it and the renames
   of note Q change); main thread only. */
static void main_name_get(char name[16])
{
  unsigned gen = atomic_load_explicit(&main_name.gen, memory_order_acquire);
  if (atomic_load_explicit(&main_name.known, memory_order_relaxed) != gen + 1) {
    if (RT(prctl)(PR_GET_NAME, (unsigned long)main_name.name, 0, 0, 0) != 0)
      main_name.name[0] = 0;
    main_name.name[15] = 0;
    atomic_store_explicit(&main_name.known, gen + 1, memory_order_relaxed);
  }
  memcpy(name, main_name.name, 16);
}

/* A new thread inherits its creator's name, as natively. */
static void creator_name(struct kz_green *self, char name[16])
{
  if (self->flags & KZ__G_MAIN)
    main_name_get(name);
  else
    memcpy(name, self->name, 16);
}

/* The name calls of prctl are a green thread's own (note Q); the rest, and
   every call of the main thread and of threads with no hub, pass through. */
EXPORT int prctl(int option, ...)
{
  struct kz_green *g = identity();
  unsigned long a[4];
  va_list ap;
  int r;
  va_start(ap, option);
  for (int i = 0; i < 4; i++)
    a[i] = va_arg(ap, unsigned long);
  va_end(ap);
  if (g && !(g->flags & KZ__G_MAIN) && g->sig.own && (option == PR_SET_NAME || option == PR_GET_NAME)) {
    if (!a[0]) {
      errno = EFAULT; /* the kernel's answer */
      return -1;
    }
    if (option == PR_SET_NAME) {
      char name[16];
      strncpy(name, (const char *)a[0], 15); /* the kernel's truncation */
      name[15] = 0;
      memcpy(g->name, name, 16); /* its own record: it runs on its hub */
    } else {
      memcpy((char *)a[0], g->name, 16);
    }
    return 0;
  }
  r = RT(prctl)(option, a[0], a[1], a[2], a[3]);
  if (option == PR_SET_NAME)
    names_changed();
  return r;
}

/* ---- Runtimes whose threads stay OS threads (note J) ------------------------------ */

/* Libraries that keep each thread's identity where the shim cannot follow. */
static const char *const unconverted[] = {
  "libjvm.so", /* HotSpot: Thread::current() is a __thread variable */
};

static _Atomic bool convert_off;               /* one of them is loaded: for good */
static _Atomic unsigned long long loads_seen;  /* dlpi_adds when last looked */

static int loads_cb(struct dl_phdr_info *info, size_t size, void *data)
{
  if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof info->dlpi_adds)
    *(unsigned long long *)data = info->dlpi_adds;
  return 1; /* the counter is the same in every entry: one is enough */
}

/* Modules whose thread-local variables green threads may share (note M):
   libc's own (errno, which the hub switches, and state no blocking call
   leaves half-changed) and the runtime's. */
static const char *const shared_tls[] = {
  "libc.so", "libkudzu.so", "libkudzu-preload.so", "libunwind",
};

/* dl_iterate_phdr callback: the first module with a TLS segment that is not
   in shared_tls goes to *data (its path, or "" for the program). */
static int tls_cb(struct dl_phdr_info *info, size_t size, void *data)
{
  const char *base = strrchr(info->dlpi_name, '/');
  (void)size;
  base = base ? base + 1 : info->dlpi_name;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    if (info->dlpi_phdr[i].p_type != PT_TLS || info->dlpi_phdr[i].p_memsz == 0)
      continue;
    for (size_t k = 0; k < sizeof shared_tls / sizeof *shared_tls; k++)
      if (!strncmp(base, shared_tls[k], strlen(shared_tls[k])))
        return 0;
    *(const char **)data = info->dlpi_name;
    return 1;
  }
  return 0;
}

/* Threads stay OS threads from now on, for good; why is said once. */
static bool convert_stop(const char *what, const char *why)
{
  if (!atomic_exchange(&convert_off, true))
    kz__say("%s: its threads run as OS threads, not green threads (%s)", what, why);
  return false;
}

/* May pthread_create make a green thread?  No once a library of
   unconverted, or a module with thread-local variables of its own, is in
   the process (said once on stderr).  Costs one dl_iterate_phdr step while
   no object was loaded since the last look. */
static bool may_convert(void)
{
  unsigned long long loads = 0;
  const char *tls = NULL, *why;
  char what[PATH_MAX + 64], because[256];
  if (atomic_load_explicit(&convert_off, memory_order_relaxed))
    return false;
  dl_iterate_phdr(loads_cb, &loads);
  if (loads == atomic_load_explicit(&loads_seen, memory_order_relaxed))
    return true;
  atomic_store_explicit(&loads_seen, loads, memory_order_relaxed);
  for (size_t i = 0; i < sizeof unconverted / sizeof *unconverted; i++) {
    void *h = dlopen(unconverted[i], RTLD_NOLOAD | RTLD_LAZY); /* by soname */
    if (h) {
      dlclose(h);
      snprintf(what, sizeof what, "%s is loaded", unconverted[i]);
      return convert_stop(what, "it keeps each thread's identity in thread-local variables, "
                                "which the green threads of a hub share");
    }
  }
#ifdef KZ_ASAN
  /* A sanitizer build tests the runtime itself: its sanitizers' own
     runtimes (and libstdc++ under them) have TLS, which green threads
     cannot have of their own there (hub/tls.c); they share the OS
     thread's, as before, rather than every program losing its green
     threads. */
  (void)why;
  (void)tls;
  (void)because;
  (void)tls_cb;
  return true;
#endif
  if (!kz__tls_available(&why) && dl_iterate_phdr(tls_cb, &tls)) { /* note M */
    snprintf(what, sizeof what, "%s has thread-local variables",
             tls[0] ? tls : program_invocation_short_name);
    snprintf(because, sizeof because, "green threads cannot have their own here: %s", why);
    return convert_stop(what, because);
  }
  return true;
}

/* What a new thread is made of, decided by its creator. */
struct spawn_req {
  void *(*fn)(void *);
  void *arg;
  void *stack;      /* the program's, or NULL */
  size_t size;      /* its size, or the one to allocate (0: the default) */
  bool detached;
  char name[16];
  uint64_t mask;    /* its signal mask: its creator's */
  pthread_t *out;   /* the caller's: set before the thread may run, as by glibc */
};

static void *pthread_result(struct kz_green *g);

/* On a green joiner's hub: its join is settled. */
static void jwait_deliver(struct kz__post *p)
{
  struct jwait *jw = kz__container_of(p, struct jwait, post);
  struct kz_green *g = jw->g;
  atomic_store_explicit(&jw->done, 1, memory_order_release); /* jw may go from here on */
  kz__wake(g, 0);
}

/* Hub side: the join jw waits for is settled (note O). */
static void jwait_settle(struct jwait *jw, int err, void *result)
{
  jw->err = err;
  jw->result = result;
  if (jw->g) { /* straight to its hub, which wakes it */
    jw->post.fn = jwait_deliver;
    kz__hub_post(jw->hub, &jw->post);
    return;
  }
  atomic_store_explicit(&jw->done, 1, memory_order_release);
  kz_sync_wake(&jw->done, 1); /* jw may be gone already: a spurious wake at worst */
}

/* Done hook of a green pthread (note O), on its hub as it finishes: a
   joiner of another hub that waits gets the result; else a joinable one
   that nobody joins yet publishes it. */
static void thr_finished(struct kz__done_hook *h, struct kz_green *g)
{
  struct thr *t = kz__container_of(h, struct thr, fin_hook);
  int f;
  if (g->flags & (KZ__G_DETACHED | KZ__G_JOINING)) { /* gone for any other joiner */
    if (atomic_exchange(&t->fin, FIN_CLAIMED) == FIN_WAITED)
      jwait_settle(t->jw, EINVAL, NULL); /* joined otherwise meanwhile */
    return;
  }
  t->fin_result = pthread_result(g);
  for (;;) { /* a joiner of another hub may come, or give up, meanwhile */
    f = FIN_NO;
    if (atomic_compare_exchange_strong(&t->fin, &f, FIN_READY))
      return;
    if (f != FIN_WAITED)
      return; /* no other state is reached while it runs: never here */
    if (atomic_compare_exchange_strong(&t->fin, &f, FIN_CLAIMED))
      break;
  }
  g->flags |= KZ__G_DETACHED; /* released as it switches away, the record with it */
  jwait_settle(t->jw, 0, t->fin_result);
}

/* What a new green pthread needs of its own hub, there (hub thread,
   before it first runs): its TLS bound to the hub, its signal mask, the
   hub's slice timer and hand-off.  At once for one made on the calling
   hub; for one made by another hub, when the hub adopts it
   (kz__ext_adopt, hub/green.c note E). */
static void thr_adopted(struct kz_green *g)
{
  struct thr *t = g->ext;
  struct kz__hub *hub = g->hub;
  if (t->tp) {
    kz__tls_bind(t->tp, hub); /* made here, where its lines were last used (hub/tls.c, note K) */
    kz__tls_stack(t->tp, g->stack.base, g->stack.size);
  }
  kz__preempt_arm(hub);                /* two threads share the hub now (hub/preempt.c, note A) */
  kz__sigmask_adopt(g, t->start_mask); /* a thread: its creator's mask, its own */
  kz__handoff_enable(hub);             /* its OS thread may change (hub/handoff.c, note A) */
}

/* Make the thread for hub to, from the calling one (note P): everything
   that may fail here, the rest there.  pthread error numbers. */
static int spawn(struct kz__hub *to, struct spawn_req *q)
{
  struct kz_spawn_opts opts = {.name = q->name[0] ? q->name : NULL, .stack_size = q->size,
                               .detached = q->detached};
  struct kz_green *g;
  struct thr *t = NULL;
  void *tp = NULL;
  int err = 0;
  if (to != kz__hub()) { /* what another hub wrote last, asked for at once (hub/green.c, note K) */
    kz__stack_depot_prefetch();
    kz__prefetch(&to->tls_areas, sizeof to->tls_areas);
    kz__prefetch(&live_threads, sizeof live_threads);
  }
  if (kz__tls_available(NULL) && !(tp = kz__tls_new(to))) /* note E */
    return EAGAIN;
  /* a stack of the program's has no room for the record (note B) */
  if (q->stack && !(t = thr_new(to, NULL))) {
    if (tp)
      kz__tls_free(tp, to);
    return EAGAIN;
  }
  if (!(g = kz__spawn(to, thr_start, NULL, &opts, q->stack, q->stack ? q->size : 0, &err))) {
    if (tp)
      kz__tls_free(tp, to);
    free(t);
    return err == -EINVAL ? EINVAL : EAGAIN;
  }
  if (t)
    thr_attach(g, t);
  else
    t = thr_new(to, g); /* in its room: made now, it cannot fail */
  t->fn = q->fn;
  t->arg = q->arg;
  t->start_mask = q->mask;
  if ((t->tp = tp))
    kz__green_own_tls(g, tp); /* before it first runs: the switch loads it */
  t->fin_hook.fn = thr_finished; /* note O */
  kz__list_push(&g->done_hooks, &t->fin_hook.link);
  if (q->detached)
    atomic_store_explicit(&t->fin, FIN_DETACHED, memory_order_relaxed);
  atomic_fetch_add_explicit(&live_threads, 1, memory_order_relaxed);
  *q->out = (pthread_t)g->id;
  if (to == kz__hub())
    thr_adopted(g);
  else
    kz__spawn_post(g); /* the last touch: it may run and be gone at once */
  return 0;
}

EXPORT int pthread_create(pthread_t *out, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
  struct kz_green *self = kz_thr_active();
  struct kz__hub *to;
  struct spawn_req q = {.fn = fn, .arg = arg, .out = out};
  int detach = PTHREAD_CREATE_JOINABLE;

  if (!self || !may_convert())
    return RT(pthread_create)(out, attr, fn, arg);
  attr_stack(attr, &q.stack, &q.size);
  if (attr)
    pthread_attr_getdetachstate(attr, &detach);
  q.detached = detach == PTHREAD_CREATE_DETACHED;
  creator_name(self, q.name);
  q.mask = kz__sig_owner(self)->sig.mask;
  /* the program's threads (sig.own: the main one and the shim's) are
     spread; a green thread of the API (kz_spawn, kz_run) keeps its
     pthreads on its hub, as its own spawns by default, and kz_run reaps
     what its main leaves there */
  to = self->sig.own ? kz__hubs_place(self->hub) : self->hub;
  return spawn(to, &q);
}

/* ---- Joining ----------------------------------------------------------------------- */

static bool joined_elsewhere(struct kz_green *g);

/* kz_join's timeout for a deadline in kz__now() seconds (< 0: none). */
static double join_timeout(double deadline)
{
  double left = deadline - kz__now();
  return deadline < 0 ? KZ_FOREVER : left > 0 ? left : 0;
}

/* Join green g of the calling hub from green thread self; deadline in
   kz__now() seconds (< 0: none, 0: just try).  pthread error numbers. */
static int join_local(struct kz_green *self, struct kz_green *g, void **ret, double deadline)
{
  kz_green_t id = g->id;
  void *res = NULL;
  int r, e;
  if (g == self)
    return EDEADLK;
  if ((g->flags & KZ__G_DETACHED) || joined_elsewhere(g))
    return EINVAL;
  r = kz_join(id, &res, join_timeout(deadline));
  e = errno;
  if (r != 0 && kz__green_get(id)) { /* still there: the wait ended first */
    if (e == ECANCELED)
      kz_thr_cancel_point();
    return e == ETIMEDOUT ? (deadline == 0 ? EBUSY : ETIMEDOUT) : e;
  }
  if (ret) /* cancelled: ECANCELED; kz_fail'ed (API): its error */
    *ret = r == 0 ? res : e == ECANCELED ? PTHREAD_CANCELED : NULL;
  return 0; /* kz_join released it, and the record with it (note B) */
}

/* A join from another OS thread (a real thread, or a green thread of
 * another hub), carried out on the target's hub.  States:
 *   RJ_POSTED     sent to the target's hub
 *   RJ_HOOKED     the target still runs; a done hook will finish the join
 *   RJ_DONE       err and result are set; the joiner takes them
 *   RJ_ABANDONED  the joiner timed out; the hub side lets go of the target
 * Two references (joiner, hub side); the last one frees it. */
enum { RJ_POSTED, RJ_HOOKED, RJ_DONE, RJ_ABANDONED };

struct rjoin {
  struct kz__post post;
  struct kz__done_hook hook;
  kz_green_t id;
  _Atomic int state;
  _Atomic int refs;
  int err;
  void *result;
  bool tryjoin; /* the joiner waits until the request is seen, too */
};

static void rjoin_unref(struct rjoin *j)
{
  if (atomic_fetch_sub(&j->refs, 1) == 1)
    free(j);
}

/* Hub side: the join is settled (err, result); wake the joiner. */
static void rjoin_settle(struct rjoin *j, int err, void *result)
{
  int s = atomic_load(&j->state);
  j->err = err;
  j->result = result;
  if ((s == RJ_POSTED || s == RJ_HOOKED) && atomic_compare_exchange_strong(&j->state, &s, RJ_DONE))
    kz_sync_wake(j, SIZE_MAX);
  rjoin_unref(j);
}

/* The target's result as pthread_join reports it. */
static void *pthread_result(struct kz_green *g)
{
  return g->state == KZ_CANCELLED ? PTHREAD_CANCELED : (g->flags & KZ__G_FAILED) ? NULL : g->result;
}

/* Done hook (the target finishing, on its hub): hand the result over and
   let the target be freed as if detached. */
static void rjoin_done(struct kz__done_hook *h, struct kz_green *g)
{
  struct rjoin *j = kz__container_of(h, struct rjoin, hook);
  struct thr *t = g->ext;
  g->flags &= ~KZ__G_JOINING;
  if (atomic_load(&j->state) == RJ_ABANDONED) {
    rjoin_unref(j);
    return;
  }
  g->flags |= KZ__G_DETACHED; /* released by the hub, the record with it */
  if (t && atomic_exchange(&t->fin, FIN_CLAIMED) == FIN_WAITED) /* gone for lookups before the */
    jwait_settle(t->jw, EINVAL, NULL); /* joiner returns: the release comes after (note O) */
  rjoin_settle(j, 0, pthread_result(g));
}

/* Is another join of g under way (on g's hub)?  A joiner of another hub
   that gave up (a tryjoin, a timed join that timed out) leaves its request
   hooked until g finishes: it is dropped here, so that a later join or
   detach succeeds, as natively. */
static bool joined_elsewhere(struct kz_green *g)
{
  struct thr *t = g->ext;
  bool live = false, dropped = false;
  if (t && atomic_load(&t->fin) == FIN_WAITED)
    return true; /* a joiner of another hub waits on the record (note O) */
  if (!(g->flags & KZ__G_JOINING))
    return false;
  for (struct kz__link *l = g->done_hooks.next, *next; l != &g->done_hooks; l = next) {
    struct kz__done_hook *h = kz__container_of(l, struct kz__done_hook, link);
    struct rjoin *j;
    next = l->next;
    if (h->fn != rjoin_done)
      continue;
    j = kz__container_of(h, struct rjoin, hook);
    if (atomic_load(&j->state) == RJ_ABANDONED) {
      kz__list_remove(l);
      rjoin_unref(j); /* the hub side's reference, which rjoin_done would drop */
      dropped = true;
    } else {
      live = true;
    }
  }
  if (dropped && !live)
    g->flags &= ~KZ__G_JOINING;
  return (g->flags & KZ__G_JOINING) != 0;
}

/* Runs on the target's hub. */
static void rjoin_post(struct kz__post *p)
{
  struct rjoin *j = kz__container_of(p, struct rjoin, post);
  struct kz_green *g = kz__green_get(j->id);
  int s = RJ_POSTED;
  if (atomic_load(&j->state) == RJ_ABANDONED) {
    rjoin_unref(j);
  } else if (!g) {
    rjoin_settle(j, ESRCH, NULL);
  } else if ((g->flags & KZ__G_DETACHED) || joined_elsewhere(g)) {
    rjoin_settle(j, EINVAL, NULL);
  } else if (g->state == KZ_DONE || g->state == KZ_CANCELLED) {
    void *res = pthread_result(g);
    kz__green_release(g); /* the record with it (note B) */
    rjoin_settle(j, 0, res);
  } else if (!atomic_compare_exchange_strong(&j->state, &s, RJ_HOOKED)) {
    rjoin_unref(j); /* abandoned meanwhile */
  } else {
    g->flags |= KZ__G_JOINING;
    j->hook.fn = rjoin_done;
    kz__list_push(g->done_hooks.next, &j->hook.link); /* first: before other hooks */
    if (j->tryjoin) /* it waits for this much; any other joiner sleeps on until the end */
      kz_sync_wake(j, SIZE_MAX);
  }
}

static int rjoin_check(void *c)
{
  struct rjoin *j = c;
  return atomic_load(&j->state) == RJ_DONE;
}

/* Has the target's hub seen the request (tryjoin waits for that much)? */
static int rjoin_seen(void *c)
{
  struct rjoin *j = c;
  return atomic_load(&j->state) != RJ_POSTED;
}

/* Join green thread id living on hub from this (other) OS thread. */
static int join_remote(struct kz__hub *hub, kz_green_t id, void **ret, double deadline)
{
  struct rjoin *j = calloc(1, sizeof *j);
  int r = 0, s;
  if (!j)
    return EAGAIN;
  j->id = id;
  j->tryjoin = deadline == 0;
  atomic_init(&j->refs, 2);
  j->post.fn = rjoin_post;
  kz__hub_post(hub, &j->post);
  while (deadline == 0 && !rjoin_seen(j))
    kz_sync_wait(j, rjoin_seen, j, -1, 0, false, "a join from another thread");
  while (!rjoin_check(j)) {
    r = kz_sync_wait(j, rjoin_check, j, deadline, 0, false, "a join from another thread");
    if (r < 0)
      break;
  }
  s = atomic_load(&j->state);
  if (s != RJ_DONE && atomic_compare_exchange_strong(&j->state, &s, RJ_ABANDONED)) {
    rjoin_unref(j);
    return deadline == 0 ? EBUSY : ETIMEDOUT;
  }
  r = j->err;
  if (r == 0 && ret)
    *ret = j->result;
  rjoin_unref(j);
  return r;
}

static int release_op(struct kz_green *g)
{
  if (g->state == KZ_DONE || g->state == KZ_CANCELLED)
    kz__green_release(g); /* the record with it (note B) */
  return 0;
}

static void release_there(void *arg)
{
  struct kz_green *g = kz__green_get((kz_green_t)(uintptr_t)arg);
  if (g)
    release_op(g);
}

static int post_op(struct kz__hub *hub, kz_green_t id, int (*op)(struct kz_green *g));

/* Note O: a thread of another hub that has finished, joined without a
   round trip.  True if it was (*ret set); false if it has not finished. */
static bool join_finished(kz_green_t id, void **ret)
{
  unsigned i = reg_index(id);
  struct thr *t;
  struct kz__hub *hub = NULL;
  int ready = FIN_READY;
  void *res = NULL;
  reg_lock(i); /* a record is freed only after it leaves the registry */
  if ((t = reg_slot((uint32_t)id)) && t->id == id &&
      atomic_compare_exchange_strong(&t->fin, &ready, FIN_CLAIMED)) {
    res = t->fin_result;
    hub = t->hub;
  }
  reg_unlock(i);
  if (!hub)
    return false;
  if (ret)
    *ret = res;
  if (post_op(hub, id, release_op) != 0) /* no memory for the message: release it from here */
    kz__hub_call(hub, release_there, (void *)(uintptr_t)id);
  return true;
}

static int jwait_done(void *c)
{
  return atomic_load_explicit(&((struct jwait *)c)->done, memory_order_acquire);
}

/* Note O: wait on the record for green pthread id of another hub to
   finish; deadline as join_green's.  -1 if it cannot be waited for so
   (finished already, detached, joined otherwise, gone, or on the calling
   hub, whose callbacks cannot wait): the caller takes the other ways,
   which tell which. */
static int join_wait(kz_green_t id, void **ret, double deadline)
{
  unsigned i = reg_index(id);
  struct kz_green *self = kz__self();
  struct jwait jw = {.g = self, .hub = self ? self->hub : NULL};
  struct thr *t;
  int no = FIN_NO, w, r;
  bool waiting = false, mine = true;
  reg_lock(i); /* one joiner at a time sets jw */
  if ((t = reg_slot((uint32_t)id)) && t->id == id && atomic_load(&t->fin) == FIN_NO &&
      (self || t->hub != kz__hub())) {
    t->jw = &jw;
    t->jw_hub = jw.hub;
    waiting = atomic_compare_exchange_strong(&t->fin, &no, FIN_WAITED);
  }
  reg_unlock(i);
  if (!waiting)
    return -1;
  while (!jwait_done(&jw)) {
    if (self) /* its wake-up comes as a message to its hub */
      r = kz_sync_park(self, mine ? deadline : -1, mine ? KZ_SYNC_CANCEL : 0, "a join from another thread");
    else
      r = kz_sync_wait(&jw.done, jwait_done, &jw, mine ? deadline : -1, mine ? KZ_SYNC_CANCEL : 0,
                       false, "a join from another thread");
    if (r >= 0 || !mine || jwait_done(&jw))
      continue; /* woken (or for another wait: it looks again), or the result is on its way */
    w = FIN_WAITED; /* timed out or cancelled: take the wait back, unless it is settled */
    reg_lock(i);
    mine = (t = reg_at((uint32_t)id)) && t->id == id && t->jw == &jw &&
           atomic_compare_exchange_strong(&t->fin, &w, FIN_NO);
    reg_unlock(i);
    if (mine) {
      if (r == -ECANCELED)
        kz_thr_cancel_point();
      return r == -ETIMEDOUT ? ETIMEDOUT : -r;
    }
  }
  if (jw.err == 0 && ret)
    *ret = jw.result;
  return jw.err;
}

/* Join green pthread t from anywhere. */
static int join_green(pthread_t t, void **ret, double deadline)
{
  struct kz_green *self = kz__self(), *g;
  struct kz__hub *hub;
  pthread_t os;
  int r;
  if (self && (g = kz__green_get((kz_green_t)t)) && g->hub == self->hub)
    return join_local(self, g, ret, deadline);
  if (join_finished((kz_green_t)t, ret))
    return 0;
  if (deadline != 0 && (r = join_wait((kz_green_t)t, ret, deadline)) >= 0)
    return r;
  if (join_finished((kz_green_t)t, ret)) /* it finished meanwhile */
    return 0;
  if (!reg_find((kz_green_t)t, &hub, &os))
    return ESRCH;
  if (hub == kz__hub() && !self)
    return EDEADLK; /* the hub's own callbacks cannot wait */
  return join_remote(hub, (kz_green_t)t, ret, deadline);
}

EXPORT int pthread_join(pthread_t t, void **ret)
{
  return kz_thr_is_green(t) ? join_green(t, ret, -1) : RT(pthread_join)(t, ret);
}

EXPORT int pthread_tryjoin_np(pthread_t t, void **ret)
{
  return kz_thr_is_green(t) ? join_green(t, ret, 0) : RT(pthread_tryjoin_np)(t, ret);
}

/* A join deadline: now counts as "just try" only for tryjoin, so an expired
   absolute time becomes a deadline a hair in the past. */
static double join_deadline(clockid_t clk, const struct timespec *abstime)
{
  double d = kz_thr_deadline(clk, abstime);
  return d == 0 ? 1e-9 : d;
}

EXPORT int pthread_timedjoin_np(pthread_t t, void **ret, const struct timespec *abstime)
{
  if (!kz_thr_is_green(t))
    return RT(pthread_timedjoin_np)(t, ret, abstime);
  if (abstime && (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000L))
    return EINVAL;
  return join_green(t, ret, join_deadline(CLOCK_REALTIME, abstime));
}

EXPORT int pthread_clockjoin_np(pthread_t t, void **ret, clockid_t clk, const struct timespec *abstime)
{
  if (!kz_thr_is_green(t))
    return RT(pthread_clockjoin_np)(t, ret, clk, abstime);
  if ((clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC) ||
      (abstime && (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000L)))
    return EINVAL;
  return join_green(t, ret, join_deadline(clk, abstime));
}

/* ---- Detaching, cancelling, signalling ------------------------------------------------ */

/* Something another OS thread wants done to a green thread, on its hub. */
struct remote_op {
  struct kz__post post;
  kz_green_t id;
  int (*op)(struct kz_green *g); /* pthread error number, ignored */
};

static void remote_op_run(struct kz__post *p)
{
  struct remote_op *o = kz__container_of(p, struct remote_op, post);
  struct kz_green *g = kz__green_get(o->id);
  if (g)
    o->op(g);
  free(o);
}

/* Post op for green thread id to its hub: 0, or EAGAIN. */
static int post_op(struct kz__hub *hub, kz_green_t id, int (*op)(struct kz_green *g))
{
  struct remote_op *o = malloc(sizeof *o);
  if (!o)
    return EAGAIN;
  *o = (struct remote_op){.post.fn = remote_op_run, .id = id, .op = op};
  kz__hub_post(hub, &o->post);
  return 0;
}

/* Apply op to green pthread t: at once on its own hub, else posted there
   (then only existence errors are reported, like for a thread that has not
   acted on the request yet). */
static int on_green(pthread_t t, int (*op)(struct kz_green *g))
{
  struct kz_green *g = kz__green_get((kz_green_t)t);
  struct kz__hub *hub;
  pthread_t os;
  if (g && g->hub == kz__hub())
    return op(g);
  if (!reg_find((kz_green_t)t, &hub, &os))
    return ESRCH;
  return post_op(hub, (kz_green_t)t, op);
}

static int detach_op(struct kz_green *g)
{
  struct thr *t = g->ext;
  int no = FIN_NO;
  if ((g->flags & KZ__G_DETACHED) || joined_elsewhere(g))
    return EINVAL;
  if (g->state == KZ_DONE || g->state == KZ_CANCELLED) {
    kz__green_release(g); /* the record with it (note B) */
    return 0;
  }
  if (t && !atomic_compare_exchange_strong(&t->fin, &no, FIN_DETACHED))
    return EINVAL; /* a joiner of another hub came first (note O) */
  g->flags |= KZ__G_DETACHED; /* released when it finishes, the record with it */
  return 0;
}

EXPORT int pthread_detach(pthread_t t)
{
  return kz_thr_is_green(t) ? on_green(t, detach_op) : RT(pthread_detach)(t);
}

static int cancel_op(struct kz_green *g)
{
  struct thr *t = thr_of(g, true);
  if (!t)
    return g->flags & KZ__G_MAIN ? ENOTSUP : ENOMEM;
  t->cancel_pending = true;
  if (t->cancel_state == PTHREAD_CANCEL_ENABLE && !t->exiting)
    kz_cancel(g->id);
  return 0;
}

/* Note F: the request is marked in the record at once, from any thread;
   what acts on it (a wait ended, kz_cancel) happens on its hub. */
static void cancel_mark(kz_green_t id)
{
  unsigned i = reg_index(id);
  struct thr *t;
  reg_lock(i);
  if ((t = reg_slot((uint32_t)id)) && t->id == id)
    atomic_store(&t->cancel_pending, true);
  reg_unlock(i);
}

EXPORT int pthread_cancel(pthread_t t)
{
  if (!kz_thr_is_green(t))
    return RT(pthread_cancel)(t);
  cancel_mark((kz_green_t)t);
  return on_green(t, cancel_op);
}

EXPORT int pthread_setcancelstate(int state, int *old)
{
  struct kz_green *g = kz_thr_active();
  struct thr *t = g ? thr_of(g, true) : NULL;
  if (!t)
    return RT(pthread_setcancelstate)(state, old);
  if (state != PTHREAD_CANCEL_ENABLE && state != PTHREAD_CANCEL_DISABLE)
    return EINVAL;
  if (old)
    *old = t->cancel_state;
  t->cancel_state = state;
  if (t->exiting)
    return 0;
  if (state == PTHREAD_CANCEL_DISABLE) {
    g->flags |= KZ__G_NO_CANCEL;
  } else {
    g->flags &= ~KZ__G_NO_CANCEL;
    if (t->cancel_pending)
      kz_cancel(g->id);
  }
  return 0;
}

EXPORT int pthread_setcanceltype(int type, int *old)
{
  struct thr *t = self_thr(true);
  if (!t)
    return RT(pthread_setcanceltype)(type, old);
  if (type != PTHREAD_CANCEL_DEFERRED && type != PTHREAD_CANCEL_ASYNCHRONOUS)
    return EINVAL;
  if (old)
    *old = t->cancel_type;
  t->cancel_type = type; /* acted on as deferred (note F) */
  return 0;
}

EXPORT void pthread_testcancel(void)
{
  struct kz_green *g = kz_thr_active();
  if (!g || (g->flags & KZ__G_MAIN))
    RT(pthread_testcancel)();
  else
    kz_thr_cancel_point();
}

/* The OS thread that runs green pthread t, or 0 (ESRCH). */
static pthread_t os_thread_of(pthread_t t)
{
  struct kz__hub *hub;
  pthread_t os;
  return reg_find((kz_green_t)t, &hub, &os) ? os : 0;
}

EXPORT int pthread_kill(pthread_t t, int sig)
{
  struct kz_green *self = kz_thr_active();
  struct kz__hub *hub;
  pthread_t os;
  if (!kz_thr_is_green(t)) {
    if (self && t == os_self()) /* the main green thread (note A) */
      return kz_shim_kill(self->hub, self->hub->main->id, sig);
    return RT(pthread_kill)(t, sig);
  }
  if (!reg_find((kz_green_t)t, &hub, &os) &&
      (reg_claimed((kz_green_t)t) || /* joined: gone (note O) */
       !(hub = kz__handle_owner((kz_green_t)t, KZ__H_GREEN)))) /* else spawned through the API */
    return ESRCH;
  if (sig < 0 || sig >= _NSIG)
    return EINVAL;
  return kz_shim_kill(hub, (kz_green_t)t, sig); /* note H */
}

EXPORT int pthread_sigqueue(pthread_t t, int sig, const union sigval value)
{
  pthread_t os;
  if (!kz_thr_is_green(t))
    return RT(pthread_sigqueue)(t, sig, value);
  if (!(os = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_sigqueue)(os, sig, value);
}

/* ---- Identity, names, attributes ----------------------------------------------------- */

EXPORT pthread_t pthread_self(void)
{
  struct kz_green *g = identity();
  if (!g || (g->flags & KZ__G_MAIN))
    return os_self();
  return (pthread_t)g->id;
}

EXPORT int pthread_equal(pthread_t a, pthread_t b) { return a == b; }

EXPORT int pthread_setname_np(pthread_t t, const char *name)
{
  if (!kz_thr_is_green(t)) {
    int r = RT(pthread_setname_np)(t, name);
    names_changed(); /* note Q */
    return r;
  }
  if (strlen(name) > 15)
    return ERANGE;
  return kz_set_name((kz_green_t)t, name) == 0 ? 0 : ESRCH;
}

EXPORT int pthread_getname_np(pthread_t t, char *buf, size_t len)
{
  if (!kz_thr_is_green(t))
    return RT(pthread_getname_np)(t, buf, len);
  if (len < 16)
    return ERANGE; /* like glibc: room for any thread name */
  return kz_get_name((kz_green_t)t, buf, len) == 0 ? 0 : ESRCH;
}

EXPORT int pthread_getattr_np(pthread_t t, pthread_attr_t *attr)
{
  struct kz_green *g;
  if (!kz_thr_is_green(t))
    return RT(pthread_getattr_np)(t, attr);
  if (!(g = kz__green_get((kz_green_t)t)) || (g->flags & KZ__G_MAIN))
    return g ? RT(pthread_getattr_np)(os_self(), attr) : ESRCH;
  pthread_attr_init(attr);
  pthread_attr_setstack(attr, g->stack.base, g->stack.size);
  pthread_attr_setguardsize(attr, g->stack.user ? 0 : (size_t)sysconf(_SC_PAGESIZE));
  pthread_attr_setdetachstate(attr, (g->flags & KZ__G_DETACHED) ? PTHREAD_CREATE_DETACHED
                                                                 : PTHREAD_CREATE_JOINABLE);
  return 0;
}

/* The scheduling calls act on a green thread's OS thread, which its hub's
   other green threads share. */
EXPORT int pthread_getschedparam(pthread_t t, int *policy, struct sched_param *p)
{
  if (kz_thr_is_green(t) && !(t = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_getschedparam)(t, policy, p);
}

EXPORT int pthread_setschedparam(pthread_t t, int policy, const struct sched_param *p)
{
  if (kz_thr_is_green(t) && !(t = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_setschedparam)(t, policy, p);
}

EXPORT int pthread_setschedprio(pthread_t t, int prio)
{
  if (kz_thr_is_green(t) && !(t = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_setschedprio)(t, prio);
}

EXPORT int pthread_getcpuclockid(pthread_t t, clockid_t *clk)
{
  if (kz_thr_is_green(t) && !(t = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_getcpuclockid)(t, clk);
}

EXPORT int pthread_setaffinity_np(pthread_t t, size_t n, const cpu_set_t *set)
{
  if (kz_thr_is_green(t) && !(t = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_setaffinity_np)(t, n, set);
}

EXPORT int pthread_getaffinity_np(pthread_t t, size_t n, cpu_set_t *set)
{
  if (kz_thr_is_green(t) && !(t = os_thread_of(t)))
    return ESRCH;
  return RT(pthread_getaffinity_np)(t, n, set);
}

EXPORT int sched_yield(void)
{
  if (kz_thr_active()) {
    kz__yield();
    return 0;
  }
  return RT(sched_yield)();
}

/* ---- Thread ids (note N) ------------------------------------------------------------ */

/* PID_MAX_LIMIT on 64-bit Linux: /proc/sys/kernel/pid_max cannot go above
   it, so no process or thread id ever reaches it. */
#define TID_BASE (4 * 1024 * 1024)

pid_t kz_thr_gettid(void)
{
  struct kz_green *g = identity();
  if (!g || (g->flags & KZ__G_MAIN))
    return (pid_t)kz__syscall(SYS_gettid);
  if (!kz_shim_in_handler)
    thr_of(g, true); /* one spawned through the API: a record, for kz_thr_tid_host */
  return (pid_t)(TID_BASE + (uint32_t)g->id);
}

pid_t kz_thr_tid_host(pid_t tid, pid_t tgid)
{
  uint32_t idx;
  unsigned i;
  struct thr *t;
  pid_t host = tid;
  if (tid < TID_BASE)
    return tid;
  if (tgid == getpid())
    tgid = 0;
  idx = (uint32_t)(tid - TID_BASE);
  i = idx % NREG;
  reg_lock(i);
  if ((t = reg_slot(idx)))
    host = tgid ? t->tid : t->hub->watch.tid; /* under the lock: the hub outlives its records */
  reg_unlock(i);
  return host;
}

int kz_thr_tid_kill(pid_t tid, pid_t tgid, int sig)
{
  uint32_t idx;
  unsigned i;
  struct thr *t;
  struct kz__hub *hub = NULL;
  kz_green_t id = 0;
  if (tid < TID_BASE || (tgid && tgid != getpid()) || sig <= 0 || sig >= _NSIG)
    return -1;
  idx = (uint32_t)(tid - TID_BASE);
  i = idx % NREG;
  reg_lock(i);
  if ((t = reg_slot(idx))) {
    hub = t->hub;
    id = t->id;
  }
  reg_unlock(i);
  return hub ? kz_shim_kill(hub, id, sig) : -1;
}

/* ---- pthread_once (note G) ----------------------------------------------------------- */

enum { ONCE_RUNNING = 1, ONCE_DONE = 2 };

static _Atomic int fork_generation; /* multiple of 4, bumped in each child */

/* Note K: the green pthreads of hub other than the running one do not
   exist in this fork child. */
static void leave_behind(struct kz__hub *hub)
{
  struct kz_green *self = hub->current, *g;
  for (unsigned i = 0; i < NREG; i++)
    for (struct thr *t = registry[i].head; t; t = t->reg_next)
      if (t->fn && t->hub == hub && (g = kz__green_get(t->id)) && g != self)
        kz__green_forget(g);
  if (self != hub->main)
    kz__green_forget(hub->main);
}

/* The main thread leaves (kz_exit, or pthread_exit not seen by main_exit):
   with extra hubs and no thread left, nothing will end the process but
   this (hub/hubs.c, note E). */
static void thr_main_left(void)
{
  if (kz__hubs_many() && atomic_load(&live_threads) == 0)
    exit(0);
}

/* In a forked child: the once generation moves on, registry locks other
   threads held are free, and the other threads are left behind (note K). */
static void once_atfork_child(void)
{
  struct kz__hub *hub = kz__tls_hub;
  bool others = hub && hub->current && (hub->nlive > 1 || hub->current != hub->main);
  if (!kz__fork_threaded() && !others) {
    if (hub && hub->main)
      kz_shim_signal_forked(hub, false); /* writes only what a parent's handler left */
    return; /* note K: nobody to leave behind */
  }
  atomic_fetch_add(&fork_generation, 4);
  for (unsigned i = 0; i < NREG; i++) /* written only if held: note K */
    if (atomic_load_explicit(&registry[i].lock, memory_order_relaxed))
      atomic_store_explicit(&registry[i].lock, false, memory_order_relaxed);
  kz__depot_forked(&records);
  if (others && kz_shim.ready && (kz_shim.patch & KZ_PATCH_THREAD))
    leave_behind(hub);
  if (hub && hub->current) { /* the threads left: the forking one, if the shim made it */
    struct thr *self = hub->current->ext;
    atomic_store(&live_threads, self && self->fn ? 1 : 0);
  }
  if (hub && hub->main)
    kz_shim_signal_forked(hub, true); /* the masks of the threads that are left */
}

/* The family's start-up: the once generation follows forks, and the other
   families' blocking calls become cancellation points (shim.h). */
/* The OS thread's TLS is loaded from here to the parent or child step
   (hub/tls.c, note H), so the fork flag (patch.c, note H) lives there. */
static void tls_fork_prepare(void)
{
  kz__tls_fork_prepare();
  kz_shim_forking = true;
}

static void tls_fork_parent(void)
{
  kz_shim_forking = false;
  kz__tls_fork_done(false);
}

static void tls_fork_child(void)
{
  kz_shim_forking = false;
  kz__tls_fork_done(true);
}

__attribute__((constructor)) static void thread_family_init(void)
{
  /* before the program's: its prepare runs after theirs, its parent and
     child steps before theirs (hub/tls.c, note H) */
  thr_real_fill(); /* here, not in each fork child's first call (pthread_sync.c, note I) */
  pthread_atfork(tls_fork_prepare, tls_fork_parent, tls_fork_child);
  pthread_atfork(NULL, NULL, once_atfork_child);
  kz_shim_on_cancel = kz_thr_cancel_point;
  kz__ext_release = thr_release; /* note B */
  kz__ext_adopt = thr_adopted;   /* note P */
  kz__ext_size = sizeof(struct thr);
  kz__on_main_left = thr_main_left;
}

static void futex_wake_all(_Atomic int *word)
{
  kz__syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* The routine was cancelled: let another thread run it. */
static void once_cancelled(void *o)
{
  atomic_store_explicit((_Atomic int *)o, 0, memory_order_release);
  kz_sync_wake(o, SIZE_MAX);
  futex_wake_all(o);
}

struct once_ctx {
  _Atomic int *word;
  int seen;
};

static int once_changed(void *c)
{
  struct once_ctx *x = c;
  return atomic_load_explicit(x->word, memory_order_acquire) != x->seen;
}

/* Wait until *word is no longer v (another thread runs the routine). */
static void once_wait(_Atomic int *word, int v)
{
  struct once_ctx ctx = {word, v};
  if (kz__self())
    kz_sync_wait(word, once_changed, &ctx, -1, 0, false, "pthread_once");
  else
    kz__syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

EXPORT int pthread_once(pthread_once_t *once, void (*init)(void))
{
  _Atomic int *word = (_Atomic int *)once;
  int v = atomic_load_explicit(word, memory_order_acquire);
  if (v == ONCE_DONE)
    return 0;
  if (!kz_thr_patching())
    return RT(pthread_once)(once, init);
  for (;;) {
    int mine = atomic_load(&fork_generation) | ONCE_RUNNING;
    v = atomic_load_explicit(word, memory_order_acquire);
    if (v & ONCE_DONE)
      return 0;
    if (v == mine) {
      once_wait(word, v);
      continue;
    }
    if (atomic_compare_exchange_strong(word, &v, mine))
      break; /* ours to run (v was 0, or a generation before a fork) */
  }
  pthread_cleanup_push(once_cancelled, once);
  init();
  pthread_cleanup_pop(0);
  atomic_store_explicit(word, ONCE_DONE, memory_order_release);
  kz_sync_wake(once, SIZE_MAX);
  futex_wake_all(word);
  return 0;
}
