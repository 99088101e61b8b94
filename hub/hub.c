/* hub.c: the per-OS-thread hub: creation and teardown, the mailbox other
 * threads post to, and the hub context's loop.
 *
 * Notes.
 * A. Each hub owns an ev_loop_new() loop, never libev's default loop: the
 *    program may use libev (and its default loop and signal watchers) itself.
 * B. The hub runs in its own context on its own stack.  The thread that
 *    creates the hub keeps running on its original stack as the hub's main
 *    green thread; the hub context starts the first time something parks.
 * C. Ready green threads switch directly to each other (sched.c); the hub
 *    context gets control back when the run queue empties, or once every
 *    green thread that was ready when it dispatched has run and KZ__BUDGET
 *    more direct switches were made, and then polls libev once (without
 *    blocking when green threads are ready).  So I/O is never starved by a
 *    busy ping-pong, and a yield costs a switch, not a system call.  The
 *    budget grows with the batch because polling before a batch has run
 *    finds its descriptors still readable (nobody has read them yet):
 *    epoll re-checks every such level-triggered item on each poll, and with
 *    a thousand connections woken at once, polling every 128 switches spent
 *    more time in those re-checks than in the reads.
 * D. The mailbox's wake-up is an eventfd of the hub's own (a runtime
 *    descriptor, rtfd.c), watched by an unreferenced ev_io: it must not keep
 *    an otherwise idle loop alive, or a deadlock would hang instead of being
 *    reported.  kz__hub_hold() references the loop while a green thread
 *    waits for another OS thread.  wake_pending is set while the hub is
 *    awake: from the return of each epoll_wait to the start of the next
 *    (libev's release and acquire hooks, hub_release and hub_acquire), and
 *    from the moment a poster has written the eventfd.  A poster pushes
 *    its message, then sets the flag, and writes the eventfd only if it
 *    was clear: a hub asleep in epoll_wait, never yet woken.  An awake hub
 *    takes its inbox at the top of each loop pass, and before it sleeps it
 *    clears the flag, then looks at the inbox once more; a message there
 *    (pushed before the clear) gets a write of the hub's own, unless a
 *    poster sets the flag first and writes.  All of it is sequentially
 *    consistent: a poster that found the flag set set it before the clear,
 *    so its push is seen by the look after the clear.  So a post to a hub
 *    that is running costs no system call (a ping-pong between two running
 *    hubs posted an eventfd write per message, 1.4 writes per spawn on
 *    another hub; 0.02 now), and one to a sleeping hub costs one write per
 *    sleep, as libev's ev_async does with its pipe_write_wanted.  The
 *    runtime owns the flag and the descriptor, rather than libev's
 *    ev_async, so a fork child can be given both afresh (note F) and the
 *    descriptor kept at the runtime's numbers.  Posting is
 *    async-signal-safe: atomics and a write(2).
 * F. fork() copies the hub of the forking thread: its epoll instance and
 *    its wake-up eventfd, which parent and child would then share (each
 *    stealing the other's wake-ups), and the wake_pending flag, which may be
 *    set by a post that raced with the fork (a signal handler's, a worker's
 *    completion) and would make every later post in the child skip its
 *    write: the child slept through its own wake-ups until libev's longest
 *    block, 60 s.  The child's first loop pass (note I) gives it a new
 *    eventfd under the same number, a clear flag, a write if the inbox
 *    holds messages, and ev_loop_fork, then lets libev re-create its epoll
 *    instance with the program's callbacks held back (in rtfd.c's scope, so
 *    it is made at the runtime's numbers), then runs without blocking.
 *    Messages posted before the fork are delivered in the child too, by
 *    design: they report what happened before the fork (a lookup finished,
 *    a handler ran), which is the child's past as much as the parent's.
 *    The hubs of other threads do not run in the child (their threads do
 *    not exist); their descriptors stay open, close-on-exec, and recorded.
 * G. dup2() or dup3() onto a runtime descriptor (rtfd.c): the program
 *    takes the number, the runtime's descriptor moves.  Only the hub's
 *    thread may touch its loop: a green thread of the hub that owns it
 *    moves it at once; any other thread (a thread the shim left real,
 *    another hub's) posts the request to that hub and waits for its
 *    context to run it, at most GIVE_WAIT_S (the hub's thread may be
 *    inside a call that waits in the kernel, perhaps for the asking
 *    thread): then the dup2 fails with EBUSY.  The wake-up eventfd gets a second number
 *    (kz__rtfd_dup), posters switch to it (wake_fd is read once per write,
 *    and the mover waits until no poster is inside kz__hub_post), the hub
 *    watches the new number, and the old one is taken out of
 *    the epoll instance, where it would otherwise keep reporting the
 *    eventfd under the program's number.  The epoll instance cannot get a
 *    second number that libev would use, so the hub hands it over the way a
 *    fork does: ev_loop_fork, and the next loop pass re-creates it at the
 *    runtime's numbers and registers every watcher anew; libev's close of
 *    the old number is skipped (rtfd.c, note C), since the program's dup2
 *    closed the instance itself.  Until that pass nothing touches the
 *    instance: the mover is a green thread of the hub, and the hub context
 *    makes its first step through hub_after_fork.
 * H. A poster may be the last to touch a hub: its message (a remote hub's
 *    stop) can make the hub's thread finish and free the hub while the
 *    poster is still in kz__hub_post, between its push and its write.  So
 *    posters count themselves in (hub->posters) before they push and out
 *    after their last access, and kz__hub_destroy waits for the count to
 *    drop to zero before it closes the eventfd and frees the hub.
 * I. The fork child's renewal (note F) waits for its first loop pass, the
 *    first moment the hub waits for anything; the atfork handler only marks
 *    the hub.  A pre-fork server's child usually never waits (its request
 *    is already there: it reads, answers and exits), and renewing at the
 *    fork cost every child three system calls, two more descriptors to
 *    close at exit, and page faults in libev and the hub (a child's first
 *    write to a page copies it, about 2 us each).  Until that pass the
 *    child's descriptors are the parent's: a post in the child (a signal
 *    handler's) may write the shared eventfd, which wakes the parent for
 *    nothing and is made up for by the renewal's look at the inbox; and
 *    nothing in the child may change the shared epoll instance (wake_move
 *    leaves it alone; libev touches it only in ev_run, which the renewal
 *    precedes).
 * J. A green thread parked on an object any OS thread may wake (sched.c,
 *    note F) needs the loop held, as kz__hub_hold does, but the queue's
 *    ping-pong parks once per hand-off, and a hold and an unhold around
 *    each park cost two calls into libev (ev_ref, ev_unref).  So such a
 *    park only counts itself in hub->xwaiters, and each loop pass, before
 *    it polls, holds the hub while the count is not 0 (hub->xheld) and
 *    lets it go once it is: the only moment the hold matters is the poll,
 *    and the parks of a pass never outlive it unseen.
 * E. When nothing is ready, no callback is due and libev has no active
 *    watcher, no event can ever wake anyone: the main green thread's
 *    blocking call fails with EDEADLK (gevent's "this operation would block
 *    forever") instead of the process hanging silently.  In a fork child
 *    whose main green thread was left behind (the fork came from another
 *    thread, kz__green_forget), the end of the last live green thread ends
 *    the process with status 0, as the end of a process's last thread does.
 * L. Crossing between hubs: a post to a hub asleep in epoll_wait costs the
 *    eventfd write and the wake-up of an idle CPU (7 to 40 us on a virtual
 *    machine).  So a hub of a set of several, about to sleep with nothing
 *    to do, first watches its mailbox for SPIN_S (20 us; longer after
 *    sleeps that a post soon ended, note O), as Go's idle Ms spin before
 *    they park: a ping-pong between hubs then never sleeps.
 *    While it watches, the hub is awake (wake_pending set), so posters
 *    skip the eventfd write (note D); when the time is up, the poll's
 *    release looks at the inbox once more.  The messages it took run
 *    there, and the loop starts its pass again: one may have changed what
 *    the top of the pass sets right (a backend given to the program, whose
 *    new one must be made in the runtime's scope, note G).  That pass
 *    skips its poll and runs what the messages woke: the pass before the
 *    spin polled at most SPIN_S ago, and the poll (an epoll_wait without
 *    a timeout, 0.3 us) was a third of a crossing's cost.  At most
 *    SPIN_SKIPS passes in a row skip it, so a ping-pong that never lets
 *    the hub sleep still polls every few tens of microseconds.  A hub that
 *    nothing wakes never spins: idle hubs stay asleep.
 * K. The hubs of the set (hubs.c) can wake each other: a hub with no hold
 *    but the others' (hub->q_holds: the first hub's hold under the shim,
 *    an extra hub's kz_run) is not deadlocked on its own.  The
 *    set is when each of its hubs is "stuck": nothing ready, no callback
 *    due, no active watcher, no hold but those, an empty mailbox.  A hub
 *    finds it is stuck without a system call more: its loop lets the
 *    others' hold go for the pass (ev_unref), so that libev returns at once
 *    when nothing else is active; it then marks itself stuck (q_stuck),
 *    counts itself in q.stuck, and waits for its mailbox alone (under a
 *    reference of its own, the first hub of an API program having none).  A post to
 *    a stuck hub unmarks it before anything else (kz__hub_post), on the
 *    poster's side: a hub that wakes another is never counted stuck while
 *    the one it woke still is.  So when the count reaches the number of
 *    hubs, every hub waits for a post that only a stuck hub could send:
 *    the hub that counted last posts EDEADLK to the first hub's main green
 *    thread (or fails it itself), as note E does for one hub.  What the
 *    count does not see, as note E does not: a thread outside the hubs
 *    (none under the shim, whose threads are green) and signals.
 * M. libev re-creates its epoll instance not only when told to (a fork,
 *    note G's hand-over) but on its own, in the middle of a pass: when
 *    epoll reports a descriptor under an old generation, or an epoll_ctl
 *    fails (a number the program replaced with a file epoll refuses, as
 *    dup2 of /dev/null onto an old wake-up number does).  It also did so
 *    in the pass after note G's hand-over when that pass was not the
 *    loop's first step (note K's second run).  A backend made outside the
 *    runtime's scope lands at a low number, unrecorded, and the program's
 *    next closefrom(3) closed it under the hub ("epoll_wait: Bad file
 *    descriptor").  So every pass of libev runs in the scope (hub_ev_run),
 *    and the callbacks it invokes run out of it (hub_invoke, libev's
 *    invoke hook): whatever libev makes in a pass is the runtime's, at its
 *    numbers, and becomes the hub's backend_fd; what a callback does is
 *    the program's.
 * N. The mailbox is the only part of a hub that other OS threads write:
 *    the inbox, the wake-up flag and descriptor, the posters' count, the
 *    stuck mark (note K) and the count of green threads sent to it
 *    (green.c, note E).  Between two CPUs a line moves in about 30 ns when
 *    they share a core's caches and 130-150 ns when they do not (a
 *    ping-pong of one word on this project's virtual machine gave either,
 *    from minute to minute), and each atomic operation on a line the other
 *    CPU holds waits for it.  So the mailbox is kept off the hub's own
 *    fields (the pass counter, the loop flag, which the hub writes every
 *    pass), on two cache lines at the end of the struct, which is
 *    allocated aligned: the inbox and the wake-up flag on the first, which
 *    the hub reads over and over as it spins (note L), the rest on the
 *    second, which it does not.  With all of it on one line, each of a
 *    poster's operations (the count sent, its own count in and out, the
 *    push) could find the line taken back by the spinning hub's next read;
 *    now, for a lone poster, only the push crosses (bench_hubs spawn, ten
 *    pairs: 0.95x).  The hub counts the green threads it adopted among its
 *    own fields, next to its count of live ones, which placement reads
 *    with it (hubs.c, note A).  A poster reads the wake-up flag before it
 *    exchanges it: a hub that is awake (the spin of note L, a running
 *    pass) has it set, and the exchange would be one more operation on the
 *    line for nothing.  Reading it is enough for note D's argument: the
 *    push is sequentially consistent, and a flag seen set was set before
 *    the hub's clear.
 * O. The spin adapts to how long the hub's sleeps last.  A wake-up of a
 *    sleeping hub takes longer than the spin here (7 to 40 us on this
 *    virtual machine), so one sleep fed the next: a hub that slept woke
 *    late, its answer came after the other hub's spin had run out, that
 *    one slept too, and the two went on waking each other through the
 *    eventfd, for hundreds of rounds, until by chance a wake-up came
 *    within the spin.  bench_hubs spawn made 290 to 1,200 eventfd writes in
 *    100,000 rounds.  So a hub whose spin ran out notes how long it then
 *    waited in all (spin and sleep) when a post ended the sleep, and its
 *    next spin lasts half as long again, up to SPIN_MAX_S (100 us): the
 *    answer that came late once is awaited awake the next time, and the
 *    two hubs are back to spinning (7 to 210 writes in the same runs).  A
 *    sleep that lasts longer, or that something else ends (a timer, a
 *    descriptor), puts the spin back to SPIN_S.  A hub that goes idle
 *    thus spins at most 100 us, once, before it sleeps for good; a hub
 *    that a post wakes every few tens of microseconds spins instead of
 *    sleeping, as a hub that is busy does.  The clock is read only when a
 *    spin has run out.
 */
