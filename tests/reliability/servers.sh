#!/usr/bin/env bash
# servers.sh CASE SERVER: the reliability suite's server cases.  Starts one
# echo server, drives it with misbehaving clients (tests/helpers/rel_client),
# and checks that it survives, keeps serving, and comes back to the
# descriptors and memory it had.
#
# SERVER (each case runs against each, natively and under the launcher):
#   threaded_native    build/bin/echo_threaded: a thread per connection
#   threaded_kudzu     the same, unmodified, under build/bin/kudzu
#   green_api          build/bin/echo_green: green threads on the API
#   green_libc_kudzu   build/bin/echo_green --libc under build/bin/kudzu
#
# CASE:
#   abrupt  idle clients, clients that never read while the server echoes
#           megabytes at them, clients reset mid-message (SO_LINGER 0),
#           half-closed clients (shutdown(SHUT_WR), then the whole echo and
#           the end of stream), in rounds; checks meanwhile that other
#           clients get answers; afterwards the descriptors are back to
#           where they were and RSS did not grow from the first round to
#           the last (REL_RSS_TOL_KIB).
#   short   connect, one verified request, close, from 4 client threads,
#           until 100,000 connections or REL_SHORT_S seconds (default 10);
#           at least REL_SHORT_MIN (default 1000); descriptors back and RSS
#           flat (against a warm-up run) afterwards.
#   emfile  the server under `ulimit -n 256`, 1,000 clients connected at
#           once: it stays up, does not spin while it cannot accept (for a
#           quiet second its main thread is runnable in at most half of the
#           samples, and it uses at most REL_CPU_TICKS clock ticks), and
#           once the clients leave it closes their connections and serves
#           again.
#
# Environment: KZ (build/bin/kudzu), BIN (build/bin), REL_CLIENT
# (tests/helpers/rel_client).  Every wait is bounded; every process started
# here is killed on exit.
set -u
case_=${1:?case: abrupt, short or emfile}
server=${2:?server: threaded_native, threaded_kudzu, green_api or green_libc_kudzu}
KZ=${KZ:?path to build/bin/kudzu}
BIN=${BIN:?path to build/bin}
client=${REL_CLIENT:?path to rel_client}
rss_tol=${REL_RSS_TOL_KIB:-4096}
pids=()
tmp=$(mktemp -d)
cleanup() {
  exec 2>/dev/null # no job notices for the servers killed here
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
name="$case_/$server"
fail() {
  echo "FAIL: $name: $*"
  [ -n "${pid:-}" ] && { echo "--- server output:"; cat "$tmp/server.out"; }
  exit 1
}

case $server in
  threaded_native) cmd=("$BIN/echo_threaded") ;;
  threaded_kudzu) cmd=("$KZ" "$BIN/echo_threaded") ;;
  green_api) cmd=("$BIN/echo_green") ;;
  green_libc_kudzu) cmd=("$KZ" "$BIN/echo_green" --libc) ;;
  *) fail "unknown server $server" ;;
esac
# echo_green leaves SIGPIPE at its default, which natively costs it
# nothing: it stops writing at its first error, which the kernel reports
# as ECONNRESET.  Under the launcher too (preload/io.c, note I): the abrupt
# case would end it with SIGPIPE otherwise.

# start [NOFILE]: starts the server (its soft descriptor limit NOFILE if
# given) and sets pid and port.  The launcher execs the program, so pid is
# the server's.
start() {
  : > "$tmp/server.out" # now: the subshell's own truncation may come after the wait below looked
  (
    [ -n "${1:-}" ] && { ulimit -n "$1" || exit 1; }
    exec "${cmd[@]}"
  ) > "$tmp/server.out" 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 1 200); do
    grep -q '^listening on' "$tmp/server.out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server.out")
  [ -n "$port" ] || fail "the server did not say where it listens"
}

