/* kudzu.c: the launcher: run a program with the preload shim.
 *
 *   kudzu [options] [--] COMMAND [ARGS...]
 *
 * Sets the KUDZU_* variables for the options given, puts libkudzu-preload.so
 * in front of LD_PRELOAD, and execs COMMAND (searched in PATH).  The library
 * is looked up next to the launcher first (../lib from its own directory, as
 * in the build tree and in an installed prefix), then at the path it was
 * installed to.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KUDZU_INSTALL_LIBDIR
#define KUDZU_INSTALL_LIBDIR "/usr/local/lib"
#endif
#define PRELOAD_NAME "libkudzu-preload.so"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: kudzu [options] [--] COMMAND [ARGS...]\n"
          "Run COMMAND with its blocking calls turned into green-thread waits.\n"
          "\n"
          "options (each sets the environment variable next to it):\n"
          "  -p, --patch LIST      KUDZU_PATCH       families to intercept: all, io, poll,\n"
          "                                          sleep, thread, dns, proc, ipc; -FAMILY\n"
          "                                          removes one (default: all)\n"
          "      --no-threads      KUDZU_PATCH=all,-thread   like patch_all(thread=False)\n"
          "  -s, --stack-size SIZE KUDZU_STACK_SIZE  default green-thread stack (e.g. 256k)\n"
          "  -d, --debug           KUDZU_DEBUG=1     log the shim's decisions on stderr\n"
          "      --stats           KUDZU_STATS=1     print call statistics at exit\n"
          "      --torture         KUDZU_TORTURE=1   yield in every interposed call (testing)\n"
          "  -m, --monitor SECONDS KUDZU_MONITOR     report a hub that has not run for that\n"
          "                                          long, with a backtrace (e.g. 0.1)\n"
          "      --dump-signal SIG KUDZU_DUMP_SIGNAL on SIG (e.g. USR2), every hub dumps its\n"
          "                                          green threads with backtraces to stderr\n"
          "  -h, --help            this text\n"
          "\n"
          "A set-user-ID program ignores every KUDZU_* variable and runs unpatched.\n");
}

/* The preload library's path: ../lib next to this executable, else the
   install directory. */
static int find_preload(char *out, size_t len)
{
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    char *slash;
    self[n] = 0;
    if ((slash = strrchr(self, '/'))) {
      *slash = 0;
      int w = snprintf(out, len, "%s/../lib/%s", self, PRELOAD_NAME);
      if (w > 0 && (size_t)w < len && access(out, R_OK) == 0)
        return 0;
    }
  }
  int w = snprintf(out, len, "%s/%s", KUDZU_INSTALL_LIBDIR, PRELOAD_NAME);
  return w > 0 && (size_t)w < len && access(out, R_OK) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {
      {"patch", required_argument, NULL, 'p'}, {"no-threads", no_argument, NULL, 'T'},
      {"stack-size", required_argument, NULL, 's'}, {"debug", no_argument, NULL, 'd'},
      {"stats", no_argument, NULL, 'S'},      {"torture", no_argument, NULL, 'X'},
      {"monitor", required_argument, NULL, 'm'}, {"dump-signal", required_argument, NULL, 'D'},
      {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
  };
  char lib[PATH_MAX], *preload;
  const char *old;
  int c;

  while ((c = getopt_long(argc, argv, "+p:s:dm:h", opts, NULL)) != -1) {
    switch (c) {
    case 'p': setenv("KUDZU_PATCH", optarg, 1); break;
    case 'T': setenv("KUDZU_PATCH", "all,-thread", 1); break;
    case 's': setenv("KUDZU_STACK_SIZE", optarg, 1); break;
    case 'd': setenv("KUDZU_DEBUG", "1", 1); break;
    case 'S': setenv("KUDZU_STATS", "1", 1); break;
    case 'X': setenv("KUDZU_TORTURE", "1", 1); break;
    case 'm': setenv("KUDZU_MONITOR", optarg, 1); break;
    case 'D': setenv("KUDZU_DUMP_SIGNAL", optarg, 1); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  if (find_preload(lib, sizeof lib) < 0) {
    fprintf(stderr, "kudzu: cannot find %s next to the launcher or in %s\n", PRELOAD_NAME,
            KUDZU_INSTALL_LIBDIR);
    return 127;
  }
  old = getenv("LD_PRELOAD");
  if (asprintf(&preload, "%s%s%s", lib, old && *old ? ":" : "", old && *old ? old : "") < 0)
    return 127;
  setenv("LD_PRELOAD", preload, 1);
  execvp(argv[optind], argv + optind);
  fprintf(stderr, "kudzu: cannot run %s: %s\n", argv[optind], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
