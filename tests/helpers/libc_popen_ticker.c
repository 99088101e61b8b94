/* libc_popen_ticker.c [MAX_OS_THREADS]: a thread reads a popen stream with
 * fgets while the main thread ticks every 100 ms: five ticks take less than
 * 0.8 s (in one of up to three rounds: ticks.h), as natively, although the
 * reader waits inside libc's own read for the child, which answers only
 * once the ticks are done (it reads a line the main thread writes to a pipe
 * it inherits).  Then pclose reports the child's status.  With
 * MAX_OS_THREADS given (under the launcher: 3), the process may have at
 * most that many OS threads.  A hang fails by SIGALRM. */
#include "ticks.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static char got[64];
static int go[2]; /* the child reads go[0]; the main thread writes go[1] */

static void *reader(void *arg)
{
  char cmd[64];
  (void)arg;
  snprintf(cmd, sizeof cmd, "head -n1 <&%d", go[0]);
  FILE *f = popen(cmd, "r");
  CHECK(f != NULL);
  CHECK(fgets(got, sizeof got, f) != NULL);
  int st = pclose(f);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t;
  alarm(20);
  CHECK(pipe(go) == 0);
  CHECK(fcntl(go[1], F_SETFD, FD_CLOEXEC) == 0);
  CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
  double took = tick_rounds(5, 0.8);
  if (took >= 0.8)
    fprintf(stderr, "five ticks of 100 ms took %.3f s\n", took);
  CHECK(took < 0.8);
  check_os_threads(argc, argv);
  CHECK(write(go[1], "done\n", 5) == 5);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(!strcmp(got, "done\n"));
  puts("ok");
  return 0;
}
