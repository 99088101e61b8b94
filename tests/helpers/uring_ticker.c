/* uring_ticker.c MODE [MAX_OS_THREADS]: a thread waits for io_uring
 * completions with liburing while the main thread ticks every 100 ms: five
 * ticks take less than 0.8 s (in one of up to three rounds: ticks.h), as
 * natively, although the completion (a read of a pipe) comes only once the
 * ticks are done, when the main thread writes the pipe.  Then the waiter
 * checks what liburing returned.  MODE is how the thread waits:
 *   wait         io_uring_wait_cqe
 *   timeout      io_uring_wait_cqe_timeout, first with 50 ms to spare and
 *                nothing to complete (-ETIME, not earlier than asked), then
 *                with 20 s
 *   submit_wait  io_uring_submit_and_wait(ring, 1)
 *   submit_timeout io_uring_submit_and_wait_timeout with 20 s
 *   wait_nr      io_uring_wait_cqe_nr(ring, 2): two reads, two writes
 *   enter        io_uring_enter (liburing's system call wrapper) with
 *                IORING_ENTER_GETEVENTS and min_complete 1
 *   raw          the same through libc: syscall(SYS_io_uring_enter, ...)
 *   eintr        no ticks: the main thread's io_uring_wait_cqe is
 *                interrupted by a process-directed SIGUSR1 whose handler
 *                has SA_RESTART: -EINTR all the same; then it waits again
 * With MAX_OS_THREADS given (under the launcher: 3), the process may have
 * at most that many OS threads.  A hang fails by SIGALRM (watchdog). */
#include "ticks.h"
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *mode;
static int p[2];              /* the reads' pipe: the main thread writes p[1] */
static struct io_uring ring;
static char buf[2][16];
static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
  (void)sig;
  handled++;
}

static void prep_read(int i)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  CHECK(sqe != NULL);
  io_uring_prep_read(sqe, p[0], buf[i], 5, 0);
  io_uring_sqe_set_data64(sqe, (unsigned long long)i + 1);
}

/* The completion of read i: 5 bytes. */
static void check_cqe(struct io_uring_cqe *cqe)
{
  CHECK(cqe != NULL);
  CHECK(cqe->res == 5);
  CHECK(cqe->user_data == 1 || cqe->user_data == 2);
  io_uring_cqe_seen(&ring, cqe);
}

/* A wait for a completion may end with -EINTR natively too, with no
   handler installed: the kernel interrupts it to run the ring's task work
   (note at "enter" below).  Every wait but the eintr mode's is retried. */
#define RETRY(call)          \
  ({                         \
    int r_;                  \
    do                       \
      r_ = (call);           \
    while (r_ == -EINTR);    \
    r_;                      \
  })

