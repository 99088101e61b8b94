/* kudzu.h: the public API of libkudzu, a green-thread runtime on libev.
 *
 * A hub per OS thread schedules green threads: user-space threads with their
 * own stacks, switched cooperatively.  Every blocking call below parks only the
 * calling green thread; the hub runs the others meanwhile.
 *
 * Conventions (like libc):
 *   - functions returning int return -1 and set errno on failure;
 *   - handles are opaque 64-bit values; 0 is never a valid handle, and a stale
 *     handle (joined, or a finished detached green thread) fails with EINVAL
 *     instead of touching reused memory;
 *   - timeouts are in seconds (double); KZ_FOREVER (any negative value) waits
 *     without limit, 0 polls.  An expired timeout fails with ETIMEDOUT.  A
 *     timeout above KZ_TIMEOUT_MAX (a billion seconds, about 31 years; also
 *     infinity) waits without limit too; a NaN timeout makes a call that has
 *     to wait fail with EINVAL;
 *   - a cancelled green thread's blocking calls fail with ECANCELED;
 *   - "may switch" marks calls that can run other green threads before they
 *     return.  Blocking calls made outside a green thread (in a callback run
 *     by the hub) fail with EPERM: the hub itself never blocks.
 *
 * The hub of an OS thread is created on first use; the thread that creates it
 * becomes that hub's main green thread, on its own stack.  A green thread is
 * bound for life to the hub it was spawned on: the caller's, or one of the
 * process's set of hubs (kz_set_hubs, struct kz_spawn_opts' hub field).
 */
#ifndef KUDZU_H
#define KUDZU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KUDZU_BUILDING)
#define KZ_API __attribute__((visibility("default")))
#else
#define KZ_API
#endif

#define KZ_VERSION_MAJOR 0
#define KZ_VERSION_MINOR 1

/* Wait without limit. */
#define KZ_FOREVER (-1.0)
/* Timeouts above this many seconds wait without limit. */
#define KZ_TIMEOUT_MAX 1e9

/* Smallest and largest stack a green thread may ask for, in bytes (the
 * largest is address space only: stacks are committed as they are used). */
#define KZ_STACK_MIN (16 * 1024)
#define KZ_STACK_MAX ((size_t)1 << 40)

/* A green thread. */
typedef uint64_t kz_green_t;
/* A callback scheduled on a hub with kz_call_soon/later/at. */
typedef uint64_t kz_call_t;

/* The body of a green thread; its return value is the green thread's result. */
typedef void *(*kz_fn)(void *arg);
/* A callback run by the hub (not in a green thread: it must not block). */
typedef void (*kz_callback)(void *arg);

/* States of a green thread, as kz_state() reports them:
 *   KZ_PENDING    spawned, has not started yet
 *   KZ_RUNNING    started, running or ready to run
 *   KZ_BLOCKED    parked in a blocking call
 *   KZ_DONE       finished (returned, kz_exit or kz_fail)
 *   KZ_CANCELLED  finished after kz_cancel */
enum kz_state { KZ_PENDING, KZ_RUNNING, KZ_BLOCKED, KZ_DONE, KZ_CANCELLED };

/* Events for kz_wait_fd; the values match libev's EV_READ and EV_WRITE. */
enum { KZ_READ = 1, KZ_WRITE = 2 };

/* Where kz_spawn_with puts a green thread (struct kz_spawn_opts' hub):
 *   KZ_HUB_THIS  the caller's hub (0, so a zeroed struct means it)
 *   KZ_HUB_ANY   the least loaded hub of the set (kz_set_hubs): the one
 *                with the fewest live green threads, in turn among equals
 *   KZ_HUB(k)    hub k of the set, 0 <= k < kz_hub_count(): hub 0 is the
 *                hub of the thread whose spawn started the set
 * Asking for KZ_HUB_ANY or KZ_HUB(k) is what starts the set's other hubs.
 * With one hub (kz_set_hubs(1)), the set is every caller's own hub alone. */
#define KZ_HUB_THIS 0
#define KZ_HUB_ANY (-1)
#define KZ_HUB(k) ((int)(k) + 1)

/* Options for kz_spawn_with.  Zero-initialise, then set what you need. */
struct kz_spawn_opts {
  const char *name;  /* copied; truncated to 15 bytes; NULL: "green-<n>" */
  size_t stack_size; /* bytes, KZ_STACK_MIN to KZ_STACK_MAX; 0: the default */
  double delay;      /* seconds before it starts, at most KZ_TIMEOUT_MAX;
                        <= 0: as soon as possible */
  int detached;      /* non-zero: never joined; freed when it finishes */
  int hub;           /* KZ_HUB_THIS (0), KZ_HUB_ANY or KZ_HUB(k): where it runs */
};

/* ---- Running a hub ---------------------------------------------------- */

