/* libc_shared_stdout.c [MAX_OS_THREADS]: four threads print numbered lines
 * to one stdout, a pipe that a slow reader (a child process) drains, so
 * stdio's writes wait for room again and again while other threads want
 * the stream too.  The stream's lock keeps them apart, as natively: every
 * line arrives whole, exactly once, each thread's in order.  With
 * MAX_OS_THREADS given (under the launcher: 3), the process may have at
 * most that many OS threads.  A hang fails by SIGALRM. */
#include "ticks.h"
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

enum { THREADS = 4, LINES = 3000 };

/* The child: wait for the pipe to fill, then check every line. */
static int drain(int fd)
{
  FILE *in = fdopen(fd, "r");
  int next[THREADS] = {0}, t, i, total = 0;
  char line[128], tail;
  struct timespec ts = {0, 200000000};
  nanosleep(&ts, NULL);
  while (fgets(line, sizeof line, in)) {
    if (sscanf(line, "thread %d line %d%c", &t, &i, &tail) != 3 || tail != '\n' || t < 0 ||
        t >= THREADS || i != next[t]) {
      fprintf(stderr, "unexpected line %d: %s", total, line);
      return 1;
    }
    next[t]++, total++;
  }
  return total == THREADS * LINES ? 0 : (fprintf(stderr, "%d lines\n", total), 1);
}

static void *printer(void *arg)
{
  int t = (int)(long)arg;
  for (int i = 0; i < LINES; i++)
    CHECK(printf("thread %d line %d\n", t, i) > 0);
  return NULL;
}

int main(int argc, char **argv)
{
  int p[2], st, out = dup(1);
  pthread_t th[THREADS];
  alarm(30);
  CHECK(out >= 0 && pipe(p) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(p[1]);
    _exit(drain(p[0]));
  }
  close(p[0]);
  CHECK(dup2(p[1], 1) == 1);
  close(p[1]);
  for (long t = 0; t < THREADS; t++)
    CHECK(pthread_create(&th[t], NULL, printer, (void *)t) == 0);
  check_os_threads(argc, argv);
  for (int t = 0; t < THREADS; t++)
    CHECK(pthread_join(th[t], NULL) == 0);
  CHECK(fflush(stdout) == 0);
  close(1);
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(dprintf(out, "ok\n") == 3);
  return 0;
}
