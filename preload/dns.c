/* dns.c: name resolution (getaddrinfo, getnameinfo, gethostbyname and
 * friends) in green threads runs on the worker pool while the green thread
 * parks, and kz_shim_offload, the helper every offloaded call uses.
 *
 * glibc's resolver opens its sockets and waits on them internally, where
 * the shim cannot see (and NSS modules may read files or talk to daemons),
 * so the whole call moves to a worker thread, whose calls pass straight
 * through.  The resolver's own timeouts (resolv.conf) apply; the runtime
 * adds none.
 *
 * Notes.
 * A. Each request is copied to the heap: if the green thread stops waiting
 *    (cancelled, or a scoped deadline passed) the worker still finishes the
 *    call, then frees the copy and the answer (kz__worker_call's discard).
 *    Such a call fails with EAI_SYSTEM and errno ECANCELED or ETIMEDOUT;
 *    the gethostby* family fails with h_errno TRY_AGAIN.
 * B. gethostbyname and gethostbyaddr return glibc's static storage, shared
 *    by every thread natively too; they run on a worker like the rest and
 *    the caller reads the same storage.  Their _r forms write only the
 *    caller's buffers, which outlive the call unless it is abandoned, so
 *    those run on the worker with a private buffer and are copied back.
 */
#include "shim.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT KZ_SHIM_EXPORT

int kz_shim_offload(void (*fn)(void *), void *job, void (*discard)(void *))
{
  int r;
  kz_shim_stats().worker++;
  r = kz__worker_call(fn, job, discard, -1);
  if (KZ_UNLIKELY(kz_shim.debug) && r < 0 && r != -EPERM)
    kz__say("a call run on a worker thread was abandoned: %s", strerror(-r));
  if (r == -EPERM) { /* not in a green thread after all: run it here */
    fn(job);
    return 0;
  }
  if (r < 0) {
    kz_shim_cancel_point(r); /* the job is the worker's: nothing to release */
    errno = -r;
    return -1;
  }
  return 0;
}

/* ---- getaddrinfo, getnameinfo ---------------------------------------------- */

struct gai_job {
  char *node, *service;      /* copies, or NULL */
  struct addrinfo hints;     /* copy */
  bool has_hints;
  struct addrinfo *res;      /* the answer */
  int rc;
  int err;
};

static void gai_run(void *arg)
{
  struct gai_job *j = arg;
  j->rc = REAL(getaddrinfo)(j->node, j->service, j->has_hints ? &j->hints : NULL, &j->res);
  j->err = errno;
}

static void gai_free(struct gai_job *j)
{
  free(j->node);
  free(j->service);
  free(j);
}

static void gai_discard(void *arg)
{
  struct gai_job *j = arg;
  if (j->rc == 0 && j->res)
    freeaddrinfo(j->res);
  gai_free(j);
}

static char *copy(const char *s, bool *ok)
{
  char *c = s ? strdup(s) : NULL;
  if (s && !c)
    *ok = false;
  return c;
}

KZ_INTERPOSE(int, getaddrinfo, (const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res), (node, service, hints, res))
{
  struct gai_job *j;
  bool ok = true;
  int rc;
  if (!shim_active(KZ_PATCH_DNS) || !(j = calloc(1, sizeof *j)))
    return REAL(getaddrinfo)(node, service, hints, res);
  j->node = copy(node, &ok);
  j->service = copy(service, &ok);
  if (!ok) {
    gai_free(j);
    return EAI_MEMORY;
  }
  if (hints) {
    j->hints = *hints;
    j->has_hints = true;
  }
  if (kz_shim_offload(gai_run, j, gai_discard) < 0)
    return EAI_SYSTEM; /* note A; the job is the worker's now */
  *res = j->res;
  rc = j->rc;
  errno = j->err;
  gai_free(j);
  return rc;
}

struct gni_job {
  struct sockaddr_storage sa;
  socklen_t salen;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  socklen_t hostlen, servlen;
  int flags, rc, err;
};

static void gni_run(void *arg)
{
  struct gni_job *j = arg;
  j->rc = REAL(getnameinfo)((struct sockaddr *)&j->sa, j->salen, j->hostlen ? j->host : NULL,
                            j->hostlen, j->servlen ? j->serv : NULL, j->servlen, j->flags);
  j->err = errno;
}

