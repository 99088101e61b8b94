#!/usr/bin/env bash
# CPython's own test_signal passes under the launcher as natively: the
# signal waits and pending signals (PendingSignalsTests: sigwait,
# sigwaitinfo, sigtimedwait, sigwait in a thread while another sends the
# signal, pthread_kill, pthread_sigmask, sigpending), wake-up descriptors,
# interrupted calls, and the stress tests, where a thread raising signals
# in a loop holds the interpreter lock (preload/init.c, note D).
# Skipped (exit 77) when Python's test package is not installed.
. "$(dirname "$0")/lib.sh"
py=/usr/bin/python3 # Debian's, with libpython3.11-testsuite (scripts/deps.sh)
"$py" -c 'import test.test_signal' 2>/dev/null || { echo "SKIP: no test.test_signal"; exit 77; }
run() { "$@" "$py" -m test test_signal > "$tmp/out" 2>&1; }
run env || { cat "$tmp/out"; fail "natively"; }
grep -q "[Rr]esult: SUCCESS" "$tmp/out" || { cat "$tmp/out"; fail "natively: no success"; }
run timeout -s KILL 240 "$KZ" || { cat "$tmp/out"; fail "under the launcher"; }
grep -q "[Rr]esult: SUCCESS" "$tmp/out" || { cat "$tmp/out"; fail "under the launcher: no success"; }
grep -E "^Total tests" "$tmp/out"
echo PASS
