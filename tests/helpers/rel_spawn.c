/* rel_spawn.c: processes started under socket load.  PAIRS pairs of threads
 * echo messages over blocking socketpairs (one thread sends a message of
 * 1 to 64 KiB and reads it back, verifying every byte; its partner echoes)
 * while one more thread runs, ROUNDS times each: system("true"),
 * popen("echo x") read to the end, fork() + execv("/bin/true") and
 * posix_spawn("/bin/true"), checking every exit status and popen's output.
 * Everything must complete (bounded by a deadline with a message); the
 * echo threads go on until the spawner is done, so processes start while
 * the sockets are busy.  Prints one line, the same natively and under the
 * launcher (counts that differ go to stderr with REL_REPORT set). */
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAIRS 4
#define ROUNDS 25
#define MAX_MSG (64 << 10)
#define DEADLINE_S 100

extern char **environ;
static atomic_int spawner_done;
static atomic_long messages;

static void on_deadline(int sig)
{
  static const char msg[] = "rel_spawn: deadline passed: something never completed\n";
  (void)sig;
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

static void xfer(int fd, unsigned char *p, size_t n, int writing)
{
  while (n > 0) {
    ssize_t r = writing ? write(fd, p, n) : read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    CHECK(r > 0);
    p += r;
    n -= (size_t)r;
  }
}

/* Sends messages and verifies their echo until the spawner is done. */
static void *client(void *arg)
{
  int fd = (int)(intptr_t)arg;
  unsigned char *out = malloc(MAX_MSG), *in = malloc(MAX_MSG); /* not on 64 KiB stacks */
  uint32_t len;
  CHECK(out && in);
  for (unsigned i = 0; i < 20 || !atomic_load(&spawner_done); i++) {
    len = 1 + (uint32_t)(((unsigned)fd * 7919u + i * 104729u) % MAX_MSG);
    for (uint32_t j = 0; j < len; j++)
      out[j] = (unsigned char)(j * 31 + i + (unsigned)fd);
    xfer(fd, (unsigned char *)&len, sizeof len, 1);
    xfer(fd, out, len, 1);
    xfer(fd, in, len, 0);
    CHECK(memcmp(in, out, len) == 0);
    atomic_fetch_add(&messages, 1);
  }
  len = 0; /* the end */
  xfer(fd, (unsigned char *)&len, sizeof len, 1);
  free(out);
  free(in);
  return NULL;
}

static void *echo(void *arg)
{
  int fd = (int)(intptr_t)arg;
  unsigned char *buf = malloc(MAX_MSG);
  uint32_t len;
  CHECK(buf);
  for (;;) {
    xfer(fd, (unsigned char *)&len, sizeof len, 0);
    if (len == 0)
      break;
    CHECK(len <= MAX_MSG);
    xfer(fd, buf, len, 0);
    xfer(fd, buf, len, 1);
  }
  close(fd);
  free(buf);
  return NULL;
}

static void *spawner(void *arg)
{
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    char line[16] = "";
    int st;
    pid_t pid;

    CHECK(system("true") == 0);

    FILE *f = popen("echo x", "r");
    CHECK(f != NULL);
    CHECK(fgets(line, sizeof line, f) != NULL && !strcmp(line, "x\n"));
    CHECK(fgets(line, sizeof line, f) == NULL);
    CHECK(pclose(f) == 0);

    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      char *argv[] = {"true", NULL};
      execv("/bin/true", argv);
      _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0)
      CHECK(errno == EINTR);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    char *argv[] = {"true", NULL};
    CHECK(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) == 0);
    while (waitpid(pid, &st, 0) < 0)
      CHECK(errno == EINTR);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  atomic_store(&spawner_done, 1);
  return NULL;
}

int main(void)
{
  pthread_t t[2 * PAIRS + 1];
  int nt = 0;

  signal(SIGALRM, on_deadline);
  alarm(DEADLINE_S);
  for (int i = 0; i < PAIRS; i++) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(pthread_create(&t[nt++], NULL, client, (void *)(intptr_t)sv[0]) == 0);
    CHECK(pthread_create(&t[nt++], NULL, echo, (void *)(intptr_t)sv[1]) == 0);
  }
  CHECK(pthread_create(&t[nt++], NULL, spawner, NULL) == 0);
  for (int i = 0; i < nt; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  if (getenv("REL_REPORT"))
    fprintf(stderr, "rel_spawn: %ld messages echoed meanwhile\n", atomic_load(&messages));
  printf("spawn under load: %d each of system, popen, fork+exec, posix_spawn; %d socket pairs "
         "echoed every message\n", ROUNDS, PAIRS);
  return 0;
}
