/* sig_raise_spin.c: a thread that only raises a signal in a loop, or only
 * installs handlers in a loop, does not stop the other threads' timers
 * (CPython's test_signal test_stress_modifying_handlers: one thread calls
 * signal.raise_signal in a loop, another signal.signal, and the one waiting
 * for the interpreter lock needs its 5 ms timer to fire to ask for it).
 * Each time the main thread's 50 ms of sleep end, it tells the spinner to
 * stop; every raise ran its handler before returning, as raise(3)
 * promises.  A hang fails by SIGALRM. */
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_int stop;
static volatile sig_atomic_t handled;
static long sent;

static void on_usr1(int sig)
{
  (void)sig;
  handled++;
}

static void *raiser(void *arg)
{
  (void)arg;
  while (!atomic_load(&stop)) {
    CHECK(raise(SIGUSR1) == 0);
    sent++;
  }
  return NULL;
}

static void *installer(void *arg)
{
  struct sigaction on = {.sa_handler = on_usr1}, off = {.sa_handler = SIG_IGN};
  (void)arg;
  while (!atomic_load(&stop)) {
    CHECK(sigaction(SIGUSR2, &on, NULL) == 0);
    CHECK(sigaction(SIGUSR2, &off, NULL) == 0);
  }
  return NULL;
}

/* Run spin in a thread while this one sleeps 50 ms (a handler may end a
   sleep early with EINTR: it sleeps again), then stop it. */
static void sleep_beside(void *(*spin)(void *))
{
  double t0 = mono();
  pthread_t t;
  atomic_store(&stop, 0);
  CHECK(pthread_create(&t, NULL, spin, NULL) == 0);
  while (mono() - t0 < 0.05) {
    struct timespec ts = {0, 10000000};
    CHECK(nanosleep(&ts, NULL) == 0 || errno == EINTR);
  }
  atomic_store(&stop, 1);
  CHECK(pthread_join(t, NULL) == 0);
}

int main(void)
{
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
  alarm(20);
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sleep_beside(raiser);
  CHECK(sent > 0 && handled == sent);
  sleep_beside(installer);
  puts("ok");
  return 0;
}
