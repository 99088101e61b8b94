/* test_hub_stack.c: green-thread stacks: guard pages catch overflows (and the
 * report names the green thread), canaries where guards ran out, reuse of
 * stacks, sizes, and 100,000 concurrent green threads on default sysctls. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile char sink;

#pragma GCC diagnostic ignored "-Winfinite-recursion"
__attribute__((noinline)) static int recurse(int depth)
{
  volatile char frame[256];
  frame[0] = (char)depth;
  sink = frame[0];
  return recurse(depth + 1) + frame[1];
}

static void *overflow(void *arg) { return (void *)(intptr_t)recurse(0); }

Test(stack, overflow_hits_the_guard_page, .signal = SIGSEGV)
{
  struct kz_spawn_opts o = {.name = "deep"};
  kz_join(kz_spawn_with(overflow, NULL, &o), NULL, KZ_FOREVER);
}

/* Run body in a child with guard mode `mode`; return its stderr and status. */
static int run_child(const char *mode, void (*body)(void), char *err, size_t len)
{
  int p[2], status;
  pid_t pid;
  ssize_t n, got = 0;
  cr_assert_eq(pipe(p), 0);
  pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    if (mode)
      setenv("KUDZU_STACK_GUARD", mode, 1);
    body();
    _exit(0);
  }
  close(p[1]);
  while ((n = read(p[0], err + got, len - 1 - (size_t)got)) > 0)
    got += n;
  err[got] = 0;
  close(p[0]);
  waitpid(pid, &status, 0);
  return status;
}

static void overflow_named(void)
{
  struct kz_spawn_opts o = {.name = "recursor"};
  kz_join(kz_spawn_with(overflow, NULL, &o), NULL, KZ_FOREVER);
}

static void check_report(const char *mode)
{
  char err[16384];
  int status = run_child(mode, overflow_named, err, sizeof err);
  cr_assert(WIFSIGNALED(status), "child must die of a signal (mode %s)", mode);
  cr_assert_eq(WTERMSIG(status), SIGSEGV);
  cr_assert(strstr(err, "stack overflow in green thread"), "report missing: %s", err);
  cr_assert(strstr(err, "\"recursor\""), "report does not name the green thread: %s", err);
  cr_assert(strstr(err, "recurse"), "report has no backtrace through recurse(): %s", err);
}

Test(stack, overflow_report_names_green_thread_madvise_guard) { check_report("madvise"); }
Test(stack, overflow_report_names_green_thread_mprotect_guard) { check_report("mprotect"); }

/* Overflow a small stack by less than a page: in canary mode the page below
   the stack is ordinary memory, and the canary at the bottom catches it.  The
   frame calls nothing while it is below the stack: a lazily bound call would
   need kilobytes more (the dynamic linker saves the vector registers). */
__attribute__((noinline)) static void big_frame(void)
{
  volatile char buf[KZ_STACK_MIN + 512];
  for (size_t i = 0; i < sizeof buf; i++) /* no call: nothing may run below */
    buf[i] = 0x5a;
  sink = buf[100];
}

static void *small_overflow(void *arg)
{
  big_frame();
  kz_yield(); /* switching out checks the canary */
  return NULL;
}

static void canary_overflow(void)
{
  struct kz_spawn_opts o = {.name = "canaried", .stack_size = KZ_STACK_MIN};
  kz_join(kz_spawn_with(small_overflow, NULL, &o), NULL, KZ_FOREVER);
}

Test(stack, canary_catches_overflow_when_guards_are_unavailable)
{
  char err[16384];
  int status = run_child("canary", canary_overflow, err, sizeof err);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x, stderr: %s", status, err);
  cr_assert(strstr(err, "\"canaried\""), "report does not name the green thread: %s", err);
}

static volatile uintptr_t where_last;
static void *where(void *arg)
{
  volatile char here = 0;
  where_last = (uintptr_t)&here + here;
  return (void *)where_last;
}

Test(stack, stacks_are_reused)
{
  void *a, *b;
  cr_assert_eq(kz_join(kz_spawn(where, NULL), &a, KZ_FOREVER), 0);
  cr_assert_eq(kz_join(kz_spawn(where, NULL), &b, KZ_FOREVER), 0);
  cr_assert_eq(a, b, "the second green thread got the first one's warm stack");
}

static void *use_stack(void *arg)
{
  size_t n = (size_t)arg;
  volatile char *buf = __builtin_alloca(n);
  buf[0] = 1;
  buf[n - 1] = 2;
  return (void *)(uintptr_t)(buf[0] + buf[n - 1]);
}

Test(stack, sizes)
{
  struct kz_spawn_opts big = {.stack_size = 4 << 20};
  struct kz_spawn_opts tiny = {.stack_size = KZ_STACK_MIN - 1};
  void *r;
  cr_assert_eq(kz_join(kz_spawn_with(use_stack, (void *)(size_t)(3 << 20), &big), &r, KZ_FOREVER), 0);
  cr_assert_eq((uintptr_t)r, 3);
  errno = 0;
  cr_assert_eq(kz_spawn_with(use_stack, NULL, &tiny), 0);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_set_default_stack_size(1024), -1);
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(kz_get_default_stack_size(), 128 * 1024);
}

Test(stack, default_size_from_environment)
{
  setenv("KUDZU_STACK_SIZE", "1m", 1);
  cr_assert_eq(kz_get_default_stack_size(), 1 << 20);
  void *r;
  cr_assert_eq(kz_join(kz_spawn(use_stack, (void *)(size_t)(900 << 10)), &r, KZ_FOREVER), 0);
  cr_assert_eq((uintptr_t)r, 3);
}

/* ---- many green threads ---- */

