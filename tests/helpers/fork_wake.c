/* fork_wake.c [N]: N (200) forks under a signal storm, each child handing a
 * name lookup to a worker thread and exiting.  Another process sends the
 * parent SIGUSR1 every 150 us (handler with SA_RESTART) while the parent
 * loops nanosleep(1 ms) + fork().  A child must never sleep through its
 * own wake-ups: each child's lookup must finish within 10 s (natively it
 * takes well under a millisecond; a lost wake-up costs about 60 s).  With
 * FORK_WAKE_REPORT set, the slowest child's time in ms goes to stderr. */
#include "check.h"
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t hits;

static void on_usr1(int sig) { (void)sig; hits++; }

/* The child: one numeric reverse lookup, timed; exit 0 if it came back in
   time.  The time goes back to the parent through the pipe. */
static void child(int out)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(80)};
  char host[64];
  double t0 = mono(), ms;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (getnameinfo((struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0, NI_NUMERICHOST))
    _exit(2);
  ms = (mono() - t0) * 1e3;
  if (write(out, &ms, sizeof ms) != sizeof ms)
    _exit(3);
  _exit(strcmp(host, "127.0.0.1") ? 4 : ms < 10e3 ? 0 : 5);
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 200, p[2], status;
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
  pid_t storm, pid, parent = getpid();
  double worst = 0, ms;
  struct timespec ms1 = {0, 1000000};

  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  CHECK(pipe(p) == 0);
  CHECK((storm = fork()) >= 0);
  if (storm == 0) {
    struct timespec us150 = {0, 150000};
    for (;;) {
      if (kill(parent, SIGUSR1) < 0)
        _exit(0);
      nanosleep(&us150, NULL);
    }
  }
  for (int i = 0; i < n; i++) {
    CHECK(nanosleep(&ms1, NULL) == 0 || errno == EINTR);
    CHECK((pid = fork()) >= 0);
    if (pid == 0)
      child(p[1]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(read(p[0], &ms, sizeof ms) == sizeof ms);
    if (ms > worst)
      worst = ms;
  }
  CHECK(kill(storm, SIGKILL) == 0 && waitpid(storm, &status, 0) == storm);
  CHECK(hits > 0);
  printf("%d children, each lookup back in time, under a signal storm\n", n);
  if (getenv("FORK_WAKE_REPORT"))
    fprintf(stderr, "fork_wake_max_ms %.3f\n", worst);
  return 0;
}
