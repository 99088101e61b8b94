#!/usr/bin/env bash
# A fatal signal ends the process natively and under the launcher with the
# same status (tests/helpers/fatal.c): sent from outside, sent by the
# program (kill, raise, from the main thread or another), a real fault in a
# thread (which under the launcher is a green thread: the crash report comes
# first, naming it), and a program's own handler that declines and chains
# to the one it replaced.  Core dumps are on, written in a scratch
# directory: the status compared includes whether a core was dumped.
. "$(dirname "$0")/lib.sh"
FATAL=${FATAL:?path to tests/helpers/fatal}
ulimit -c unlimited 2>/dev/null || ulimit -c 0
cd "$tmp"

# status CMD...: "signal N" (with " core" when it dumped one) or "exit N"
# for how CMD ended (stderr to $tmp/err).
status() {
  python3 - "$@" 2> "$tmp/err" <<'PY'
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
_, st = os.waitpid(p.pid, 0)
if os.WIFSIGNALED(st):
    print(f"signal {os.WTERMSIG(st)}" + (" core" if os.WCOREDUMP(st) else ""))
else:
    print(f"exit {os.WEXITSTATUS(st)}")
PY
  rm -f core core.*
}

# killed CMD...: start CMD, wait for its "ready", send $sig from outside.
killed() {
  python3 - "$sig" "$@" 2> "$tmp/err" <<'PY'
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
line = p.stdout.readline()
if line != b"ready\n":
    print(f"no ready line: {line!r}"); p.kill(); sys.exit(0)
os.kill(p.pid, int(sys.argv[1]))
_, st = os.waitpid(p.pid, 0)
if os.WIFSIGNALED(st):
    print(f"signal {os.WTERMSIG(st)}" + (" core" if os.WCOREDUMP(st) else ""))
else:
    print(f"exit {os.WEXITSTATUS(st)}")
PY
  rm -f core core.*
}

# same DESCRIPTION FN ARGS...: FN natively and under the launcher agree, and
# end with the signal expected ($want).
same() {
  local what=$1 fn=$2 native kudzu
  shift 2
  native=$($fn "$@"); cp "$tmp/err" "$tmp/native.err"
  kudzu=$($fn "$KZ" "$@")
  [ "${native% core}" = "signal $want" ] || fail "$what natively: $native, not signal $want: $(cat "$tmp/native.err")"
  [ "$kudzu" = "$native" ] || fail "$what under kudzu: $kudzu, natively $native: $(cat "$tmp/err")"
  echo "ok: $what: $kudzu"
}

# 1. Sent: from outside, by kill from another thread, by raise from the main
#    thread and from another, by a shell to itself.
for name in SEGV BUS ILL FPE ABRT; do
  sig=$(kill -l "$name"); want=$sig
  same "kill -$name from outside" killed "$FATAL" wait
  same "kill -$name from a thread" status "$FATAL" thread-kill "$sig"
  same "raise($name)" status "$FATAL" raise "$sig"
  same "raise($name) in a thread" status "$FATAL" thread-raise "$sig"
  same "sh: kill -$name \$\$" status sh -c "kill -$name \$\$; echo alive"
  [ ! -s "$tmp/err" ] || fail "a sent signal made a crash report: $(cat "$tmp/err")"
done

# 2. Real faults in a thread: the report names the green thread, lists the
#    other one, and comes before the end.
want=$(kill -l SEGV)
same "stack overflow in a thread" status "$FATAL" overflow
grep -q 'kudzu: stack overflow in green thread [0-9]* "deep"' "$tmp/err" || fail "no overflow report: $(cat "$tmp/err")"
grep -q 'recurse+0x' "$tmp/err" || fail "the overflow report has no backtrace: $(cat "$tmp/err")"
same "stack overflow of the main thread" status "$FATAL" main-overflow
grep -q 'kudzu: stack overflow in green thread [0-9]* "main" (fault at 0x' "$tmp/err" ||
  fail "no overflow report for the main thread: $(cat "$tmp/err")"
# one hub: the sleeper is parked in its read before the faulty thread runs
# (on two hubs the two start together; section 2b covers two hubs)
KUDZU_HUBS=1 same "NULL write in a thread" status "$FATAL" null
grep -q 'kudzu: fatal SIGSEGV (fault at 0x0) in green thread [0-9]* "faulty"' "$tmp/err" ||
  fail "no report of the fault: $(cat "$tmp/err")"
grep -q 'write_through_null+0x' "$tmp/err" || fail "the report has no backtrace: $(cat "$tmp/err")"
grep -q '^green [0-9]* "sleeper" blocked waiting on fd [0-9]* for read' "$tmp/err" ||
  fail "the report does not list the other green threads: $(cat "$tmp/err")"
