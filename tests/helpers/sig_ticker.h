/* sig_ticker.h: a thread that ticks while another waits for a signal.  It
 * sleeps 100 ms five times, checks that the five ticks took less than 5 s
 * (they would not happen at all if the waiting thread held the only OS
 * thread, and the wait would never end: the test's time limit catches
 * that; the bound catches a hub released only by some long timeout, and is
 * far enough from 0.5 s that a loaded machine does not reach it),
 * optionally that the process has at most max_threads OS threads, then
 * runs its action (send the signal). */
#ifndef HELPER_SIG_TICKER_H
#define HELPER_SIG_TICKER_H
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static int max_threads; /* 0: not checked (natively); else the bound */
static volatile int ticks; /* ticks so far, of every ticker */

/* Threads of this process, from /proc/self/status. */
static int os_threads(void)
{
  char line[256];
  int n = -1;
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  fclose(f);
  return n;
}

struct ticker {
  void (*action)(void *arg); /* run after the ticks */
  void *arg;
  pthread_t thread;
};

static void *tick(void *arg)
{
  struct ticker *t = arg;
  double start = mono();
  for (int i = 0; i < 5; i++) {
    CHECK(usleep(100000) == 0);
    __atomic_add_fetch(&ticks, 1, __ATOMIC_SEQ_CST);
  }
  if (mono() - start >= 5) {
    fprintf(stderr, "5 ticks of 100 ms took %.2f s\n", mono() - start);
    exit(1);
  }
  if (max_threads && os_threads() > max_threads) {
    fprintf(stderr, "%d OS threads, more than %d\n", os_threads(), max_threads);
    exit(1);
  }
  if (t->action)
    t->action(t->arg);
  return NULL;
}

static void ticker_start(struct ticker *t, void (*action)(void *), void *arg)
{
  t->action = action;
  t->arg = arg;
  CHECK(pthread_create(&t->thread, NULL, tick, t) == 0);
}

static void ticker_join(struct ticker *t) { CHECK(pthread_join(t->thread, NULL) == 0); }

/* A wait that never ends would hang the test: die of SIGALRM instead. */
static void watchdog(unsigned seconds)
{
  signal(SIGALRM, SIG_DFL);
  alarm(seconds);
}
#endif
