/* procs.c: fork, waitpid, system and exit behave as without the runtime:
 * exit statuses, a child that sleeps, atexit handlers and stdio flushing. */
#include "check.h"
#include <sys/wait.h>
#include <unistd.h>

static void bye(void) { printf("atexit ran\n"); }

int main(void)
{
  int st;
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    usleep(50000);
    _exit(7);
  }
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7);
  st = system("exit 3");
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
  FILE *p = popen("echo from-popen", "r");
  char buf[64] = {0};
  CHECK(p && fgets(buf, sizeof buf, p) && !strcmp(buf, "from-popen\n"));
  CHECK(pclose(p) == 0);
  atexit(bye);
  printf("no newline at the end, flushed by exit");
  return 0;
}
