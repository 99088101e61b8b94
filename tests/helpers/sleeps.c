/* sleeps.c: sleep, usleep, nanosleep and clock_nanosleep sleep at least as
 * long as asked, and nanosleep reports the time left when interrupted. */
#include "check.h"
#include <signal.h>
#include <unistd.h>

static void on_alarm(int sig) { (void)sig; }

int main(void)
{
  double t = mono();
  struct timespec ts = {0, 60000000}, rem;
  CHECK(usleep(50000) == 0);
  CHECK(mono() - t >= 0.049);
  t = mono();
  CHECK(nanosleep(&ts, NULL) == 0);
  CHECK(mono() - t >= 0.059);
  struct timespec now, until;
  clock_gettime(CLOCK_MONOTONIC, &now);
  until = now;
  until.tv_nsec += 50000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  t = mono();
  CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == 0);
  CHECK(mono() - t >= 0.045);
  CHECK(sleep(0) == 0);
  /* Interrupted by a handler without SA_RESTART: EINTR and the time left. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  alarm(1);
  ts = (struct timespec){5, 0};
  t = mono();
  CHECK(nanosleep(&ts, &rem) == -1 && errno == EINTR);
  t = mono() - t;
  CHECK(t < 4.5);
  /* What is left is what was asked minus what was slept. */
  double left = (double)rem.tv_sec + (double)rem.tv_nsec * 1e-9;
  CHECK(left > 0 && left <= 5.0);
  CHECK(left + t > 4.8 && left + t < 5.2);
  puts("ok");
  return 0;
}
