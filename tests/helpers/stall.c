/* stall.c: a plain pthread program (built without kudzu) for the monitor
 * and dump-signal tests (tests/shim/monitor.sh).
 *
 *   stall spin   a thread named "spinner" computes for 0.6 s without making
 *                a single blocking call, while a thread named "ticker"
 *                sleeps in 10 ms steps; both are joined, exit 0.  Under the
 *                launcher with --monitor, the hub is blocked for 0.6 s.
 *   stall spin-until-usr1  a thread named "spinner" prints "spinning", then
 *                computes without a single blocking call until a SIGUSR1
 *                handler sets a flag; joined, main sleeps 10 ms, exit 0.
 *                Under the launcher with --dump-signal, the hub cannot run
 *                a dump while the thread spins, and runs it in main's sleep.
 *   stall wait   three threads named "waiter-1".."waiter-3" block reading a
 *                pipe; "ready" is printed; when stdin reaches end of file the
 *                pipe is closed, they finish, exit 0.  Under the launcher with
 *                --dump-signal, a signal dumps them while they wait.  Main
 *                waits for stdin in poll(), which no handler's SA_RESTART
 *                restarts: the runtime's own dump handler must not interrupt
 *                it (it is not the program's), so poll never fails here.
 */
#include "check.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static volatile uint64_t sink;

/* Kept out of line, under its own name, so that a backtrace shows it. */
__attribute__((noinline)) static void spin_without_yielding(double seconds)
{
  double end = mono() + seconds;
  while (mono() < end)
    for (int i = 0; i < 1000; i++)
      sink += (uint64_t)i * 2654435761u;
}

static void *spinner(void *arg)
{
  (void)arg;
  pthread_setname_np(pthread_self(), "spinner");
  spin_without_yielding(0.6);
  return NULL;
}

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
  (void)sig;
  usr1_seen = 1;
}

/* Kept out of line, under its own name, so that a backtrace shows it. */
__attribute__((noinline)) static void spin_until_signalled(void)
{
  while (!usr1_seen)
    for (int i = 0; i < 1000; i++)
      sink += (uint64_t)i * 2654435761u;
}

static void *signalled_spinner(void *arg)
{
  (void)arg;
  pthread_setname_np(pthread_self(), "spinner");
  printf("spinning\n");
  fflush(stdout);
  spin_until_signalled();
  return NULL;
}

static void *ticker(void *arg)
{
  (void)arg;
  pthread_setname_np(pthread_self(), "ticker");
  for (int i = 0; i < 80; i++)
    usleep(10 * 1000);
  return NULL;
}

static int pipefd[2];

static void *waiter(void *arg)
{
  char name[16], c;
  snprintf(name, sizeof name, "waiter-%d", (int)(intptr_t)arg);
  pthread_setname_np(pthread_self(), name);
  CHECK(read(pipefd[0], &c, 1) == 0); /* end of file when main closes */
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t[3];
  char buf[64];
  CHECK(argc == 2);
  if (!strcmp(argv[1], "spin")) {
    CHECK(pthread_create(&t[0], NULL, ticker, NULL) == 0);
    CHECK(pthread_create(&t[1], NULL, spinner, NULL) == 0);
    for (int i = 0; i < 2; i++)
      CHECK(pthread_join(t[i], NULL) == 0);
    return 0;
  }
  if (!strcmp(argv[1], "spin-until-usr1")) {
    struct sigaction sa = {.sa_handler = on_usr1};
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(pthread_create(&t[0], NULL, signalled_spinner, NULL) == 0);
    CHECK(pthread_join(t[0], NULL) == 0);
    usleep(10 * 1000); /* one blocking call: the hub runs what was posted to it */
    return 0;
  }
  CHECK(!strcmp(argv[1], "wait"));
  CHECK(pipe(pipefd) == 0);
  for (int i = 0; i < 3; i++)
    CHECK(pthread_create(&t[i], NULL, waiter, (void *)(intptr_t)(i + 1)) == 0);
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    struct pollfd in = {.fd = 0, .events = POLLIN};
    CHECK(poll(&in, 1, -1) == 1);
    if (read(0, buf, sizeof buf) <= 0)
      break;
  }
  close(pipefd[1]);
  for (int i = 0; i < 3; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  return 0;
}
