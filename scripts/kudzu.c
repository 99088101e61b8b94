/* kudzu.c: the launcher: run a program with the preload shim.
 *
 *   kudzu [options] [--] COMMAND [ARGS...]
 *
 * Sets the KUDZU_* variables for the options given, puts libkudzu-preload.so
 * in front of LD_PRELOAD, and execs COMMAND (searched in PATH).  The library
 * is looked up next to the launcher first (../lib from its own directory, as
 * in the build tree and in an installed prefix), then at the path it was
 * installed to.
 *
 * Notes.
 * A. The numbers of the options are checked here, with the parsers
 *    libkudzu uses for the same variables (hub/parse.c), so a bad value
 *    stops the launcher with a message naming the option instead of being
 *    ignored later with a message naming the variable.
 * B. A program the shim cannot reach runs as it would without the launcher,
 *    with one line on stderr saying so (-q or KUDZU_QUIET=1 silences it):
 *    a static executable (no PT_INTERP: no dynamic loader reads
 *    LD_PRELOAD; static-pie included), one of another ELF class or machine
 *    (the loader refuses the library), one whose PT_INTERP names another
 *    loader than the launcher's own (another C library, such as musl: the
 *    shim, built for glibc, would not link there; LD_PRELOAD is left as it
 *    was for these two, or the loader would complain or fail), and a
 *    set-user-ID or set-group-ID one,
 *    or one with file capabilities, run by someone else (the kernel sets
 *    AT_SECURE: the loader ignores LD_PRELOAD paths, and the shim would
 *    ignore KUDZU_* anyway).  A script is judged by its interpreter (one
 *    level of "#!").  COMMAND is found in PATH as execvp finds it.
 * C. glibc registers each OS thread's rseq area (restartable sequences:
 *    the kernel keeps the running CPU there) in the thread's descriptor.
 *    A green thread with TLS of its own has a descriptor of its own, which
 *    the kernel never updates (hub/tls.c, note G), so the launcher turns
 *    the registration off (GLIBC_TUNABLES=glibc.pthread.rseq=0, in front
 *    of the user's tunables; left alone when the user set it): __rseq_size
 *    is then 0 in every thread, and a program that uses rseq itself falls
 *    back on the system calls, as on a kernel without it.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "kudzu.h"
#include "parse.h"

#ifndef KUDZU_INSTALL_LIBDIR
#define KUDZU_INSTALL_LIBDIR "/usr/local/lib"
#endif
#define PRELOAD_NAME "libkudzu-preload.so"

/* Note C: glibc's rseq registration off, unless the user chose. */
static void rseq_off(void)
{
  const char *old = getenv("GLIBC_TUNABLES");
  char *tunables;
  if (old && strstr(old, "glibc.pthread.rseq="))
    return;
  if (asprintf(&tunables, "glibc.pthread.rseq=0%s%s", old && *old ? ":" : "", old && *old ? old : "") >= 0)
    setenv("GLIBC_TUNABLES", tunables, 1);
}

static void usage(FILE *out)
{
  fprintf(out,
          "usage: kudzu [options] [--] COMMAND [ARGS...]\n"
          "Run COMMAND with its blocking calls turned into green-thread waits.\n"
          "\n"
          "options (each sets the environment variable next to it):\n"
          "  -p, --patch LIST      KUDZU_PATCH       families to intercept: all, io, poll,\n"
          "                                          sleep, thread, dns, proc, ipc, libc\n"
          "                                          (libc's own calls: stdio, popen,\n"
          "                                          syslog); -FAMILY removes one\n"
          "                                          (default: all)\n"
          "      --no-threads      KUDZU_PATCH=all,-thread   like patch_all(thread=False)\n"
          "  -s, --stack-size SIZE KUDZU_STACK_SIZE  default green-thread stack (e.g. 256k;\n"
          "                                          16k to 1t)\n"
          "  -d, --debug           KUDZU_DEBUG=1     log the shim's decisions on stderr\n"
          "      --stats           KUDZU_STATS=1     print call statistics at exit\n"
          "      --torture         KUDZU_TORTURE=1   yield in every interposed call (testing)\n"
          "  -m, --monitor SECONDS KUDZU_MONITOR     report a hub that has not run for that\n"
          "                                          long, with a backtrace (e.g. 0.1;\n"
          "                                          0.001 to 1000000)\n"
          "      --dump-signal SIG KUDZU_DUMP_SIGNAL on SIG (e.g. USR2), every hub dumps its\n"
          "                                          green threads with backtraces to stderr\n"
          "      --hubs N          KUDZU_HUBS        run the threads on N hubs, each on an\n"
          "                                          OS thread of its own (0, the default:\n"
          "                                          one per CPU)\n"
          "      --preempt SECONDS KUDZU_PREEMPT     a thread that computes that much CPU\n"
          "                                          time without waiting yields to the\n"
          "                                          others (default 0.01; 0: never;\n"
          "                                          0.001 to 10)\n"
          "  -q, --quiet           KUDZU_QUIET=1     do not say that a program runs unpatched\n"
          "  -h, --help            this text\n"
          "\n"
          "A static program, a set-user-ID one and one built for another architecture\n"
          "run unpatched, as without the launcher, with one line on stderr saying so.\n"
          "KUDZU_CRASH=short|all: whether a crash report lists every green thread (all).\n");
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

/* ---- Programs the shim cannot reach (note B) ----------------------------- */

/* The file execvp would run for name: name itself if it has a slash, else
   the first executable regular file of that name in PATH. */
static bool find_command(const char *name, char *out, size_t len)
{
  const char *path = getenv("PATH"), *p, *colon;
  struct stat st;
  if (strchr(name, '/'))
    return snprintf(out, len, "%s", name) < (int)len;
  if (!path)
    path = "/bin:/usr/bin";
  for (p = path;; p = colon + 1) {
    size_t n;
    colon = strchr(p, ':');
    n = colon ? (size_t)(colon - p) : strlen(p);
    if (snprintf(out, len, "%.*s%s%s", (int)n, p, n ? "/" : "", name) < (int)len &&
        access(out, X_OK) == 0 && stat(out, &st) == 0 && S_ISREG(st.st_mode))
      return true;
    if (!colon)
      return false;
  }
}

/* The file name of the dynamic loader named by the ELF file fd's
   PT_INTERP, in out; "" without one.  0, or -2 for an ELF file of another
   class or machine than the launcher's, -1 for what is not an ELF
   executable or cannot be read. */
static int elf_interp(int fd, char *out, size_t len)
{
  Elf64_Ehdr eh;
  Elf64_Phdr ph;
  if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG))
    return -1;
