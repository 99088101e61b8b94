/* thread_preempt.c: threads that compute without calling anything still
 * let the others run, as the kernel's scheduler makes sure natively.
 *
 *   spin     a thread spins on a flag that the main thread sets after a
 *            sleep;
 *   fair     three spinning threads and the main thread, polling, all make
 *            progress;
 *   gil      CPython's interpreter lock: the holder computes until the
 *            other asks for the lock, which it does when its 5 ms timed
 *            wait ends; 20 hand-overs;
 *   libc     a thread that spends its time in libc (snprintf, malloc,
 *            memcpy) is stopped by the main thread's flag;
 *   clock    a thread that reads the clock in a loop (the vDSO) is stopped
 *            by the main thread's flag;
 *   stdio    a thread holds a stream's lock while it spins; another waits
 *            for the lock in fputs; the main thread's flag lets both end;
 *   mask     a spinning thread blocks SIGUSR1; the main thread blocks it,
 *            unblocks it, and takes two SIGUSR1 in between sleeps: the
 *            OS thread's mask stays what the threads' masks say;
 *   fork     a forked child runs "spin" (its hub starts without a timer);
 *   idle     while two threads sleep, the OS thread the main one runs on is
 *            not woken: at most 5 context switches in 300 ms (a slice
 *            timer on the wall clock would wake it 60 times).
 *
 * Each prints "<case>: ok" and exits 0.  "latency" (not run by default, for
 * scripts/bench_preempt) prints how late the main thread's 100 sleeps of
 * 1 ms end, at worst and on average, while a thread spins. */
#include "check.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void sleep_ms(int ms)
{
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0)
    CHECK(errno == EINTR);
}

/* Spin without a single call until stop is set; the iterations made. */
static void *spinner(void *arg)
{
  atomic_long *count = arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed))
    atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
  return NULL;
}

/* Run fn(arg) in a thread until the main thread, after sleeping ms, sets
   stop. */
static void run_stopped(void *(*fn)(void *), void *arg, int ms)
{
  pthread_t t;
  atomic_store(&stop, 0);
  CHECK(pthread_create(&t, NULL, fn, arg) == 0);
  sleep_ms(ms);
  atomic_store(&stop, 1);
  CHECK(pthread_join(t, NULL) == 0);
}

static void case_spin(void)
{
  atomic_long n = 0;
  run_stopped(spinner, &n, 30);
  CHECK(n > 0);
}

static void case_fair(void)
{
  enum { K = 3 };
  pthread_t t[K];
  atomic_long n[K];
  double t0 = mono();
  bool all = false;
  atomic_store(&stop, 0);
  for (int i = 0; i < K; i++) {
    atomic_init(&n[i], 0);
    CHECK(pthread_create(&t[i], NULL, spinner, &n[i]) == 0);
  }
  while (!all && mono() - t0 < 20) {
    sleep_ms(5);
    all = true;
    for (int i = 0; i < K; i++)
      all = all && atomic_load(&n[i]) > 0;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < K; i++)
    CHECK(pthread_join(t[i], NULL) == 0);
  CHECK(all);
}

/* The lock: held or not, and a request to let go (CPython's gil_drop_request). */
static struct {
  pthread_mutex_t m;
  pthread_cond_t c;
  bool held;
  atomic_int drop;
  int handovers;
  atomic_int finished; /* threads done: the last one is never asked */
} gil = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0, 0};

static void gil_take(void)
{
  pthread_mutex_lock(&gil.m);
  while (gil.held) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 5000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
    if (pthread_cond_timedwait(&gil.c, &gil.m, &until) == ETIMEDOUT && gil.held)
      atomic_store(&gil.drop, 1); /* ask the holder */
  }
  gil.held = true;
  gil.handovers++;
  pthread_mutex_unlock(&gil.m);
}

static void gil_drop(void)
{
  pthread_mutex_lock(&gil.m);
  gil.held = false;
  atomic_store(&gil.drop, 0);
  pthread_cond_signal(&gil.c);
  pthread_mutex_unlock(&gil.m);
}

/* Hold the lock and compute until asked to let go, 10 times. */
static void *gil_thread(void *arg)
{
  (void)arg;
  for (int i = 0; i < 10; i++) {
    gil_take();
    while (!atomic_load_explicit(&gil.drop, memory_order_relaxed) &&
           !atomic_load_explicit(&gil.finished, memory_order_relaxed))
      ;
    gil_drop();
  }
  atomic_fetch_add(&gil.finished, 1);
  return NULL;
}

static void case_gil(void)
{
  pthread_t a, b;
  CHECK(pthread_create(&a, NULL, gil_thread, NULL) == 0);
  CHECK(pthread_create(&b, NULL, gil_thread, NULL) == 0);
  CHECK(pthread_join(a, NULL) == 0);
  CHECK(pthread_join(b, NULL) == 0);
  CHECK(gil.handovers == 20);
}

static void *libc_worker(void *arg)
{
  char buf[4096];
  unsigned long sum = 0;
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    char *p = malloc(8192);
    CHECK(p);
    snprintf(buf, sizeof buf, "%lu %s %g", sum, "libc", (double)sum / 3);
    memcpy(p, buf, sizeof buf);
    memcpy(p + 4096, p, 4096);
    sum += (unsigned char)p[5000];
    free(p);
  }
  return (void *)sum;
}