static int started, finished;
static void *idle(void *arg)
{
  started++;
  kz_sleep(0.2);
  finished++;
  return NULL;
}

static size_t map_count(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  size_t n = 0;
  int c;
  while ((c = fgetc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static void many(int n)
{
  kz_green_t *g = malloc(sizeof *g * (size_t)n);
  cr_assert_not_null(g);
  started = finished = 0;
  for (int i = 0; i < n; i++) {
    g[i] = kz_spawn(idle, NULL);
    cr_assert_neq(g[i], 0, "spawn %d failed: %s", i, strerror(errno));
  }
  kz_yield(); /* all start and sleep */
  cr_assert_eq(started, n);
  cr_assert_eq(kz_list(NULL, 0), (size_t)n + 1);
  cr_assert_lt(map_count(), 65530u);
  for (int i = 0; i < n; i++)
    cr_assert_eq(kz_join(g[i], NULL, KZ_FOREVER), 0);
  cr_assert_eq(finished, n);
  free(g);
}

Test(stack, hundred_thousand_concurrent_green_threads, .timeout = 120) { many(100000); }

Test(stack, hundred_thousand_beyond_mprotect_guard_budget, .timeout = 120)
{
  char err[16384];
  /* In a child: its stderr must say once that guards ran out. */
  static void (*body)(void) = NULL;
  (void)body;
  int p[2], status;
  pid_t pid;
  ssize_t n, got = 0;
  cr_assert_eq(pipe(p), 0);
  if ((pid = fork()) == 0) {
    dup2(p[1], 2);
    close(p[0]);
    setenv("KUDZU_STACK_GUARD", "mprotect", 1);
    many(100000);
    _exit(0);
  }
  close(p[1]);
  while ((n = read(p[0], err + got, sizeof err - 1 - (size_t)got)) > 0)
    got += n;
  err[got] = 0;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %#x %s", status, err);
  const char *first = strstr(err, "no more guard pages");
  cr_assert_not_null(first, "no notice that guard pages ran out: %s", err);
  cr_assert_null(strstr(first + 1, "no more guard pages"), "the notice must be said once: %s", err);
}

/* ---- Sizes out of range: EINVAL from the API, a message from the
 * environment, never a wrapped size (stack.c, note F) ---- */

Test(stack, sizes_beyond_the_maximum_are_einval)
{
  const size_t bad[] = {KZ_STACK_MAX + 1, SIZE_MAX - 4095, SIZE_MAX - 4094, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    struct kz_spawn_opts o = {.stack_size = bad[i]};
    errno = 0;
    cr_assert_eq(kz_set_default_stack_size(bad[i]), -1, "size %zu accepted", bad[i]);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(kz_spawn_with(use_stack, NULL, &o), 0, "spawn with %zu accepted", bad[i]);
    cr_assert_eq(errno, EINVAL);
  }
  cr_assert_eq(kz_get_default_stack_size(), 128 * 1024);
  void *r;
  cr_assert_eq(kz_join(kz_spawn(use_stack, (void *)(size_t)(64 << 10)), &r, KZ_FOREVER), 0);
  cr_assert_eq((uintptr_t)r, 3);
}

Test(stack, spawn_delay_nan_or_beyond_the_maximum_is_einval)
{
  const double bad[] = {__builtin_nan(""), __builtin_inf(), KZ_TIMEOUT_MAX * 2};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    struct kz_spawn_opts o = {.delay = bad[i]};
    errno = 0;
    cr_assert_eq(kz_spawn_with(use_stack, (void *)(size_t)64, &o), 0, "delay %g accepted", bad[i]);
    cr_assert_eq(errno, EINVAL);
  }
}

/* KUDZU_STACK_SIZE=value is refused with a message containing why, and
   the default size is used: a green thread runs. */
static void env_size_refused(const char *value, const char *why)
{
  char err[1024];
  int p[2], saved = dup(2);
  ssize_t n;
  size_t got;
  void *r;
  cr_assert_eq(pipe(p), 0);
  dup2(p[1], 2);
  setenv("KUDZU_STACK_SIZE", value, 1);
  got = kz_get_default_stack_size(); /* read once per process: here */
  dup2(saved, 2);
  close(p[1]);
  n = read(p[0], err, sizeof err - 1);
  err[n > 0 ? n : 0] = 0;
  cr_assert_eq(got, 128 * 1024, "KUDZU_STACK_SIZE=%s gave %zu", value, got);
  cr_assert(strstr(err, "ignoring KUDZU_STACK_SIZE=") && strstr(err, why),
            "KUDZU_STACK_SIZE=%s: no message saying \"%s\": %s", value, why, err);
  cr_assert_eq(kz_join(kz_spawn(use_stack, (void *)(size_t)(64 << 10)), &r, KZ_FOREVER), 0);
  cr_assert_eq((uintptr_t)r, 3);
}

Test(stack, env_size_negative) { env_size_refused("-1", "negative"); }
Test(stack, env_size_overflowing) { env_size_refused("99999999999999999999", "out of range"); }
Test(stack, env_size_k_suffix_overflowing) { env_size_refused("18014398509481984k", "out of range"); }
Test(stack, env_size_m_suffix_overflowing) { env_size_refused("17592186044416m", "out of range"); }
Test(stack, env_size_g_suffix_overflowing) { env_size_refused("17179869184g", "out of range"); }
Test(stack, env_size_above_the_maximum) { env_size_refused("2t", "out of range"); }
Test(stack, env_size_below_the_minimum) { env_size_refused("1k", "out of range"); }
Test(stack, env_size_not_a_number) { env_size_refused("lots", "not a size"); }
Test(stack, env_size_with_junk) { env_size_refused("64kb", "not a size"); }
