/* eintr_read.c: a handler installed without SA_RESTART makes a blocked read
 * or accept fail with EINTR (a server's stop flag works); with SA_RESTART
 * the read resumes and returns the data. */
#include "check.h"
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { stop = sig; }

int main(void)
{
  int p[2];
  char c;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  CHECK(sigaction(SIGALRM, NULL, &old) == 0 && old.sa_handler == on_signal && !(old.sa_flags & SA_RESTART));
  CHECK(pipe(p) == 0);
  alarm(1);
  CHECK(read(p[0], &c, 1) == -1 && errno == EINTR);
  CHECK(stop == SIGALRM);
  /* An accept loop stops too. */
  struct sockaddr_in sin = {.sin_family = AF_INET};
  int l = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(l >= 0 && bind(l, (struct sockaddr *)&sin, sizeof sin) == 0 && listen(l, 4) == 0);
  stop = 0;
  ualarm(200000, 0);
  while (!stop)
    CHECK(accept(l, NULL, NULL) == -1 && errno == EINTR);
  close(l);
  /* SA_RESTART: the read goes on and gets the byte a child writes later. */
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    struct timespec ts = {1, 500000000};
    nanosleep(&ts, NULL);
    _exit(write(p[1], "r", 1) == 1 ? 0 : 1);
  }
  stop = 0;
  alarm(1);
  CHECK(read(p[0], &c, 1) == 1 && c == 'r');
  CHECK(stop == SIGALRM);
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  puts("ok");
  return 0;
}