grep -q '^    ([0-9]* frames in kudzu)' "$tmp/err" && grep -q ' sleeper+0x' "$tmp/err" ||
  fail "the other green threads' backtraces do not reach the program's frames: $(cat "$tmp/err")"
KUDZU_CRASH=short same "NULL write in a thread, KUDZU_CRASH=short" status "$FATAL" null
grep -q 'write_through_null+0x' "$tmp/err" || fail "no backtrace with KUDZU_CRASH=short: $(cat "$tmp/err")"
! grep -q '"sleeper"' "$tmp/err" || fail "KUDZU_CRASH=short lists the other threads: $(cat "$tmp/err")"
KUDZU_CRASH=every status "$KZ" "$FATAL" null > /dev/null
grep -q 'ignoring KUDZU_CRASH=every (short or all)' "$tmp/err" || fail "a bad KUDZU_CRASH is not said: $(cat "$tmp/err")"
want=$(kill -l FPE)
same "division by zero in a thread" status "$FATAL" divide
grep -q 'kudzu: fatal SIGFPE (fault at 0x[0-9a-f]*) in green thread [0-9]* "faulty"' "$tmp/err" ||
  fail "no report of the division: $(cat "$tmp/err")"

# 2b. Several hubs (--hubs 2): the report lists every hub's green threads,
#     each hub headed with its OS thread, the faulting one said, the other
#     hub's running thread interrupted where it computes (it never waits:
#     the report must not wait for it to), and ends once.
want=$(kill -l SEGV)
KUDZU_HUBS=2 same "NULL write in a thread while another hub computes" status "$FATAL" busy-null
grep -q 'kudzu: fatal SIGSEGV (fault at 0x0) in green thread [0-9]* "faulty"' "$tmp/err" ||
  fail "--hubs 2: no report of the fault: $(cat "$tmp/err")"
[ "$(grep -c '^kudzu: hub of OS thread [0-9]* "[^"]*"' "$tmp/err")" -eq 2 ] ||
  fail "--hubs 2: not two hub headings: $(cat "$tmp/err")"
[ "$(grep -c '^kudzu: hub of OS thread [0-9]* "[^"]*" (the faulting one), ' "$tmp/err")" -eq 1 ] ||
  fail "--hubs 2: the faulting hub is not said once: $(cat "$tmp/err")"
grep -q '^kudzu: hub of OS thread [0-9]* "kudzu-hub"' "$tmp/err" || fail "--hubs 2: no extra hub: $(cat "$tmp/err")"
[ "$(grep '^kudzu: hub of OS thread' "$tmp/err" | sed 's/^kudzu: hub of OS thread \([0-9]*\).*/\1/' | sort -u | wc -l)" -eq 2 ] ||
  fail "--hubs 2: the two headings name the same OS thread: $(cat "$tmp/err")"
for name in sleeper busy; do
  [ "$(grep -c "^green [0-9]* \"$name\" " "$tmp/err")" -eq 1 ] || fail "--hubs 2: \"$name\" not listed once: $(cat "$tmp/err")"
done
[ "$(grep -c ' main+0x' "$tmp/err")" -eq 1 ] || fail "--hubs 2: the main thread not listed once: $(cat "$tmp/err")"
grep -q '^green [0-9]* "busy" running' "$tmp/err" && grep -q ' compute_without_end+0x' "$tmp/err" ||
  fail "--hubs 2: the computing thread is not shown where it computes: $(cat "$tmp/err")"
grep -q ' sleeper+0x' "$tmp/err" || fail "--hubs 2: no backtrace of the sleeper: $(cat "$tmp/err")"
[ "$(grep -c '^kudzu: end of the crash report$' "$tmp/err")" -eq 1 ] || fail "--hubs 2: no single end: $(cat "$tmp/err")"
KUDZU_HUBS=2 KUDZU_CRASH=short same "NULL write, --hubs 2, KUDZU_CRASH=short" status "$FATAL" busy-null
! grep -q '"sleeper"\|"busy"\|^kudzu: hub of' "$tmp/err" || fail "KUDZU_CRASH=short lists other threads: $(cat "$tmp/err")"

# 3. The program's own handler declines and chains to the previous one.
want=$(kill -l SEGV)
same "a declining handler, NULL write" status "$FATAL" chain-null
grep -q 'kudzu: fatal SIGSEGV (fault at 0x0) in green thread [0-9]* "faulty"' "$tmp/err" ||
  fail "no report through the program's handler: $(cat "$tmp/err")"
for name in SEGV BUS; do
  sig=$(kill -l "$name"); want=$sig
  same "a declining handler, raise($name)" status "$FATAL" chain-raise "$sig"
done
echo PASS
