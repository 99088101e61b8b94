/* dns_worker_real.c: under the launcher, a DNS lookup runs on the runtime's
 * worker pool, whose threads must be real OS threads: libkudzu starts them
 * with libc's pthread_create, never the shim's (which, called from a green
 * thread, would make the worker one more green thread on the caller's hub).
 * Run as "dns_worker_real kudzu" under the launcher: after the lookup the
 * process has at least two OS threads.  Without an argument (natively) it
 * only checks the lookup. */
#include "check.h"
#include <dirent.h>
#include <netdb.h>
#include <sys/socket.h>

static int os_threads(void)
{
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  CHECK(d);
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

int main(int argc, char **argv)
{
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
  CHECK(getaddrinfo("localhost", "80", &hints, &res) == 0 && res);
  freeaddrinfo(res);
  if (argc > 1 && strcmp(argv[1], "kudzu") == 0) {
    int n = os_threads();
    if (n < 2) {
      fprintf(stderr, "the lookup ran without a real worker thread (%d OS thread)\n", n);
      return 1;
    }
  }
  puts("ok");
  return 0;
}
