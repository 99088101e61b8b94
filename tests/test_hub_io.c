/* test_hub_io.c: kz_wait_fd: readiness, timeouts, several waiters sharing one
 * watcher, readers and writers apart, cancellation, descriptors forgotten on
 * close and reused, and no 1024-descriptor ceiling. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <kudzu.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>

#include <stdio.h>
#include <string.h>


struct wait_args {
  int fd, events;
  double timeout;
  int r, err;
};

static void *waiter(void *arg)
{
  struct wait_args *a = arg;
  a->r = kz_wait_fd(a->fd, a->events, a->timeout);
  a->err = errno;
  return NULL;
}

Test(io, read_readiness_wakes_the_waiter)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  struct wait_args a = {p[0], KZ_READ, KZ_FOREVER, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(kz_state(g), KZ_BLOCKED);
  cr_assert_eq(write(p[1], "x", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ);
}

Test(io, write_readiness_is_immediate_on_an_empty_pipe)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(kz_wait_fd(p[1], KZ_WRITE, 1.0), KZ_WRITE);
  cr_assert_eq(kz_wait_fd(p[1], KZ_READ | KZ_WRITE, 1.0), KZ_WRITE, "only what is ready");
}

Test(io, timeout)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  double t0 = kz_now();
  cr_assert_eq(kz_wait_fd(p[0], KZ_READ, 0.02), -1);
  cr_assert_eq(errno, ETIMEDOUT);
  cr_assert_geq(kz_now() - t0, 0.02);
  cr_assert_eq(kz_wait_fd(p[0], KZ_READ, 0), -1, "zero timeout polls");
  cr_assert_eq(errno, ETIMEDOUT);
}

Test(io, misuse)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(kz_wait_fd(-1, KZ_READ, 0.1), -1);
  cr_assert_eq(errno, EBADF);
  cr_assert_eq(kz_wait_fd(p[0], 0, 0.1), -1);
  cr_assert_eq(errno, EINVAL);
  int bad = dup(p[0]);
  close(bad);
  cr_assert_eq(kz_wait_fd(bad, KZ_READ, 1.0), -1, "a closed descriptor");
  cr_assert_eq(errno, EBADF);
}

Test(io, many_waiters_share_one_descriptor)
{
  int p[2];
  struct wait_args a[5];
  kz_green_t g[5];
  cr_assert_eq(pipe(p), 0);
  for (int i = 0; i < 5; i++) {
    a[i] = (struct wait_args){p[0], KZ_READ, KZ_FOREVER, 0, 0};
    g[i] = kz_spawn(waiter, &a[i]);
  }
  kz_yield();
  cr_assert_eq(write(p[1], "x", 1), 1);
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(kz_join(g[i], NULL, KZ_FOREVER), 0);
    cr_assert_eq(a[i].r, KZ_READ);
  }
}

/* Hundreds of descriptors ready in the same loop passes: the hub notes each
   event and delivers them after the pass (io.c, note G), growing its list
   past its first size.  Every waiter gets its own descriptor's readiness. */
Test(io, many_descriptors_ready_at_once_each_wake_their_waiter, .timeout = 60)
{
  enum { N = 300 };
  static int p[N][2];
  static struct wait_args a[N];
  kz_green_t g[N];
  for (int i = 0; i < N; i++) {
    cr_assert_eq(pipe(p[i]), 0);
    a[i] = (struct wait_args){p[i][0], i % 2 ? KZ_READ | KZ_WRITE : KZ_READ, KZ_FOREVER, 0, 0};
    g[i] = kz_spawn(waiter, &a[i]);
    cr_assert_neq(g[i], 0);
  }
  kz_yield();
  for (int i = 0; i < N; i++) {
    cr_assert_eq(kz_state(g[i]), KZ_BLOCKED);
    cr_assert_eq(write(p[i][1], "x", 1), 1); /* no poll in between: one batch */
  }
  for (int i = 0; i < N; i++) {
    cr_assert_eq(kz_join(g[i], NULL, KZ_FOREVER), 0);
    cr_assert_eq(a[i].r, KZ_READ, "waiter %d: r=%d err=%d", i, a[i].r, a[i].err);
    close(p[i][0]);
    close(p[i][1]);
  }
}

Test(io, readers_and_writers_are_tracked_apart)
{
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  /* Fill sv[0]'s send buffer so it is not writable. */
  char buf[4096] = {0};
  while (write(sv[0], buf, sizeof buf) > 0)
    ;
  struct wait_args r = {sv[0], KZ_READ, KZ_FOREVER, 0, 0}, w = {sv[0], KZ_WRITE, KZ_FOREVER, 0, 0};
  kz_green_t gr = kz_spawn(waiter, &r), gw = kz_spawn(waiter, &w);
  kz_yield();
  /* Make sv[0] readable: only the reader wakes. */
  cr_assert_eq(write(sv[1], "x", 1), 1);
  cr_assert_eq(kz_join(gr, NULL, KZ_FOREVER), 0);
  cr_assert_eq(r.r, KZ_READ);
  cr_assert_eq(kz_state(gw), KZ_BLOCKED, "the writer still waits");
  /* Drain the peer: now the writer wakes. */
  while (read(sv[1], buf, sizeof buf) > 0)
    ;
  cr_assert_eq(kz_join(gw, NULL, KZ_FOREVER), 0);
  cr_assert(w.r & KZ_WRITE);
}