KZ_INTERPOSE(int, getnameinfo, (const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv, socklen_t servlen, int flags), (sa, salen, host, hostlen, serv, servlen, flags))
{
  struct gni_job *j;
  int rc;
  if (!shim_active(KZ_PATCH_DNS) || !sa || salen > sizeof j->sa || !(j = calloc(1, sizeof *j)))
    return REAL(getnameinfo)(sa, salen, host, hostlen, serv, servlen, flags);
  memcpy(&j->sa, sa, salen);
  j->salen = salen;
  j->hostlen = host ? (hostlen < sizeof j->host ? hostlen : sizeof j->host) : 0;
  j->servlen = serv ? (servlen < sizeof j->serv ? servlen : sizeof j->serv) : 0;
  j->flags = flags;
  if (kz_shim_offload(gni_run, j, free) < 0)
    return EAI_SYSTEM;
  if ((rc = j->rc) == 0) {
    if (host && j->hostlen)
      memcpy(host, j->host, j->hostlen);
    if (serv && j->servlen)
      memcpy(serv, j->serv, j->servlen);
  }
  errno = j->err;
  free(j);
  return rc;
}

/* ---- The gethostby* family (note B) ------------------------------------------ */

struct ghb_job {
  int which;               /* 0 byname, 1 byname2, 2 byaddr */
  char *name;              /* byname*: copy */
  char addr[16];           /* byaddr */
  socklen_t len;
  int af;
  struct hostent *result;  /* the static storage's answer */
  int herr;
};

static void ghb_run(void *arg)
{
  struct ghb_job *j = arg;
  if (j->which == 0)
    j->result = REAL(gethostbyname)(j->name);
  else if (j->which == 1)
    j->result = REAL(gethostbyname2)(j->name, j->af);
  else
    j->result = REAL(gethostbyaddr)(j->addr, j->len, j->af);
  j->herr = h_errno;
}

static void ghb_free(void *arg)
{
  struct ghb_job *j = arg;
  free(j->name);
  free(j);
}

static struct hostent *ghb_offload(struct ghb_job *j)
{
  struct hostent *r;
  if (kz_shim_offload(ghb_run, j, ghb_free) < 0) {
    h_errno = TRY_AGAIN;
    return NULL;
  }
  r = j->result;
  h_errno = j->herr;
  ghb_free(j);
  return r;
}

static struct ghb_job *ghb_new(int which, const char *name)
{
  struct ghb_job *j = calloc(1, sizeof *j);
  if (j && name && !(j->name = strdup(name))) {
    free(j);
    return NULL;
  }
  if (j)
    j->which = which;
  return j;
}

KZ_INTERPOSE(struct hostent *, gethostbyname, (const char *name), (name))
{
  struct ghb_job *j;
  if (!name || !shim_active(KZ_PATCH_DNS) || !(j = ghb_new(0, name)))
    return REAL(gethostbyname)(name);
  return ghb_offload(j);
}

KZ_INTERPOSE(struct hostent *, gethostbyname2, (const char *name, int af), (name, af))
{
  struct ghb_job *j;
  if (!name || !shim_active(KZ_PATCH_DNS) || !(j = ghb_new(1, name)))
    return REAL(gethostbyname2)(name, af);
  j->af = af;
  return ghb_offload(j);
}

KZ_INTERPOSE(struct hostent *, gethostbyaddr, (const void *addr, socklen_t len, int af), (addr, len, af))
{
  struct ghb_job *j;
  if (!addr || len > sizeof j->addr || !shim_active(KZ_PATCH_DNS) || !(j = ghb_new(2, NULL)))
    return REAL(gethostbyaddr)(addr, len, af);
  memcpy(j->addr, addr, len);
  j->len = len;
  j->af = af;
  return ghb_offload(j);
}

/* The reentrant forms: the answer lands in a private buffer on the worker,
   then moves into the caller's, with its pointers rebased. */
struct ghbr_job {
  struct ghb_job q;        /* the question */
  struct hostent ent;
  char *buf;               /* private, as large as the caller's */
  size_t buflen;
  struct hostent *result;
  int rc, herr;
};

