/* blocking_ipc.c MODE: a thread blocks in a call that waits in the kernel
 * on something nothing pollable announces (a file lock held by another
 * process, a System V semaphore or message, a POSIX message queue), and
 * the other threads must keep running meanwhile: the holder gives the
 * thing up only after the main thread has ticked while the call waits.  A
 * runtime that froze the OS thread in that call would never tick: the
 * test would hang.  The waiting thread announces the call right before
 * making it (under the launcher nothing runs in between).
 *
 *   flock fcntl ofd lockf   a lock another process holds
 *   semop msgrcv mq         a semaphore, a message, a queue message, given
 *                           by the main thread after its ticks
 *   fifo                    an open of a FIFO for reading, until the main
 *                           thread opens it for writing after its ticks
 *   eintr                   the main thread in flock, a handler without
 *                           SA_RESTART runs: EINTR, and no lock taken
 *   restart                 the same with SA_RESTART: the lock, after the
 *                           handlers ran
 *   cancel                  a thread in F_SETLKW is cancelled: it ends, and
 *                           the lock was not taken for it
 *   eintr_busy restart_busy eintr and restart while another thread exists
 *                           (parked in a read): under the launcher the call
 *                           then waits on a worker, alone on its own thread
 *   alone                   the main thread, the only one, waits in flock:
 *                           one OS thread, as natively (the call is made on
 *                           it, in the kernel, not handed to a worker)
 */
#include "ticks.h" /* os_threads */
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *mode;
static char path[64];
static atomic_int announced;
static int semid, msqid;
static mqd_t mq;
static char fifo[64];

/* Another process takes the lock of the file at path, says so on `ready`,
   and holds it until a byte arrives on `go`; sending SIGUSR1 to the parent
   every 20 ms meanwhile if `signals` is 1 (until the byte comes); if it is
   2, sending three, 20 ms apart, then letting go by itself. */