Test(io, cancel_during_wait)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  struct wait_args a = {p[0], KZ_READ, KZ_FOREVER, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  kz_cancel(g);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), -1);
  cr_assert_eq(errno, ECANCELED);
  cr_assert_eq(a.r, -1);
  cr_assert_eq(a.err, ECANCELED);
}

Test(io, forgotten_descriptor_wakes_waiters_and_its_number_is_reusable)
{
  int p[2], q[2];
  cr_assert_eq(pipe(p), 0);
  struct wait_args a = {p[0], KZ_READ, KZ_FOREVER, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(kz_close(p[0]), 0); /* what close() does under the shim */
  close(p[1]);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, -1);
  cr_assert_eq(a.err, EBADF);
  /* The same numbers come back for a new pipe: a stale epoll registration
     would leave this waiter hanging. */
  cr_assert_eq(pipe(q), 0);
  cr_assert_eq(q[0], p[0]);
  a = (struct wait_args){q[0], KZ_READ, 2.0, 0, 0};
  g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(write(q[1], "y", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ, "the reused number is watched (r=%d err=%d)", a.r, a.err);
}

Test(io, closed_and_reused_between_waits_without_forget)
{
  /* A descriptor closed behind the hub's back (a library's internal close)
     a loop pass after its last wait ended: libev re-adds it on the next
     start, so the new file under the same number is watched. */
  int p[2], q[2];
  cr_assert_eq(pipe(p), 0);
  struct wait_args first = {p[0], KZ_READ, 1.0, 0, 0};
  kz_green_t f = kz_spawn(waiter, &first);
  kz_yield();
  cr_assert_eq(write(p[1], "x", 1), 1);
  cr_assert_eq(kz_join(f, NULL, KZ_FOREVER), 0);
  cr_assert_eq(first.r, KZ_READ);
  kz_sleep(0.001); /* a loop pass: the stopped watcher reaches libev's backend */
  close(p[0]);
  close(p[1]);
  cr_assert_eq(pipe(q), 0);
  cr_assert_eq(q[0], p[0]);
  struct wait_args a = {q[0], KZ_READ, 2.0, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(write(q[1], "y", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ);
}

Test(io, no_1024_descriptor_ceiling, .timeout = 60)
{
  enum { N = 1500 };
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  cr_assert_geq(rl.rlim_max, 2 * N + 64, "needs %d descriptors", 2 * N + 64);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int (*sv)[2] = malloc(sizeof *sv * N);
  struct wait_args *a = malloc(sizeof *a * N);
  kz_green_t *g = malloc(sizeof *g * N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
    a[i] = (struct wait_args){sv[i][0], KZ_READ, 10.0, 0, 0};
    g[i] = kz_spawn(waiter, &a[i]);
  }
  cr_assert_gt(sv[N - 1][0], 1024);
  kz_yield();
  for (int i = 0; i < N; i++)
    cr_assert_eq(write(sv[i][1], "z", 1), 1);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(kz_join(g[i], NULL, KZ_FOREVER), 0);
    cr_assert_eq(a[i].r, KZ_READ, "descriptor %d", sv[i][0]);
    close(sv[i][0]);
    close(sv[i][1]);
  }
  free(sv);
  free(a);
  free(g);
}

/* Is fd a the same open file as fd b?  (kcmp, or -1 if unavailable.) */
static int same_file(int a, int b)
{
  return (int)syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

/* The descriptors of this process that are epoll instances, up to max. */
static int epoll_fds(int *out, int max)
{
  int n = 0;
  for (int fd = 0; fd < 4096 && n < max; fd++) {
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(path, link, sizeof link - 1);
    if (len > 0) {
      link[len] = 0;
      if (strstr(link, "eventpoll"))
        out[n++] = fd;
    }
  }
  return n;
}

Test(io, forked_child_has_its_own_loop)
{
  int p[2], q[2], status;
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(pipe(q), 0);
  cr_assert_eq(kz_wait_fd(p[1], KZ_WRITE, 1.0), KZ_WRITE); /* the parent's loop is in use */
  int before[16], nbefore = epoll_fds(before, 16);
  cr_assert_geq(nbefore, 1, "the hub's loop has an epoll instance");
  pid_t pid = fork();
  if (pid == 0) {
    /* Keep the inherited epoll instances open under other numbers, wait
       through the loop, and check the loop made an instance of its own:
       sharing the parent's would mix both processes' registrations. */
    int inherited[16], now[32], n, own = 0;
    for (int i = 0; i < nbefore; i++)
      inherited[i] = dup(before[i]);
    int ok = kz_wait_fd(q[0], KZ_READ, 5.0) == KZ_READ;
    n = epoll_fds(now, 32);
    for (int i = 0; i < n; i++) {
      int shared = 0;
      for (int j = 0; j < nbefore; j++)
        shared |= same_file(now[i], inherited[j]);
      own += !shared;
    }
    _exit(ok && own == 1 ? 0 : 1);
  }
  cr_assert_eq(write(q[1], "c", 1), 1);
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's loop shares the parent's epoll");
  /* And the parent's loop still works. */
  struct wait_args a = {p[0], KZ_READ, 5.0, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(write(p[1], "x", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ);
}

/* ---- Closes on other OS threads ------------------------------------------ */

#include <pthread.h>
#include "internal.h" /* kz__fd_sticky: the shim's mode, for the tests below */

static void *forget_from_plain_thread(void *arg)
{
  kz_forget_fd((int)(intptr_t)arg); /* a thread with no hub of its own */
  return NULL;
}

Test(io, close_on_a_thread_without_hub_wakes_the_waiter, .timeout = 60)
{
  int p[2];
  pthread_t t;
  cr_assert_eq(pipe(p), 0);
  struct wait_args a = {p[0], KZ_READ, KZ_FOREVER, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(kz_state(g), KZ_BLOCKED);
  cr_assert_eq(pthread_create(&t, NULL, forget_from_plain_thread, (void *)(intptr_t)p[0]), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, -1);
  cr_assert_eq(a.err, EBADF, "the waiter learns of the close on the other thread");
}

static void forget_on_remote(void *arg) { kz_forget_fd((int)(intptr_t)arg); }

Test(io, close_on_another_hub_wakes_the_waiter, .timeout = 60)
{
  int p[2];
  struct kz_remote *r = kz_remote_start();
  cr_assert_not_null(r);
  cr_assert_eq(pipe(p), 0);
  struct wait_args a = {p[0], KZ_READ, KZ_FOREVER, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(kz_remote_call_soon(r, forget_on_remote, (void *)(intptr_t)p[0]), 0);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.err, EBADF);
  cr_assert_eq(kz_remote_stop(r), 0);
  kz_remote_free(r);
}

Test(io, a_close_elsewhere_spares_waits_that_began_after_it, .timeout = 60)
{
  /* The other thread's forget is posted to this hub, which runs it only
     when the main green thread parks: by then a new wait on the number
     has begun.  It must be served, not failed with the old close's EBADF. */
  int p[2];
  pthread_t t;
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(pthread_create(&t, NULL, forget_from_plain_thread, (void *)(intptr_t)p[0]), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  struct wait_args a = {p[0], KZ_READ, 5.0, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield(); /* the waiter parks; the hub runs the forget message */
  cr_assert_eq(write(p[1], "x", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ, "r=%d err=%d", a.r, a.err);
}

/* ---- Sticky watchers (the shim's mode) --------------------------------------- */

Test(io, sticky_watchers_serve_repeated_waits_and_forgets, .timeout = 60)
{
  int p[2], q[2];
  char c;
  kz__fd_sticky = true;
  cr_assert_eq(pipe(p), 0);
  for (int i = 0; i < 3; i++) { /* the watcher stays armed between these */
    struct wait_args a = {p[0], KZ_READ, 5.0, 0, 0};
    kz_green_t g = kz_spawn(waiter, &a);
    kz_yield();
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
    cr_assert_eq(a.r, KZ_READ);
    cr_assert_eq(read(p[0], &c, 1), 1);
  }
  cr_assert_eq(kz_close(p[0]), 0);
  cr_assert_eq(close(p[1]), 0);
  cr_assert_eq(pipe(q), 0);
  cr_assert_eq(q[0], p[0]);
  struct wait_args a = {q[0], KZ_READ, 5.0, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(write(q[1], "y", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ, "the new pipe under the forgotten number is watched");
}

Test(io, sticky_watchers_do_not_hide_a_deadlock, .timeout = 60)
{
  /* An armed watcher nobody waits on must not count as something that
     could still wake someone.  (The byte is read, so the watcher has no
     stray event that would make it disarm itself.) */
  int p[2];
  char c;
  kz__fd_sticky = true;
  cr_assert_eq(pipe(p), 0);
  struct wait_args a = {p[0], KZ_READ, 5.0, 0, 0};
  kz_green_t g = kz_spawn(waiter, &a);
  kz_yield();
  cr_assert_eq(write(p[1], "x", 1), 1);
  cr_assert_eq(kz_join(g, NULL, KZ_FOREVER), 0);
  cr_assert_eq(a.r, KZ_READ);
  cr_assert_eq(read(p[0], &c, 1), 1);
  cr_assert_eq(kz__park(-1), -EDEADLK, "nothing can wake the main green thread");
}