#include "internal.h"

#include <linux/futex.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KZ__HUB_STACK (256 * 1024)
#define SPIN_S 20e-6     /* note L: the spin, as it starts */
#define SPIN_MAX_S 100e-6 /* note O: the longest */
#define SPIN_SKIPS 8

KZ_TLS struct kz__hub *kz__tls_hub;

/* The runtime's own key and once: libc's, through kz__os_ (internal.h), not
   the shim's, which would keep the value in a green thread's record. */
static pthread_key_t hub_key;
static pthread_once_t hub_once = PTHREAD_ONCE_INIT;

double kz__now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double kz_now(void) { return kz__now(); }

/* A thread that exits with a hub: tear it down if only the main green thread
   is left; otherwise its green threads are lost with it (said once). */
static void hub_key_destructor(void *p)
{
  struct kz__hub *hub = p;
  if (!hub || kz__tls_hub != hub || kz__hubs_member(hub)) /* hubs.c, note F */
    return;
  if (hub->nlive <= 1 && hub->current == hub->main)
    kz__hub_destroy(hub);
  else
    kz__say("an OS thread exited with %zu green threads still alive on its hub",
            hub->nlive - 1);
}

/* An eventfd for the hub's wake-up, at the runtime's numbers (rtfd.c). */
static int wake_open(void)
{
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return fd < 0 ? -errno : kz__rtfd_adopt(fd);
}

