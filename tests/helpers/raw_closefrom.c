/* raw_closefrom.c: close every descriptor from 3 with the raw system call
 * (where no interposer can see it), then make a thread wait on a socket.
 * Natively it works.  Under the launcher the hub's own descriptors are gone
 * with the rest: the runtime must say so plainly and stop (tests/shim/
 * lost_fd.sh), never fail on a libev assertion or hang. */
#include "check.h"
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sv[2];

static void *echo_once(void *arg)
{
  char c;
  (void)arg;
  if (read(sv[1], &c, 1) != 1 || write(sv[1], &c, 1) != 1)
    return "echo failed";
  return NULL;
}

int main(void)
{
  pthread_t t;
  void *r;
  char c = 'k';
  CHECK(syscall(SYS_close_range, 3, ~0U, 0) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(pthread_create(&t, NULL, echo_once, NULL) == 0);
  CHECK(usleep(2000) == 0);
  CHECK(write(sv[0], &c, 1) == 1 && read(sv[0], &c, 1) == 1 && c == 'k');
  CHECK(pthread_join(t, &r) == 0 && r == NULL);
  puts("the thread answered");
  return 0;
}
