/* tls_dlopen.c: __thread variables of a module loaded with dlopen are each
 * thread's own.  Four threads (two made before the dlopen, two after) find
 * the variables' initial values, store their own, block, and find them
 * still there.  Four more, made once those have finished (under the
 * launcher they get the first ones' TLS areas again, hub/tls.c note K),
 * find the initial values too, of the module's and of the program's own
 * variables.  The module's path is the first argument. */
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#define N 4

static int *(*number)(void);
static char *(*text)(void);
static pthread_barrier_t loaded, stored;
static __thread int own = 7;

static void *run(void *arg)
{
  int i = (int)(long)arg;
  char want[32];
  struct timespec ts = {0, 2000000};
  if (i < 2)
    pthread_barrier_wait(&loaded);
  CHECK(*number() == -1 && strcmp(text(), "unset") == 0);
  CHECK(own == 7);
  own = i;
  *number() = i;
  snprintf(text(), 32, "thread %d", i);
  pthread_barrier_wait(&stored);
  nanosleep(&ts, NULL);
  snprintf(want, sizeof want, "thread %d", i);
  CHECK(*number() == i && strcmp(text(), want) == 0 && own == i);
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t[N];
  void *h;
  CHECK(argc == 2);
  CHECK(pthread_barrier_init(&loaded, NULL, 3) == 0);
  CHECK(pthread_barrier_init(&stored, NULL, N) == 0);
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&t[i], NULL, run, (void *)(long)i) == 0);
  CHECK((h = dlopen(argv[1], RTLD_NOW)) != NULL);
  CHECK((number = (int *(*)(void))dlsym(h, "tls_module_number")) != NULL);
  CHECK((text = (char *(*)(void))dlsym(h, "tls_module_text")) != NULL);
  pthread_barrier_wait(&loaded);
  for (int i = 2; i < N; i++)
    CHECK(pthread_create(&t[i], NULL, run, (void *)(long)i) == 0);
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(pthread_barrier_destroy(&stored) == 0 && pthread_barrier_init(&stored, NULL, N) == 0);
  for (int i = 2; i < N + 2; i++) /* the second wave: no "loaded" barrier */
    CHECK(pthread_create(&t[i - 2], NULL, run, (void *)(long)i) == 0);
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(*number() == -1 && own == 7);
  puts("each thread kept the module's __thread variables");
  return 0;
}
