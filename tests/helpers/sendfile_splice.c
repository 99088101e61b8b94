/* sendfile_splice.c: sendfile of a whole file into a blocking socket, and
 * splice from a pipe into a blocking socket and from a socket into a pipe,
 * move every byte while another process drains the other end. */
#include "check.h"
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { SIZE = 3 << 20 };

static unsigned char pattern(size_t i) { return (unsigned char)(i * 13 + i / 1000); }

/* In a child: read n bytes from fd, check them, exit 0 if all came. */
static pid_t drain(int fd, size_t n)
{
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    static unsigned char buf[65536];
    size_t got = 0;
    ssize_t r;
    while (got < n && (r = read(fd, buf, sizeof buf)) > 0)
      for (ssize_t i = 0; i < r; i++, got++)
        if (buf[i] != pattern(got))
          _exit(2);
    _exit(got == n ? 0 : 3);
  }
  return pid;
}

static void expect_child(pid_t pid)
{
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
  char path[] = "/tmp/kudzu-sendfile-XXXXXX";
  unsigned char *buf = malloc(SIZE);
  int file = mkstemp(path), sv[2], p[2];
  CHECK(buf && file >= 0);
  unlink(path);
  for (size_t i = 0; i < SIZE; i++)
    buf[i] = pattern(i);
  CHECK(write(file, buf, SIZE) == SIZE);

  /* sendfile: the file into a socket. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid_t pid = drain(sv[1], SIZE);
  off_t off = 0;
  size_t sent = 0;
  while (sent < SIZE) { /* natively one call moves it all; a short count is allowed */
    ssize_t r = sendfile(sv[0], file, &off, SIZE - sent);
    CHECK(r > 0);
    sent += (size_t)r;
  }
  CHECK(off == SIZE);
  expect_child(pid);

  /* splice: a pipe a child fills, into the socket. */
  CHECK(pipe(p) == 0);
  pid_t filler = fork();
  if (filler == 0) {
    close(p[0]);
    _exit(write(p[1], buf, SIZE) == SIZE ? 0 : 1);
  }
  close(p[1]);
  pid = drain(sv[1], SIZE);
  size_t moved = 0;
  ssize_t r;
  while ((r = splice(p[0], NULL, sv[0], NULL, 65536, 0)) > 0)
    moved += (size_t)r;
  CHECK(r == 0 && moved == SIZE);
  expect_child(filler);
  expect_child(pid);
  close(p[0]);

  /* splice: the socket into a pipe another child drains. */
  CHECK(pipe(p) == 0);
  pid = drain(p[0], SIZE);
  close(p[0]);
  filler = fork();
  if (filler == 0)
    _exit(write(sv[1], buf, SIZE) == SIZE ? 0 : 1);
  moved = 0;
  while (moved < SIZE && (r = splice(sv[0], NULL, p[1], NULL, 65536, 0)) > 0)
    moved += (size_t)r;
  CHECK(moved == SIZE);
  expect_child(filler);
  expect_child(pid);
  puts("ok");
  return 0;
}
