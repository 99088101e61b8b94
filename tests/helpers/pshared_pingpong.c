/* pshared_pingpong: two processes hand a token back and forth through two
 * process-shared semaphores, one unnamed in shared memory (sem_init with
 * pshared 1), one named (sem_open), each side checking the other's step.
 *
 *   pshared_pingpong [ROUNDS [BUSY [report]]]
 *
 * BUSY threads per process (default 0) run beside the ping-pong, each
 * sleeping 200 us at a time and counting, so that under the launcher the
 * waiting thread is not the only one its hub could run.  With "report" the
 * mean round trip is printed as "roundtrip_us VALUE" (the benchmark);
 * otherwise only "pingpong ok", the same natively and under the launcher.
 * A lost wake-up is a hang: the tests run it with a time limit.
 */
#include "check.h"

#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
  sem_t ping;        /* parent -> child */
  long step;         /* the round the last poster finished */
};

static atomic_bool stop;
static atomic_long ticks;

static void *busy(void *arg)
{
  struct timespec t = {0, 200000};
  (void)arg;
  while (!atomic_load(&stop)) {
    nanosleep(&t, NULL);
    atomic_fetch_add(&ticks, 1);
  }
  return NULL;
}

static void start_busy(pthread_t *t, int n)
{
  for (int i = 0; i < n; i++)
    CHECK(pthread_create(&t[i], NULL, busy, NULL) == 0);
}

static void stop_busy(pthread_t *t, int n)
{
  atomic_store(&stop, true);
  for (int i = 0; i < n; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
}

int main(int argc, char **argv)
{
  long rounds = argc > 1 ? atol(argv[1]) : 2000;
  int nbusy = argc > 2 ? atoi(argv[2]) : 0;
  bool report = argc > 3 && strcmp(argv[3], "report") == 0;
  char name[64];
  struct shared *sh;
  sem_t *pong;
  pthread_t threads[64];
  pid_t child;
  int status;
  double t0, t1;

  CHECK(rounds > 0 && nbusy >= 0 && nbusy <= 64);
  snprintf(name, sizeof name, "/kz_pingpong_%d", (int)getpid());
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(sh != MAP_FAILED);
  CHECK(sem_init(&sh->ping, 1, 0) == 0);
  pong = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
  CHECK(pong != SEM_FAILED);
  sem_unlink(name); /* both processes hold it mapped */

  child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    start_busy(threads, nbusy);
    for (long i = 1; i <= rounds; i++) {
      CHECK(sem_wait(&sh->ping) == 0);
      CHECK(sh->step == 2 * i - 1); /* the parent's post of this round */
      sh->step = 2 * i;
      CHECK(sem_post(pong) == 0);
    }
    stop_busy(threads, nbusy);
    _exit(0);
  }

  start_busy(threads, nbusy);
  t0 = mono();
  for (long i = 1; i <= rounds; i++) {
    sh->step = 2 * i - 1;
    CHECK(sem_post(&sh->ping) == 0);
    CHECK(sem_wait(pong) == 0);
    CHECK(sh->step == 2 * i);
  }
  t1 = mono();
  stop_busy(threads, nbusy);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(nbusy == 0 || atomic_load(&ticks) > 0);
  if (report)
    printf("roundtrip_us %.2f\n", (t1 - t0) / (double)rounds * 1e6);
  else
    printf("pingpong ok\n");
  return 0;
}
