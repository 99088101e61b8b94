/* fatal.c: a plain pthread program (built without kudzu) that dies of a
 * fatal signal, for tests/shim/fatal_signals.sh: natively and under the
 * launcher the process must end with the same signal.
 *
 *   fatal raise SIG          the main thread raises SIG (a number)
 *   fatal thread-raise SIG   a second thread raises SIG
 *   fatal thread-kill SIG    a second thread sends SIG to the process (kill)
 *   fatal wait               "ready" on stdout, then waits (in a second
 *                            thread's read of stdin) to be killed from outside
 *   fatal overflow           a thread named "deep" recurses without end
 *   fatal main-overflow      the main thread recurses without end
 *   fatal null               a thread named "faulty" writes through NULL
 *   fatal divide             a thread named "faulty" divides by zero
 *   fatal busy-null          a thread named "busy" computes without end, and
 *                            once it has begun, a thread named "faulty"
 *                            writes through NULL (with --hubs 2 the two are
 *                            on different hubs: one hub faults while the
 *                            other computes)
 *   fatal chain-null         the program's own SIGSEGV handler, installed over
 *   fatal chain-raise SIG    the one found, declines: it chains to the previous
 *                            handler, or restores the default and (for a sent
 *                            signal) raises again; then a NULL write in a
 *                            thread, or raise(SIG)
 *
 * In every mode a thread named "sleeper" waits in a read meanwhile, so a
 * crash report has another thread to list.  Exit 0 means the process
 * survived its signal: a failure.
 */
#include "check.h"
#include <sched.h>
#include <stdatomic.h>

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static volatile char sink;
static int sig_arg;
static struct sigaction previous;
static int sleeper_pipe[2];

#pragma GCC diagnostic ignored "-Winfinite-recursion"
__attribute__((noinline)) static int recurse(int depth)
{
  volatile char frame[256];
  frame[0] = (char)depth;
  sink = frame[0];
  return recurse(depth + 1) + frame[1];
}

__attribute__((noinline)) static void write_through_null(void)
{
  *(volatile int *)(uintptr_t)sink = 1;
}

__attribute__((noinline)) static int divide(int d) { return 1000 / d; }

static void *deep(void *arg)
{
  (void)arg;
  pthread_setname_np(pthread_self(), "deep");
  return (void *)(intptr_t)recurse(0);
}

static void *faulty(void *arg)
{
  pthread_setname_np(pthread_self(), "faulty");
  if (arg)
    sink = (char)divide(sink);
  else
    write_through_null();
  return NULL;
}

static int busy_started[2];
static volatile unsigned long busy_sink; /* not sink: the NULL write reads that */

static _Atomic int busy_computing; /* compute_without_end has begun */

/* Kept out of line, under its own name, so that a backtrace shows it.  It
   says it has begun from inside the loop: the write that woke the main
   thread may still be returning on another hub when the main thread runs. */
__attribute__((noinline)) static void compute_without_end(void)
{
  for (unsigned long i = 0;; i++) {
    busy_sink = i * 2654435761u;
    if (i == 1)
      atomic_store(&busy_computing, 1);
  }
}

static void *busy(void *arg)
{
  (void)arg;
  pthread_setname_np(pthread_self(), "busy");
  CHECK(write(busy_started[1], "b", 1) == 1);
  compute_without_end();
  return NULL;
}

static void *raiser(void *arg)
{
  if (arg)
    kill(getpid(), sig_arg);
  else
    raise(sig_arg);
  for (;;)
    pause();
  return NULL;
}

static void *reader(void *arg)
{
  char c;
  (void)arg;
  (void)!read(0, &c, 1);
  for (;;)
    pause();
  return NULL;
}

static void *sleeper(void *arg)
{
  char c;
  (void)arg;
  pthread_setname_np(pthread_self(), "sleeper");
  (void)!read(sleeper_pipe[0], &c, 1);
  return NULL;
}

/* Decline the signal, as a program that chains does (modes chain-*). */
static void declining(int sig, siginfo_t *si, void *uc)
{
  if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
    previous.sa_sigaction(sig, si, uc);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  sigaction(sig, &previous, NULL);
  if (si->si_code <= 0)
    raise(sig);
}

static void install_declining(int sig)
{
  struct sigaction sa = {.sa_sigaction = declining, .sa_flags = SA_SIGINFO};
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(sig, &sa, &previous) == 0);
}

static void run(void *(*fn)(void *), void *arg)
{
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fn, arg) == 0);
  pthread_join(t, NULL);
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "";
  pthread_t s;
  sig_arg = argc > 2 ? atoi(argv[2]) : SIGSEGV;
  CHECK(pipe(sleeper_pipe) == 0);
  CHECK(pthread_create(&s, NULL, sleeper, NULL) == 0);
  if (!strcmp(mode, "raise"))
    raise(sig_arg);
  else if (!strcmp(mode, "thread-raise"))
    run(raiser, NULL);
  else if (!strcmp(mode, "thread-kill"))
    run(raiser, "kill");
  else if (!strcmp(mode, "wait")) {
    printf("ready\n");
    fflush(stdout);
    run(reader, NULL);
  } else if (!strcmp(mode, "overflow"))
    run(deep, NULL);
  else if (!strcmp(mode, "main-overflow"))
    recurse(0);
  else if (!strcmp(mode, "null"))
    run(faulty, NULL);
  else if (!strcmp(mode, "divide"))
    run(faulty, "divide");
  else if (!strcmp(mode, "busy-null")) {
    pthread_t b;
    char c;
    CHECK(pipe(busy_started) == 0);
    CHECK(pthread_create(&b, NULL, busy, NULL) == 0);
    CHECK(read(busy_started[0], &c, 1) == 1);
    while (!atomic_load(&busy_computing))
      sched_yield(); /* it computes on another hub, or on this one once this yields */
    run(faulty, NULL);
  }
  else if (!strcmp(mode, "chain-null")) {
    install_declining(SIGSEGV);
    run(faulty, NULL);
  } else if (!strcmp(mode, "chain-raise")) {
    install_declining(sig_arg);
    raise(sig_arg);
  } else {
    fprintf(stderr, "fatal: unknown mode \"%s\"\n", mode);
    return 2;
  }
  fprintf(stderr, "fatal: survived mode %s\n", mode);
  return 0;
}
