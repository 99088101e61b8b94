/* thread_exit_worker.c: main resolves a name (under the launcher that
 * starts a thread of the runtime's worker pool, which then waits idle for
 * more work), starts a thread that runs briefly, resolves a name again
 * after main has left and prints, then main calls pthread_exit.  As
 * natively, the process ends with status 0 once that thread has finished:
 * the runtime's own threads must not keep it alive. */
#include "check.h"
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static void resolve(void)
{
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
  CHECK(getaddrinfo("localhost", "80", &hints, &res) == 0 && res);
  freeaddrinfo(res);
}

static void *brief(void *arg)
{
  (void)arg;
  usleep(50 * 1000); /* main has left by now */
  resolve();         /* the pool works after main left, and still lets go */
  puts("the last thread finished after main");
  fflush(stdout);
  return NULL;
}

int main(void)
{
  pthread_t t;
  resolve();
  puts("main resolved localhost");
  fflush(stdout);
  CHECK(pthread_create(&t, NULL, brief, NULL) == 0);
  pthread_exit(NULL);
}
