/* raw_close_reuse.c: a socket closed where no library can see it (the raw
 * close system call) and whose number a new socket then takes is a new
 * socket for every purpose: a blocking read on it returns the data written
 * to it.  Under the launcher, the hub keeps a descriptor's watcher armed
 * between waits, and the shim forgets a number whenever a call it sees
 * creates a descriptor under it; without that, the new socket would be
 * waited on through the closed one's registration, and the read would hang
 * (alarm() ends a hang with a failure instead). */
#include "check.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *send_one(void *arg)
{
  CHECK(write(*(int *)arg, "x", 1) == 1);
  return NULL;
}

/* Read one byte from s[0] while a thread writes it to s[1]. */
static void exchange(int s[2])
{
  pthread_t t;
  char c = 0;
  CHECK(pthread_create(&t, NULL, send_one, &s[1]) == 0);
  CHECK(read(s[0], &c, 1) == 1 && c == 'x');
  CHECK(pthread_join(t, NULL) == 0);
}

int main(void)
{
  int a[2], b[2];
  alarm(20);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
  exchange(a);
  CHECK(syscall(SYS_close, a[0]) == 0);
  CHECK(syscall(SYS_close, a[1]) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
  CHECK(b[0] == a[0]); /* the lowest free numbers come back */
  exchange(b);
  return 0;
}