/* Run main(arg) as a green thread on this OS thread's hub until it finishes,
 * like asyncio.run: then cancel and reap every green thread still alive on
 * the hub, and tear the hub down if this call created it.  *result (if not
 * NULL) receives main's return value.  Returns 0, or -1 with errno: main's
 * error (kz_fail) or ECANCELED; EBUSY when called from a green thread other
 * than the hub's main one.  May switch. */
KZ_API int kz_run(kz_fn main, void *arg, void **result);

/* ---- Green threads ---------------------------------------------------- */

/* Spawn fn(arg) as a green thread on the calling OS thread's hub.  It starts
 * when the caller next blocks or yields.  Returns its handle, or 0 with errno
 * ENOMEM (no memory or address space).  Does not switch. */
KZ_API kz_green_t kz_spawn(kz_fn fn, void *arg);

/* kz_spawn with options (NULL: defaults).  Also fails with EINVAL for a
 * stack_size outside KZ_STACK_MIN..KZ_STACK_MAX, a delay that is NaN or
 * above KZ_TIMEOUT_MAX, a NULL fn, or a hub that is not KZ_HUB_THIS,
 * KZ_HUB_ANY or KZ_HUB(k) with k < kz_hub_count() (the set started).
 * A green thread for another hub is made there, through that hub's
 * mailbox, while the caller waits for its handle, which works from any
 * hub: then the caller may switch (a green caller parks, not cancellably;
 * an OS thread without a hub blocks), and a hub callback gets EPERM (it
 * cannot wait).  Otherwise does not switch. */
KZ_API kz_green_t kz_spawn_with(kz_fn fn, void *arg, const struct kz_spawn_opts *opts);

/* Wait up to timeout seconds for g to finish, then release it.  On success
 * returns 0 and stores g's return value in *result (if not NULL).  If g
 * finished with kz_fail(err), returns -1 with errno = err; if it was
 * cancelled, -1 with ECANCELED, still storing what it returned (NULL if it
 * never ran).  In both cases g is released.  Other failures leave g alone:
 * ETIMEDOUT (still running), ECANCELED (the caller was cancelled), EDEADLK
 * (g is the caller), EINVAL (0, stale, detached, or already being joined),
 * EPERM (not in a green thread), ENOMEM.  g may live on any hub: the caller
 * parks on its own hub and is woken through its mailbox when g finishes;
 * the request must reach g's hub first, so even a timeout of 0 waits for
 * that hub's answer.  May switch. */
KZ_API int kz_join(kz_green_t g, void **result, double timeout);

/* Let g be released when it finishes; it can no longer be joined.  Returns 0,
 * or -1 with EINVAL (stale, already detached or being joined).  For a green
 * thread of another hub, done on its hub while the caller waits (may switch;
 * EPERM in a hub callback); otherwise does not switch. */
KZ_API int kz_detach(kz_green_t g);

/* Request cancellation of g: its current blocking call and every later one
 * fail with ECANCELED; if it has not started it never runs.  Cancelling a
 * finished or already cancelled green thread is harmless.  g may live on any
 * hub: for another hub's, the request is sent to its hub and acted on there
 * soon after (requests from one OS thread arrive in order, so a kz_join that
 * follows finds it made).  Returns 0, or -1 with EINVAL (stale handle) or
 * ENOMEM.  Any thread; does not switch. */
KZ_API int kz_cancel(kz_green_t g);

/* Let every other ready green thread run, then continue.  Returns 0; -1 with
 * EPERM outside a green thread.  May switch. */
KZ_API int kz_yield(void);

/* Sleep for seconds.  Returns 0, or -1 with ECANCELED, EPERM or EINVAL
 * (NaN).  May switch. */
KZ_API int kz_sleep(double seconds);

/* The calling green thread (creating the hub if needed); 0 with errno EPERM
 * in a hub callback, ENOMEM if the hub cannot be created. */
KZ_API kz_green_t kz_self(void);

/* Finish the calling green thread with result, as if its function returned.
 * From the main green thread of a hub, exits the OS thread (pthread_exit). */
KZ_API _Noreturn void kz_exit(void *result);

/* Finish the calling green thread with error err (> 0): kz_join fails with
 * errno = err.  The C counterpart of a task raising an exception. */
KZ_API _Noreturn void kz_fail(int err);

/* kz_set_name, kz_get_name and kz_state take a green thread of any hub: one
 * of another hub is read or named on its hub while the caller waits (may
 * switch; EPERM in a hub callback, which cannot wait); one of the caller's
 * own hub at once, without switching. */

/* Name a green thread (copied, truncated to 15 bytes).  0, or -1 EINVAL. */
KZ_API int kz_set_name(kz_green_t g, const char *name);

/* Copy g's name into buf (always NUL-terminated).  0, or -1 with EINVAL or
 * ERANGE (len too small for the name; buf gets what fits). */
KZ_API int kz_get_name(kz_green_t g, char *buf, size_t len);

/* The state of g (enum kz_state), or -1 with EINVAL. */
KZ_API int kz_state(kz_green_t g);

