/* thread_burst.c: threads made in bursts, without a pause between them,
 * and acted on the moment pthread_create returns.
 *  - the id pthread_create stores is there before the new thread runs
 *    (glibc stores it before the thread is made): each thread finds its
 *    own id in the array its creator filled;
 *  - threads that create threads: each of the first ones makes a burst
 *    of its own;
 *  - a thread detached at once still runs, and one cancelled at once (it
 *    waits in a cancellation point) is joined as PTHREAD_CANCELED;
 *  - one joined at once returns its result;
 *  - pthread_create leaves errno as it was.
 * Under the launcher with several hubs, a thread placed on another hub is
 * handed to it without a wait (hub/green.c, note E): every one of these
 * reaches a thread that hub may not have taken yet. */
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

enum { TOP = 64, SUB = 16, NEST = 8 };

static pthread_t top[TOP], sub[NEST][SUB];
static pthread_t *sub_id[NEST][SUB]; /* where each sub thread's id is: its argument */
static atomic_int ran, mismatched, detached_ran;

static void *leaf(void *arg)
{
  pthread_t *mine = arg;
  if (!pthread_equal(*mine, pthread_self()))
    atomic_fetch_add(&mismatched, 1);
  atomic_fetch_add(&ran, 1);
  return mine;
}

/* The first NEST top threads make a burst of their own. */
static void *maker(void *arg)
{
  long i = (long)(intptr_t)arg;
  void *r;
  leaf(&top[i]);
  if (i >= NEST)
    return NULL;
  for (int j = 0; j < SUB; j++) {
    sub_id[i][j] = &sub[i][j];
    CHECK(pthread_create(&sub[i][j], NULL, leaf, sub_id[i][j]) == 0);
  }
  for (int j = 0; j < SUB; j++) {
    CHECK(pthread_join(sub[i][j], &r) == 0);
    CHECK(r == &sub[i][j]);
  }
  return NULL;
}

static void *detached(void *arg)
{
  (void)arg;
  atomic_fetch_add(&detached_ran, 1);
  return NULL;
}

static void *waits_forever(void *arg)
{
  int p[2];
  char c;
  (void)arg;
  CHECK(pipe(p) == 0);
  CHECK(read(p[0], &c, 1) == 0); /* a cancellation point: never returns */
  return NULL;
}

int main(void)
{
  pthread_t t;
  void *r;
  for (long i = 0; i < TOP; i++) {
    errno = 0;
    CHECK(pthread_create(&top[i], NULL, maker, (void *)(intptr_t)i) == 0);
    CHECK(errno == 0); /* a call that succeeds leaves errno alone */
  }
  for (int i = 0; i < TOP; i++)
    CHECK(pthread_join(top[i], NULL) == 0);
  CHECK(atomic_load(&ran) == TOP + NEST * SUB);
  CHECK(atomic_load(&mismatched) == 0);

  for (int i = 0; i < 32; i++) {
    CHECK(pthread_create(&t, NULL, detached, NULL) == 0);
    CHECK(pthread_detach(t) == 0);
  }
  for (int i = 0; i < 100000 && atomic_load(&detached_ran) < 32; i++)
    usleep(100);
  CHECK(atomic_load(&detached_ran) == 32);

  for (int i = 0; i < 16; i++) {
    CHECK(pthread_create(&t, NULL, waits_forever, NULL) == 0);
    CHECK(pthread_cancel(t) == 0);
    CHECK(pthread_join(t, &r) == 0);
    CHECK(r == PTHREAD_CANCELED);
  }
  pthread_t *where = &t;
  for (int i = 0; i < 16; i++) {
    CHECK(pthread_create(&t, NULL, leaf, where) == 0);
    CHECK(pthread_join(t, &r) == 0);
    CHECK(r == &t);
  }
  CHECK(atomic_load(&mismatched) == 0);
  printf("%d threads, each with its id from the start; detached, cancelled and joined at once\n",
         TOP + NEST * SUB + 32 + 16 + 16);
  return 0;
}
