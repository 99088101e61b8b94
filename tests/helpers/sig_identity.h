/* sig_identity.h: what the signal-identity helpers share.  Each thread of a
 * helper registers its pthread_self and a value of its own under one key;
 * a handler records who it finds itself in (sig_look), and the thread it
 * interrupted compares that with itself (sig_expect_self) or, when the
 * kernel may pick any thread, with some registered thread whose stack holds
 * the handler's frame (sig_expect_consistent). */
#ifndef HELPER_SIG_IDENTITY_H
#define HELPER_SIG_IDENTITY_H
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

static pthread_key_t sig_key;  /* each thread's own value */
static pthread_key_t sig_key2; /* set by a handler, read by the thread after it */

struct sig_thread {
  pthread_t self;
  void *value;
};
static struct sig_thread sig_threads[8];
static int sig_nthreads;

/* What a handler saw. */
struct sig_seen {
  pthread_t self;   /* pthread_self() in the handler */
  void *value;      /* pthread_getspecific(sig_key) in the handler */
  int known;        /* last index in sig_threads of self (pthread_equal; a
                       finished thread's identity may be reused), or -1 */
  int stack_ok;     /* the handler's frame lies in pthread_getattr_np(self)'s stack */
  int runs;         /* handlers run */
};
static volatile struct sig_seen sig_seen;

static void sig_setup(void)
{
  CHECK(pthread_key_create(&sig_key, NULL) == 0);
  CHECK(pthread_key_create(&sig_key2, NULL) == 0);
}

/* The calling thread registers itself with value. */
static void sig_register(void *value)
{
  CHECK(pthread_setspecific(sig_key, value) == 0);
  sig_threads[sig_nthreads].self = pthread_self();
  sig_threads[sig_nthreads].value = value;
  __atomic_add_fetch(&sig_nthreads, 1, __ATOMIC_SEQ_CST);
}

/* In a handler: record who runs it.  pthread_getattr_np is not
   async-signal-safe; the helpers only interrupt code that holds no lock. */
static void sig_look(void)
{
  char here;
  pthread_attr_t a;
  void *base;
  size_t size;
  pthread_t s = pthread_self();
  sig_seen.self = s;
  sig_seen.value = pthread_getspecific(sig_key);
  sig_seen.known = -1;
  for (int i = 0; i < sig_nthreads; i++)
    if (pthread_equal(sig_threads[i].self, s))
      sig_seen.known = i;
  sig_seen.stack_ok = pthread_getattr_np(s, &a) == 0 && pthread_attr_getstack(&a, &base, &size) == 0 &&
                      (char *)&here >= (char *)base && (char *)&here < (char *)base + size;
  pthread_attr_destroy(&a);
  __atomic_add_fetch(&sig_seen.runs, 1, __ATOMIC_SEQ_CST);
}

/* In the thread a handler interrupted: it saw this very thread. */
static inline void sig_expect_self(const char *what, void *value)
{
  if (!pthread_equal(sig_seen.self, pthread_self()) || sig_seen.value != value || !sig_seen.stack_ok) {
    fprintf(stderr, "%s: the handler answered for another thread (self %s, value %s, stack %s)\n", what,
            pthread_equal(sig_seen.self, pthread_self()) ? "same" : "different",
            sig_seen.value == value ? "same" : "different", sig_seen.stack_ok ? "holds its frame" : "elsewhere");
    exit(1);
  }
  printf("%s: the handler sees the thread it interrupted\n", what);
}

/* Some registered thread, with its own value and (if stack) the stack the
   handler ran on. */
static inline void sig_expect_consistent(const char *what, int stack)
{
  int k = sig_seen.known;
  if (k < 0 || sig_seen.value != sig_threads[k].value || (stack && !sig_seen.stack_ok)) {
    fprintf(stderr, "%s: the handler's identity is inconsistent (known %d, value %s, stack %s)\n", what, k,
            k >= 0 && sig_seen.value == sig_threads[k].value ? "its own" : "another's",
            sig_seen.stack_ok ? "holds its frame" : "elsewhere");
    exit(1);
  }
  printf("%s: the handler sees one thread, consistently\n", what);
}
#endif