/* The state's name ("pending", "running", ...), or "invalid". */
KZ_API const char *kz_state_name(int state);

/* Store up to max handles of the live (not yet released) green threads of
 * this OS thread's hub in out, main green thread first.  Returns how many
 * there are, which may exceed max.  Like asyncio.all_tasks(). */
KZ_API size_t kz_list(kz_green_t *out, size_t max);

/* ---- Descriptors and time ------------------------------------------------ */

/* Park until fd is ready for events (KZ_READ | KZ_WRITE).  Returns the ready
 * events (> 0), or -1 with ETIMEDOUT, ECANCELED, EBADF (fd closed meanwhile
 * through kudzu, or not open), EINVAL (no events), EPERM.  All waiters of one
 * descriptor share one libev watcher.  May switch.
 *
 * Close descriptors you wait on with kz_close (or call kz_forget_fd before
 * closing them another way): it wakes their waiters with EBADF and drops the
 * hub's registration, so a new file that gets the same number is watched
 * for real.  Under the preload shim, close(), dup2() and fclose() do it. */
KZ_API int kz_wait_fd(int fd, int events, double timeout);

/* Forget fd on this OS thread's hub (see kz_wait_fd); 0, or -1 EBADF for a
 * negative fd.  Does not switch. */
KZ_API int kz_forget_fd(int fd);

/* kz_forget_fd(fd), then close(fd): returns what close returns. */
KZ_API int kz_close(int fd);

/* Seconds on the hub's monotonic clock (CLOCK_MONOTONIC), like loop.time(). */
KZ_API double kz_now(void);

/* Schedule cb(arg) on this OS thread's hub: soon (after the green threads
 * ready now), after delay seconds, or at kz_now() time when.  Callbacks run
 * on the hub, outside any green thread, and must not block.  Returns a handle,
 * or 0 with errno ENOMEM, or EINVAL (no cb, a delay or time that is NaN).
 * Does not switch. */
KZ_API kz_call_t kz_call_soon(kz_callback cb, void *arg);
KZ_API kz_call_t kz_call_later(double delay, kz_callback cb, void *arg);
KZ_API kz_call_t kz_call_at(double when, kz_callback cb, void *arg);

/* Cancel a scheduled callback.  Returns 0 if it will not run; -1 with EINVAL
 * if it already ran, was cancelled, or belongs to another hub's thread. */
KZ_API int kz_call_cancel(kz_call_t c);

/* ---- Stacks and diagnostics ---------------------------------------------- */

/* The stack size used when none is given (default 128 KiB; the environment
 * variable KUDZU_STACK_SIZE overrides it at start-up).  Stacks are committed
 * lazily: an idle green thread costs about one page.  Setting fails with
 * EINVAL outside KZ_STACK_MIN..KZ_STACK_MAX.  The size is rounded up to
 * whole pages. */
KZ_API int kz_set_default_stack_size(size_t bytes);
KZ_API size_t kz_get_default_stack_size(void);

/* Write every green thread of this OS thread's hub to fd: id, name, state,
 * what it waits on, and a symbolised backtrace of where it is suspended.
 * Returns 0, or -1 with errno from write. */
KZ_API int kz_dump(int fd);

/* Start, change or stop the diagnostics thread (gevent's monitor thread).
 * max_blocking > 0 (from 0.001 to 1e6): any hub whose loop has not run for
 * that many seconds while it is not idle (a green thread computing without yielding, or a call
 * that blocks the OS thread) is reported on stderr once per stall, with the
 * running green thread's name and a backtrace; <= 0 stops watching.
 * dump_signal > 0: that signal makes every hub write kz_dump() to stderr the
 * next time it runs (a hub that has not run it a second later is reported,
 * with the running green thread's name and a backtrace); 0 removes the
 * handler.  The environment does the same
 * at the first hub's creation: KUDZU_MONITOR=SECONDS, KUDZU_DUMP_SIGNAL=USR2
 * (a name, RTMIN+N or a number).  Backtraces use signal SIGRTMAX-2.  Returns
 * 0, or -1 with EINVAL (max_blocking NaN or out of range, a signal that
 * cannot be caught or is the runtime's own) or the error of starting the
 * thread.  Any thread.  Does not switch. */
KZ_API int kz_monitor(double max_blocking, int dump_signal);

/* ---- The toolbox: futures, gather/wait, deadlines, synchronisation,
 * queues, groups, worker threads, hubs on other threads ------------------ */

/* The toolbox is documented with its asyncio/gevent counterparts in
 * docs/TOOLBOX.md.  Its objects (futures, the iterator of as_completed,
 * groups, synchronisation objects, queues) are shared by the green threads
 * of every hub of the process: each call works from any hub, as said
 * below.  Where a call takes a green thread handle (kz_green_t) in place
 * of a future (kz_green_future, gather, wait, as_completed, kz_wait_for),
 * it may be a green thread of any hub: it stands for its completion, as a
 * future owned by the caller's hub. */

/* ---- Futures ---------------------------------------------------------- */

