/* remote.c: hubs on OS threads of their own, fed from any thread: callbacks
 * (call_soon_threadsafe) and green threads whose completion comes back as a
 * future (run_coroutine_threadsafe); stop and join.
 *
 * A remote hub's states:
 *
 *   STARTING --its hub is up--> RUNNING --kz_remote_stop--> CLOSED (no new
 *   submissions) --the stop message ran--> STOPPING (kz_run cancels and reaps
 *   what is left) --the thread exits--> joined --kz_remote_free--> freed
 *
 *   The struct outlives the stop, so submitters racing with it read a valid
 *   closed flag (EPIPE); the program frees it once none can submit.
 *
 * Notes.
 * A. Submissions travel through the hub's mailbox (kz__hub_post: a
 *    lock-free stack the hub takes whole and reverses, with one ev_async
 *    wake-up coalescing a whole batch).  The mailbox is one total order, so
 *    the stop message, posted after every accepted submission, runs after
 *    all of them: nothing accepted is lost, and each message runs once
 *    because the hub takes each one off the stack exactly once.
 * B. "Accepted" is decided against a concurrent stop without a lock: a
 *    submitter counts itself in r->inflight and then tests r->closed; the
 *    stopper sets r->closed and then waits for r->inflight to drain; both
 *    sequentially consistent, so either the submitter sees the close and
 *    refuses (EPIPE), or the stopper sees the submitter and waits for its
 *    post to be in the mailbox before posting the stop message behind it.
 * C. The hub's main green thread holds the loop (kz__hub_hold) and parks
 *    until the stop message: with nothing else to do the loop then blocks in
 *    epoll for the next wake-up instead of reporting a deadlock.
 * D. The remote thread blocks every signal (kz__os_thread_start), so the
 *    program's handlers keep running on its own threads.
 * E. Its OS thread is named "kudzu-hub" (top -H, ps -L, /proc/PID/task/
 *    TID/comm show it so): the extra hubs of the set are remote hubs too
 *    (hubs.c).  The names of the green threads it runs are theirs
 *    alone (kz_green_set_name, pthread_setname_np), never the OS thread's.
 */
#include "internal.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>

struct kz_remote {
  pthread_t thread;          /* runs the hub */
  struct kz__hub *hub;       /* valid once started */
  pthread_mutex_t lock;      /* start handshake: ready, start_err */
  pthread_cond_t cond;
  bool ready;
  int start_err;             /* -errno if the hub could not start */
  atomic_bool closed;        /* note B */
  _Atomic long inflight;     /* note B */
  struct kz__post stop_post; /* the last message */
  bool stop_seen;            /* hub thread only */
  struct kz__waitq stopq;    /* the main green thread parks here (note C) */
};

/* A callback to run on the remote hub. */
struct call_msg {
  struct kz__post post;
  kz_callback cb;
  void *arg;
};

/* A green thread to spawn on the remote hub. */
struct spawn_msg {
  struct kz__post post;
  kz_fn fn;
  void *arg;
  struct kz__future *f; /* referenced by the message */
};

static void started(struct kz_remote *r, int err)
{
  kz__os_lock(&r->lock);
  r->ready = true;
  r->start_err = err;
  kz__os_broadcast(&r->cond);
  kz__os_unlock(&r->lock);
}

static void stop_run(struct kz__post *p)
{
  struct kz_remote *r = kz__container_of(p, struct kz_remote, stop_post);
  r->stop_seen = true;
  kz__waitq_wake_all(&r->stopq, 0);
}

static void *remote_main(void *arg)
{
  struct kz_remote *r = arg;
  struct kz__waiter w;
  r->hub = kz__tls_hub;
  kz__waitq_init(&r->stopq);
  kz__hub_hold(r->hub); /* note C */
  started(r, 0);
  while (!r->stop_seen)
    if (kz__waitq_wait(&r->stopq, &w, -1) < 0 && !r->stop_seen)
      kz_sleep(0.001); /* cannot happen: nothing cancels this green thread */
  kz__hub_unhold(r->hub);
  return NULL;
}

static void *remote_thread(void *arg)
{
  struct kz_remote *r = arg;
  kz__syscall(SYS_prctl, PR_SET_NAME, "kudzu-hub", 0, 0, 0); /* note E; not by name: the shim has a prctl */
  if (kz_run(remote_main, r, NULL) < 0 && !r->hub)
    started(r, -errno);
  return NULL;
}

