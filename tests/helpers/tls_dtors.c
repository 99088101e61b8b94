/* tls_dtors.c: what a thread owns is destroyed when it exits, in that
 * thread: pthread_key and C11 tss_* values get their destructors, with the
 * thread's own values, and tss_get reads each thread's own value.  Four
 * threads set values, block (a sleep) so that the others run, and exit;
 * the main thread finds every destructor run once with each value. */
#include "check.h"

#include <pthread.h>
#include <threads.h>
#include <unistd.h>

#define N 4

static pthread_key_t key;
static tss_t tss;
static int key_seen[N], tss_seen[N];
static int values[N];

static void key_dtor(void *v) { __atomic_add_fetch(&key_seen[(int *)v - values], 1, __ATOMIC_SEQ_CST); }
static void tss_dtor(void *v) { __atomic_add_fetch(&tss_seen[(int *)v - values], 1, __ATOMIC_SEQ_CST); }

static void *run(void *arg)
{
  int i = (int)(long)arg;
  struct timespec ts = {0, 2000000};
  CHECK(pthread_getspecific(key) == NULL && tss_get(tss) == NULL);
  CHECK(pthread_setspecific(key, &values[i]) == 0);
  CHECK(tss_set(tss, &values[i]) == thrd_success);
  nanosleep(&ts, NULL);
  CHECK(pthread_getspecific(key) == &values[i]);
  CHECK(tss_get(tss) == &values[i]);
  return NULL;
}

int main(void)
{
  pthread_t t[N];
  CHECK(pthread_key_create(&key, key_dtor) == 0);
  CHECK(tss_create(&tss, tss_dtor) == thrd_success);
  for (int i = 0; i < N; i++)
    CHECK(pthread_create(&t[i], NULL, run, (void *)(long)i) == 0);
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  for (int i = 0; i < N; i++)
    CHECK(key_seen[i] == 1 && tss_seen[i] == 1);
  CHECK(tss_get(tss) == NULL);
  puts("each thread's key and tss values were destroyed once, at its exit");
  return 0;
}