static void ghbr_run(void *arg)
{
  struct ghbr_job *j = arg;
  if (j->q.which == 0)
    j->rc = REAL(gethostbyname_r)(j->q.name, &j->ent, j->buf, j->buflen, &j->result, &j->herr);
  else if (j->q.which == 1)
    j->rc = REAL(gethostbyname2_r)(j->q.name, j->q.af, &j->ent, j->buf, j->buflen, &j->result,
                                   &j->herr);
  else
    j->rc = REAL(gethostbyaddr_r)(j->q.addr, j->q.len, j->q.af, &j->ent, j->buf, j->buflen,
                                  &j->result, &j->herr);
}

static void ghbr_free(void *arg)
{
  struct ghbr_job *j = arg;
  free(j->q.name);
  free(j->buf);
  free(j);
}

static char *rebase(char *p, const char *from, char *to)
{
  return p ? to + (p - from) : NULL;
}

/* Copy the private answer into the caller's buffer and hostent. */
static void ghbr_copy(struct ghbr_job *j, struct hostent *ret, char *buf)
{
  char **v;
  memcpy(buf, j->buf, j->buflen);
  *ret = j->ent;
  ret->h_name = rebase(j->ent.h_name, j->buf, buf);
  ret->h_aliases = (char **)rebase((char *)j->ent.h_aliases, j->buf, buf);
  ret->h_addr_list = (char **)rebase((char *)j->ent.h_addr_list, j->buf, buf);
  for (v = ret->h_aliases; v && *v; v++)
    *v = rebase(*v, j->buf, buf);
  for (v = ret->h_addr_list; v && *v; v++)
    *v = rebase(*v, j->buf, buf);
}

static int ghbr_offload(struct ghbr_job *j, struct hostent *ret, char *buf, struct hostent **result,
                        int *herr)
{
  int rc;
  if (kz_shim_offload(ghbr_run, j, ghbr_free) < 0) {
    *result = NULL;
    *herr = TRY_AGAIN;
    return errno;
  }
  rc = j->rc;
  *herr = j->herr;
  *result = j->result ? ret : NULL;
  if (j->result)
    ghbr_copy(j, ret, buf);
  ghbr_free(j);
  return rc;
}

static struct ghbr_job *ghbr_new(int which, const char *name, size_t buflen)
{
  struct ghbr_job *j = calloc(1, sizeof *j);
  if (!j)
    return NULL;
  j->q.which = which;
  j->buflen = buflen;
  if (!(j->buf = malloc(buflen ? buflen : 1)) || (name && !(j->q.name = strdup(name)))) {
    ghbr_free(j);
    return NULL;
  }
  return j;
}

KZ_INTERPOSE(int, gethostbyname_r, (const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result, int *herr), (name, ret, buf, buflen, result, herr))
{
  struct ghbr_job *j;
  if (!name || !shim_active(KZ_PATCH_DNS) || !(j = ghbr_new(0, name, buflen)))
    return REAL(gethostbyname_r)(name, ret, buf, buflen, result, herr);
  return ghbr_offload(j, ret, buf, result, herr);
}

KZ_INTERPOSE(int, gethostbyname2_r, (const char *name, int af, struct hostent *ret, char *buf, size_t buflen, struct hostent **result, int *herr), (name, af, ret, buf, buflen, result, herr))
{
  struct ghbr_job *j;
  if (!name || !shim_active(KZ_PATCH_DNS) || !(j = ghbr_new(1, name, buflen)))
    return REAL(gethostbyname2_r)(name, af, ret, buf, buflen, result, herr);
  j->q.af = af;
  return ghbr_offload(j, ret, buf, result, herr);
}

KZ_INTERPOSE(int, gethostbyaddr_r, (const void *addr, socklen_t len, int af, struct hostent *ret, char *buf, size_t buflen, struct hostent **result, int *herr), (addr, len, af, ret, buf, buflen, result, herr))
{
  struct ghbr_job *j;
  if (!addr || len > sizeof j->q.addr || !shim_active(KZ_PATCH_DNS) || !(j = ghbr_new(2, NULL, buflen)))
    return REAL(gethostbyaddr_r)(addr, len, af, ret, buf, buflen, result, herr);
  memcpy(j->q.addr, addr, len);
  j->q.len = len;
  j->q.af = af;
  return ghbr_offload(j, ret, buf, result, herr);
}