/* A future: a result or an error, set exactly once, like asyncio.Future.  Its
 * owner is the hub of the OS thread that made it: it completes there, and
 * its done callbacks run there.  Any OS thread sets, cancels, waits on it
 * and adds callbacks to it. */
typedef uint64_t kz_future_t;

/* A done callback: runs on the owner hub soon after f completes (outside any
 * green thread: it must not block), with f still valid. */
typedef void (*kz_future_cb)(kz_future_t f, void *arg);

/* A new pending future owned by this OS thread's hub (created if needed).
 * Returns its handle, or 0 with errno ENOMEM.  The caller owns one
 * reference, released with kz_future_free.  Does not switch. */
KZ_API kz_future_t kz_future_new(void);

/* Spawn fn(arg) as a green thread (opts as for kz_spawn_with; it is always
 * detached) and return the future of its completion, like
 * asyncio.create_task: the future's result is fn's return value, its error
 * that of kz_fail, and it is cancelled if the green thread was; cancelling
 * the future cancels the green thread.  The hub field places the green
 * thread as for kz_spawn_with; the future is owned by the caller's hub
 * whichever hub runs it (its callbacks run there; a cancel is carried to
 * the green thread's hub).  0 with errno as kz_spawn_with, or EPERM for
 * another hub from a hub callback.  The caller owns the future
 * (kz_future_free).  Does not switch on its own hub; a spawn on another
 * hub is a round trip there (the caller waits, as for kz_spawn_with). */
KZ_API kz_future_t kz_spawn_future(kz_fn fn, void *arg, const struct kz_spawn_opts *opts);

/* The completion of green thread g (of any hub, finished or not, not yet
 * released) as a new future owned by the caller's hub, which the caller
 * owns (kz_future_free); cancelling it cancels g.  g still has to be
 * joined or detached as usual.  For another hub's green thread this is a
 * round trip to its hub (the caller waits).  0 with errno EINVAL (0,
 * stale), ENOMEM, EPERM (another hub's green thread, from a hub
 * callback). */
KZ_API kz_future_t kz_green_future(kz_green_t g);

/* Complete f with a result, or with error err (> 0; ECANCELED marks it
 * cancelled).  Any OS thread: from another thread than the owner's, the
 * completion is posted to the owner hub (which must still exist) and
 * happens there shortly.  Returns 0, or -1 with EALREADY (f was already
 * completed or cancelled: a future is set exactly once), EINVAL (0, stale,
 * freed, err <= 0, or f is a green thread's future).  Does not switch. */
KZ_API int kz_future_set_result(kz_future_t f, void *result);
KZ_API int kz_future_set_error(kz_future_t f, int err);

/* Cancel f: a pending future completes cancelled at once (from another
 * thread than the owner's: shortly, on the owner hub); a green thread's
 * future cancels the green thread and completes when it finishes (from
 * another thread the request is posted to its hub).  Returns 0, or -1 with
 * EALREADY (already complete), EINVAL.  Any OS thread.  Does not switch. */
KZ_API int kz_future_cancel(kz_future_t f);

/* Wait up to timeout seconds for f to complete.  Returns 0 with the result
 * in *result (if not NULL); or -1 with errno = f's error, ECANCELED (f was
 * cancelled, or the caller was), ETIMEDOUT, EINVAL (0, stale, freed), EPERM
 * (in a hub callback), ENOMEM.  Works from any OS thread: a green thread of
 * any hub parks on its own hub; a thread with no hub blocks (like
 * concurrent.futures.Future.result).  A green thread waiting on a future
 * keeps its hub's loop alive: a future nobody sets waits until the
 * timeout.  May switch. */
KZ_API int kz_future_wait(kz_future_t f, void **result, double timeout);

/* f's outcome without waiting: 0 with *result, or -1 with errno = f's
 * error, ECANCELED, EAGAIN (still pending), EINVAL.  Any OS thread. */
KZ_API int kz_future_result(kz_future_t f, void **result);

/* KZ_PENDING, KZ_DONE (a result or an error) or KZ_CANCELLED; -1 with
 * EINVAL.  Any OS thread. */
KZ_API int kz_future_state(kz_future_t f);

/* Call cb(f, arg) on the owner hub once f completes, soon after (also when
 * f already has), in the order callbacks were added.  Returns 0, or -1 with
 * EINVAL (bad f, NULL cb), ENOMEM.  Any OS thread.  Does not switch. */
KZ_API int kz_future_add_done_callback(kz_future_t f, kz_future_cb cb, void *arg);

/* Release the caller's reference: the handle stays valid for the waiters
 * and callbacks still using it and goes stale after them.  A pending future
 * nobody else references is dropped with its callbacks.  0, or -1 with
 * EINVAL (0, stale, already freed).  Any OS thread. */
KZ_API int kz_future_free(kz_future_t f);

/* ---- gather, wait, as_completed ------------------------------------------ */

