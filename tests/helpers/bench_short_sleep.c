/* bench_short_sleep.c: how long usleep(200) takes in a thread, while another
 * thread waits (so that, under the launcher, the sleeper is a green thread
 * whose hub polls for it; hub/sched.c note G).  Prints the mean of 500:
 *   short_sleep_us<TAB>value<TAB>us */
#include "check.h"
#include <pthread.h>
#include <unistd.h>

enum { N = 500 };

static int pipefd[2];

static void *waiter(void *arg)
{
  char c;
  (void)arg;
  CHECK(read(pipefd[0], &c, 1) == 1);
  return NULL;
}

static void *sleeper(void *arg)
{
  double *mean = arg, t0 = mono();
  for (int i = 0; i < N; i++)
    CHECK(usleep(200) == 0);
  *mean = (mono() - t0) / N;
  return NULL;
}

int main(void)
{
  pthread_t w, s;
  double mean = 0;
  CHECK(pipe(pipefd) == 0);
  CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
  CHECK(pthread_create(&s, NULL, sleeper, &mean) == 0);
  CHECK(pthread_join(s, NULL) == 0);
  CHECK(write(pipefd[1], "x", 1) == 1);
  CHECK(pthread_join(w, NULL) == 0);
  printf("short_sleep_us\t%.0f\tus\n", mean * 1e6);
  return 0;
}