#if defined(__x86_64__)
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
#elif defined(__aarch64__)
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_AARCH64)
#else
  if (eh.e_ident[EI_CLASS] != ELFCLASS64)
#endif
    return -2;
  if ((eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof ph || eh.e_phnum > 4096)
    return -1;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    char path[PATH_MAX];
    const char *base;
    if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph)
      return -1;
    if (ph.p_type != PT_INTERP)
      continue;
    if (ph.p_filesz == 0 || ph.p_filesz >= sizeof path ||
        pread(fd, path, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz)
      return -1;
    path[ph.p_filesz] = 0;
    base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path; /* /lib or /lib64: the same loader */
    return snprintf(out, len, "%s", base) < (int)len ? 0 : -1;
  }
  *out = 0;
  return 0;
}

/* The name of the loader the launcher itself runs under: the shim is built
   for the same C library. */
static const char *own_loader(void)
{
  static char name[256];
  int fd;
  if (!name[0] && (fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)) >= 0) {
    if (elf_interp(fd, name, sizeof name) < 0)
      name[0] = 0;
    close(fd);
  }
  return name;
}

/* Why the loader will not preload the shim into the ELF file fd, or NULL
   (also for what is not ELF: the kernel or a shell will say). */
static const char *elf_unreachable(int fd)
{
  char interp[256];
  const char *own;
  int r = elf_interp(fd, interp, sizeof interp);
  if (r == -2)
    return "built for another architecture";
  if (r < 0)
    return NULL;
  if (!interp[0])
    return "statically linked";
  own = own_loader();
  if (*own && strcmp(interp, own))
    return "linked with another C library (its loader is not the launcher's)";
  return NULL;
}

/* Whether exec gives the file AT_SECURE for us: set-user-ID or -group-ID
   to someone else, or file capabilities, on a file system that honours
   them. */
static bool secure_exec(int fd, const struct stat *st)
{
  struct statvfs vfs;
  if (fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_NOSUID))
    return false;
  if ((st->st_mode & S_ISUID) && st->st_uid != getuid())
    return true;
  if ((st->st_mode & S_ISGID) && st->st_gid != getgid())
    return true;
  return fgetxattr(fd, "security.capability", NULL, 0) > 0;
}

/* Why the program at path will run unpatched, or NULL.  *drop: leave
   LD_PRELOAD alone (the loader would print its own complaint). */