/* These take arrays of handles, each a kz_future_t of any hub or a
 * kz_green_t of any hub (a green thread stands for its completion; it
 * still has to be joined or detached as usual).  They fail with EINVAL
 * (a handle 0 or stale, n > INT_MAX), ENOMEM, EPERM (waiting in a hub
 * callback), ECANCELED (the caller was cancelled).  They may switch. */

/* Flags of kz_gather. */
enum { KZ_GATHER_ERRORS = 1 };

/* Wait for all n, like asyncio.gather: results[i] gets the i-th result (NULL
 * on error) and errors[i] its error (0, the kz_fail error, ECANCELED), in
 * the order of the array, whatever the completion order (either array may
 * be NULL).
 * With KZ_GATHER_ERRORS (return_exceptions=True): every error stays in its
 * slot, and the call returns how many slots hold one (0: all succeeded).
 * Without it: the first error (cancellation included) cancels the others
 * still pending (their slots say ECANCELED) and the call returns -1 with
 * errno = that error; 0 if all succeeded.
 * If timeout (or a scoped deadline) expires first, the pending ones are
 * cancelled and it returns -1 with ETIMEDOUT. */
KZ_API int kz_gather(const uint64_t *handles, size_t n, void **results, int *errors, int flags,
                     double timeout);

/* Conditions of kz_wait (asyncio.FIRST_COMPLETED, FIRST_EXCEPTION,
 * ALL_COMPLETED).  FIRST_ERROR returns on the first completion with an
 * error (a cancellation is not one), or when all are done. */
enum { KZ_FIRST_COMPLETED = 1, KZ_FIRST_ERROR = 2, KZ_ALL_COMPLETED = 3 };

/* Wait until `when` holds for handles[0..n) or timeout expires, like
 * asyncio.wait, then reorder the array in place: the completed ones first,
 * then the pending ones, each in their original order.  Returns the number
 * completed (handles[0..r) done, handles[r..n) pending: wait again on
 * handles + r).  A timeout is not an error: it returns the split as it is,
 * possibly 0.  Nothing is cancelled.  -1 with errno as above or EINVAL (bad
 * `when`). */
KZ_API int kz_wait(uint64_t *handles, size_t n, int when, double timeout);

/* Completion-order iteration (asyncio.as_completed).  kz_as_completed_new
 * copies what it needs from the array (NULL with errno as above); next
 * returns the index of the next entry to complete, with its result and
 * error (0, the error, or ECANCELED) in *result and *error (either may be
 * NULL); or -1 with ENOENT (every entry returned), ETIMEDOUT, ECANCELED,
 * EPERM.  The green threads of any hub may call next.  Free it once done
 * (EBUSY while a green thread waits in next). */
struct kz_as_completed;
KZ_API struct kz_as_completed *kz_as_completed_new(const uint64_t *handles, size_t n);
KZ_API int kz_as_completed_next(struct kz_as_completed *it, void **result, int *error,
                                double timeout);
KZ_API int kz_as_completed_free(struct kz_as_completed *it);

/* ---- Deadlines and wait_for -------------------------------------------- */

/* A scope token (kz_deadline_enter); 0 is never valid. */
typedef uint64_t kz_scope_t;

/* Enter a scoped deadline timeout seconds from now (gevent.Timeout,
 * asyncio.timeout): until the matching kz_deadline_leave, every blocking
 * call of the calling green thread fails with ETIMEDOUT once it passes:
 * the calls of this API and the libc calls the preload shim intercepts.
 * Scopes nest; the tightest deadline wins (KZ_FOREVER adds none).  Returns
 * the token to leave with, or 0 with EPERM (not in a green thread),
 * EINVAL (a NaN timeout) or ENOMEM.  Does not switch. */
KZ_API kz_scope_t kz_deadline_enter(double timeout);

/* Leave the scope (scopes are left innermost first), restoring the
 * enclosing deadline.  Returns 1 if this scope's own deadline expired (it
 * was the tightest and has passed: the ETIMEDOUT errors inside were its
 * doing), 0 if not (an ETIMEDOUT then belongs to an outer scope or to a
 * call's own timeout); -1 with EINVAL (token 0) or EPERM. */
KZ_API int kz_deadline_leave(kz_scope_t token);

/* Seconds left before the calling green thread's scoped deadline (0 if it
 * passed), or KZ_FOREVER if none applies. */
KZ_API double kz_deadline_left(void);

/* asyncio.wait_for: wait up to timeout seconds for h (a green thread or a
 * future).  On success, as kz_join / kz_future_wait (a green thread is
 * released).  If the wait times out (or the caller is cancelled) while h is
 * still running, h is cancelled and waited for until it has finished (a
 * green thread is then released), and the call fails with ETIMEDOUT (or
 * ECANCELED).  Other errors as kz_join / kz_future_wait.  May switch. */
KZ_API int kz_wait_for(uint64_t h, void **result, double timeout);

/* ---- Groups and pools -------------------------------------------------- */

