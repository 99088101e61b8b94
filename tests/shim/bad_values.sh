#!/usr/bin/env bash
# Sizes, times and signals given to the launcher or in KUDZU_* variables
# are checked (hub/parse.c): a bad option stops the launcher with status 2
# and a message naming it; a bad variable is ignored with a message naming
# it, and the program runs (with threads, so the default stack is used).
# Never a crash.
. "$(dirname "$0")/lib.sh"
PROG=${UNPATCHED:?path to tests/helpers/unpatched}

# option OPTION VALUE PHRASE: refused, status 2, one line naming both.
option() {
  "$KZ" "$1" "$2" -- "$PROG" > "$tmp/out" 2> "$tmp/err"; rc=$?
  [ $rc -eq 2 ] || fail "$1 $2: exit $rc, not 2: $(cat "$tmp/err")"
  [ ! -s "$tmp/out" ] || fail "$1 $2: the program ran"
  grep -qF "kudzu: $1 $2: $3" "$tmp/err" || fail "$1 $2: no message saying \"$3\": $(cat "$tmp/err")"
  echo "ok: $1 $2 refused: $(cat "$tmp/err")"
}

# variable NAME VALUE PHRASE: said and ignored; the program runs patched.
variable() {
  env "$1=$2" "$KZ" -- "$PROG" > "$tmp/out" 2> "$tmp/err" || fail "$1=$2: exit $?: $(cat "$tmp/err")"
  grep -q '^a second thread ran$' "$tmp/out" && grep -q '^shim loaded: yes$' "$tmp/out" ||
    fail "$1=$2: the program did not run patched: $(cat "$tmp/out")"
  grep -qF "kudzu: ignoring $1=$2: $3" "$tmp/err" || fail "$1=$2: no message saying \"$3\": $(cat "$tmp/err")"
  echo "ok: $1=$2 ignored: $(cat "$tmp/err")"
}

for v in -1 99999999999999999999 18014398509481984k 17592186044416m 17179869184g 2t 1k; do
  case $v in -*) why=negative ;; *) why="out of range" ;; esac
  option --stack-size "$v" "$why"
  variable KUDZU_STACK_SIZE "$v" "$why"
done
for v in lots 64kb 0x10000 ""; do
  [ -z "$v" ] || variable KUDZU_STACK_SIZE "$v" "not a size"
  option --stack-size "$v" "not a size"
done
for v in nan inf -inf abc 0x1p3 ""; do
  option --monitor "$v" "not a number of seconds"
  [ -z "$v" ] || [ "$v" = -inf ] || variable KUDZU_MONITOR "$v" "not a number of seconds"
done
for v in -1 -0.5; do option --monitor "$v" negative; variable KUDZU_MONITOR "$v" negative; done
for v in 1e-9 0.0001 1e7 1e999; do option --monitor "$v" "out of range"; variable KUDZU_MONITOR "$v" "out of range"; done
for v in 0 65 99999999999999999999 RTMIN+26 RTMIN+28; do
  option --dump-signal "$v" "out of range"
  variable KUDZU_DUMP_SIGNAL "$v" "out of range"
done
for v in 9 19; do
  option --dump-signal "$v" "a signal that cannot be caught"
  variable KUDZU_DUMP_SIGNAL "$v" "a signal that cannot be caught"
done
for v in RTMIN+-5 RTMIN+x -3 FOO; do
  option --dump-signal "$v" "not a signal"
  variable KUDZU_DUMP_SIGNAL "$v" "not a signal"
done
for v in nan inf abc ""; do
  option --preempt "$v" "not a number of seconds"
  [ -z "$v" ] || variable KUDZU_PREEMPT "$v" "not a number of seconds"
done
for v in -1 -0.001; do option --preempt "$v" negative; variable KUDZU_PREEMPT "$v" negative; done
for v in 1e-9 0.0001 11 1e999; do option --preempt "$v" "out of range"; variable KUDZU_PREEMPT "$v" "out of range"; done

# Good values pass, and the largest stack works.
"$KZ" --stack-size 1t --monitor 1e6 --dump-signal RTMIN+1 --preempt 0.001 -- "$PROG" > "$tmp/out" 2> "$tmp/err" ||
  fail "good values refused: $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] || fail "good values made the launcher talk: $(cat "$tmp/err")"
grep -q '^a second thread ran$' "$tmp/out" || fail "a 1t stack: $(cat "$tmp/out")"
echo PASS
