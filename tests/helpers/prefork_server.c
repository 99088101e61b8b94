/* prefork_server: a small forking server of the classic kind.  The parent
 * accepts and forks a child per connection; the children count requests in
 * shared memory under a process-shared mutex, at most MAXIN of them at once
 * in the counting section (a process-shared semaphore), and tell the parent
 * with SIGUSR1 when they are done.  The parent stops on SIGTERM (its
 * handler also writes to a pipe the accept loop polls, so a signal that
 * comes just before the loop would block cannot be missed), reaps its
 * children and checks the books.
 *
 *   prefork_server PORTFILE
 *
 * Writes the port it listens on (127.0.0.1, chosen by the kernel) to
 * PORTFILE.  A request is a line "ID\n"; the reply is "ID N\n", N the
 * counter's value after this request's increment.  On SIGTERM it prints
 * "served S counted C" to stderr and exits 0 if every child exited 0 and the
 * counter equals the number of requests served; else 1.
 */
#include "check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXIN 4 /* children in the counting section at once */

struct shared {
  pthread_mutex_t lock; /* process-shared: guards count */
  sem_t room;           /* process-shared: MAXIN places */
  long count;           /* requests counted */
};

static volatile sig_atomic_t stop, done_signals;
static int stop_pipe[2]; /* SIGTERM's handler writes here: poll wakes, whenever it came */

static void on_term(int sig)
{
  (void)sig;
  stop = 1;
  (void)!write(stop_pipe[1], "", 1);
}
static void on_usr1(int sig) { (void)sig; done_signals++; }

/* One connection, in the child: read "ID\n", count it, reply "ID N\n". */
static int serve(int c, struct shared *sh)
{
  char buf[64], out[96];
  size_t got = 0;
  ssize_t n;
  long id, v;
  double t;
  while (got < sizeof buf - 1 && (got == 0 || buf[got - 1] != '\n')) {
    if ((n = read(c, buf + got, sizeof buf - 1 - got)) <= 0)
      return 1;
    got += (size_t)n;
  }
  buf[got] = 0;
  id = atol(buf);
  if (sem_wait(&sh->room) != 0 || pthread_mutex_lock(&sh->lock) != 0)
    return 1;
  v = ++sh->count;
  for (t = mono(); mono() - t < 20e-6;) /* hold it a little, so that others queue */
    ;
  if (pthread_mutex_unlock(&sh->lock) != 0 || sem_post(&sh->room) != 0)
    return 1;
  n = snprintf(out, sizeof out, "%ld %ld\n", id, v);
  return write(c, out, (size_t)n) == n ? 0 : 1;
}

static void reap(long *served, int *bad, int flags)
{
  int status;
  pid_t p;
  while ((p = waitpid(-1, &status, flags)) > 0) {
    ++*served;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      ++*bad;
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  struct sigaction term = {.sa_handler = on_term}; /* no SA_RESTART: poll fails with EINTR */
  struct sigaction usr1 = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
  pthread_mutexattr_t ma;
  struct shared *sh;
  long served = 0;
  int bad = 0, one = 1, l;
  FILE *f;

  CHECK(argc == 2);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(sh != MAP_FAILED);
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  CHECK(pthread_mutex_init(&sh->lock, &ma) == 0);
  CHECK(sem_init(&sh->room, 1, MAXIN) == 0);
  CHECK(pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) == 0);
  CHECK(sigaction(SIGTERM, &term, NULL) == 0 && sigaction(SIGUSR1, &usr1, NULL) == 0);

  CHECK((l = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 512) == 0);
  CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
  CHECK((f = fopen(argv[1], "w")) != NULL);
  fprintf(f, "%d\n", ntohs(a.sin_port));
  CHECK(fclose(f) == 0);

  while (!stop) {
    struct pollfd ready[2] = {{.fd = l, .events = POLLIN}, {.fd = stop_pipe[0], .events = POLLIN}};
    int c;
    pid_t p;
    if (poll(ready, 2, -1) < 0) {
      CHECK(errno == EINTR);
      continue;
    }
    if (ready[1].revents || !(ready[0].revents & POLLIN))
      continue;
    if ((c = accept(l, NULL, NULL)) < 0) {
      CHECK(errno == EINTR || errno == ECONNABORTED);
      continue;
    }
    CHECK((p = fork()) >= 0);
    if (p == 0) {
      int r;
      close(l);
      close(stop_pipe[0]);
      close(stop_pipe[1]);
      r = serve(c, sh);
      close(c);
      kill(getppid(), SIGUSR1);
      _exit(r);
    }
    close(c);
    reap(&served, &bad, WNOHANG);
  }
  reap(&served, &bad, 0);
  fprintf(stderr, "served %ld counted %ld\n", served, sh->count);
  return bad == 0 && served == sh->count && (served == 0 || done_signals > 0) ? 0 : 1;
}