/* A group runs green threads as a unit, at most `limit` at once
 * (gevent.pool.Pool(limit); limit 0 is unbounded).  Members are detached:
 * their handles go stale when they finish.  Rules as for the
 * synchronisation objects: green threads of every hub share a group
 * (EPERM for waits in hub callbacks); a member runs on the hub of the
 * thread that spawned it, and the bound, joins and cancellation cover the
 * members of every hub. */
struct kz_group;

/* NULL with ENOMEM. */
KZ_API struct kz_group *kz_group_new(size_t limit);
/* Spawn fn(arg) into the group, on the calling OS thread's hub, first
 * waiting up to timeout for a place when it is full.  Returns the member's
 * handle, or 0 with errno ETIMEDOUT, ECANCELED, ENOMEM, EPERM, EINVAL.  May
 * switch. */
KZ_API kz_green_t kz_group_spawn(struct kz_group *grp, kz_fn fn, void *arg, double timeout);
/* The same without waiting: 0 with EAGAIN when full.  Does not switch. */
KZ_API kz_green_t kz_group_try_spawn(struct kz_group *grp, kz_fn fn, void *arg);
/* Wait until no member runs.  0, or -1 with errno = the first error a
 * member finished with (kz_fail; cancellations do not count; the error is
 * remembered for later joins), ETIMEDOUT, ECANCELED, EPERM.  May switch. */
KZ_API int kz_group_join(struct kz_group *grp, double timeout);
/* Cancel every member (they finish when they next run; those of another
 * hub once their hub has the request).  0 or -1 EINVAL.  Does not switch. */
KZ_API int kz_group_cancel(struct kz_group *grp);
/* Members running, or -1 with EINVAL. */
KZ_API long kz_group_size(struct kz_group *grp);
/* 0, or -1 with EBUSY (members run or someone waits on it), EINVAL. */
KZ_API int kz_group_free(struct kz_group *grp);

/* Run results[i] = fn(args[i]) for i < n in green threads, at most limit at
 * once (0: all at once), like gevent's Pool.map: returns 0 when all
 * finished, the results in the order of args.  The first error (kz_fail in
 * fn), a timeout or the caller's cancellation cancels those still running,
 * waits for them to finish, and fails with that errno (or ETIMEDOUT,
 * ECANCELED).  EINVAL (NULL fn, args or results), EPERM, ENOMEM.  May
 * switch. */
KZ_API int kz_map(kz_fn fn, void *const *args, void **results, size_t n, size_t limit,
                  double timeout);

/* ---- Synchronisation ------------------------------------------------- */

/* Mutex, condition, event and semaphores for green threads (asyncio.Lock,
 * Condition, Event, Semaphore, BoundedSemaphore).  They belong to no hub:
 * the green threads of every hub of the process share them, and any OS
 * thread may make the calls that do not wait.  Waiting calls fail with
 * EPERM in a hub callback (an OS thread without a hub becomes one, its
 * thread the main green thread), ECANCELED when the caller is cancelled,
 * ETIMEDOUT when timeout (or a scoped deadline) expires, and may switch; a
 * green thread waiting on one keeps its hub's loop alive (the waker may be
 * another OS thread).  The others never switch and also work in hub
 * callbacks and threads without a hub.  Waiters are served in FIFO order,
 * whatever their hubs: an unlock or release hands the lock or permit to
 * the first waiter, and a waiter woken that way returns 0 even if its
 * timeout expired meanwhile.  Constructors return NULL with ENOMEM; the
 * *_free functions fail with EBUSY while the object is held or waited on,
 * EINVAL for NULL. */
struct kz_mutex;
struct kz_cond;
struct kz_event;
struct kz_sem;

KZ_API struct kz_mutex *kz_mutex_new(void);
/* 0, or -1 with EDEADLK (the caller holds it already), ETIMEDOUT,
 * ECANCELED, EPERM, EINVAL. */
KZ_API int kz_mutex_lock(struct kz_mutex *m, double timeout);
/* Like kz_mutex_lock without waiting: EBUSY if it is held. */
KZ_API int kz_mutex_trylock(struct kz_mutex *m);
/* 0, or -1 with EPERM (the caller does not hold it), EINVAL. */
KZ_API int kz_mutex_unlock(struct kz_mutex *m);
KZ_API int kz_mutex_free(struct kz_mutex *m);

KZ_API struct kz_cond *kz_cond_new(void);
/* Unlock m, wait for a signal, then lock m again: it always returns with m
 * held, also on failure.  0, or -1 with ETIMEDOUT, ECANCELED, EPERM (m not
 * held by the caller, or in a hub callback), EINVAL.  Wake-ups are not
 * spurious, but the predicate may have changed again: loop on it. */
KZ_API int kz_cond_wait(struct kz_cond *c, struct kz_mutex *m, double timeout);
/* Wake the first waiter / every waiter.  0, or -1 with EINVAL. */
KZ_API int kz_cond_signal(struct kz_cond *c);
KZ_API int kz_cond_broadcast(struct kz_cond *c);
KZ_API int kz_cond_free(struct kz_cond *c);

