/* sig_segv_resume.c: a deliberate SIGSEGV, resumed through the ucontext as
 * a JVM does: a thread loads from address 0, its SA_SIGINFO handler finds
 * the thread it interrupted (pthread_self, pthread_getspecific, the stack
 * of pthread_getattr_np), and only then moves the instruction pointer past
 * the 3-byte load and puts a value in its destination register.  A handler
 * that finds another thread declines: the default action, as the JVM's
 * handler would chain to. */
#include "sig_identity.h"
#include <ucontext.h>
#include <unistd.h>

static void *expected_value;

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
  ucontext_t *uc = ucv;
  (void)sig;
  sig_look();
  if (si->si_addr != NULL || !pthread_equal(sig_seen.self, sig_threads[sig_nthreads - 1].self) ||
      sig_seen.value != expected_value) {
    static const char msg[] = "sig_segv_resume: the handler does not find its thread: declining\n";
    if (write(2, msg, sizeof msg - 1) < 0)
      _exit(2);
    signal(SIGSEGV, SIG_DFL);
    return; /* the fault repeats and kills the process */
  }
  uc->uc_mcontext.gregs[REG_RIP] += 3; /* movq (%rax), %rax is 48 8b 00 */
  uc->uc_mcontext.gregs[REG_RAX] = 42;
}

/* Load from address 0; the handler makes it read 42. */
static long faulting_load(void)
{
  long v = 0;
  __asm__ volatile(".byte 0x48, 0x8b, 0x00" /* movq (%rax), %rax */ : "+a"(v) : : "memory");
  return v;
}

static void fault_in(const char *who, void *value)
{
  char what[64];
  expected_value = value;
  CHECK(faulting_load() == 42);
  snprintf(what, sizeof what, "%s SIGSEGV", who);
  sig_expect_self(what, value);
}

static int tvalue;

static void *thread(void *arg)
{
  (void)arg;
  sig_register(&tvalue);
  fault_in("thread", &tvalue);
  return NULL;
}

int main(void)
{
  static int mvalue;
  struct sigaction sa;
  pthread_t t;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
  sig_setup();
  sig_register(&mvalue);
  fault_in("main", &mvalue);
  CHECK(pthread_create(&t, NULL, thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  return 0;
}
