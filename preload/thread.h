/* thread.h: what the two files of the thread family (thread.c: threads,
 * keys, once, cancellation; pthread_sync.c: mutexes, condition variables,
 * read-write locks, barriers, spinlocks, semaphores) share.
 *
 * The wait table (pthread_sync.c) is where a green thread parks on a
 * synchronisation object that real OS threads may release too; any thread
 * wakes it by the object's address.
 */
#ifndef KZ_THREAD_H
#define KZ_THREAD_H

#include "shim.h"

#include <pthread.h>

#define KZ_THR_EXPORT __attribute__((visibility("default")))

/* The calling green thread if the thread family is patched, else NULL (the
   call passes through). */
static inline struct kz_green *kz_thr_active(void) { return shim_active(KZ_PATCH_THREAD); }

/* Is thread patching on at all?  Decides whether real OS threads use the
   shim's versions of the objects it implements itself (once, barriers,
   condition waits). */
static inline bool kz_thr_patching(void) { return (kz_shim.patch & KZ_PATCH_THREAD) != 0; }

/* Is t a green thread's identity (a kudzu handle: bit 63 set)? */
static inline bool kz_thr_is_green(pthread_t t) { return ((uint64_t)t >> 63) != 0; }

/* Deadline in kz__now() seconds for an absolute time on clock clk; -1 for
   NULL (no limit). */
double kz_thr_deadline(clockid_t clk, const struct timespec *abstime);

/* ---- The wait table (pthread_sync.c) ------------------------------------- */

/* What a waiter does after it has queued itself and before it parks: returns
   > 0 if it need not park (it acquired the object), 0 to park, or -errno to
   give up with that error. */
typedef int (*kz_sync_check)(void *ctx);

/* Options of kz_sync_wait. */
enum {
  KZ_SYNC_CANCEL = 1, /* a cancellation point: the wait ends with -ECANCELED */
};

/* Wait on addr until woken by kz_sync_wake(addr), or deadline (kz__now()
   seconds, < 0 none) passes.  check(ctx) runs once queued (closing the
   window in which a wake-up could be lost).  Works in a green thread (parks
   it; its hub is held meanwhile) and in a real OS thread (sleeps on a futex).
   Returns 1 when woken, 0 when check said the object was acquired, or
   -ETIMEDOUT, -ECANCELED (only with KZ_SYNC_CANCEL), or check's error.
   A wake-up consumed by a waiter that then gives up is passed on when
   pass_on is true (mutexes, semaphores: one wake-up per release).
   May switch. */
int kz_sync_wait(const void *addr, kz_sync_check check, void *ctx, double deadline, int opts,
                 bool pass_on, const char *what);

/* Park the calling green thread g, its hub held, until kz__wake(g) (0),
   deadline (-ETIMEDOUT) or, with KZ_SYNC_CANCEL, cancellation
   (-ECANCELED): for a wait whose waker posts its wake-up to g's hub
   itself.  Spurious wake-ups are possible: the caller looks again. */
int kz_sync_park(struct kz_green *g, double deadline, int opts, const char *what);

/* Wake up to n waiters of addr (SIZE_MAX: all), from any thread.  Cheap when
   nobody waits anywhere (one atomic load).  Returns how many were woken. */
size_t kz_sync_wake(const void *addr, size_t n);

/* ---- Cancellation (thread.c) --------------------------------------------- */

/* A blocking call of the calling green thread ended with ECANCELED: if it
   was cancelled by pthread_cancel with cancellation enabled, run its cleanup
   handlers and key destructors and finish it with PTHREAD_CANCELED (never
   returns); otherwise return (a kz_cancel from the API: the call fails with
   ECANCELED).  The blocking interposers call it at their cancellation
   points. */
void kz_thr_cancel_point(void);

/* ---- Thread ids (thread.c, note M) ---------------------------------------- */

/* The calling thread's id as gettid() answers it under the shim: the OS
   thread's for a hub's main green thread and outside green threads, a
   distinct id that no process or thread has for every other green thread.
   Safe in a signal handler (answers for the green thread interrupted). */
pid_t kz_thr_gettid(void);

/* The OS thread a thread id of process tgid (0: this one) stands for: for
   a live green thread's id, its hub's OS thread; of another process (a
   parent this one forked from), the OS thread the green thread was made
   on; any other id unchanged. */
pid_t kz_thr_tid_host(pid_t tid, pid_t tgid);
/* Send sig (not 0) to the green thread whose id is tid, as pthread_kill
   does (through its hub, never coalesced with another thread's signal in
   the kernel): 0, or a positive error number; -1 if tid is no green
   thread's id of this process (tgid: 0 or getpid()). */
int kz_thr_tid_kill(pid_t tid, pid_t tgid, int sig);

#endif