/* An event starts clear.  kz_event_set wakes every waiter and keeps later
 * waits from waiting until kz_event_clear.  kz_event_is_set returns 1 or 0
 * (-1 with EINVAL).  kz_event_wait: 0 once set (also when a set woke it and
 * a clear came before it ran), or -1 with ETIMEDOUT, ECANCELED, EPERM,
 * EINVAL. */
KZ_API struct kz_event *kz_event_new(void);
KZ_API int kz_event_set(struct kz_event *e);
KZ_API int kz_event_clear(struct kz_event *e);
KZ_API int kz_event_is_set(struct kz_event *e);
KZ_API int kz_event_wait(struct kz_event *e, double timeout);
KZ_API int kz_event_free(struct kz_event *e);

/* A semaphore with value permits.  A bounded one (value > 0, else EINVAL)
 * refuses a release beyond its initial value with EOVERFLOW, which catches
 * releasing more than was acquired.  kz_sem_acquire: 0, or -1 with
 * ETIMEDOUT, ECANCELED, EPERM, EINVAL; kz_sem_try_acquire: EAGAIN when no
 * permit is free.  kz_sem_release: 0, or -1 with EOVERFLOW, EINVAL.
 * kz_sem_value: the free permits (-1 with EINVAL). */
KZ_API struct kz_sem *kz_sem_new(unsigned value);
KZ_API struct kz_sem *kz_sem_new_bounded(unsigned value);
KZ_API int kz_sem_acquire(struct kz_sem *s, double timeout);
KZ_API int kz_sem_try_acquire(struct kz_sem *s);
KZ_API int kz_sem_release(struct kz_sem *s);
KZ_API int kz_sem_value(struct kz_sem *s);
KZ_API int kz_sem_free(struct kz_sem *s);

/* ---- Queues ------------------------------------------------------------ */

/* A queue of void * items between green threads, of one hub or several
 * (asyncio.Queue, LifoQueue, PriorityQueue), same rules as above; the
 * try-variants never wait, so any OS thread may use them (a plain thread
 * may feed a queue with kz_queue_try_put).  A
 * priority queue returns the lowest priority first, equal priorities in put
 * order (kz_queue_put uses priority 0).  A bounded queue (capacity > 0)
 * makes put wait while it is full.  After kz_queue_close, put fails with
 * EPIPE at once; get returns what is left and then fails with EPIPE; waiting
 * putters and getters are woken with EPIPE (a waiting putter's item is not
 * added), whatever hub they wait on.  Items are the caller's: the queue
 * never frees them. */
struct kz_queue;
enum { KZ_QUEUE_FIFO, KZ_QUEUE_LIFO, KZ_QUEUE_PRIORITY };

/* NULL with EINVAL (unknown kind) or ENOMEM. */
KZ_API struct kz_queue *kz_queue_new(int kind, size_t capacity);
/* 0, or -1 with EPIPE (closed), ETIMEDOUT, ECANCELED, ENOMEM (an unbounded
 * queue could not grow), EPERM, EINVAL.  May switch. */
KZ_API int kz_queue_put(struct kz_queue *q, void *item, double timeout);
KZ_API int kz_queue_put_prio(struct kz_queue *q, void *item, long priority, double timeout);
/* kz_queue_put without waiting: EAGAIN when full.  Does not switch. */
KZ_API int kz_queue_try_put(struct kz_queue *q, void *item);
/* 0 with the item in *item (if not NULL), or -1 with EPIPE (closed and
 * empty), ETIMEDOUT, ECANCELED, EPERM, EINVAL.  May switch. */
KZ_API int kz_queue_get(struct kz_queue *q, void **item, double timeout);
/* kz_queue_get without waiting: EAGAIN when empty.  Does not switch. */
KZ_API int kz_queue_try_get(struct kz_queue *q, void **item);
/* Close q (see above); closing twice is harmless.  0, or -1 EINVAL. */
KZ_API int kz_queue_close(struct kz_queue *q);
/* Items held, or -1 with EINVAL. */
KZ_API long kz_queue_size(struct kz_queue *q);
/* Free q (not its items).  0, or -1 with EBUSY (green threads wait on it),
 * EINVAL. */
KZ_API int kz_queue_free(struct kz_queue *q);

/* ---- Worker threads (run_in_executor) ------------------------------------ */

/* A pool of worker OS threads for blocking functions.  Threads start lazily
 * (one per submission that finds none idle, up to the pool's size) and have
 * no hub: under the preload shim their calls pass straight through. */
struct kz_executor;

/* A pool of at most nthreads threads.  NULL with errno EINVAL (0 or more
 * than 1024) or ENOMEM.  Any OS thread; does not switch.  The caller owns it
 * and frees it with kz_executor_free. */
KZ_API struct kz_executor *kz_executor_new(size_t nthreads);

