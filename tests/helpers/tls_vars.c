/* tls_vars.c: each thread keeps its own __thread variables across blocking
 * calls.  Four threads store their number and a buffer naming them in
 * __thread variables, then sleep and read a socket (blocking calls, where
 * under the launcher the other threads run), and check after each call that
 * the variables still hold what they stored; a variable with an initial
 * value starts with it in every thread. */
#include "check.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define N 4

static __thread int me = -1;
static __thread char name[64];
static __thread long counter = 1000; /* an initial value, in every thread */
static int pairs[N][2];
static pthread_barrier_t started;

static void same(int i)
{
  char want[64];
  snprintf(want, sizeof want, "thread %d", i);
  CHECK(me == i);
  CHECK(strcmp(name, want) == 0);
  CHECK(counter == 1000 + i);
}

static void *run(void *arg)
{
  int i = (int)(long)arg;
  char c;
  CHECK(me == -1 && name[0] == 0 && counter == 1000);
  me = i;
  snprintf(name, sizeof name, "thread %d", i);
  counter += i;
  pthread_barrier_wait(&started); /* everyone has stored its values */
  for (int round = 0; round < 3; round++) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    same(i);
    CHECK(read(pairs[i][0], &c, 1) == 1 && c == 'a' + round);
    same(i);
  }
  return NULL;
}

int main(void)
{
  pthread_t t[N];
  CHECK(pthread_barrier_init(&started, NULL, N + 1) == 0);
  for (int i = 0; i < N; i++) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) == 0);
    CHECK(pthread_create(&t[i], NULL, run, (void *)(long)i) == 0);
  }
  me = 99;
  pthread_barrier_wait(&started);
  for (int round = 0; round < 3; round++) {
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < N; i++) {
      char c = (char)('a' + round);
      CHECK(write(pairs[i][1], &c, 1) == 1);
    }
  }
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(me == 99 && counter == 1000);
  puts("every thread kept its __thread variables");
  return 0;
}
