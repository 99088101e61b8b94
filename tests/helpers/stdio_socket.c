/* stdio_socket.c: stdio over a socket (fdopen + getline), whose reads libc
 * makes internally, never fails with EAGAIN under the runtime. */
#include "check.h"
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
  int sv[2], st;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    for (int i = 0; i < 5; i++) {
      char line[32];
      int n = snprintf(line, sizeof line, "line %d\n", i);
      struct timespec ts = {0, 30000000};
      nanosleep(&ts, NULL); /* the reader finds the socket empty in between */
      if (write(sv[1], line, (size_t)n) != n)
        _exit(1);
    }
    _exit(0);
  }
  close(sv[1]);
  FILE *f = fdopen(sv[0], "r");
  CHECK(f != NULL);
  char *line = NULL;
  size_t cap = 0;
  int count = 0;
  while (getline(&line, &cap, f) > 0) {
    char want[32];
    snprintf(want, sizeof want, "line %d\n", count++);
    CHECK(!strcmp(line, want));
  }
  CHECK(!ferror(f));
  CHECK(count == 5);
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  free(line);
  fclose(f);
  puts("ok");
  return 0;
}
