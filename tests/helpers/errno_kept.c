/* errno_kept.c: a call that succeeds leaves errno as it was, also when it
 * had to wait.  glibc's wrappers never touch errno on success, and programs
 * that check errno after a call without checking its result first (wrongly,
 * but commonly) must see no difference.
 *
 * The helper thread acts on request, one command byte at a time: '+' sends
 * the next data byte, 'd' drains the socket the main thread filled.  Under
 * the launcher both are green threads of one hub, and the helper runs only
 * when the main thread waits, so every call below first finds nothing to
 * read (or no room to write) and waits: the path that used to leave EAGAIN
 * behind.  Natively the calls may not wait, and must keep errno all the
 * same. */
#include "check.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int data[2], more[2], full[2];

static void drain(int fd)
{
  char buf[4096];
  int fl = fcntl(fd, F_GETFL);
  CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
  while (read(fd, buf, sizeof buf) > 0)
    ;
  CHECK(errno == EAGAIN);
  CHECK(fcntl(fd, F_SETFL, fl) == 0);
}

static void *helper(void *arg)
{
  char c, next = 'a';
  (void)arg;
  while (read(more[0], &c, 1) == 1) {
    if (c == '+') {
      CHECK(write(data[1], &next, 1) == 1);
      next++;
    } else {
      drain(full[1]);
    }
  }
  return NULL;
}

/* Ask the helper for the next data byte ('+') or a drain ('d'). */
static void ask(char what) { CHECK(write(more[1], &what, 1) == 1); }

/* Fill full[0]'s send buffer until one more byte would block. */
static void fill(void)
{
  static char junk[4096];
  while (send(full[0], junk, sizeof junk, MSG_DONTWAIT) > 0)
    ;
  CHECK(errno == EAGAIN);
  while (send(full[0], junk, 1, MSG_DONTWAIT) > 0)
    ;
  CHECK(errno == EAGAIN);
}

int main(void)
{
  char buf[64], tmpl[] = "/tmp/errno_kept.XXXXXX";
  struct iovec v = {buf, sizeof buf};
  struct mmsghdr mm = {.msg_hdr = {.msg_iov = &v, .msg_iovlen = 1}};
  int pipefd[2], file;
  pthread_t t;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, data) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, more) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, full) == 0);
  CHECK(pipe(pipefd) == 0);
  CHECK((file = mkstemp(tmpl)) >= 0);
  CHECK(unlink(tmpl) == 0);
  CHECK(write(file, "xyz", 3) == 3);
  CHECK(pthread_create(&t, NULL, helper, NULL) == 0);

  ask('+');
  errno = 4242;
  CHECK(read(data[0], buf, sizeof buf) == 1 && buf[0] == 'a');
  CHECK(errno == 4242);

  ask('+');
  errno = 4343;
  CHECK(recv(data[0], buf, sizeof buf, 0) == 1 && buf[0] == 'b');
  CHECK(errno == 4343);

  ask('+');
  errno = 4444;
  CHECK(readv(data[0], &v, 1) == 1 && buf[0] == 'c');
  CHECK(errno == 4444);

  ask('+');
  errno = 4545;
  CHECK(recvmmsg(data[0], &mm, 1, MSG_WAITFORONE, NULL) == 1 && mm.msg_len == 1 && buf[0] == 'd');
  CHECK(errno == 4545);

  ask('+');
  errno = 4646;
  CHECK(splice(data[0], NULL, pipefd[1], NULL, 1, 0) == 1);
  CHECK(errno == 4646);
  CHECK(read(pipefd[0], buf, 1) == 1 && buf[0] == 'e');

  fill();
  ask('d');
  buf[0] = 'f';
  v.iov_len = 1;
  errno = 4747;
  CHECK(sendmmsg(full[0], &mm, 1, 0) == 1);
  CHECK(errno == 4747);

  fill();
  ask('d');
  errno = 4848;
  off_t off = 0;
  CHECK(sendfile(full[0], file, &off, 3) == 3);
  CHECK(errno == 4848);

  CHECK(shutdown(more[1], SHUT_WR) == 0); /* the helper's read sees the end */
  CHECK(pthread_join(t, NULL) == 0);
  return 0;
}
