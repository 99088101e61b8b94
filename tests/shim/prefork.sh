#!/usr/bin/env bash
# A pre-fork server (tests/helpers/prefork_server: a child per connection,
# a counter in shared memory under a process-shared mutex and semaphore,
# SIGUSR1 to the parent from each child) natively and under the launcher:
# CLIENTS concurrent clients for SECONDS, every reply checked, no request
# slower than 10 s, and the parent stops on SIGTERM with its books right.
#
#   prefork.sh [SECONDS [CLIENTS]]      (HELPERS: the helpers' directory)
# With PREFORK_REPORT=1 it prints the benchmark rows prefork_*_rps.
. "$(dirname "$0")/lib.sh"
HELPERS=${HELPERS:?path to build/tests/helpers}
secs=${1:-2} clients=${2:-50}

# run_one NAME [LAUNCHER...]: one server, the load, SIGTERM; sets rps.
run_one() {
  local name=$1 server out i
  shift
  rm -f "$tmp/port"
  "$@" "$HELPERS/prefork_server" "$tmp/port" 2>"$tmp/$name.err" & server=$!
  pids+=("$server")
  for i in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  [ -s "$tmp/port" ] || fail "$name: the server did not start: $(cat "$tmp/$name.err")"
  out=$("$HELPERS/prefork_client" "$(cat "$tmp/port")" "$clients" "$secs") ||
    fail "$name: $out"
  kill -TERM "$server"
  for i in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$server" 2>/dev/null && fail "$name: the server is still running 10 s after SIGTERM"
  wait "$server" || fail "$name: the server exits with status $?: $(cat "$tmp/$name.err")"
  echo "$name: $out; $(cat "$tmp/$name.err")"
  rps=$(awk '{ print $4 }' <<<"$out")
}

run_one native; native=$rps
run_one kudzu "$KZ"; kudzu=$rps
if [ "${PREFORK_REPORT:-0}" = 1 ]; then
  printf 'prefork_native_rps\t%s\trps\n' "$native"
  printf 'prefork_preload_rps\t%s\trps\n' "$kudzu"
  awk -v k="$kudzu" -v n="$native" 'BEGIN { printf "prefork_preload_vs_native\t%.2f\tx\n", k / n }'
else
  echo PASS
fi
