/* thread_server.c [MAX_OS_THREADS]: a thread-per-connection echo server and
 * as many client threads in one process, all blocking calls, all
 * connections open at once.  With MAX_OS_THREADS given (under the
 * launcher: 3), the process may have at most that many OS threads
 * (/proc/self/task) while every connection is open. */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

enum { N = 200, ROUNDS = 10 };
static int listener;
static struct sockaddr_in addr;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int connected, counted;

static void *serve(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    CHECK(write(fd, buf, (size_t)n) == n);
  close(fd);
  return NULL;
}

static void *acceptor(void *arg)
{
  for (int i = 0; i < N; i++) {
    pthread_t t;
    pthread_attr_t a;
    int fd = accept(listener, NULL, NULL);
    CHECK(fd >= 0);
    CHECK(pthread_attr_init(&a) == 0);
    CHECK(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED) == 0);
    CHECK(pthread_create(&t, &a, serve, (void *)(intptr_t)fd) == 0);
    pthread_attr_destroy(&a);
  }
  return NULL;
}

static void echo(int fd, int i, int round)
{
  char out[32], in[32];
  int len = snprintf(out, sizeof out, "client %d round %d", i, round);
  CHECK(write(fd, out, (size_t)len) == len);
  for (int got = 0; got < len;) {
    ssize_t n = read(fd, in + got, (size_t)(len - got));
    CHECK(n > 0);
    got += (int)n;
  }
  CHECK(memcmp(in, out, (size_t)len) == 0);
}

static void *client(void *arg)
{
  int i = (int)(intptr_t)arg, fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
  echo(fd, i, 0);
  CHECK(pthread_mutex_lock(&m) == 0);
  connected++;
  CHECK(pthread_cond_broadcast(&cv) == 0);
  while (!counted) /* every connection stays open until counted */
    CHECK(pthread_cond_wait(&cv, &m) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
  for (int r = 1; r <= ROUNDS; r++)
    echo(fd, i, r);
  close(fd);
  return NULL;
}

static int os_threads(void)
{
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  CHECK(d != NULL);
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

int main(int argc, char **argv)
{
  socklen_t len = sizeof addr;
  pthread_t acc, c[N];
  int tasks;
  listener = socket(AF_INET, SOCK_STREAM, 0);
  addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0);
  CHECK(listen(listener, N) == 0);
  CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
  CHECK(pthread_create(&acc, NULL, acceptor, NULL) == 0);
  for (int i = 0; i < N; i++)
    CHECK(pthread_create(&c[i], NULL, client, (void *)(intptr_t)i) == 0);
  CHECK(pthread_mutex_lock(&m) == 0);
  while (connected < N)
    CHECK(pthread_cond_wait(&cv, &m) == 0);
  tasks = os_threads();
  counted = 1;
  CHECK(pthread_cond_broadcast(&cv) == 0);
  CHECK(pthread_mutex_unlock(&m) == 0);
  for (int i = 0; i < N; i++)
    CHECK(pthread_join(c[i], NULL) == 0);
  CHECK(pthread_join(acc, NULL) == 0);
  if (argc > 1) {
    fprintf(stderr, "%d connections open, %d OS threads\n", N, tasks);
    CHECK(tasks <= atoi(argv[1]));
  }
  puts("threaded server: ok");
  return 0;
}
