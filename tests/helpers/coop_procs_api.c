/* coop_procs_api.c: waiting for a child (waitpid), system() and name
 * resolution park only the calling green thread: a ticker green thread on
 * the same hub keeps running meanwhile.  Green threads on the API, plain
 * libc calls. */
#include <kudzu.h>

#include "check.h"
#include <netdb.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int ticks;
static volatile int stop;

static void *ticker(void *arg)
{
  while (!stop) {
    usleep(10000);
    ticks++;
  }
  return NULL;
}

/* Ticks seen while the blocking call ran: it took 300 ms, so about 30 if
   the hub kept running, 0 if it was blocked. */
static void report(const char *what, int before)
{
  printf("%s: the ticker ran %d times meanwhile\n", what, ticks - before);
  CHECK(ticks - before >= 5);
}

static void *run(void *arg)
{
  kz_green_t t = kz_spawn(ticker, NULL);
  int before, st;
  struct addrinfo *res;
  kz_yield();
  before = ticks;
  pid_t pid = fork();
  if (pid == 0) {
    usleep(300000);
    _exit(5);
  }
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 5);
  report("waitpid", before);
  before = ticks;
  CHECK(system("sleep 0.3; exit 4") >> 8 == 4);
  report("system", before);
  before = ticks;
  pid = fork();
  if (pid == 0) {
    usleep(300000);
    _exit(6);
  }
  CHECK(wait(&st) == pid && WEXITSTATUS(st) == 6); /* any child: polled */
  report("wait", before);
  CHECK(getaddrinfo("localhost", "80", NULL, &res) == 0);
  freeaddrinfo(res);
  stop = 1;
  CHECK(kz_join(t, NULL, 5.0) == 0);
  return NULL;
}

int main(void)
{
  CHECK(kz_run(run, NULL, NULL) == 0);
  puts("ok");
  return 0;
}