static const char *unreachable(const char *path, bool *drop)
{
  char buf[PATH_MAX + 2], interp[PATH_MAX];
  const char *why = NULL;
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  *drop = false;
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  if (secure_exec(fd, &st)) {
    why = (st.st_mode & S_ISUID) ? "set-user-ID" : (st.st_mode & S_ISGID) ? "set-group-ID"
                                                                           : "run with file capabilities";
  } else if ((n = pread(fd, buf, sizeof buf - 1, 0)) > 2 && buf[0] == '#' && buf[1] == '!') {
    size_t b, e;
    buf[n] = 0;
    b = 2 + strspn(buf + 2, " \t");
    e = b + strcspn(buf + b, " \t\n");
    if (e > b && e - b < sizeof interp && buf[b] == '/') {
      int ifd;
      memcpy(interp, buf + b, e - b);
      interp[e - b] = 0;
      if ((ifd = open(interp, O_RDONLY | O_CLOEXEC)) >= 0) {
        if ((why = elf_unreachable(ifd))) {
          *drop = strcmp(why, "statically linked") != 0;
          why = *drop ? "a script whose interpreter the shim cannot load into"
                      : "a script whose interpreter is statically linked";
        }
        close(ifd);
      }
    }
  } else if ((why = elf_unreachable(fd))) {
    *drop = strcmp(why, "statically linked") != 0;
  }
  close(fd);
  return why;
}

/* Note A: check an option's value; exit 2 with a message if it is wrong. */
static void check_option(const char *option, const char *value, const char *why, const char *accepted)
{
  if (!why)
    return;
  fprintf(stderr, "kudzu: %s %s: %s (accepted: %s)\n", option, value, why, accepted);
  exit(2);
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {
      {"patch", required_argument, NULL, 'p'}, {"no-threads", no_argument, NULL, 'T'},
      {"stack-size", required_argument, NULL, 's'}, {"debug", no_argument, NULL, 'd'},
      {"stats", no_argument, NULL, 'S'},      {"torture", no_argument, NULL, 'X'},
      {"monitor", required_argument, NULL, 'm'}, {"dump-signal", required_argument, NULL, 'D'},
      {"quiet", no_argument, NULL, 'q'},      {"help", no_argument, NULL, 'h'},
      {"preempt", required_argument, NULL, 'P'}, {"hubs", required_argument, NULL, 'H'},
      {NULL, 0, NULL, 0},
  };
  char lib[PATH_MAX], prog[PATH_MAX], *preload;
  const char *old, *why, *quiet;
  bool drop = false;
  size_t size;
  double seconds;
  unsigned hubs;
  int c, sig;

  while ((c = getopt_long(argc, argv, "+p:s:dm:qh", opts, NULL)) != -1) {
    switch (c) {
    case 'p': setenv("KUDZU_PATCH", optarg, 1); break;
    case 'T': setenv("KUDZU_PATCH", "all,-thread", 1); break;
    case 's':
      check_option("--stack-size", optarg, kz__parse_size(optarg, KZ_STACK_MIN, KZ_STACK_MAX, &size),
                   "16k to 1t, " KZ__SIZE_FORM);
      setenv("KUDZU_STACK_SIZE", optarg, 1);
      break;
    case 'd': setenv("KUDZU_DEBUG", "1", 1); break;
    case 'S': setenv("KUDZU_STATS", "1", 1); break;
    case 'X': setenv("KUDZU_TORTURE", "1", 1); break;
    case 'm':
      check_option("--monitor", optarg,
                   kz__parse_seconds(optarg, KZ__MONITOR_MIN, KZ__MONITOR_MAX, &seconds),
                   "0.001 to 1000000 seconds");
      setenv("KUDZU_MONITOR", optarg, 1);
      break;
    case 'D':
      check_option("--dump-signal", optarg, kz__parse_signal(optarg, &sig),
                   KZ__SIGNAL_FORM);
      setenv("KUDZU_DUMP_SIGNAL", optarg, 1);
      break;
    case 'P':
      check_option("--preempt", optarg,
                   kz__parse_seconds(optarg, 0, KZ__PREEMPT_MAX, &seconds) ?:
                       (seconds > 0 && seconds < KZ__PREEMPT_MIN ? "out of range" : NULL),
                   "0, or 0.001 to 10 seconds");
      setenv("KUDZU_PREEMPT", optarg, 1);
      break;
    case 'H':
      check_option("--hubs", optarg, kz__parse_hubs(optarg, &hubs), KZ__HUBS_FORM);
      setenv("KUDZU_HUBS", optarg, 1);
      break;
    case 'q': setenv("KUDZU_QUIET", "1", 1); break;
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
  if (find_command(argv[optind], prog, sizeof prog) && (why = unreachable(prog, &drop))) {
    quiet = getenv("KUDZU_QUIET");
    if (!quiet || !*quiet || !strcmp(quiet, "0"))
      fprintf(stderr, "kudzu: %s is %s: it runs unpatched (without green threads)\n", argv[optind], why);
    if (drop) {
      execvp(argv[optind], argv + optind);
      goto failed;
    }
  }
  old = getenv("LD_PRELOAD");
  if (asprintf(&preload, "%s%s%s", lib, old && *old ? ":" : "", old && *old ? old : "") < 0)
    return 127;
  setenv("LD_PRELOAD", preload, 1);
  rseq_off();
  execvp(argv[optind], argv + optind);
failed:
  fprintf(stderr, "kudzu: cannot run %s: %s\n", argv[optind], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
