/* nonblock_view.c: a descriptor the program made non-blocking keeps its
 * semantics (EAGAIN at once), and F_GETFL shows the program's own view. */
#include "check.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
  int sv[2], p[2], on = 1, off = 0;
  char c;
  double t;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
  t = mono();
  CHECK(read(sv[0], &c, 1) == -1 && errno == EAGAIN);
  CHECK(recv(sv[0], &c, 1, 0) == -1 && errno == EAGAIN);
  CHECK(mono() - t < 0.5);
  /* Made blocking by the program: F_GETFL says so. */
  CHECK(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) & ~O_NONBLOCK) == 0);
  CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
  CHECK(write(sv[1], "x", 1) == 1);
  CHECK(read(sv[0], &c, 1) == 1 && c == 'x');
  /* FIONBIO */
  CHECK(ioctl(sv[0], FIONBIO, &on) == 0);
  CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
  CHECK(read(sv[0], &c, 1) == -1 && errno == EAGAIN);
  CHECK(ioctl(sv[0], FIONBIO, &off) == 0);
  CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
  /* pipe2(O_NONBLOCK) */
  CHECK(pipe2(p, O_NONBLOCK) == 0);
  CHECK(fcntl(p[0], F_GETFL) & O_NONBLOCK);
  CHECK(read(p[0], &c, 1) == -1 && errno == EAGAIN);
  /* A blocking socket is never made non-blocking behind the program's back. */
  int b[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
  CHECK(write(b[1], "y", 1) == 1);
  CHECK(read(b[0], &c, 1) == 1);
  CHECK(!(fcntl(b[0], F_GETFL) & O_NONBLOCK));
  puts("ok");
  return 0;
}
