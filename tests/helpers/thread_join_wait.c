/* thread_join_wait.c: joins that wait for a thread still running.
 *   - pthread_join of a thread just made, which may still be running,
 *     returns its value (50 times in a row);
 *   - pthread_timedjoin_np of a thread that waits fails with ETIMEDOUT, and
 *     leaves it joinable: a pthread_join once it is let go gets its value;
 *   - a thread cancelled while it waits in pthread_join runs its cleanup
 *     handler and reports PTHREAD_CANCELED; the thread it was joining is
 *     still joinable, and its join gets its value.
 * Each case runs four times, so that under the launcher the joiner and
 * the thread it joins fall on the same hub and on different ones.
 */
#include "check.h"
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

static void *value(void *arg) { return arg; }

static void *wait_for(void *arg)
{
  CHECK(sem_wait(arg) == 0);
  return (void *)7;
}

struct join_req {
  pthread_t target;
  int go[2];
  int err;
  void *ret;
};

static int cleaned; /* by the cleanup handler of a cancelled join */

static void cleanup(void *arg)
{
  (void)arg;
  cleaned = 1;
}

static void *joiner(void *arg)
{
  struct join_req *q = arg;
  pthread_cleanup_push(cleanup, NULL);
  CHECK(write(q->go[1], "j", 1) == 1);
  q->err = pthread_join(q->target, &q->ret);
  pthread_cleanup_pop(0);
  return NULL;
}

int main(void)
{
  pthread_t t, j;
  sem_t sem;
  void *r;
  struct timespec soon;
  char c;

  CHECK(sem_init(&sem, 0, 0) == 0);
  for (long i = 1; i <= 50; i++) {
    CHECK(pthread_create(&t, NULL, value, (void *)i) == 0);
    CHECK(pthread_join(t, &r) == 0 && r == (void *)i);
  }
  printf("joins of running threads: their values\n");

  for (int i = 0; i < 4; i++) {
    CHECK(pthread_create(&t, NULL, wait_for, &sem) == 0);
    CHECK(clock_gettime(CLOCK_REALTIME, &soon) == 0);
    soon.tv_nsec += 20000000;
    if (soon.tv_nsec >= 1000000000) {
      soon.tv_sec++;
      soon.tv_nsec -= 1000000000;
    }
    CHECK(pthread_timedjoin_np(t, &r, &soon) == ETIMEDOUT);
    CHECK(sem_post(&sem) == 0);
    CHECK(pthread_join(t, &r) == 0 && r == (void *)7);
  }
  printf("a timed join times out and leaves the thread joinable\n");

  for (int i = 0; i < 4; i++) {
    struct join_req q = {.err = -1};
    CHECK(pipe(q.go) == 0);
    cleaned = 0;
    CHECK(pthread_create(&q.target, NULL, wait_for, &sem) == 0);
    CHECK(pthread_create(&j, NULL, joiner, &q) == 0);
    CHECK(read(q.go[0], &c, 1) == 1);
    CHECK(pthread_cancel(j) == 0);
    CHECK(pthread_join(j, &r) == 0 && r == PTHREAD_CANCELED);
    CHECK(q.err == -1 && cleaned); /* its join never returned; the handler ran */
    CHECK(sem_post(&sem) == 0);
    CHECK(pthread_join(q.target, &r) == 0 && r == (void *)7);
    close(q.go[0]);
    close(q.go[1]);
  }
  printf("a cancelled join leaves the thread joinable\n");

  return 0;
}