static void wake_write(struct kz__hub *hub)
{
  uint64_t one = 1;
  int fd = atomic_load(&hub->wake_fd);
  /* A raw write: posts come from signal handlers too, and the eventfd is
     not the program's to see in an interposer. */
  if (kz__syscall(SYS_write, fd, &one, sizeof one) < 0 && errno == EBADF)
    kz__rtfd_lost(fd, "a hub's wake-up eventfd");
}

/* Watch the wake-up eventfd under number fd (hub thread). */
static void wake_watch(struct kz__hub *hub, int fd)
{
  ev_ref(hub->loop);
  ev_io_stop(hub->loop, &hub->wakeup);
  ev_io_set(&hub->wakeup, fd, EV_READ);
  ev_io_start(hub->loop, &hub->wakeup);
  ev_unref(hub->loop);
}

/* Note F: a new eventfd under the old number (or, when a lowered
   RLIMIT_NOFILE forbids that number now, under a new one). */
static void wake_renew(struct kz__hub *hub)
{
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    kz__say("fork: no eventfd for the child's hub (%s)", strerror(errno));
    abort();
  }
  if (kz__syscall(SYS_dup3, fd, hub->wake_fd, O_CLOEXEC) >= 0) {
    (void)kz__syscall(SYS_close, fd);
  } else { /* the child has only this thread: no poster can race here */
    kz__rtfd_drop(hub->wake_fd);
    (void)kz__syscall(SYS_close, hub->wake_fd);
    hub->wake_fd = kz__rtfd_adopt(fd);
    wake_watch(hub, hub->wake_fd);
  }
  atomic_store(&hub->wake_pending, true); /* awake (note D): the loop looks at the inbox */
}

