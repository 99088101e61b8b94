/* sig_raise.c: a handler for a signal a thread raises itself (raise, and
 * pthread_kill of pthread_self) runs in that thread: pthread_self,
 * pthread_equal, pthread_getspecific and pthread_getattr_np's stack answer
 * for it, pthread_setspecific in the handler sets the thread's own value,
 * and a blocking call in the handler (a sleep, a pipe's write and read)
 * simply works. */
#include "sig_identity.h"
#include <unistd.h>

static int mark; /* what handlers store under sig_key2 */

static void on_signal(int sig)
{
  int p[2];
  char c = 0;
  (void)sig;
  sig_look();
  pthread_setspecific(sig_key2, &mark);
  usleep(1000);
  if (pipe(p) == 0) {
    if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1 || c != 'x')
      sig_seen.stack_ok = 0; /* reported as a failure */
    close(p[0]);
    close(p[1]);
  }
}

static void raise_both(const char *who, void *value)
{
  char what[64];
  snprintf(what, sizeof what, "%s raise", who);
  CHECK(raise(SIGUSR1) == 0);
  sig_expect_self(what, value);
  snprintf(what, sizeof what, "%s pthread_kill(self)", who);
  CHECK(pthread_kill(pthread_self(), SIGUSR2) == 0);
  sig_expect_self(what, value);
  CHECK(pthread_getspecific(sig_key2) == &mark);
  CHECK(pthread_setspecific(sig_key2, NULL) == 0);
}

static int tvalue;

static void *thread(void *arg)
{
  (void)arg;
  sig_register(&tvalue);
  raise_both("thread", &tvalue);
  return NULL;
}

int main(void)
{
  static int mvalue;
  struct sigaction sa;
  pthread_t t;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0 && sigaction(SIGUSR2, &sa, NULL) == 0);
  sig_setup();
  sig_register(&mvalue);
  CHECK(pthread_create(&t, NULL, thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(pthread_getspecific(sig_key2) == NULL); /* the thread's handler set the thread's */
  raise_both("main", &mvalue);
  return 0;
}
