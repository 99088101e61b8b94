/* unpatched.c: a plain pthread program (built without kudzu) that the shim
 * cannot reach when it is built statically or installed set-user-ID, for
 * tests/shim/unpatched.sh.  It prints whether the preload shim is in the
 * process (its symbol kz_spawn is found), a line from a second thread, and
 * whether it runs with AT_SECURE; exit 0.  Natively and under the launcher
 * it must print the same.
 */
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/auxv.h>

static void *hello(void *arg)
{
  (void)arg;
  printf("a second thread ran\n");
  return NULL;
}

int main(void)
{
  pthread_t t;
  CHECK(pthread_create(&t, NULL, hello, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  printf("shim loaded: %s\n", dlsym(RTLD_DEFAULT, "kz_spawn") ? "yes" : "no");
  printf("secure: %lu\n", getauxval(AT_SECURE));
  return 0;
}