/* Note I: only marked here; renewed at the child's first loop pass. */
static void hub_atfork_child(void)
{
  struct kz__hub *hub = kz__tls_hub;
  if (hub) {
    hub->forked = hub->fork_child = true;
    kz__preempt_forked(hub); /* its slice timer was not inherited */
  }
}

/* Note G: the wake-up eventfd gets a second number; posters move to it, the
   hub watches it, and the old number leaves the hub's epoll instance. */
static int wake_move(struct kz__hub *hub)
{
  int old = hub->wake_fd, fd = kz__rtfd_dup(old, &hub->wake_fd); /* posters move to it */
  if (fd < 0)
    return -EBUSY;
  while (atomic_load(&hub->posters)) /* a poster may still write to old */
    kz__os_sched_yield();
  wake_watch(hub, fd);
  if (hub->backend_fd >= 0 && !hub->forked) /* a fork child's is the parent's (note I) */
    (void)kz__syscall(SYS_epoll_ctl, hub->backend_fd, EPOLL_CTL_DEL, old, NULL);
  kz__rtfd_drop(old);
  return 0;
}

/* Move hub's descriptor fd out of the way; on hub's thread (a green
   thread of it, or its context running a message). */
static int give_here(struct kz__hub *hub, int fd)
{
  if (hub->stopping)
    return -EBUSY;
  if (fd == hub->wake_fd)
    return wake_move(hub);
  if (fd == hub->backend_fd && !hub->forked) { /* note G */
    kz__rtfd_drop(fd);
    hub->backend_fd = -1;
    ev_loop_fork(hub->loop);
    hub->forked = true;
    return 0;
  }
  return -EBUSY;
}

/* A request from another thread (note G): the message lives on the heap
   and is freed by whichever of the two lets go last, so that a requester
   that stopped waiting never leaves the hub a dangling message. */
struct give_msg {
  struct kz__post post;
  int fd;
  int result;
  _Atomic int done; /* futex word: 1 once the hub ran it */
  _Atomic int refs;
};

static void give_msg_put(struct give_msg *m)
{
  if (atomic_fetch_sub(&m->refs, 1) == 1)
    free(m);
}

