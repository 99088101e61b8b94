/* tutorial_cancel.c: cancellation on Ctrl-C.  The asyncio original:
 *
 *   tasks = [ensure_future(do_some_work(1)), ensure_future(do_some_work(2)),
 *            ensure_future(do_some_work(2))]
 *   try: loop.run_until_complete(asyncio.wait(tasks))
 *   except KeyboardInterrupt as e:
 *       print(asyncio.Task.all_tasks())
 *       for task in asyncio.Task.all_tasks(): print(task.cancel())
 *       loop.stop(); loop.run_forever()
 *   finally: loop.close()
 *   print("Time:", now() - start)
 *
 * The tasks here sleep 100, 200 and 200 s: press Ctrl-C.  The SIGINT
 * handler writes to a pipe; a green thread waiting on the pipe lists the
 * live green threads and cancels the tasks, whose sleeps fail with
 * ECANCELED.  --interrupt-after S raises SIGINT itself after S seconds.
 *
 *   tutorial_cancel [--interrupt-after S]
 */
#include <kudzu.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int sigpipe[2];
static uint64_t tasks[3];

static void on_sigint(int sig)
{
  int saved = errno;
  if (write(sigpipe[1], "i", 1) < 0) { /* nothing to do: the pipe is ours */
  }
  errno = saved;
}

static void *do_some_work(void *arg)
{
  intptr_t x = (intptr_t)arg;
  printf("Waiting: %ld\n", (long)x);
  if (kz_sleep((double)x * 100) == -1 && errno == ECANCELED)
    return NULL;
  return arg;
}

/* Wait for Ctrl-C, then cancel the tasks (the except KeyboardInterrupt). */
static void *interrupt_watcher(void *arg)
{
  kz_green_t all[16];
  char name[16];
  size_t n;
  if (kz_wait_fd(sigpipe[0], KZ_READ, KZ_FOREVER) < 0)
    return NULL;
  printf("KeyboardInterrupt\n");
  n = kz_list(all, 16);
  for (size_t i = 0; i < n && i < 16; i++) {
    kz_get_name(all[i], name, sizeof name);
    printf("  %s: %s\n", name, kz_state_name(kz_state(all[i])));
  }
  for (int i = 0; i < 3; i++)
    printf("%s\n", kz_future_cancel(tasks[i]) == 0 ? "True" : "False");
  return NULL;
}

static void raise_sigint(void *arg) { raise(SIGINT); }

static void *demo(void *arg)
{
  double start = kz_now(), after = *(double *)arg;
  struct kz_spawn_opts o = {0};
  char names[3][16];
  intptr_t xs[3] = {1, 2, 2};
  kz_green_t w = kz_spawn(interrupt_watcher, NULL);
  kz_set_name(w, "watcher");
  for (int i = 0; i < 3; i++) {
    snprintf(names[i], sizeof names[i], "Task-%d", i + 1);
    o.name = names[i];
    tasks[i] = kz_spawn_future(do_some_work, (void *)xs[i], &o);
  }
  if (after > 0)
    kz_call_later(after, raise_sigint, NULL);
  kz_wait(tasks, 3, KZ_ALL_COMPLETED, KZ_FOREVER);
  for (int i = 0; i < 3; i++) {
    printf("Task-%d: %s\n", i + 1, kz_state_name(kz_future_state(tasks[i])));
    kz_future_free(tasks[i]);
  }
  kz_join(w, NULL, KZ_FOREVER);
  printf("Time: %.1f\n", kz_now() - start);
  return NULL;
}

int main(int argc, char **argv)
{
  double after = 0;
  struct sigaction sa;
  if (argc == 3 && !strcmp(argv[1], "--interrupt-after"))
    after = atof(argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (pipe(sigpipe) != 0)
    return 1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  return kz_run(demo, &after, NULL) == 0 ? 0 : 1;
}