static void *waiter(void *arg)
{
  struct io_uring_cqe *cqe = NULL;
  (void)arg;
  if (!strcmp(mode, "timeout")) {
    struct __kernel_timespec short_ts = {0, 250000000}, long_ts = {20, 0};
    double t0 = mono();
    CHECK(RETRY(io_uring_wait_cqe_timeout(&ring, &cqe, &short_ts)) == -ETIME);
    CHECK(mono() - t0 >= 0.24);
    prep_read(0);
    CHECK(io_uring_submit(&ring) == 1);
    CHECK(RETRY(io_uring_wait_cqe_timeout(&ring, &cqe, &long_ts)) == 0);
    check_cqe(cqe);
  } else if (!strcmp(mode, "submit_wait")) {
    prep_read(0);
    int r = io_uring_submit_and_wait(&ring, 1);
    CHECK(r == 1 || r == -EINTR);
    CHECK(RETRY(io_uring_wait_cqe(&ring, &cqe)) == 0); /* there already, unless interrupted */
    check_cqe(cqe);
  } else if (!strcmp(mode, "submit_timeout")) {
    struct __kernel_timespec ts = {20, 0};
    prep_read(0);
    int r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
    CHECK(r >= 0 || r == -EINTR);
    if (r < 0)
      CHECK(RETRY(io_uring_wait_cqe_timeout(&ring, &cqe, &ts)) == 0);
    check_cqe(cqe);
  } else if (!strcmp(mode, "wait_nr")) {
    prep_read(0);
    prep_read(1);
    CHECK(io_uring_submit(&ring) == 2);
    CHECK(RETRY(io_uring_wait_cqe_nr(&ring, &cqe, 2)) == 0);
    check_cqe(cqe);
    CHECK(io_uring_peek_cqe(&ring, &cqe) == 0);
    check_cqe(cqe);
  } else if (!strcmp(mode, "enter") || !strcmp(mode, "raw")) {
    prep_read(0);
    CHECK(io_uring_submit(&ring) == 1);
    /* A bare enter may end with EINTR without any handler, natively too:
       the kernel interrupts the wait to run the ring's own task work (a
       completion from its worker thread); callers retry, as liburing's
       waiting functions do. */
    long r;
    do
      r = !strcmp(mode, "raw")
              ? (syscall(SYS_io_uring_enter, ring.ring_fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0 ? -errno : 0)
              : io_uring_enter(ring.ring_fd, 0, 1, IORING_ENTER_GETEVENTS, NULL);
    while (r == -EINTR);
    CHECK(r == 0);
    CHECK(io_uring_peek_cqe(&ring, &cqe) == 0);
    check_cqe(cqe);
  } else { /* wait */
    prep_read(0);
    CHECK(io_uring_submit(&ring) == 1);
    CHECK(RETRY(io_uring_wait_cqe(&ring, &cqe)) == 0);
    check_cqe(cqe);
  }
  return NULL;
}

/* eintr: signal the process, then complete the read. */
static void *interrupter(void *arg)
{
  (void)arg;
  tick(2);
  CHECK(kill(getpid(), SIGUSR1) == 0);
  tick(2);
  CHECK(write(p[1], "done\n", 5) == 5);
  return NULL;
}

static int interrupted_wait(void)
{
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
  struct io_uring_cqe *cqe = NULL;
  pthread_t t;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  prep_read(0);
  CHECK(io_uring_submit(&ring) == 1);
  CHECK(pthread_create(&t, NULL, interrupter, NULL) == 0);
  CHECK(io_uring_wait_cqe(&ring, &cqe) == -EINTR);
  CHECK(handled == 1);
  CHECK(io_uring_wait_cqe(&ring, &cqe) == 0);
  check_cqe(cqe);
  CHECK(pthread_join(t, NULL) == 0);
  io_uring_queue_exit(&ring);
  puts("ok");
  return 0;
}

int main(int argc, char **argv)
{
  pthread_t waiter_thread;
  double took;
  CHECK(argc > 1);
  mode = argv[1];
  alarm(30);
  CHECK(pipe(p) == 0);
  CHECK(io_uring_queue_init(8, &ring, 0) == 0);
  if (!strcmp(mode, "eintr"))
    return interrupted_wait();
  CHECK(pthread_create(&waiter_thread, NULL, waiter, NULL) == 0);
  took = tick_rounds(5, 0.8);
  if (took >= 0.8)
    fprintf(stderr, "five ticks of 100 ms took %.3f s\n", took);
  CHECK(took < 0.8);
  if (argc > 2)
    CHECK(os_threads() <= atoi(argv[2]));
  CHECK(write(p[1], "done\n", 5) == 5);
  if (!strcmp(mode, "wait_nr")) {
    tick(1);
    CHECK(write(p[1], "more\n", 5) == 5);
  }
  CHECK(pthread_join(waiter_thread, NULL) == 0);
  CHECK(!strncmp(buf[0], "done\n", 5) || !strncmp(buf[1], "done\n", 5));
  io_uring_queue_exit(&ring);
  puts("ok");
  return 0;
}