static void give_run(struct kz__post *p)
{
  struct give_msg *m = kz__container_of(p, struct give_msg, post);
  m->result = give_here(kz__tls_hub, m->fd);
  atomic_store(&m->done, 1);
  kz__syscall(SYS_futex, &m->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  give_msg_put(m);
}

/* How long a thread outside the hub waits for it to move its descriptor:
   the hub's thread may be inside a call that waits in the kernel, perhaps
   for the very thread that asks (note G). */
#define GIVE_WAIT_S 1.0

int kz__hub_give_fd(int fd)
{
  struct kz__hub *hub = kz__tls_hub, *owner;
  struct give_msg *m;
  double until;
  int r;
  if (hub && hub->current && (fd == hub->wake_fd || fd == hub->backend_fd))
    return give_here(hub, fd);
  if (!(m = calloc(1, sizeof *m)))
    return -EBUSY;
  m->fd = fd;
  m->post.fn = give_run;
  atomic_init(&m->refs, 2);
  if (!(owner = kz__monitor_post_to_owner(fd, &m->post))) {
    free(m);
    return -EBUSY; /* no hub holds it (the shim's own, init.c) */
  }
  until = kz__now() + GIVE_WAIT_S;
  while (!atomic_load(&m->done)) {
    double left = until - kz__now();
    struct timespec ts;
    if (left <= 0)
      break;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    kz__syscall(SYS_futex, &m->done, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
  }
  r = atomic_load(&m->done) ? m->result : -EBUSY;
  give_msg_put(m);
  return r;
}

/* Note M: the callbacks libev invokes run outside the runtime's scope. */
static void hub_invoke(struct ev_loop *loop)
{
  int last = kz__rtfd_last;
  _Atomic int *into = kz__rtfd_into;
  kz__rtfd_scope--;
  kz__rtfd_into = NULL;
  ev_invoke_pending(loop);
  kz__rtfd_into = into;
  kz__rtfd_scope++;
  kz__rtfd_last = last;
}

static void hold_pending(struct ev_loop *loop) { (void)loop; }

/* Note M: a pass of libev in the runtime's scope; a backend it made anew
   is the hub's. */
static bool hub_ev_run(struct kz__hub *hub, int flags)
{
  bool alive;
  kz__rtfd_last = -1;
  kz__rtfd_into = &hub->backend_fd; /* rtfd.c, note F */
  kz__rtfd_scope++;
  alive = ev_run(hub->loop, flags);
  kz__rtfd_scope--;
  kz__rtfd_into = NULL;
  if (KZ_UNLIKELY(kz__rtfd_last >= 0)) { /* backend_fd has it already */
    if (!hub->fork_child)
      hub->forked = false; /* a backend given up (note G) is replaced */
  }
  return alive;
}

/* Notes F, G and I: libev re-creates its backend at the start of its next
   run.  After a fork, let it do so with the pending callbacks held back
   (they run in the pass that follows), so the child's first pass runs
   nothing before its hub is its own. */
static void hub_after_fork(struct kz__hub *hub)
{
  if (hub->fork_child) { /* note I */
    hub->fork_child = false;
    wake_renew(hub);
    ev_loop_fork(hub->loop);
  }
  hub->forked = false;
  ev_set_invoke_pending_cb(hub->loop, hold_pending);
  hub_ev_run(hub, EVRUN_NOWAIT);
  ev_set_invoke_pending_cb(hub->loop, hub_invoke);
}

static void hub_global_init(void)
{
  kz__os_key_create(&hub_key, hub_key_destructor);
  pthread_atfork(NULL, NULL, hub_atfork_child);
  kz__monitor_init();
  kz__hubs_config_env();
}

/* Run the messages other threads posted, in the order each posted them
   (note D). */
static void drain(struct kz__hub *hub);

static void wakeup_cb(struct ev_loop *loop, ev_io *w, int revents)
{
  struct kz__hub *hub = kz__container_of(w, struct kz__hub, wakeup);
  uint64_t n;
  (void)loop;
  if (KZ_UNLIKELY(revents & EV_ERROR))
    kz__rtfd_lost(hub->wake_fd, "a hub's wake-up eventfd");
  if (kz__syscall(SYS_read, hub->wake_fd, &n, sizeof n) < 0 && errno == EBADF)
    kz__rtfd_lost(hub->wake_fd, "a hub's wake-up eventfd");
  hub->post_woke = true; /* note O */
  drain(hub);
}

/* Note D: libev calls these right before and after its epoll_wait. */
static void hub_release(struct ev_loop *loop)
{
  struct kz__hub *hub = ev_userdata(loop);
  atomic_store(&hub->wake_pending, false);
  if (atomic_load(&hub->inbox) && !atomic_exchange(&hub->wake_pending, true))
    wake_write(hub); /* a post came before the flag went down: poll it at once */
}

static void hub_acquire(struct ev_loop *loop)
{
  struct kz__hub *hub = ev_userdata(loop);
  atomic_store(&hub->wake_pending, true);
}

/* Take the inbox and run its messages, in posting order. */
static void drain(struct kz__hub *hub)
{
  struct kz__post *p, *fifo = NULL, *next;
  p = atomic_exchange(&hub->inbox, NULL);
  for (; p; p = next) { /* the inbox is LIFO: reverse it */
    next = p->next;
    p->next = fifo;
    fifo = p;
  }
  for (p = fifo; p; p = next) {
    next = p->next;
    p->fn(p);
  }
}

/* Note K. */
static struct {
  _Atomic unsigned members; /* hubs of the set */
  _Atomic unsigned stuck;   /* of them, marked stuck */
  struct kz__hub *first;    /* the one whose main green thread gets EDEADLK */
  struct kz__post deadlock; /* that message */
} q;

static void unstick(struct kz__hub *hub)
{
  if (atomic_exchange(&hub->q_stuck, false))
    atomic_fetch_sub(&q.stuck, 1);
}

void kz__quiesce_join(struct kz__hub *hub, unsigned holds, bool first)
{
  __atomic_store_n(&hub->q_holds, holds, __ATOMIC_RELAXED);
  if (first)
    q.first = hub;
  if (!atomic_exchange(&hub->q_member, true))
    atomic_fetch_add(&q.members, 1);
}

void kz__quiesce_forked(struct kz__hub *hub)
{
  atomic_store(&q.members, 0);
  atomic_store(&q.stuck, 0);
  q.first = NULL;
  if (hub) {
    atomic_store(&hub->q_member, false);
    atomic_store(&hub->q_stuck, false);
    hub->q_holds = 0;
  }
}

static void hub_deadlock(struct kz__hub *hub);
static void deadlock_run(struct kz__post *p)
{
  (void)p;
  hub_deadlock(q.first);
}

void kz__hub_post(struct kz__hub *hub, struct kz__post *p)
{
  struct kz__post *head;
  int err = errno; /* a handler's post must leave errno as it was */
  if (KZ_UNLIKELY(atomic_load_explicit(&hub->q_stuck, memory_order_relaxed))) /* note K */
    unstick(hub);
  atomic_fetch_add(&hub->posters, 1); /* note H */
  head = atomic_load_explicit(&hub->inbox, memory_order_relaxed);
  do
    p->next = head;
  while (!atomic_compare_exchange_weak(&hub->inbox, &head, p));
  if (!atomic_load(&hub->wake_pending) && !atomic_exchange(&hub->wake_pending, true)) /* note N */
    wake_write(hub);
  atomic_fetch_sub(&hub->posters, 1);
  errno = err;
}

void kz__hub_hold(struct kz__hub *hub)
{
  if (hub->holds++ == 0)
    ev_ref(hub->loop);
}

void kz__hub_unhold(struct kz__hub *hub)
{
  if (--hub->holds == 0)
    ev_unref(hub->loop);
}

/* libev closes its backend: in scope, so the shim lets it (rtfd.c, note C). */
static void hub_loop_destroy(struct kz__hub *hub)
{
  kz__rtfd_drop(hub->backend_fd);
  kz__rtfd_scope++;
  ev_loop_destroy(hub->loop);
  kz__rtfd_scope--;
}

struct kz__hub *kz__hub_create(int *err)
{
  struct kz__hub *hub;
  int r;

  kz__os_once(&hub_once, hub_global_init);
  hub = aligned_alloc(_Alignof(struct kz__hub), sizeof *hub); /* the mailbox's line (note N) */
  if (!hub)
    goto error1;
  memset(hub, 0, sizeof *hub);
  hub->errnop = &errno;
  hub->home_tp = hub->os_tp = hub->tp = __builtin_thread_pointer(); /* created on its own OS thread's TLS */
  hub->preempt_timer = -1; /* armed when it has threads to share with (preempt.c) */
  kz__tls_hub_init(hub);
  kz__list_init(&hub->all);
  kz__list_init(&hub->zombies);
  kz__list_init(&hub->soon);
  kz__list_init(&hub->timed);
  kz__waitq_init(&hub->quiesce);
  atomic_init(&hub->backend_fd, -1);
  kz__rtfd_into = &hub->backend_fd; /* rtfd.c, note F */
  kz__rtfd_scope++; /* rtfd.c, note A */
  hub->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
  if (!hub->loop)
    hub->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
  kz__rtfd_scope--;
  kz__rtfd_into = NULL;
  if (!hub->loop)
    goto error2;
  if ((hub->wake_fd = wake_open()) < 0)
    goto error3;
  if ((r = kz__stack_cache_init(hub)) < 0)
    goto error3b;
  if ((r = kz__stack_get(hub, KZ__HUB_STACK, &hub->hub_stack)) < 0)
    goto error4;
  if ((r = kz__fdtab_init(hub)) < 0)
    goto error5;
  hub->main = kz__green_main(hub);
  if (!hub->main)
    goto error6;
  ev_set_userdata(hub->loop, hub);
  atomic_init(&hub->wake_pending, true); /* awake (note D) */
  hub->spin_s = SPIN_S;                   /* note O */
  ev_set_loop_release_cb(hub->loop, hub_release, hub_acquire);
  ev_set_invoke_pending_cb(hub->loop, hub_invoke); /* note M */
  ev_io_init(&hub->wakeup, wakeup_cb, hub->wake_fd, EV_READ);
  ev_io_start(hub->loop, &hub->wakeup);
  ev_unref(hub->loop); /* note D */
  hub->sp = kz__switch_init(hub->hub_stack.base + hub->hub_stack.size, kz__hub_loop, hub,
                            kz__fpctl_get());
  hub->current = hub->main;
  kz__debug_thread_init(hub);
  kz__monitor_add(hub);
  kz__tls_hub = hub;
  kz__os_setspecific(hub_key, hub);
  return hub;

error6:
  kz__fdtab_term(hub);
error5:
  kz__stack_put(hub, &hub->hub_stack);
error4:
  kz__stack_cache_term(hub);
error3b:
  kz__rtfd_drop(hub->wake_fd);
  kz__os_close(hub->wake_fd);
error3:
  hub_loop_destroy(hub);
error2:
  free(hub);
error1:
  *err = -ENOMEM;
  return NULL;
}

void kz__hub_destroy(struct kz__hub *hub)
{
  struct kz_green *main = hub->main;
  while (!kz__list_empty(&hub->zombies))
    kz__green_release(kz__container_of(hub->zombies.next, struct kz_green, all));
  kz__monitor_remove(hub);
  kz__preempt_disarm(hub);
  kz__tls_hub = NULL;
  kz__os_setspecific(hub_key, NULL);
  kz__debug_thread_term(hub);
  ev_ref(hub->loop);
  ev_io_stop(hub->loop, &hub->wakeup);
  while (atomic_load(&hub->posters)) /* note H */
    kz__os_sched_yield();
  kz__rtfd_drop(hub->wake_fd);
  kz__os_close(hub->wake_fd);
  kz__calls_term(hub);
  kz__fdtab_term(hub);
  hub_loop_destroy(hub);
  kz__handle_free(main->id);
  free(main);
  kz__stack_put(hub, &hub->hub_stack);
  kz__stack_cache_term(hub);
  kz__tls_hub_term(hub);
  free(hub);
}

/* Note K: hub is stuck, and may be the set's last.  Returns with it
   counted stuck, unless the set is deadlocked and hub is the first one,
   which then fails its main green thread (note E). */
static bool hub_stuck(struct kz__hub *hub)
{
  atomic_store(&hub->q_stuck, true);
  if (atomic_fetch_add(&q.stuck, 1) + 1 < atomic_load(&q.members))
    return false;
  if (hub == q.first) {
    unstick(hub);
    return true;
  }
  q.deadlock.fn = deadlock_run;
  kz__hub_post(q.first, &q.deadlock);
  return false;
}

/* Note L: a hub of several, about to sleep, waits hub->spin_s for its
   mailbox first, with wake_pending set so that posters leave the eventfd
   alone.  True if a message came (and ran). */
static bool hub_spin(struct kz__hub *hub)
{
  double end = (hub->spin_at = kz__now()) + hub->spin_s;
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&hub->inbox, memory_order_relaxed))
      break;
    __builtin_ia32_pause();
    if (!(i & 31) && kz__now() >= end)
      return false; /* the poll's release looks at the inbox once more (note D) */
  }
  drain(hub);
  return true;
}

