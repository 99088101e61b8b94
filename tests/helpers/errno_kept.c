/* errno_kept.c: a read that succeeds leaves errno as it was, also when it
 * had to wait for the data.  glibc's read and recv never touch errno on
 * success, and programs that check errno after a call without checking its
 * result first (wrongly, but commonly) must see no difference.
 *
 * The writer thread sends one byte, then one more each time the reader asks
 * for it; under the launcher both are green threads of one hub, so every
 * read below finds nothing at first and waits (the path that used to leave
 * EAGAIN behind). */
#include "check.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int data[2], more[2];

static void *writer(void *arg)
{
  char c;
  (void)arg;
  for (int i = 0; i < 3; i++) {
    if (i > 0)
      CHECK(read(more[0], &c, 1) == 1);
    CHECK(write(data[1], "abc" + i, 1) == 1);
  }
  return NULL;
}

int main(void)
{
  char buf[64];
  struct iovec v = {buf, sizeof buf};
  pthread_t t;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, data) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, more) == 0);
  CHECK(pthread_create(&t, NULL, writer, NULL) == 0);

  errno = 4242;
  CHECK(read(data[0], buf, sizeof buf) == 1 && buf[0] == 'a');
  CHECK(errno == 4242);

  CHECK(write(more[1], "+", 1) == 1);
  errno = 4343;
  CHECK(recv(data[0], buf, sizeof buf, 0) == 1 && buf[0] == 'b');
  CHECK(errno == 4343);

  CHECK(write(more[1], "+", 1) == 1);
  errno = 4444;
  CHECK(readv(data[0], &v, 1) == 1 && buf[0] == 'c');
  CHECK(errno == 4444);

  CHECK(pthread_join(t, NULL) == 0);
  return 0;
}
