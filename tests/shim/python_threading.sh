#!/usr/bin/env bash
# Python's socketserver.ThreadingTCPServer (threading_echo.py: one Python
# thread per connection) serves 200 concurrent clients of the project's load
# generator (echo_load: ping-pong, every byte verified), natively and under
# the launcher, where its threads are green threads:
#  - every reply verifies, and the server ran 200 connection threads at once;
#  - while the 200 clients are connected, the launched server has at most 3
#    OS threads (natively the same count must see Python's threads, or it
#    proves nothing);
#  - SIGTERM (natively and launched) and SIGINT (launched, a second run)
#    stop it with status 0 and its "stopped" line, after it joined its
#    connection threads.
# ECHO_LOAD is build/bin/echo_load.
. "$(dirname "$0")/lib.sh"
load=${ECHO_LOAD:?path to build/bin/echo_load}
server_py=$(dirname "$0")/threading_echo.py
conns=200
# The interpreter itself, not a version manager's shim script, so the
# launcher runs Python and nothing else.
py=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"

# run NAME SIGNAL [PREFIX...]: start the server behind PREFIX, drive it,
# count its OS threads meanwhile (sets most), stop it with SIGNAL.
run() {
  local name=$1 sig=$2 out=$tmp/$1.out; shift 2
  "$@" "$py" "$server_py" > "$out" 2>&1 & pid=$!; pids+=($pid)
  for _ in $(seq 1 200); do
    grep -q '^listening on' "$out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] || fail "$name: the server did not say where it listens: $(cat "$out")"

  # A fixed number of requests, so the run ends when the work is done; -d
  # is only the load generator's own bound.
  most_threads "$pid" "$out.load" "$load" -p "$port" -c $conns -n $((conns * 50)) -s 512 -d 30 || fail "$name: the load generator failed: $(cat "$out.load"); server: $(cat "$out")"
  grep -q "^conns=$conns .* errors=0 " "$out.load" || fail "$name: unexpected load result: $(cat "$out.load")"
  echo "$name: $(cat "$out.load"); most OS threads seen: $most"

  kill -"$sig" "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && fail "$name: the server still runs 10 s after SIG$sig"
  wait "$pid"; local rc=$?
  [ $rc -eq 0 ] || fail "$name: the server exited with status $rc after SIG$sig: $(cat "$out")"
  grep '^stopped' "$out" || fail "$name: no 'stopped' line after SIG$sig: $(cat "$out")"
  grep -q "^stopped: $conns connections, at most $conns at once, 1 threads left$" "$out" \
    || fail "$name: the server did not run $conns connection threads at once, or did not join them"
}

run native TERM
[ "$most" -gt 3 ] || fail "native: only $most OS threads counted: the count does not see Python's threads"
for sig in TERM INT; do
  run "kudzu_$sig" $sig "$KZ"
  [ "$most" -le 3 ] || fail "kudzu_$sig: $most OS threads with $conns clients connected (at most 3 allowed)"
done
echo PASS