alive() { kill -0 "$pid" 2>/dev/null || fail "the server died ($1)"; }
# The server's sockets: its connections and its listener.  Its other
# descriptors are left out: under the launcher they include the runtime's,
# which may open one more while the server runs (libunwind's pipe, made the
# first time the runtime walks a stack, a wait for one of libc's locks).
fds() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -c 'socket:' || true; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
# utime + stime of the whole process, in clock ticks (fields 14 and 15,
# counted after the command name, which may hold spaces).
# shellcheck disable=SC2086 # the fields, split on purpose
ticks() { local s; s=$(< "/proc/$pid/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13})); }

# One verified request on a fresh connection.
serves() {
  alive "$1"
  "$client" check "$port" > "$tmp/check.out" 2>&1 || fail "no answer $1: $(cat "$tmp/check.out")"
}

# settle WANT WHAT: waits (bounded, 30 s) until the server holds at most WANT
# descriptors: the connections' threads close them after the clients leave.
settle() {
  local n
  for _ in $(seq 1 300); do
    n=$(fds)
    [ "$n" -le "$1" ] && return 0
    sleep 0.1
  done
  echo "--- descriptors:"; ls -l "/proc/$pid/fd"
  fail "$n sockets 30 s after $2, $1 before: connections leaked"
}

# flat BEFORE AFTER WHAT: RSS may not grow by more than the tolerance.
flat() {
  local grew=$(($2 - $1))
  echo "$name: RSS $1 KiB -> $2 KiB after $3 (grew $grew KiB, at most $rss_tol allowed)"
  [ "$grew" -le "$rss_tol" ] || fail "RSS grew by $grew KiB after $3"
}

start
serves "at start"
fd0=$(fds)
echo "$name: pid $pid, port $port, $fd0 sockets at start"

case $case_ in
abrupt)
  # A first round brings the server to its working size (thread stacks and
  # buffers, cached once used); the rounds after it must not grow it.
  rounds=${REL_ABRUPT_ROUNDS:-3}
  for r in $(seq 0 "$rounds"); do
    "$client" abrupt "$port" 4 > "$tmp/abrupt.out" 2>&1 || fail "round $r: $(cat "$tmp/abrupt.out")"
    alive "round $r"
    settle "$fd0" "round $r"
    [ "$r" -eq 0 ] && { rss1=$(rss_kib); echo "$name: $(cat "$tmp/abrupt.out")"; }
  done
  flat "$rss1" "$(rss_kib)" "$rounds more rounds of abrupt clients"
  serves "after the abrupt clients"
  ;;
short)
  secs=${REL_SHORT_S:-10} least=${REL_SHORT_MIN:-1000}
  "$client" short "$port" 2000 5 4 > "$tmp/short.out" 2>&1 || fail "warm-up: $(cat "$tmp/short.out")"
  settle "$fd0" "the warm-up"
  rss1=$(rss_kib)
  "$client" short "$port" 100000 "$secs" 4 > "$tmp/short.out" 2>&1 || fail "$(cat "$tmp/short.out")"
  echo "$name: $(cat "$tmp/short.out")"
  n=$(sed -n 's/^short: \([0-9]*\) connections.*/\1/p' "$tmp/short.out")
  [ "${n:-0}" -ge "$least" ] || fail "only ${n:-0} connections in $secs s (at least $least expected)"
  alive "after the short connections"
  settle "$fd0" "the short connections"
  flat "$rss1" "$(rss_kib)" "$n short connections"
  serves "after the short connections"
  ;;
emfile)
  # The server again, at most 256 descriptors.
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  start 256
  serves "at start, limited to 256 descriptors"
  fd0=$(fds)
  mkfifo "$tmp/ctl"
  "$client" hold "$port" 1000 < "$tmp/ctl" > "$tmp/hold.out" 2>&1 &
  holder=$!; pids+=("$holder")
  exec 4> "$tmp/ctl" # the holder keeps its connections until this closes
  for _ in $(seq 1 600); do
    grep -q '^held' "$tmp/hold.out" && break
    kill -0 "$holder" 2>/dev/null || fail "the clients failed: $(cat "$tmp/hold.out")"
    sleep 0.05
  done
  grep -q '^held' "$tmp/hold.out" || fail "1000 clients did not connect in 30 s"
  # Let the server take what it can: bounded, until its descriptors stop
  # changing for half a second.
  last=-1 same=0
  for _ in $(seq 1 300); do
    n=$(fds)
    if [ "$n" -eq "$last" ]; then same=$((same + 1)); else same=0 last=$n; fi
    [ "$same" -ge 5 ] && break
    sleep 0.1
  done
  alive "with 1000 clients and 256 descriptors"
  echo "$name: $(cat "$tmp/hold.out"); the server holds $n sockets (limit 256 descriptors)"
  # The quiet second: 100 samples of the main thread's state, 10 ms apart,
  # and the process's CPU time over them.  A server that spins on EMFILE
  # is runnable in nearly every sample however loaded the machine is.
  t0=$(ticks) busy=0 samples=0 s0=$SECONDS
  for _ in $(seq 1 100); do
    st=$(< "/proc/$pid/stat"); st=${st##*) }
    [ "${st:0:1}" = R ] && busy=$((busy + 1))
    samples=$((samples + 1))
    sleep 0.01
  done
  used=$(($(ticks) - t0)) hz=$(getconf CLK_TCK)
  echo "$name: quiet time: runnable in $busy of $samples samples; $used ticks of CPU (${hz}/s) in $((SECONDS - s0 + 1)) s or less"
  [ $((busy * 2)) -le "$samples" ] || fail "the server spins while out of descriptors: runnable in $busy of $samples samples"
  [ "$used" -le "${REL_CPU_TICKS:-$((hz / 2))}" ] || fail "the server spins while out of descriptors: $used ticks of CPU in the quiet second"
  exec 4>&- # the clients leave
  wait "$holder" || fail "the clients failed: $(cat "$tmp/hold.out")"
  alive "after the 1000 clients left"
  settle "$fd0" "the 1000 clients left"
  serves "after the 1000 clients left"
  ;;
*) fail "unknown case $case_" ;;
esac
echo "PASS: $name"
