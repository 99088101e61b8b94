/* libc_nocancel_ticker.c [MAX_OS_THREADS]: a thread reads a pipe through a
 * stream opened with fopen's "c" flag (no cancellation points: glibc reads
 * it with its separate __read_nocancel, as getpass reads /dev/tty) while
 * the main thread ticks every 100 ms: five ticks take less than 0.8 s (in
 * one of up to three rounds: ticks.h), as natively; then the main thread writes the line and the reader gets it.
 * With MAX_OS_THREADS given (under the launcher: 3), the process may have
 * at most that many OS threads.  A hang fails by SIGALRM. */
#include "ticks.h"
#include <pthread.h>
#include <unistd.h>

static FILE *in;
static char got[64];

static void *reader(void *arg)
{
  (void)arg;
  CHECK(fgets(got, sizeof got, in) != NULL);
  return NULL;
}

int main(int argc, char **argv)
{
  int p[2];
  char path[64];
  pthread_t t;
  alarm(20);
  CHECK(pipe(p) == 0);
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
  CHECK((in = fopen(path, "rc")) != NULL);
  close(p[0]);
  CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
  double took = tick_rounds(5, 0.8);
  if (took >= 0.8)
    fprintf(stderr, "five ticks of 100 ms took %.3f s\n", took);
  CHECK(took < 0.8);
  check_os_threads(argc, argv);
  CHECK(write(p[1], "line\n", 5) == 5);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(!strcmp(got, "line\n"));
  fclose(in);
  puts("ok");
  return 0;
}
