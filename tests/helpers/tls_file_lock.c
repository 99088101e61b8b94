/* tls_file_lock.c: a stream's lock belongs to the thread that holds it.
 * Thread A locks a stream (flockfile), writes, blocks in a sleep while
 * holding it, writes again and unlocks; thread B writes to the same stream
 * meanwhile, and must wait for A's unlock: its line comes after both of
 * A's. */
#include "check.h"

#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

static FILE *f;
static sem_t locked;

static void *a(void *arg)
{
  struct timespec ts = {0, 20000000};
  (void)arg;
  flockfile(f);
  fputs("A1\n", f);
  CHECK(sem_post(&locked) == 0);
  nanosleep(&ts, NULL); /* B runs meanwhile, and must wait for the stream */
  fputs("A2\n", f);
  funlockfile(f);
  return NULL;
}

static void *b(void *arg)
{
  (void)arg;
  CHECK(sem_wait(&locked) == 0);
  fputs("B\n", f);
  return NULL;
}

int main(void)
{
  pthread_t ta, tb;
  char buf[64] = {0};
  CHECK((f = tmpfile()) != NULL);
  CHECK(sem_init(&locked, 0, 0) == 0);
  CHECK(pthread_create(&tb, NULL, b, NULL) == 0);
  CHECK(pthread_create(&ta, NULL, a, NULL) == 0);
  CHECK(pthread_join(ta, NULL) == 0 && pthread_join(tb, NULL) == 0);
  rewind(f);
  CHECK(fread(buf, 1, sizeof buf - 1, f) > 0);
  CHECK(strcmp(buf, "A1\nA2\nB\n") == 0);
  puts("a stream locked by one thread made the other wait");
  return 0;
}