static void case_libc(void) { run_stopped(libc_worker, NULL, 50); }

static void *clock_reader(void *arg)
{
  struct timespec ts;
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed))
    clock_gettime(CLOCK_MONOTONIC, &ts);
  return NULL;
}

static void case_clock(void) { run_stopped(clock_reader, NULL, 50); }

static FILE *devnull;
static atomic_int locked, wrote;

static void *stdio_holder(void *arg)
{
  (void)arg;
  flockfile(devnull);
  atomic_store(&locked, 1);
  while (!atomic_load_explicit(&stop, memory_order_relaxed))
    ;
  CHECK(!atomic_load(&wrote)); /* the writer waited for the lock */
  funlockfile(devnull);
  return NULL;
}

static void *stdio_writer(void *arg)
{
  (void)arg;
  CHECK(fputs("line\n", devnull) >= 0);
  atomic_store(&wrote, 1);
  return NULL;
}

static void case_stdio(void)
{
  pthread_t h, w;
  CHECK((devnull = fopen("/dev/null", "w")));
  atomic_store(&stop, 0);
  CHECK(pthread_create(&h, NULL, stdio_holder, NULL) == 0);
  while (!atomic_load(&locked))
    sleep_ms(1);
  CHECK(pthread_create(&w, NULL, stdio_writer, NULL) == 0);
  sleep_ms(30);
  atomic_store(&stop, 1);
  CHECK(pthread_join(h, NULL) == 0);
  CHECK(pthread_join(w, NULL) == 0);
  CHECK(atomic_load(&wrote));
  fclose(devnull);
}

static atomic_int usr1;
static void on_usr1(int sig)
{
  (void)sig;
  atomic_fetch_add(&usr1, 1);
}

static void *masked_spinner(void *arg)
{
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
  return spinner(arg);
}

/* Wait (sleeping) until usr1 reaches n. */
static void await_usr1(int n)
{
  double t0 = mono();
  while (atomic_load(&usr1) < n && mono() - t0 < 20)
    sleep_ms(2);
  CHECK(atomic_load(&usr1) == n);
}

static void case_mask(void)
{
  pthread_t t;
  atomic_long n = 0;
  sigset_t s;
  struct sigaction sa = {.sa_handler = on_usr1};
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  atomic_store(&stop, 0);
  CHECK(pthread_create(&t, NULL, masked_spinner, &n) == 0);
  CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0); /* every thread blocks it */
  sleep_ms(30);
  CHECK(pthread_sigmask(SIG_UNBLOCK, &s, NULL) == 0); /* the main thread takes it */
  CHECK(kill(getpid(), SIGUSR1) == 0);
  await_usr1(1);
  sleep_ms(30); /* the spinner is preempted and resumed meanwhile */
  CHECK(kill(getpid(), SIGUSR1) == 0);
  await_usr1(2);
  atomic_store(&stop, 1);
  CHECK(pthread_join(t, NULL) == 0);
}

static void case_fork(void)
{
  int status;
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    case_spin();
    case_fair();
    _exit(0);
  }
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void latency(void)
{
  pthread_t t;
  atomic_long n = 0;
  double worst = 0, sum = 0;
  atomic_store(&stop, 0);
  CHECK(pthread_create(&t, NULL, spinner, &n) == 0);
  for (int i = 0; i < 100; i++) {
    double t0 = mono(), late;
    sleep_ms(1);
    late = mono() - t0 - 0.001;
    sum += late;
    worst = late > worst ? late : worst;
  }
  atomic_store(&stop, 1);
  CHECK(pthread_join(t, NULL) == 0);
  printf("late_max_ms\t%.3f\nlate_mean_ms\t%.3f\n", worst * 1e3, sum * 10);
}

/* Context switches of the OS thread that runs the caller, from
   /proc/thread-self/status (under the launcher: the hub's OS thread). */
static long ctxt_switches(void)
{
  char line[256];
  long n = 0, v;
  FILE *f = fopen("/proc/thread-self/status", "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
        sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
      n += v;
  fclose(f);
  return n;
}

static void *sleeper(void *arg)
{
  (void)arg;
  sleep_ms(400);
  return NULL;
}

static void case_idle(void)
{
  pthread_t t;
  long before, after;
  CHECK(pthread_create(&t, NULL, sleeper, NULL) == 0);
  sleep_ms(20); /* the sleeper is asleep */
  before = ctxt_switches();
  sleep_ms(300);
  after = ctxt_switches();
  CHECK(pthread_join(t, NULL) == 0);
  if (after - before > 5)
    fprintf(stderr, "%ld context switches while idle\n", after - before);
  CHECK(after - before <= 5);
}

static const struct {
  const char *name;
  void (*run)(void);
} cases[] = {{"spin", case_spin}, {"fair", case_fair},   {"gil", case_gil},   {"libc", case_libc}, {"clock", case_clock},
             {"stdio", case_stdio}, {"mask", case_mask}, {"fork", case_fork}, {"idle", case_idle}};

int main(int argc, char **argv)
{
  if (argc > 1 && !strcmp(argv[1], "latency")) {
    latency();
    return 0;
  }
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
      continue;
    cases[i].run();
    printf("%s: ok\n", cases[i].name);
    fflush(stdout);
  }
  return 0;
}
