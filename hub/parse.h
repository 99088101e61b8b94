/* parse.h: the numbers kudzu reads from text (the KUDZU_* environment
 * variables and the launcher's options), parsed strictly and checked against
 * a range.  libkudzu and the launcher share hub/parse.c, so both accept and
 * refuse the same values and say why in the same words.
 *
 * Each parser returns NULL and stores the value, or returns a short static
 * phrase saying what is wrong ("negative", "out of range", ...) for the
 * caller to put after the variable's or option's name; *out is untouched.
 * None allocates, none reads the locale (a decimal point is always '.').
 */
#ifndef KZ_PARSE_H
#define KZ_PARSE_H

#include <stddef.h>

#ifndef KZ_INTERNAL
#define KZ_INTERNAL __attribute__((visibility("default")))
#endif

/* Seconds accepted by KUDZU_MONITOR, --monitor and kz_monitor: from a
   millisecond (a shorter threshold would keep the monitor thread busy) to
   about eleven days. */
#define KZ__MONITOR_MIN 0.001
#define KZ__MONITOR_MAX 1e6

/* Seconds of CPU time in a preemption slice (KUDZU_PREEMPT, --preempt), 0
   aside (off): from a millisecond (each slice costs a signal) to 10 s. */
#define KZ__PREEMPT_MIN 0.001
#define KZ__PREEMPT_MAX 10.0

/* A size in bytes: decimal digits with an optional suffix k, m, g or t
   (either case; powers of 1024), between min and max inclusive.  Say
   KZ__SIZE_FORM after the range in messages. */
#define KZ__SIZE_FORM "bytes, or with a k, m, g or t suffix"
KZ_INTERNAL const char *kz__parse_size(const char *s, size_t min, size_t max, size_t *out);

/* Seconds: a decimal number ("0.1", "2", "1e-3"; not hexadecimal, infinite
   or NaN), between min and max inclusive. */
KZ_INTERNAL const char *kz__parse_seconds(const char *s, double min, double max, double *out);

/* A signal a program may catch and kudzu does not keep for itself: a name
   ("USR2", "SIGUSR2", "HUP", ...), "RTMIN" or "RTMIN+N", or a number.
   Which numbers kz_monitor then refuses is its business (EINVAL). */
KZ_INTERNAL const char *kz__parse_signal(const char *s, int *out);
#define KZ__SIGNAL_FORM "a name such as USR2 or RTMIN+N, or a number from 1 to 64"

/* A number of hubs (KUDZU_HUBS, --hubs, kz_set_hubs): decimal digits, 0
   (one per CPU the process may run on) or 1 to KZ__HUBS_MAX.  Say
   KZ__HUBS_FORM after "accepted: " in messages. */
#define KZ__HUBS_MAX 256
#define KZ__HUBS_FORM "0 for one per CPU, or 1 to 256"
KZ_INTERNAL const char *kz__parse_hubs(const char *s, unsigned *out);

/* "16k", "1t", "131072": bytes written the short way, for messages. */
KZ_INTERNAL const char *kz__size_text(size_t n, char buf[24]);

#endif
