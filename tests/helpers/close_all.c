/* close_all.c MODE: close every descriptor the program did not open, the
 * ways daemons do, then use what a program uses: a thread exchanging bytes
 * over a socketpair, a sleep, a poll, fork + exec, a child that runs a
 * thread of its own, and a name lookup.  Every step must work as natively,
 * and the numbers the program gets afterwards must be the native ones.
 *
 *   closefrom           closefrom(3)
 *   close_range         close_range(3, ~0U, 0)
 *   close_range_cloexec close_range(3, ~0U, CLOSE_RANGE_CLOEXEC), then exec
 *   close_range_unshare close_range(3, ~0U, CLOSE_RANGE_UNSHARE)
 *   close_loop          close() of every number from 3 to the limit
 *   proc_walk           close() of every number listed in /proc/self/fd
 *   dup2_over           dup2(/dev/null, n) for n = 3..64, then close them
 *   dup2_high           RLIMIT_NOFILE at 1024, dup2(/dev/null, n) for the
 *                       top 64 numbers, then close them
 *   dup2_thread         dup2_high made by another thread while the main
 *                       thread waits in a read (under the launcher with
 *                       the thread family off, a real OS thread: the hub
 *                       moves its descriptors on request)
 *   rlimit              RLIMIT_NOFILE lowered to 128, then closefrom(3);
 *                       also counts the descriptors opened before EMFILE
 *   listing             lists /proc/self/fd and /dev/fd (the same as
 *                       natively: the runtime's own are not listed), then
 *                       closefrom(3)
 */
#include "check.h"
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* A byte to a thread and back: the thread blocks in read first. */
static void thread_traffic(void)
{
  pthread_t t;
  void *r = "not joined";
  char c = 'k';
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(pthread_create(&t, NULL, echo_once, NULL) == 0);
  CHECK(usleep(2000) == 0);
  CHECK(write(sv[0], &c, 1) == 1);
  c = 0;
  CHECK(read(sv[0], &c, 1) == 1 && c == 'k');
  CHECK(pthread_join(t, &r) == 0 && r == NULL);
  CHECK(close(sv[0]) == 0 && close(sv[1]) == 0);
}

static void use_everything(const char *who)
{
  struct pollfd p;
  int pfd[2], status, fd;
  pid_t pid;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;

  thread_traffic();
  CHECK(usleep(1000) == 0);
  CHECK(pipe(pfd) == 0);
  CHECK(write(pfd[1], "x", 1) == 1);
  p = (struct pollfd){.fd = pfd[0], .events = POLLIN};
  CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLIN));
  CHECK(close(pfd[0]) == 0 && close(pfd[1]) == 0);

  CHECK((pid = fork()) >= 0);
  if (pid == 0) {
    execl("/bin/true", "true", (char *)NULL);
    _exit(127);
  }
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

  CHECK((pid = fork()) >= 0);
  if (pid == 0) { /* the child's own threads, sleeps and polls */
    thread_traffic();
    _exit(usleep(1000) == 0 ? 0 : 1);
  }
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

  CHECK(getaddrinfo("localhost", "80", &hints, &res) == 0 && res);
  freeaddrinfo(res);

  CHECK((fd = open("/dev/null", O_RDONLY)) >= 0);
  printf("%s: everything works; the next descriptor is %d\n", who, fd);
  CHECK(close(fd) == 0);
}

static void proc_walk(void)
{
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  CHECK(d);
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d))
      close(fd); /* errors ignored, as such daemons do */
  }
  closedir(d);
}

/* Print the descriptors listed in dir, but the listing's own. */
static void list(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char seen[4096] = "";
  int fds[256], n = 0;
  CHECK(d);
  while ((e = readdir(d)) && n < 256)
    if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
      fds[n++] = atoi(e->d_name);
  closedir(d);
  for (int i = 0; i < n; i++) /* sorted, for the comparison */
    for (int j = i + 1; j < n; j++)
      if (fds[j] < fds[i]) {
        int t = fds[i];
        fds[i] = fds[j];
        fds[j] = t;
      }
  for (int i = 0; i < n; i++)
    snprintf(seen + strlen(seen), sizeof seen - strlen(seen), " %d", fds[i]);
  printf("%s lists%s\n", dir, seen);
}

/* How many descriptors can still be opened, under a limit of 128. */
static int count_to_emfile(void)
{
  int n = 0, fd, first = -1;
  while ((fd = open("/dev/null", O_RDONLY)) >= 0) {
    if (first < 0)
      first = fd;
    n++;
  }
  CHECK(errno == EMFILE);
  closefrom(first);
  return n;
}

static int done[2] = {-1, -1}; /* dup2_thread: the thread's byte when done */

/* dup2(/dev/null, n) for the top 64 numbers below rl's limit. */
static void *dup2_top(void *arg)
{
  const struct rlimit *rl = arg;
  int devnull = open("/dev/null", O_RDONLY);
  CHECK(devnull >= 0);
  for (int fd = (int)rl->rlim_cur - 64; fd < (int)rl->rlim_cur; fd++)
    CHECK(dup2(devnull, fd) == fd);
  if (done[1] >= 0)
    CHECK(write(done[1], "d", 1) == 1);
  return NULL;
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "closefrom";
  struct rlimit rl;
  int devnull;

  setvbuf(stdout, NULL, _IONBF, 0);
  if (!strcmp(mode, "closefrom")) {
    closefrom(3);
  } else if (!strcmp(mode, "close_range")) {
    CHECK(close_range(3, ~0U, 0) == 0);
  } else if (!strcmp(mode, "close_range_cloexec")) {
    CHECK(close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0);
  } else if (!strcmp(mode, "close_range_unshare")) {
    CHECK(close_range(3, ~0U, CLOSE_RANGE_UNSHARE) == 0);
  } else if (!strcmp(mode, "close_loop")) {
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    for (long fd = 3; fd < (long)rl.rlim_cur && fd < 65536; fd++)
      close((int)fd);
  } else if (!strcmp(mode, "proc_walk")) {
    proc_walk();
  } else if (!strcmp(mode, "dup2_over")) {
    CHECK((devnull = open("/dev/null", O_RDONLY)) >= 0);
    for (int fd = 3; fd <= 64; fd++)
      CHECK(fd == devnull || dup2(devnull, fd) == fd);
    closefrom(3);
  } else if (!strcmp(mode, "dup2_high") || !strcmp(mode, "dup2_thread")) {
    pthread_t t;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max >= 1024)
      rl.rlim_cur = 1024;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (!strcmp(mode, "dup2_thread")) {
      char c;
      CHECK(pipe(done) == 0);
      CHECK(pthread_create(&t, NULL, dup2_top, &rl) == 0);
      CHECK(read(done[0], &c, 1) == 1); /* the main thread waits for it in a read */
      CHECK(pthread_join(t, NULL) == 0);
      close(done[0]);
      close(done[1]);
    } else {
      dup2_top(&rl);
    }
    use_everything("dup2_high, with the top numbers taken");
    closefrom(3);
  } else if (!strcmp(mode, "listing")) {
    list("/proc/self/fd");
    list("/dev/fd");
    closefrom(3);
  } else if (!strcmp(mode, "rlimit")) {
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = 128;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    closefrom(3);
    printf("%d descriptors open before EMFILE\n", count_to_emfile());
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  use_everything(mode);
  if (!strcmp(mode, "close_range_cloexec")) { /* and once more after an exec */
    execl("/proc/self/exe", argv[0], "closefrom", (char *)NULL);
    return 1;
  }
  return 0;
}
