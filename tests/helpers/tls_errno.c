/* tls_errno.c: errno is each thread's own, at an address of its own.  Four
 * threads set errno to a value of their own, then make blocking calls that
 * succeed (a sleep, a read on a socket), which leave errno alone, and find
 * their own value after each; &errno differs from thread to thread. */
#include "check.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define N 4

static int pairs[N][2];
static int *where[N + 1];
static pthread_barrier_t all;

static void *run(void *arg)
{
  int i = (int)(long)arg;
  char c;
  where[i] = &errno;
  errno = 1000 + i;
  pthread_barrier_wait(&all);
  for (int round = 0; round < 3; round++) {
    struct timespec ts = {0, 1000000};
    CHECK(nanosleep(&ts, NULL) == 0);
    CHECK(errno == 1000 + i);
    CHECK(read(pairs[i][0], &c, 1) == 1);
    CHECK(errno == 1000 + i);
  }
  return NULL;
}

int main(void)
{
  pthread_t t[N];
  CHECK(pthread_barrier_init(&all, NULL, N + 1) == 0);
  for (int i = 0; i < N; i++) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) == 0);
    CHECK(pthread_create(&t[i], NULL, run, (void *)(long)i) == 0);
  }
  where[N] = &errno;
  errno = 7;
  pthread_barrier_wait(&all);
  for (int round = 0; round < 3; round++) {
    struct timespec ts = {0, 2000000};
    CHECK(nanosleep(&ts, NULL) == 0);
    for (int i = 0; i < N; i++)
      CHECK(write(pairs[i][1], "x", 1) == 1);
    CHECK(errno == 7);
  }
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  for (int i = 0; i <= N; i++)
    for (int k = 0; k < i; k++)
      CHECK(where[i] != where[k]);
  puts("each thread has its own errno");
  return 0;
}
