/* stdio_echo.c: a line echo server written the way a C program reads lines:
 * one thread per connection, fgets on an fdopen'd socket, fputs and fflush
 * on a second stream.  Built without kudzu; run natively it is the baseline,
 * and under the launcher its stdio calls wait inside libc's own read and
 * write, which reach the shim only because the shim patches libc's code
 * (preload/patch.c).  scripts/bench_echo measures it with echo_load --lines
 * (rows stdio_echo_*).
 *
 *   stdio_echo [-p PORT]
 *
 * Listens on 127.0.0.1:PORT (0, the default: the kernel picks), prints
 * "listening on 127.0.0.1:PORT" and flushes it.  SIGINT or SIGTERM stops
 * it: the handler has no SA_RESTART, so the main thread's accept fails with
 * EINTR (connection threads block both signals), as in
 * demos/echo_threaded.c, whose notes hold for this program too.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024) /* per connection thread */
#define LINE_MAX_ (4 * 1024)   /* longest line read in one fgets; longer ones come in parts */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) { stop_requested = sig; }

/* One connection (arg is its descriptor): echo line by line until the peer
   closes or an error; both streams, and so the descriptors, closed. */
static void *serve_connection(void *arg)
{
  int fd = (int)(intptr_t)arg, wfd = dup(fd);
  FILE *in = fdopen(fd, "r"), *out = wfd >= 0 ? fdopen(wfd, "w") : NULL;
  char *line = malloc(LINE_MAX_);
  if (in && out && line)
    while (fgets(line, LINE_MAX_, in) && fputs(line, out) >= 0 && fflush(out) == 0)
      ;
  free(line);
  if (out)
    fclose(out);
  else if (wfd >= 0)
    close(wfd);
  if (in)
    fclose(in);
  else
    close(fd);
  return NULL;
}

static int listen_on(int port, int *bound)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    perror("stdio_echo: listen");
    return -1;
  }
  *bound = ntohs(sa.sin_port);
  return fd;
}

static void install_signals(void)
{
  struct sigaction act = {.sa_handler = on_stop_signal};
  sigemptyset(&act.sa_mask);
  sigaction(SIGINT, &act, NULL);
  sigaction(SIGTERM, &act, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* A detached thread for fd, with the stop signals blocked in it. */
static void spawn_connection(const pthread_attr_t *attr, int fd)
{
  sigset_t stop, old;
  pthread_t t;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, &old);
  if (pthread_create(&t, attr, serve_connection, (void *)(intptr_t)fd) != 0)
    close(fd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int main(int argc, char **argv)
{
  int port = argc == 3 && !strcmp(argv[1], "-p") ? atoi(argv[2]) : 0, bound, lfd, one = 1;
  pthread_attr_t attr;
  if (argc != 1 && argc != 3) {
    fprintf(stderr, "usage: stdio_echo [-p PORT]\n");
    return 2;
  }
  install_signals();
  if ((lfd = listen_on(port, &bound)) < 0)
    return 1;
  printf("listening on 127.0.0.1:%d\n", bound);
  fflush(stdout);
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, STACK_SIZE);
  while (!stop_requested) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        usleep(10 * 1000); /* out of descriptors or memory: let some connections end */
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      perror("stdio_echo: accept");
      return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    spawn_connection(&attr, fd);
  }
  close(lfd);
  puts("stopped");
  return 0;
}