/* Let the queued calls finish, then stop and join the pool's threads and
 * free it.  Blocks the OS thread (not just the green thread) until the
 * threads have exited: call it when no green thread still waits on the pool.
 * 0, or -1 with EINVAL (NULL, the default pool, or already being freed). */
KZ_API int kz_executor_free(struct kz_executor *ex);

/* Size of the default pool (used with ex == NULL, and by the shim for DNS);
 * it starts as min(32, CPUs + 4).  0, or -1 with EINVAL (0 or > 1024),
 * EBUSY (more threads than that are already running), ENOMEM.  Any thread. */
KZ_API int kz_executor_set_default_size(size_t nthreads);

/* Run fn(arg) on a thread of ex (NULL: the default pool) while the calling
 * green thread waits, like loop.run_in_executor.  Returns 0 with fn's return
 * value in *result (if not NULL); or -1 with errno ETIMEDOUT (timeout or
 * scoped deadline), ECANCELED (the caller was cancelled), EPIPE (ex is being
 * freed), EAGAIN (no worker thread could be started), ENOMEM, EPERM (not in
 * a green thread), EINVAL (NULL fn).
 * Ownership: if the wait ends before fn finishes, the call is abandoned
 * safely: a call still queued never runs; a running one finishes on its
 * worker, which then calls discard(arg, result) if discard is not NULL.
 * After every failure except EPERM and EINVAL, discard(arg, result or NULL)
 * has run or will run exactly once, on some thread; after success it never
 * runs and arg is the caller's again.  May switch. */
KZ_API int kz_run_in_executor(struct kz_executor *ex, kz_fn fn, void *arg,
                              void (*discard)(void *arg, void *result), void **result,
                              double timeout);

/* ---- The set of hubs --------------------------------------------------- */

/* The process's set of hubs: hub 0 (the hub of the thread whose spawn with
 * KZ_HUB_ANY or KZ_HUB(k) started the set) and n-1 more, each on an OS
 * thread of its own (named kudzu-hub, blocking every signal), started then
 * and running for the life of the process; hub 0 is then not torn down when
 * the kz_run that created it returns.  Under the preload shim the program's
 * threads are spread over the same set.  By default n is the number of
 * CPUs in the process's affinity mask (read when the first hub is made);
 * the environment's KUDZU_HUBS (0: one per CPU, or 1 to 256) gives n when
 * the program does not call this.
 * Set the number of hubs: 0 means one per CPU in the process's affinity
 * mask (at most 256).  0, or -1 with EINVAL (more than 256) or EBUSY (the
 * set was started with another number).  Any thread; does not switch. */
KZ_API int kz_set_hubs(unsigned n);

/* The hubs in the set, counting hub 0: 1 until the set was started. */
KZ_API size_t kz_hub_count(void);

/* ---- Hubs on other threads -------------------------------------------- */

/* A hub running on an OS thread of its own, like an asyncio loop run in a
 * background thread.  Any OS thread may feed it; what it runs runs there.
 * The thread blocks every signal. */
struct kz_remote;

/* Start a remote hub and return once it runs.  NULL with errno ENOMEM or
 * EAGAIN (no thread).  Any thread; blocks the calling OS thread briefly. */
KZ_API struct kz_remote *kz_remote_start(void);

/* Run cb(arg) on the remote hub soon, as a hub callback (it must not block;
 * it may spawn green threads there), like loop.call_soon_threadsafe.
 * Callbacks from one thread run in the order they were submitted.  Returns
 * 0 once accepted: an accepted callback runs exactly once, before the hub
 * stops.  -1 with EPIPE (kz_remote_stop has begun), ENOMEM, EINVAL.  Any
 * thread; never blocks. */
KZ_API int kz_remote_call_soon(struct kz_remote *r, kz_callback cb, void *arg);

/* Spawn fn(arg) as a green thread on the remote hub and return the future
 * of its completion, like asyncio.run_coroutine_threadsafe.  Wait on it
 * with kz_future_wait from any thread (a plain OS thread blocks, with a
 * timeout); free it with kz_future_free.  Green threads still running when
 * the hub stops are cancelled, and their futures complete cancelled.  0
 * with errno EPIPE, ENOMEM, EINVAL.  Any thread; never blocks. */
KZ_API kz_future_t kz_remote_spawn(struct kz_remote *r, kz_fn fn, void *arg);

/* Stop r: refuse new submissions, run every accepted one, cancel and reap
 * the green threads still alive there, and join the thread.  Blocks the
 * calling OS thread until then.  r stays valid: later submissions fail with
 * EPIPE, so threads racing with the stop are safe.  0, or -1 with EDEADLK
 * (called on r's own thread), EINVAL (NULL, or already stopped). */
KZ_API int kz_remote_stop(struct kz_remote *r);

/* Release r (stopping it first if needed), once no thread can still submit
 * to it.  NULL is ignored. */
KZ_API void kz_remote_free(struct kz_remote *r);

#ifdef __cplusplus
}
#endif

#endif /* KUDZU_H */
