#!/usr/bin/env bash
# echo_check.sh: the echo demos' test.  Starts one echo server (the command
# line after the options), drives it with the project's load generator, and
# checks that every reply verified, that the server stayed within MAX_THREADS
# OS threads the whole time the connections were open, and that SIGINT stops
# it with status 0 and the line "stopped".
#
#   echo_check.sh LOAD CONNS MAX_THREADS SERVER [ARGS...]
#
# LOAD is bench/echo_load; MAX_THREADS 0 means no bound (native threads).
set -u
load=$1 conns=$2 max_threads=$3; shift 3
out=$(mktemp); server=
cleanup() { [ -n "$server" ] && kill -9 "$server" 2>/dev/null; rm -f "$out" "$out.load"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server output:"; cat "$out"; exit 1; }

"$@" > "$out" 2>&1 & server=$!
for _ in $(seq 1 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on 127.0.0.1://p' "$out")
[ -n "$port" ] || fail "the server did not say where it listens"

# A fixed number of requests, so the run ends when the work is done.
"$load" -p "$port" -c "$conns" -n $((conns * 50)) -d 30 -t 1 > "$out.load" 2>&1 & load_pid=$!
most=0
while kill -0 "$load_pid" 2>/dev/null; do
  n=$(ls "/proc/$server/task" 2>/dev/null | wc -l)
  [ "$n" -gt "$most" ] && most=$n
  sleep 0.02
done
wait "$load_pid" || fail "the load generator failed: $(cat "$out.load")"
echo "load: $(cat "$out.load"); most OS threads seen: $most"
if [ "$max_threads" -gt 0 ] && [ "$most" -gt "$max_threads" ]; then
  fail "$most OS threads with $conns connections (at most $max_threads allowed)"
fi
# SIGINT stops it; a second one covers the one race the demo documents
# (echo_threaded.c, note C: a signal just before accept() blocks).
kill -INT "$server"
for i in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.05
  [ "$i" -eq 40 ] && kill -INT "$server"; done
kill -0 "$server" 2>/dev/null && fail "still running 5 s after SIGINT"
wait "$server"; status=$?; server=
[ "$status" -eq 0 ] || fail "exit status $status after SIGINT"
grep -q '^stopped' "$out" || fail "no 'stopped' line after SIGINT"
echo PASS
