/* raw_closefrom.c WAY: close every descriptor from 3 with a raw
 * close_range system call, then make a thread wait on a socket.  WAY is
 * "syscall": through libc's syscall(), which the shim sees (the runtime's
 * descriptors are skipped, as for close_range(): the same output natively
 * and under the launcher, tests/shim/both.sh); or "insn": the system call
 * instruction itself, where no interposer can see it.  Natively both work.
 * Under the launcher "insn" closes the hub's own descriptors with the rest:
 * the runtime must say so plainly and stop (tests/shim/lost_fd.sh), never
 * fail on a libev assertion or hang. */
#include "check.h"
#include <pthread.h>
#include <string.h>
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

/* close_range(3, ~0U, 0) by the instruction, as a statically linked
   runtime or a hand-written stub would (x86-64). */
static long close_range_insn(void)
{
  register long r10 __asm__("r10") = 0;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"((long)SYS_close_range), "D"(3L), "S"((long)~0U), "d"(0L), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}

int main(int argc, char **argv)
{
  pthread_t t;
  void *r;
  char c = 'k';
  CHECK(argc == 2);
  if (!strcmp(argv[1], "syscall"))
    CHECK(syscall(SYS_close_range, 3, ~0U, 0) == 0);
  else
    CHECK(!strcmp(argv[1], "insn") && close_range_insn() == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(pthread_create(&t, NULL, echo_once, NULL) == 0);
  CHECK(usleep(2000) == 0);
  CHECK(write(sv[0], &c, 1) == 1 && read(sv[0], &c, 1) == 1 && c == 'k');
  CHECK(pthread_join(t, &r) == 0 && r == NULL);
  puts("the thread answered");
  return 0;
}
