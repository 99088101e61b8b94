/* tutorial_crawler.c: a crawler fetching N pages (default 600) with at most
 * LIMIT requests in flight (default 500), like the asyncio original:
 *
 *   sem = asyncio.Semaphore(500)
 *   async def fetch(session, url):
 *       async with sem:
 *           async with session.get(url) as resp: return await resp.text()
 *   pages = await asyncio.gather(*(fetch(session, u) for u in urls))
 *
 * The fetches are plain blocking libc calls (socket, connect, write, read,
 * close) in green threads: run it under the preload shim (build/bin/kudzu
 * -- tutorial_crawler), which turns each into a wait on the hub.  The demo
 * serves the pages itself, from a green thread of the same process with the
 * same plain calls, on 127.0.0.1 and a free port; or give it PORT to fetch
 * from a server of your own (python3 -m http.server PORT).
 *
 *   kudzu -- tutorial_crawler [N [LIMIT [PORT]]]
 */
#include <kudzu.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct kz_sem *sem;
static int port, in_flight, peak;
static long fetched_bytes;

/* ---- The server: one green thread per connection -------------------------------- */

static void *serve_one(void *arg)
{
  int fd = (int)(intptr_t)arg;
  char req[1024], page[256];
  ssize_t n = read(fd, req, sizeof req - 1);
  if (n > 0) {
    int body = snprintf(page, sizeof page, "<html>page %.*s</html>\n", 16, req + 4);
    char head[128];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", body);
    if (write(fd, head, (size_t)h) == h && write(fd, page, (size_t)body) == body) {
    }
  }
  close(fd);
  return NULL;
}

static void *server(void *arg)
{
  int lfd = (int)(intptr_t)arg, fd;
  struct kz_spawn_opts o = {.detached = 1};
  while ((fd = accept(lfd, NULL, NULL)) >= 0)
    kz_spawn_with(serve_one, (void *)(intptr_t)fd, &o);
  return NULL;
}

static int listen_any(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096) ||
      getsockname(fd, (struct sockaddr *)&a, &len))
    return -1;
  port = ntohs(a.sin_port);
  return fd;
}

/* ---- The crawler ------------------------------------------------------------------- */

/* GET /page/<i> with plain blocking calls; the page's length, or -errno. */
static long get_page(intptr_t i)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  char buf[4096];
  long total = 0;
  ssize_t n;
  int fd = socket(AF_INET, SOCK_STREAM, 0), len;
  if (fd < 0)
    return -errno;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    n = -errno;
    close(fd);
    return n;
  }
  len = snprintf(buf, sizeof buf, "GET /page/%ld HTTP/1.0\r\nHost: localhost\r\n\r\n", (long)i);
  if (write(fd, buf, (size_t)len) != len)
    total = -EIO;
  while (total >= 0 && (n = read(fd, buf, sizeof buf)) > 0)
    total += n;
  close(fd);
  return total;
}

static void *fetch(void *arg)
{
  long r;
  kz_sem_acquire(sem, KZ_FOREVER); /* async with sem: */
  if (++in_flight > peak)
    peak = in_flight;
  r = get_page((intptr_t)arg);
  in_flight--;
  kz_sem_release(sem);
  if (r <= 0)
    kz_fail(r < 0 ? (int)-r : EPROTO);
  return (void *)(intptr_t)r;
}

struct config {
  long n, limit;
  int port;
};

static void *crawl(void *arg)
{
  struct config *c = arg;
  uint64_t *t = calloc((size_t)c->n, sizeof *t);
  void **res = calloc((size_t)c->n, sizeof *res);
  kz_green_t srv = 0;
  double t0 = kz_now();
  int lfd = -1;
  sem = kz_sem_new((unsigned)c->limit);
  if (c->port) {
    port = c->port;
  } else {
    if ((lfd = listen_any()) < 0)
      return (void *)1;
    srv = kz_spawn(server, (void *)(intptr_t)lfd);
  }
  for (long i = 0; i < c->n; i++)
    t[i] = kz_spawn_future(fetch, (void *)(intptr_t)i, NULL);
  int failed = kz_gather(t, (size_t)c->n, res, NULL, KZ_GATHER_ERRORS, 60);
  for (long i = 0; i < c->n; i++) {
    fetched_bytes += (long)(intptr_t)res[i];
    kz_future_free(t[i]);
  }
  printf("fetched %ld pages (%ld bytes), %d failed, at most %d in flight (limit %ld), "
         "in %.2f s\n", c->n - (failed > 0 ? failed : 0), fetched_bytes, failed, peak, c->limit,
         kz_now() - t0);
  if (srv) {
    kz_cancel(srv);
    kz_join(srv, NULL, KZ_FOREVER);
    close(lfd);
  }
  free(t);
  free(res);
  return failed == 0 && peak <= c->limit ? NULL : (void *)1;
}

int main(int argc, char **argv)
{
  struct config c = {600, 500, 0};
  void *r = NULL;
  if (argc > 1)
    c.n = atol(argv[1]);
  if (argc > 2)
    c.limit = atol(argv[2]);
  if (argc > 3)
    c.port = atoi(argv[3]);
  if (c.n <= 0 || c.limit <= 0) {
    fprintf(stderr, "usage: tutorial_crawler [N [LIMIT [PORT]]]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  return kz_run(crawl, &c, &r) == 0 && !r ? 0 : 1;
}