/* Post p unless the remote hub is closed (note B): 0 or -EPIPE. */
static int submit(struct kz_remote *r, struct kz__post *p)
{
  int rc = 0;
  atomic_fetch_add_explicit(&r->inflight, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&r->closed, memory_order_seq_cst))
    rc = -EPIPE;
  else
    kz__hub_post(r->hub, p);
  atomic_fetch_sub_explicit(&r->inflight, 1, memory_order_release);
  return rc;
}

static void call_run(struct kz__post *p)
{
  struct call_msg *m = kz__container_of(p, struct call_msg, post);
  m->cb(m->arg);
  free(m);
}

static void spawn_run(struct kz__post *p)
{
  struct spawn_msg *m = kz__container_of(p, struct spawn_msg, post);
  struct kz_spawn_opts o = {.detached = 1};
  int err = 0;
  struct kz_green *g = kz__spawn(kz__tls_hub, m->fn, m->arg, &o, NULL, 0, &err);
  if (g)
    kz__future_bind(m->f, g);
  else
    kz__future_complete(m->f, NULL, -err);
  kz__future_unref(m->f);
  free(m);
}

struct kz__hub *kz__remote_hub(struct kz_remote *r) { return r->hub; }

/* ---- Public API -------------------------------------------------------------------- */

struct kz_remote *kz_remote_start(void)
{
  struct kz_remote *r = calloc(1, sizeof *r);
  int err;
  if (!r) {
    errno = ENOMEM;
    return NULL;
  }
  pthread_mutex_init(&r->lock, NULL);
  if ((err = kz__os_cond_init(&r->cond)) < 0)
    goto error1;
  r->stop_post.fn = stop_run;
  if ((err = kz__os_thread_start(&r->thread, remote_thread, r)) < 0)
    goto error2;
  kz__os_lock(&r->lock);
  while (!r->ready)
    kz__os_wait(&r->cond, &r->lock, -1);
  kz__os_unlock(&r->lock);
  if ((err = r->start_err) < 0) {
    kz__os_thread_join(r->thread, NULL);
    goto error2;
  }
  return r;

error2:
  pthread_cond_destroy(&r->cond);
error1:
  pthread_mutex_destroy(&r->lock);
  free(r);
  errno = -err;
  return NULL;
}

int kz_remote_call_soon(struct kz_remote *r, kz_callback cb, void *arg)
{
  struct call_msg *m;
  int rc;
  if (!r || !cb)
    return kz__fail_errno(-EINVAL);
  if (!(m = malloc(sizeof *m)))
    return kz__fail_errno(-ENOMEM);
  m->post.fn = call_run;
  m->cb = cb;
  m->arg = arg;
  if ((rc = submit(r, &m->post)) < 0) {
    free(m);
    return kz__fail_errno(rc);
  }
  return 0;
}

kz_future_t kz_remote_spawn(struct kz_remote *r, kz_fn fn, void *arg)
{
  struct spawn_msg *m;
  struct kz__future *f;
  int err = 0;
  uint64_t id;
  if (!r || !fn)
    return errno = EINVAL, 0;
  if (!(m = malloc(sizeof *m)))
    return errno = ENOMEM, 0;
  if (!(f = kz__future_new(r->hub, &err))) {
    free(m);
    return errno = -err, 0;
  }
  kz__future_mark_bound(f);
  kz__future_ref(f); /* the message's */
  id = kz__future_id(f);
  *m = (struct spawn_msg){.post.fn = spawn_run, .fn = fn, .arg = arg, .f = f};
  if ((err = submit(r, &m->post)) < 0) {
    kz__future_unref(f);
    kz__future_unref(f);
    free(m);
    return errno = -err, 0;
  }
  return id;
}

int kz_remote_stop(struct kz_remote *r)
{
  if (!r)
    return kz__fail_errno(-EINVAL);
  if (kz__tls_hub == r->hub)
    return kz__fail_errno(-EDEADLK);
  if (atomic_exchange_explicit(&r->closed, true, memory_order_seq_cst))
    return kz__fail_errno(-EINVAL); /* stopped by someone else */
  while (atomic_load_explicit(&r->inflight, memory_order_acquire) != 0)
    kz__os_sched_yield(); /* note B: a submitter is between its test and its post */
  kz__hub_post(r->hub, &r->stop_post);
  kz__os_thread_join(r->thread, NULL);
  /* r stays allocated (closed): threads still racing to submit get EPIPE
     until kz_remote_free. */
  return 0;
}

void kz_remote_free(struct kz_remote *r)
{
  if (!r)
    return;
  if (!atomic_load_explicit(&r->closed, memory_order_acquire))
    kz_remote_stop(r);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->lock);
  free(r);
}
