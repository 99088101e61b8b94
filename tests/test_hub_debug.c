/* test_hub_debug.c: kz_dump's content: every green thread with its name,
 * state, what it waits on, and a symbolised backtrace that ends cleanly;
 * the monitor; fatal signals sent inside a hub end the process. */
#include <criterion/criterion.h>
#include <errno.h>
#include <kudzu.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) static void *sleeper_body(void *arg)
{
  kz_sleep(10);
  return NULL;
}

__attribute__((noinline)) static void *reader_body(void *arg)
{
  kz_wait_fd(*(int *)arg, KZ_READ, KZ_FOREVER);
  return NULL;
}

static char *dump_to_string(void)
{
  static char buf[65536];
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  cr_assert_eq(kz_dump(fileno(f)), 0);
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* The backtrace lines under the header line of green `name`. */
static const char *section(const char *dump, const char *name)
{
  char key[64];
  snprintf(key, sizeof key, "\"%s\"", name);
  const char *s = strstr(dump, key);
  cr_assert_not_null(s, "no green thread %s in:\n%s", name, dump);
  return s;
}

Test(debug, dump_lists_every_green_thread_with_backtraces)
{
  int p[2];
  cr_assert_eq(pipe(p), 0);
  struct kz_spawn_opts s = {.name = "sleeper"}, r = {.name = "reader"}, q = {.name = "queued"};
  kz_green_t a = kz_spawn_with(sleeper_body, NULL, &s);
  kz_green_t b = kz_spawn_with(reader_body, &p[0], &r);
  kz_yield();
  kz_green_t c = kz_spawn_with(sleeper_body, NULL, &q);
  char *d = dump_to_string();

  cr_assert(strstr(d, "4 green threads"), "%s", d);
  const char *ms = section(d, "main");
  cr_assert(strstr(ms, "running (current)"), "%s", d);

  const char *ss = section(d, "sleeper");
  cr_assert(!strncmp(ss + strlen("\"sleeper\" "), "blocked waiting on a timer", 26), "%s", d);
  const char *sbt = strstr(ss, "sleeper_body");
  cr_assert_not_null(sbt, "the sleeper's backtrace names its function:\n%s", d);
  cr_assert_lt(sbt, section(d, "reader"), "within its own section");
  cr_assert(strstr(ss, "kz_sleep"), "%s", d);

  const char *rs = section(d, "reader");
  char want[64];
  snprintf(want, sizeof want, "waiting on fd %d for read", p[0]);
  cr_assert(strstr(rs, want), "%s", d);
  cr_assert(strstr(rs, "reader_body"), "%s", d);

  const char *qs = section(d, "queued");
  cr_assert(strstr(qs, "pending"), "%s", d);
  cr_assert(strstr(qs, "(not started)"), "%s", d);

  /* Walks end at the green thread's entry, cleanly, not truncated. */
  const char *end = strstr(ss, "green_entry");
  cr_assert_not_null(end, "the walk reaches the entry:\n%s", d);
  const char *next_header = strstr(ss, "\ngreen ");
  const char *trunc = strstr(ss, "    ...");
  cr_assert(!trunc || (next_header && trunc > next_header), "walk truncated:\n%s", d);

  kz_cancel(a);
  kz_cancel(b);
  kz_cancel(c);
  kz_join(a, NULL, KZ_FOREVER);
  kz_join(b, NULL, KZ_FOREVER);
  kz_join(c, NULL, KZ_FOREVER);
}

static int dump_fds[3]; /* file, pipe read end, pipe write end */
static void dump_from_callback(void *arg)
{
  kz_dump(dump_fds[0]);
  (void)!write(dump_fds[2], "x", 1);
}

Test(debug, dump_from_a_hub_callback)
{
  FILE *f = tmpfile();
  char buf[8192];
  int p[2];
  cr_assert_eq(pipe(p), 0);
  dump_fds[0] = fileno(f);
  dump_fds[1] = p[0];
  dump_fds[2] = p[1];
  kz_call_soon(dump_from_callback, NULL);
  cr_assert_eq(kz_wait_fd(p[0], KZ_READ, 10.0), KZ_READ);
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  cr_assert(strstr(buf, "dumped from a hub callback"), "%s", buf);
  char want[64];
  snprintf(want, sizeof want, "\"main\" blocked waiting on fd %d for read", p[0]);
  cr_assert(strstr(buf, want), "%s", buf);
  fclose(f);
}

/* ---- The diagnostics thread (kz_monitor) --------------------------------- */

#include <math.h>
#include <signal.h>
#include <time.h>

Test(monitor, rejects_bad_arguments)
{
  errno = 0;
  cr_expect_eq(kz_monitor(1e-9, 0), -1, "a threshold below a millisecond");
  cr_expect_eq(errno, EINVAL);
  cr_expect_eq(kz_monitor(1e7, 0), -1, "a threshold above 1e6 seconds");
  cr_expect_eq(kz_monitor(__builtin_inf(), 0), -1, "an infinite threshold");
  errno = 0;
  cr_expect_eq(kz_monitor(NAN, 0), -1);
  cr_expect_eq(errno, EINVAL);
  errno = 0;
  cr_expect_eq(kz_monitor(0, SIGKILL), -1);
  cr_expect_eq(errno, EINVAL);
  errno = 0;
  cr_expect_eq(kz_monitor(0, SIGRTMAX - 2), -1, "the backtrace signal is the runtime's own");
  cr_expect_eq(errno, EINVAL);
  errno = 0;
  cr_expect_eq(kz_monitor(0, NSIG), -1);
  cr_expect_eq(errno, EINVAL);
  cr_expect_eq(kz_monitor(0, 0), 0, "everything off is always valid");
}

static double mono_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile unsigned long spin_sink;

/* Has the monitor's report, with a backtrace through the spinner, reached
   stderr (which stderr_of redirects to a file)? */
static bool spinner_reported(void)
{
  static char buf[16384];
  ssize_t n = pread(2, buf, sizeof buf - 1, 0);
  if (n <= 0)
    return false;
  buf[n] = 0;
  return strstr(buf, "monitored_spinner") != NULL;
}

/* Spins until the monitor has reported it, or 10 s: a loaded machine (or
   Valgrind, which runs one thread at a time) may keep the monitor thread
   off the CPU for a while, and the report is what the test waits for. */
__attribute__((noinline)) static void *monitored_spinner(void *arg)
{
  double end = mono_now() + 10;
  (void)arg;
  for (unsigned long i = 1; mono_now() < end; i++) {
    spin_sink++;
    if (!(i & 0xffff) && spinner_reported())
      break;
  }
  return NULL;
}

/* Redirects stderr to a temporary file around fn; returns what was written. */
static char *stderr_of(void *(*fn)(void *))
{
  static char buf[16384];
  FILE *f = tmpfile();
  int saved = dup(2);
  cr_assert_not_null(f);
  dup2(fileno(f), 2);
  cr_assert_eq(kz_run(fn, NULL, NULL), 0);
  cr_assert_eq(kz_monitor(0, 0), 0);
  dup2(saved, 2);
  close(saved);
  rewind(f);
  buf[fread(buf, 1, sizeof buf - 1, f)] = 0;
  fclose(f);
  return buf;
}

static void *spin_among_sleepers(void *arg)
{
  kz_green_t s, t;
  (void)arg;
  cr_assert_eq(kz_monitor(0.1, 0), 0);
  s = kz_spawn(sleeper_body, NULL);
  t = kz_spawn_with(monitored_spinner, NULL, &(struct kz_spawn_opts){.name = "cruncher"});
  cr_assert_neq(t, 0);
  cr_assert_eq(kz_join(t, NULL, KZ_FOREVER), 0);
  cr_assert_eq(kz_cancel(s), 0);
  kz_join(s, NULL, KZ_FOREVER);
  return NULL;
}

Test(monitor, reports_a_green_thread_that_never_yields)
{
  const char *err = stderr_of(spin_among_sleepers);
  cr_expect(strstr(err, "has not run for") != NULL, "no report in: %s", err);
  cr_expect(strstr(err, "blocked in green thread") && strstr(err, "\"cruncher\""),
            "the report does not name the green thread: %s", err);
  cr_expect(strstr(err, "monitored_spinner") != NULL, "no backtrace through the spinner: %s", err);
}

/* A generous threshold: only a hub that really stops running may be
   reported, not one whose OS thread a loaded machine paused for a moment. */
static void *yield_often(void *arg)
{
  double end = mono_now() + 1.0;
  (void)arg;
  cr_assert_eq(kz_monitor(0.5, 0), 0);
  while (mono_now() < end)
    kz_sleep(0.01);
  return NULL;
}

Test(monitor, quiet_while_the_hub_keeps_running)
{
  const char *err = stderr_of(yield_often);
  cr_expect_eq(strlen(err), 0, "unexpected report: %s", err);
}

/* ---- Fatal signals sent inside a hub (hub/debug.c, note B) --------------- */

/* Under AddressSanitizer its own handler was installed first, so the
   runtime's passes these signals to it (note C), and it reports and exits
   with 1, as the same program does natively under it. */
#ifdef __SANITIZE_ADDRESS__
#define DIES_OF(sig) .exit_code = 1
#else
#define DIES_OF(sig) .signal = sig
#endif

static void *raise_it(void *arg)
{
  raise((int)(intptr_t)arg);
  return NULL;
}

Test(fatal, raise_segv_in_kz_run_ends_the_process, DIES_OF(SIGSEGV))
{
  kz_run(raise_it, (void *)(intptr_t)SIGSEGV, NULL);
}

static void *raise_in_spawned(void *arg)
{
  kz_join(kz_spawn(raise_it, arg), NULL, KZ_FOREVER);
  return NULL;
}

Test(fatal, raise_sigbus_in_a_green_thread_ends_the_process, DIES_OF(SIGBUS))
{
  kz_run(raise_in_spawned, (void *)(intptr_t)SIGBUS, NULL);
}

static void *kill_process(void *arg)
{
  kill(getpid(), (int)(intptr_t)arg);
  kz_sleep(10); /* the signal arrives before this ends */
  return NULL;
}

Test(fatal, kill_sigill_from_a_green_thread_ends_the_process, .signal = SIGILL)
{
  kz_run(kill_process, (void *)(intptr_t)SIGILL, NULL);
}

/* ---- The crash report of a fault (hub/debug.c, note D): the other green
 * threads, those parked with the same stack listed once with a count ---- */

#include <sys/wait.h>

__attribute__((noinline)) static void *fault_among_many(void *arg)
{
  for (int i = 0; i < 100; i++)
    kz_spawn(sleeper_body, NULL);
  kz_yield(); /* all start, and park */
  *(volatile int *)(uintptr_t)arg = 1;
  return NULL;
}

Test(fatal, fault_report_lists_other_green_threads_grouped_by_stack)
{
#ifdef __SANITIZE_ADDRESS__
  cr_skip_test("AddressSanitizer's handler comes first and reports instead (note C)");
#endif
  static char err[1 << 20];
  int p[2], status;
  ssize_t n, got = 0;
  size_t greens = 0;
  pid_t pid;
  cr_assert_eq(pipe(p), 0);
  pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    kz_run(fault_among_many, NULL, NULL);
    _exit(0);
  }
  close(p[1]);
  while ((n = read(p[0], err + got, sizeof err - 1 - (size_t)got)) > 0)
    got += n;
  err[got] = 0;
  close(p[0]);
  waitpid(pid, &status, 0);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x: %s", status, err);
  cr_assert(strstr(err, "kudzu: fatal SIGSEGV (fault at 0x0) in green thread 1 \"kz_run\""), "%s", err);
  cr_assert(strstr(err, "fault_among_many+0x"), "no backtrace of the fault: %s", err);
  for (const char *s = err; (s = strstr(s, "\ngreen ")); s++)
    greens++;
  cr_assert_eq(greens, 2, "%zu green threads listed, not 2 (main, and one of the sleepers): %s", greens,
               err);
  cr_assert(strstr(err, "\" blocked waiting on a timer (and 99 more with this stack)\n"),
            "the 100 sleepers are not one entry with a count: %s", err);
  cr_assert(strstr(err, "\ngreen 0 \"main\" blocked waiting to join green 1\n"), "no main: %s", err);
  cr_assert(strstr(err, " sleeper_body+0x"), "the others' backtraces miss their function: %s", err);
}
