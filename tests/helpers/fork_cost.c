/* fork_cost: what a fork costs in page faults, the count that dominates a
 * pre-fork server's fork and exit (a fault, or the copy of a page written
 * after the fork, costs microseconds; system calls cost less).  N (400)
 * times the parent forks a child that does what a pre-fork server's child
 * does: closes the descriptors it does not need, reads a request from a
 * socket, answers, signals the parent and exits with _exit; the parent
 * closes its end, reaps the child with waitpid and counts the SIGUSR1s.
 * The first 50 forks warm up (lazy binding, first-use set-up); then
 * getrusage gives the page faults of the parent (RUSAGE_SELF) and of the
 * reaped children (RUSAGE_CHILDREN) per fork.
 *
 *   fork_cost [N]
 *
 * Prints "parent F child F" (faults per fork, one decimal) and exits 0 if
 * every child answered and exited 0.  tests/shim/fork_cost.sh compares
 * the counts natively and under the launcher. */
#include "check.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t signals;
static void on_usr1(int sig) { (void)sig; signals++; }

static void one(int extra)
{
  int sv[2], status;
  char buf[16];
  pid_t p;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(write(sv[0], "ping\n", 5) == 5);
  CHECK((p = fork()) >= 0);
  if (p == 0) {
    close(sv[0]);
    close(extra);
    if (read(sv[1], buf, sizeof buf) != 5 || write(sv[1], "pong\n", 5) != 5)
      _exit(1);
    close(sv[1]);
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  close(sv[1]);
  CHECK(read(sv[0], buf, sizeof buf) == 5 && memcmp(buf, "pong\n", 5) == 0);
  close(sv[0]);
  CHECK(waitpid(p, &status, 0) == p && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 400, warm = 50, extra[2];
  struct sigaction usr1 = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
  struct rusage self0, self1, kids0, kids1;
  CHECK(n > 0 && sigaction(SIGUSR1, &usr1, NULL) == 0 && pipe(extra) == 0);
  for (int i = 0; i < warm; i++)
    one(extra[0]);
  CHECK(getrusage(RUSAGE_SELF, &self0) == 0 && getrusage(RUSAGE_CHILDREN, &kids0) == 0);
  for (int i = 0; i < n; i++)
    one(extra[0]);
  CHECK(getrusage(RUSAGE_SELF, &self1) == 0 && getrusage(RUSAGE_CHILDREN, &kids1) == 0);
  printf("parent %.1f child %.1f\n", (double)(self1.ru_minflt - self0.ru_minflt) / n,
         (double)(kids1.ru_minflt - kids0.ru_minflt) / n);
  return 0;
}