static pid_t holder(int *go_w, int signals)
{
  int ready[2], go[2];
  pid_t pid, parent = getpid();
  char c;
  CHECK(pipe(ready) == 0 && pipe(go) == 0);
  CHECK((pid = fork()) >= 0);
  if (pid == 0) {
    int fd = open(path, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fd < 0 || (!strcmp(mode, "fcntl") || !strcmp(mode, "lockf") ? fcntl(fd, F_SETLK, &fl)
                                                                     : flock(fd, LOCK_EX)) < 0)
      _exit(2);
    if (write(ready[1], "r", 1) != 1)
      _exit(3);
    if (signals == 2) { /* three handlers, then the lock goes with the process */
      for (int i = 0; i < 3; i++) {
        poll(NULL, 0, 20);
        kill(parent, SIGUSR1);
      }
      poll(NULL, 0, 20);
      _exit(0);
    }
    if (signals) {
      struct pollfd p = {.fd = go[0], .events = POLLIN};
      while (poll(&p, 1, 20) == 0)
        kill(parent, SIGUSR1);
    }
    _exit(read(go[0], &c, 1) == 1 ? 0 : 4); /* the lock goes with the process */
  }
  CHECK(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  close(ready[1]);
  close(go[0]);
  *go_w = go[1];
  return pid;
}

/* The waiting thread's call, by mode, on its own descriptor. */
static int take(void)
{
  int fd = open(path, O_RDWR), r;
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  struct sembuf down = {.sem_num = 0, .sem_op = -1};
  struct { long type; char text[8]; } m;
  char buf[64];
  CHECK(fd >= 0);
  atomic_store(&announced, 1);
  if (!strcmp(mode, "fcntl"))
    r = fcntl(fd, F_SETLKW, &fl);
  else if (!strcmp(mode, "ofd"))
    r = fcntl(fd, F_OFD_SETLKW, &fl);
  else if (!strcmp(mode, "lockf"))
    r = lockf(fd, F_LOCK, 0);
  else if (!strcmp(mode, "semop")) /* a stop signal (SIGSTOP, SIGCONT) fails them with EINTR */
    while ((r = semop(semid, &down, 1)) < 0 && errno == EINTR)
      ;
  else if (!strcmp(mode, "msgrcv")) {
    ssize_t n;
    while ((n = msgrcv(msqid, &m, sizeof m.text, 1, 0)) < 0 && errno == EINTR)
      ;
    r = n == 6 && !strcmp(m.text, "hello") ? 0 : -1;
  }
  else if (!strcmp(mode, "mq"))
    r = mq_receive(mq, buf, sizeof buf, NULL) == 6 && !strcmp(buf, "hello") ? 0 : -1;
  else if (!strcmp(mode, "fifo")) {
    int ff = open(fifo, O_RDONLY);
    r = ff >= 0 && read(ff, buf, 6) == 6 && !strcmp(buf, "hello") && close(ff) == 0 ? 0 : -1;
  } else
    r = flock(fd, LOCK_EX);
  return r;
}

static void *waiter(void *arg)
{
  (void)arg;
  return take() == 0 ? NULL : "the call failed";
}

static void *cancelled(void *arg)
{
  (void)arg;
  take();
  return "not cancelled";
}

static void on_usr1(int sig) { (void)sig; }

/* Tick five times 10 ms, as the thread in the call should let us. */
static void tick_while_waiting(void)
{
  while (!atomic_load(&announced))
    CHECK(usleep(1000) == 0);
  for (int i = 0; i < 5; i++)
    CHECK(usleep(10000) == 0);
}

static bool is_lock(void)
{
  return !strcmp(mode, "flock") || !strcmp(mode, "fcntl") || !strcmp(mode, "ofd") ||
         !strcmp(mode, "lockf");
}

/* A thread that reads one byte from the pipe *arg. */
static void *read_one(void *arg)
{
  char c;
  CHECK(read(*(int *)arg, &c, 1) == 1);
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t;
  void *r = "not joined";
  int go = -1, status, fd;
  pid_t pid = 0;
  struct mq_attr at = {.mq_maxmsg = 4, .mq_msgsize = 64};
  char qname[64];

  mode = argc > 1 ? argv[1] : "flock";
  snprintf(path, sizeof path, "/tmp/kudzu-blocking-%d", (int)getpid());
  snprintf(qname, sizeof qname, "/kudzu-blocking-%d", (int)getpid());
  snprintf(fifo, sizeof fifo, "/tmp/kudzu-fifo-%d", (int)getpid());
  CHECK((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
  CHECK(write(fd, "x", 1) == 1);

  if (!strcmp(mode, "alone")) {
    int lfd = open(path, O_RDWR);
    mode = "flock";
    pid = holder(&go, 2); /* lets go by itself, after three signals */
    signal(SIGUSR1, SIG_IGN);
    CHECK(lfd >= 0 && flock(lfd, LOCK_EX) == 0);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(os_threads() == 1);
    puts("alone: flock took the lock on the program's one OS thread");
  } else if (!strncmp(mode, "eintr", 5) || !strncmp(mode, "restart", 7)) {
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = !strncmp(mode, "restart", 7) ? SA_RESTART : 0};
    int lfd = open(path, O_RDWR), rc, idle[2];
    bool busy = strstr(mode, "_busy") != NULL;
    pthread_t other;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0 && lfd >= 0);
    if (busy) { /* another thread, parked in a read for the whole wait */
      CHECK(pipe(idle) == 0 && pthread_create(&other, NULL, read_one, &idle[0]) == 0);
      usleep(1000);
    }
    mode = "flock";
    pid = holder(&go, sa.sa_flags & SA_RESTART ? 2 : 1);
    if (sa.sa_flags & SA_RESTART) {
      /* the holder lets go after three signals have come and gone */
      CHECK(flock(lfd, LOCK_EX) == 0);
      puts("restart: flock went on after the handlers and took the lock");
    } else {
      rc = flock(lfd, LOCK_EX);
      CHECK(rc == -1 && errno == EINTR);
      CHECK(flock(lfd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK); /* not taken */
      CHECK(write(go, "g", 1) == 1);
      puts("eintr: flock failed with EINTR and took nothing");
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (busy)
      CHECK(write(idle[1], "x", 1) == 1 && pthread_join(other, NULL) == 0);
  } else if (!strcmp(mode, "cancel")) {
    mode = "fcntl"; /* F_SETLKW is a cancellation point (flock is not) */
    pid = holder(&go, 0);
    CHECK(pthread_create(&t, NULL, cancelled, NULL) == 0);
    tick_while_waiting();
    CHECK(pthread_cancel(t) == 0);
    CHECK(pthread_join(t, &r) == 0 && r == PTHREAD_CANCELED);
    CHECK(write(go, "g", 1) == 1);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK((pid = fork()) >= 0);
    if (pid == 0) { /* another process finds the file unlocked: nothing was taken */
      struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
      int check = open(path, O_RDWR);
      _exit(check >= 0 && fcntl(check, F_SETLK, &fl) == 0 ? 0 : 1);
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    puts("cancel: the thread in F_SETLKW was cancelled and took nothing");
  } else {
    if (!strcmp(mode, "semop"))
      CHECK((semid = semget(IPC_PRIVATE, 1, 0600)) >= 0);
    else if (!strcmp(mode, "msgrcv"))
      CHECK((msqid = msgget(IPC_PRIVATE, 0600)) >= 0);
    else if (!strcmp(mode, "mq"))
      CHECK((mq = mq_open(qname, O_RDWR | O_CREAT | O_EXCL, 0600, &at)) != (mqd_t)-1);
    else if (!strcmp(mode, "fifo"))
      CHECK(mkfifo(fifo, 0600) == 0);
    else
      CHECK(is_lock());
    if (is_lock())
      pid = holder(&go, 0);
    CHECK(pthread_create(&t, NULL, waiter, NULL) == 0);
    tick_while_waiting();
    if (is_lock()) {
      CHECK(write(go, "g", 1) == 1);
    } else if (!strcmp(mode, "semop")) {
      struct sembuf up = {.sem_num = 0, .sem_op = 1};
      CHECK(semop(semid, &up, 1) == 0);
    } else if (!strcmp(mode, "msgrcv")) {
      struct { long type; char text[8]; } m = {1, "hello"};
      CHECK(msgsnd(msqid, &m, 6, 0) == 0);
    } else if (!strcmp(mode, "fifo")) {
      int ff = open(fifo, O_WRONLY);
      CHECK(ff >= 0 && write(ff, "hello", 6) == 6 && close(ff) == 0);
      unlink(fifo);
    } else {
      CHECK(mq_send(mq, "hello", 6, 0) == 0);
    }
    CHECK(pthread_join(t, &r) == 0);
    CHECK(r == NULL);
    if (pid)
      CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (semid)
      semctl(semid, 0, IPC_RMID);
    if (msqid)
      msgctl(msqid, IPC_RMID, NULL);
    if (!strcmp(mode, "mq"))
      mq_unlink(qname);
    printf("%s: the other threads ran while the call waited, and it returned\n", mode);
  }
  unlink(path);
  return 0;
}
