/* parse.c: strict parsing of sizes, seconds and signals given as text
 * (parse.h).  Compiled into libkudzu and into the launcher: it uses nothing
 * but libc's string functions, never the shim's table.
 *
 * Notes.
 * A. strtoull and strtol accept a leading '-' and negate in unsigned
 *    arithmetic ("-1" is ULLONG_MAX), accept leading blanks, and base 0
 *    reads "010" as octal; a suffix shift can then wrap silently.  Sizes are
 *    therefore read digit by digit with overflow checks, and a suffix is
 *    applied only when the result still fits.
 * B. strtod reads "nan", "inf" and hexadecimal floats, and depends on the
 *    locale's decimal point.  Only [0-9.eE+-] characters are let through,
 *    which rules out the first three; kudzu's programs run in the "C" locale
 *    when they read the environment (before main, or libkudzu's first hub),
 *    and the launcher never calls setlocale.
 */
#include "parse.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Note A. */
const char *kz__parse_size(const char *s, size_t min, size_t max, size_t *out)
{
  size_t v = 0;
  unsigned shift = 0;
  const char *p = s;
  if (*p == '-')
    return "negative";
  if (*p < '0' || *p > '9')
    return "not a size";
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (SIZE_MAX - (size_t)(*p - '0')) / 10)
      return "out of range";
    v = v * 10 + (size_t)(*p - '0');
  }
  switch (*p) {
  case 'k': case 'K': shift = 10; p++; break;
  case 'm': case 'M': shift = 20; p++; break;
  case 'g': case 'G': shift = 30; p++; break;
  case 't': case 'T': shift = 40; p++; break;
  default: break;
  }
  if (*p)
    return "not a size";
  if (shift && v > SIZE_MAX >> shift)
    return "out of range";
  v <<= shift;
  if (v < min || v > max)
    return "out of range";
  *out = v;
  return NULL;
}

/* Note B. */
const char *kz__parse_seconds(const char *s, double min, double max, double *out)
{
  char *end;
  double v;
  if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
    return "not a number of seconds";
  errno = 0;
  v = strtod(s, &end);
  if (*end || end == s)
    return "not a number of seconds";
  if (v < 0)
    return "negative";
  if (errno == ERANGE || !(v >= min && v <= max))
    return "out of range";
  *out = v;
  return NULL;
}

_Static_assert(NSIG == 65, "KZ__SIGNAL_FORM names the highest signal number");

const char *kz__parse_signal(const char *s, int *out)
{
  static const struct {
    const char *name;
    int sig;
  } names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"USR1", SIGUSR1},
               {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH}, {"URG", SIGURG},
               {"PWR", SIGPWR},   {"INFO", SIGPWR}};
  const char *num = s;
  size_t n = 0;
  int base = 0;
  if (!strncmp(s, "SIG", 3))
    s += 3;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(s, names[i].name)) {
      *out = names[i].sig;
      return NULL;
    }
  if (!strncmp(s, "RTMIN", 5)) {
    if (s[5] && s[5] != '+')
      return "not a signal";
    num = s[5] ? s + 6 : "0";
    base = SIGRTMIN;
  }
  if (!*num || strspn(num, "0123456789") != strlen(num))
    return "not a signal";
  if (kz__parse_size(num, 0, NSIG, &n) || base + (int)n < 1 || base + (int)n >= NSIG)
    return "out of range";
  if (base + (int)n >= SIGRTMAX - 4 || (base + (int)n >= SIGRTMIN - 2 && base + (int)n < SIGRTMIN))
    return "out of range (libc and kudzu keep some real-time signals)"; /* SIGRTMAX-4: preempt.c; -3: worker.c note I; -2: monitor.c */
  if (base + (int)n == SIGKILL || base + (int)n == SIGSTOP)
    return "a signal that cannot be caught";
  *out = base + (int)n;
  return NULL;
}

const char *kz__parse_hubs(const char *s, unsigned *out)
{
  size_t n = 0;
  if (!*s || strspn(s, "0123456789") != strlen(s))
    return "not a number";
  if (kz__parse_size(s, 0, KZ__HUBS_MAX, &n))
    return "out of range";
  *out = (unsigned)n;
  return NULL;
}

const char *kz__size_text(size_t n, char buf[24])
{
  static const char *const suffix[] = {"", "k", "m", "g", "t"};
  int i = 0;
  while (n && n % 1024 == 0 && i < 4) {
    n /= 1024;
    i++;
  }
  snprintf(buf, 24, "%zu%s", n, suffix[i]);
  return buf;
}
