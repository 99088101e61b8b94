/* fork_resolve.c: resolve a name (under the launcher: on a worker thread of
 * the runtime's pool), fork, and resolve again in the child, as socat's
 * forked children do.  The child has none of the parent's worker threads:
 * its lookup must start its own instead of queueing for ever. */
#include "check.h"
#include <netdb.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void resolve(const char *who)
{
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
  CHECK(getaddrinfo("localhost", "80", &hints, &res) == 0 && res);
  freeaddrinfo(res);
  printf("%s resolved localhost\n", who);
  fflush(stdout);
}

int main(void)
{
  int status;
  pid_t pid;
  resolve("the parent");
  CHECK((pid = fork()) >= 0);
  if (pid == 0) {
    resolve("the child");
    _exit(0);
  }
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  resolve("the parent");
  return 0;
}
