#!/usr/bin/env bash
# A program with thread-local variables of its own, where the runtime cannot
# give each green thread its own, has its threads run as OS threads: it
# behaves as natively, and says so in one line on stderr
# (preload/thread.c, note L).  Here malloc's thread cache is switched off,
# so the runtime cannot find the malloc state its green threads would share
# (hub/tls.c, note E).  Without that, the same program's threads are green.
. "$(dirname "$0")/lib.sh"
PROG=${TLS_VARS:?path to tests/helpers/tls_vars}
native=$("$PROG" 2>&1) || fail "natively: exit $?: $native"
GLIBC_TUNABLES=glibc.malloc.tcache_count=0 "$KZ" "$PROG" > "$tmp/out" 2> "$tmp/err" || fail "under kudzu: exit $?: $(cat "$tmp/out" "$tmp/err")"
[ "$(cat "$tmp/out")" = "$native" ] || fail "output differs: $(cat "$tmp/out") / $native"
[ "$(wc -l < "$tmp/err")" -eq 1 ] &&
  grep -Eq '^kudzu: .*tls_vars has thread-local variables: its threads run as OS threads' "$tmp/err" ||
  fail "stderr is not the one line expected: $(cat "$tmp/err")"
"$KZ" --stats "$PROG" > "$tmp/out" 2> "$tmp/err" || fail "green: exit $?: $(cat "$tmp/out" "$tmp/err")"
grep -q "; 4 green threads spawned" "$tmp/err" || fail "the threads are not green: $(cat "$tmp/err")"
echo PASS
