/* write_all.c: a blocking write moves every byte before it returns, on a
 * socket and on a pipe, while another process drains it; writev too; a recv
 * with MSG_WAITALL waits for every byte of a stream that arrives in pieces. */
#include "check.h"
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BIG = 4 << 20, PIECES = 10, PIECE = 10000 };

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + i / 4096); }

/* In a child: read everything from fd, check the bytes, exit 0 if all came. */
static pid_t drain(int fd, int other)
{
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    static unsigned char buf[65536];
    size_t got = 0;
    ssize_t n;
    close(other);
    while ((n = read(fd, buf, sizeof buf)) > 0)
      for (ssize_t i = 0; i < n; i++, got++)
        if (buf[i] != pattern(got))
          _exit(2);
    _exit(n == 0 && got == 2 * (size_t)BIG ? 0 : 3);
  }
  close(fd);
  return pid;
}

static void expect_child(pid_t pid)
{
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* One write of BIG bytes, then a writev of BIG bytes in three pieces. */
static void write_twice(int fd, const unsigned char *buf)
{
  struct iovec v[3] = {{(void *)(buf + BIG), 1}, {(void *)(buf + BIG + 1), BIG / 2},
                       {(void *)(buf + BIG + 1 + BIG / 2), BIG - 1 - BIG / 2}};
  CHECK(write(fd, buf, BIG) == BIG);
  CHECK(writev(fd, v, 3) == BIG);
  close(fd);
}

int main(void)
{
  unsigned char *buf = malloc(2 * (size_t)BIG);
  int sv[2], p[2];
  CHECK(buf);
  for (size_t i = 0; i < 2 * (size_t)BIG; i++)
    buf[i] = pattern(i);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid_t pid = drain(sv[1], sv[0]);
  write_twice(sv[0], buf);
  expect_child(pid);
  CHECK(pipe(p) == 0);
  pid = drain(p[0], p[1]);
  write_twice(p[1], buf);
  expect_child(pid);
  /* MSG_WAITALL: the peer sends in pieces, with pauses. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(sv[0]);
    for (int i = 0; i < PIECES; i++) {
      usleep(10000);
      if (write(sv[1], buf + i * PIECE, PIECE) != PIECE)
        _exit(1);
    }
    _exit(0);
  }
  close(sv[1]);
  static unsigned char in[PIECES * PIECE];
  CHECK(recv(sv[0], in, sizeof in, MSG_WAITALL) == (ssize_t)sizeof in);
  CHECK(memcmp(in, buf, sizeof in) == 0);
  expect_child(pid);
  puts("ok");
  return 0;
}
