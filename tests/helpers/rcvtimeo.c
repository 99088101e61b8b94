/* rcvtimeo.c: SO_RCVTIMEO bounds a blocking read (EAGAIN after the timeout),
 * and no timeout is invented when none is set. */
#include "check.h"
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(void)
{
  int sv[2];
  char c;
  struct timeval tv = {0, 150000};
  double t;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  t = mono();
  CHECK(read(sv[0], &c, 1) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK));
  t = mono() - t;
  CHECK(t >= 0.14 && t < 3.0);
  t = mono();
  CHECK(recv(sv[0], &c, 1, 0) == -1 && errno == EAGAIN);
  CHECK(mono() - t >= 0.14);
  /* Data arriving before the timeout is returned. */
  CHECK(write(sv[1], "z", 1) == 1);
  CHECK(read(sv[0], &c, 1) == 1 && c == 'z');
  puts("ok");
  return 0;
}