/* Note O: the spin ran out and the hub slept; how long the next spin
   lasts, from how long this wait took. */
static void spin_adapt(struct kz__hub *hub)
{
  double waited = kz__now() - hub->spin_at;
  if (hub->post_woke && waited < SPIN_MAX_S)
    hub->spin_s = waited * 1.5 < SPIN_MAX_S ? waited * 1.5 : SPIN_MAX_S;
  else
    hub->spin_s = SPIN_S;
}

/* Note E: nothing can ever happen again on this hub. */
static void hub_deadlock(struct kz__hub *hub)
{
  if (!kz__wake(hub->main, -EDEADLK)) {
    kz__say("hub deadlock: nothing is ready and nothing can wake the parked green threads");
    abort();
  }
}

void *kz__hub_loop(void *arg)
{
  struct kz__hub *hub = arg;
  kz__switched(hub, NULL);
  for (;;) {
    bool busy, alive, probe, primed = false, spun = false;
    if (KZ_UNLIKELY(hub->ho_moved)) /* taken over by another OS thread (handoff.c) */
      kz__handoff_moved(hub);
    kz__verify(hub);
    if (KZ_UNLIKELY(hub->forked)) {
      hub_after_fork(hub);
      primed = true; /* its events are pending: run them without blocking */
    }
    if (KZ_UNLIKELY(hub->main->state == KZ__S_GONE) && hub->nlive == 1)
      exit(0); /* note E: a fork child's last thread has ended (kz__green_forget) */
    __atomic_store_n(&hub->pass, hub->pass + 1, __ATOMIC_RELAXED); /* monitor.c reads */
    if (atomic_load_explicit(&hub->inbox, memory_order_relaxed)) /* note D: posted while awake */
      drain(hub);
    kz__run_soon(hub);
    if (KZ_UNLIKELY((hub->xwaiters != 0) != hub->xheld)) { /* note J */
      hub->xheld = !hub->xheld;
      if (hub->xheld)
        kz__hub_hold(hub);
      else
        kz__hub_unhold(hub);
    }
    busy = primed || hub->run_head || hub->preempted || !kz__list_empty(&hub->soon);
    if (!busy && atomic_load_explicit(&hub->q_member, memory_order_relaxed)) {
      if (hub_spin(hub)) {
        hub->spin_fed = true;
        continue; /* note L: from the top, which sees what the messages did (a backend given up) */
      }
      spun = true; /* and it sleeps: note O measures how long */
      hub->post_woke = false;
    }
    if (KZ_UNLIKELY(hub->spin_fed)) { /* note L: the pass after a spin that brought messages */
      hub->spin_fed = false;
      if (hub->run_head && !primed && !hub->preempted && hub->poll_skips < SPIN_SKIPS) {
        hub->poll_skips++;
        goto run;
      }
    }
    hub->poll_skips = 0;
    if (KZ_UNLIKELY(hub->sig.lag) && !busy) /* before it sleeps (sigmask.c, note D) */
      kz__sigmask_catch_up(hub);
    __atomic_store_n(&hub->in_loop, true, __ATOMIC_RELAXED);
    probe = !busy && atomic_load_explicit(&hub->q_member, memory_order_relaxed) &&
            (unsigned)hub->holds == __atomic_load_n(&hub->q_holds, __ATOMIC_RELAXED);
    if (KZ_UNLIKELY(probe) && hub->holds) /* note K: only the other hubs hold it */
      ev_unref(hub->loop);
    alive = hub_ev_run(hub, busy ? EVRUN_NOWAIT : EVRUN_ONCE);
    if (KZ_UNLIKELY(probe)) {
      if (hub->holds)
        ev_ref(hub->loop);
      if (!alive && !hub->run_head && !ev_pending_count(hub->loop) && kz__list_empty(&hub->soon) &&
          !atomic_load_explicit(&hub->inbox, memory_order_relaxed)) {
        if (hub_stuck(hub)) {
          __atomic_store_n(&hub->in_loop, false, __ATOMIC_RELAXED);
          hub_deadlock(hub);
          continue;
        }
        ev_ref(hub->loop); /* a post only can wake it now */
        hub_ev_run(hub, EVRUN_ONCE);
        ev_unref(hub->loop);
        unstick(hub);
      }
      alive = true; /* never deadlocked alone */
    }
    if (KZ_UNLIKELY(spun))
      spin_adapt(hub);
    kz__fd_flush(hub);
    __atomic_store_n(&hub->in_loop, false, __ATOMIC_RELAXED);
    if (KZ_UNLIKELY(hub->preempted != NULL)) /* behind what the poll woke (preempt.c, note D) */
      kz__preempted_queue(hub);
    if (!hub->run_head) {
      if (!busy && !alive && !ev_pending_count(hub->loop) && kz__list_empty(&hub->soon) &&
          !atomic_load_explicit(&hub->inbox, memory_order_relaxed))
        hub_deadlock(hub);
      continue;
    }
  run:
    hub->budget = hub->nready + KZ__BUDGET;
    kz__schedule(hub);
    if (KZ_UNLIKELY(hub->sig.lag)) /* what it ran has switched away (sigmask.c, note D) */
      kz__sigmask_catch_up(hub);
  }
}
