/* libc_getpass_ticker.c: a thread reads a password with getpass (glibc
 * reads /dev/tty through a stream opened with "c": __read_nocancel) while
 * the main thread ticks every 100 ms; after five ticks (in less than 0.8 s,
 * in one of up to three rounds: ticks.h) it prints "ticked", and the terminal's other end (tests/shim/
 * libc_getpass.sh) answers with the password, which the thread gets.  Run
 * on a terminal.  A hang fails by SIGALRM. */
#include "ticks.h"
#include <pthread.h>
#include <unistd.h>

static char *got;

static void *reader(void *arg)
{
  (void)arg;
  got = getpass("password: ");
  return NULL;
}

int main(void)
{
  pthread_t t;
  alarm(20);
  CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
  double took = tick_rounds(5, 0.8);
  if (took >= 0.8)
    fprintf(stderr, "five ticks of 100 ms took %.3f s\n", took);
  CHECK(took < 0.8);
  printf("ticked\n");
  fflush(stdout);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(got && !strcmp(got, "secret"));
  printf("got it\n");
  return 0;
}
