/* sig_mask_server.c: the shape of a DNS server's signal handling.  The main
 * thread blocks every signal, creates worker threads that block every
 * signal too, then unblocks SIGTERM and waits for it; another process (a
 * forked child) sends SIGTERM.  Each thread has its own mask, so the
 * workers' masks do not keep SIGTERM from the main thread.  Three rounds,
 * one per way the main thread waits:
 *   - pause, with a handler (SIGTERM unblocked with pthread_sigmask);
 *   - sigsuspend with a mask that unblocks SIGTERM, with a handler;
 *   - sigwait for SIGTERM, after unblocking it (Linux takes it).
 * Each round ends with the workers stopped and joined; the program exits 0.
 */
#include "sig_sender.h"
#include <pthread.h>
#include <semaphore.h>

#define NWORKERS 3

static volatile sig_atomic_t got_term;
static void on_term(int sig) { got_term = sig; }

static int stop_pipe[2];

static void *worker(void *arg)
{
  sigset_t all;
  char c;
  (void)arg;
  sigfillset(&all);
  CHECK(pthread_sigmask(SIG_BLOCK, &all, NULL) == 0);
  CHECK(read(stop_pipe[0], &c, 1) == 0); /* until the round ends (EOF) */
  return NULL;
}

static void round_of(const char *how)
{
  pthread_t w[NWORKERS];
  sigset_t all, term, old;
  struct sender s;
  int sig;
  sigfillset(&all);
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  got_term = 0;
  CHECK(pipe(stop_pipe) == 0);
  CHECK(pthread_sigmask(SIG_BLOCK, &all, &old) == 0);
  for (int i = 0; i < NWORKERS; i++)
    CHECK(pthread_create(&w[i], NULL, worker, NULL) == 0);
  sender_start(&s, SIGTERM);
  if (strcmp(how, "pause") == 0) {
    CHECK(pthread_sigmask(SIG_UNBLOCK, &term, NULL) == 0);
    while (!got_term)
      CHECK(pause() == -1 && errno == EINTR);
  } else if (strcmp(how, "sigsuspend") == 0) {
    sigset_t wait_mask = all;
    sigdelset(&wait_mask, SIGTERM);
    while (!got_term)
      CHECK(sigsuspend(&wait_mask) == -1 && errno == EINTR);
  } else {
    CHECK(pthread_sigmask(SIG_UNBLOCK, &term, NULL) == 0);
    CHECK(sigwait(&term, &sig) == 0 && sig == SIGTERM);
    got_term = sig;
  }
  CHECK(pthread_sigmask(SIG_BLOCK, &term, NULL) == 0);
  sender_stop(&s);
  close(stop_pipe[1]);
  for (int i = 0; i < NWORKERS; i++)
    CHECK(pthread_join(w[i], NULL) == 0);
  close(stop_pipe[0]);
  while (sigtimedwait(&term, NULL, &(struct timespec){0, 0}) == SIGTERM)
    ; /* the sender's last ones */
  CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
  printf("%s: SIGTERM reached the main thread, whose workers block every signal\n", how);
}

int main(void)
{
  struct sigaction sa;
  setvbuf(stdout, NULL, _IONBF, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
  round_of("pause");
  round_of("sigsuspend");
  round_of("sigwait");
  return 0;
}
