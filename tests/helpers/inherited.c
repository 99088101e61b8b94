/* inherited.c: descriptors the process inherited (stdin, stdout, stderr) are
 * read and written normally and never left non-blocking.  Run with stdin
 * from a pipe that carries "hello\n". */
#include "check.h"
#include <fcntl.h>
#include <unistd.h>

int main(void)
{
  int before[3], after[3];
  char buf[16];
  for (int i = 0; i < 3; i++)
    before[i] = fcntl(i, F_GETFL);
  ssize_t n = read(0, buf, sizeof buf);
  CHECK(n == 6 && !memcmp(buf, "hello\n", 6));
  CHECK(write(1, "ok\n", 3) == 3);
  for (int i = 0; i < 3; i++) {
    after[i] = fcntl(i, F_GETFL);
    CHECK(before[i] == after[i]);
    CHECK(!(after[i] & O_NONBLOCK) || (before[i] & O_NONBLOCK));
  }
  return 0;
}
