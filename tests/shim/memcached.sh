#!/usr/bin/env bash
# memcached with 4 worker threads (-t 4), natively and under the launcher,
# where its threads are green threads on one OS thread:
#  - the memccapable conformance suite (libmemcached-tools) passes against
#    both, and both give the same verdict for every case;
#  - 64 clients at once, each on its own connection, store values of 1 byte
#    to 200 kB and read every byte back (memcached_clients.py);
#  - while it serves, the launched server has at most 3 OS threads (natively
#    the same count must see memcached's own threads, or it proves nothing);
#  - it stops with status 0 on SIGTERM and, in a second run, on SIGINT.
# Every case of memccapable passed natively with memcached 1.6.18 and
# libmemcached 1.1.4 (Debian 12), so none is excluded.
. "$(dirname "$0")/lib.sh"
here=$(dirname "$0")
# The interpreter itself, not a version manager's shim script (pyenv's takes
# a second or more to start under load); also for lib.sh's free_port.
py=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
capable=$(command -v memccapable || ls /usr/bin/memc*capable 2>/dev/null | head -1)
[ -n "$capable" ] || fail "memccapable not found (Debian package libmemcached-tools)"
command -v memcached > /dev/null || fail "memcached not found (Debian package memcached)"
command -v memcstat > /dev/null || fail "memcstat not found (Debian package libmemcached-tools)"

# start NAME [PREFIX...]: start memcached behind PREFIX (the launcher, or
# nothing) on a free port; sets pid and port.  Ready when memcached has
# written the port it bound to MEMCACHED_PORT_FILENAME, which it does after
# binding every socket.  If another process took the free port meanwhile,
# memcached exits and a new port is tried.
start() {
  local name=$1; shift
  for _ in 1 2 3; do
    port=$(free_port)
    MEMCACHED_PORT_FILENAME="$tmp/$name.ports" "$@" memcached -t 4 -m 256 -p "$port" -l 127.0.0.1 -U 0 \
      -u "$(id -un)" > "$tmp/$name.log" 2>&1 & pid=$!; pids+=($pid)
    for _ in $(seq 1 100); do
      grep -qx "TCP INET: $port" "$tmp/$name.ports" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    grep -qx "TCP INET: $port" "$tmp/$name.ports" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null && fail "$name: memcached did not bind port $port in 5 s"
    grep -q "Address already in use" "$tmp/$name.log" || fail "$name: memcached died: $(cat "$tmp/$name.log")"
  done
  grep -qx "TCP INET: $port" "$tmp/$name.ports" || fail "$name: no free port after 3 tries"
  # The right process answers, and it runs 4 worker threads.
  memcstat --servers="127.0.0.1:$port" > "$tmp/$name.stat" || fail "$name: memcstat failed"
  grep -qx $'\tpid: '"$pid" "$tmp/$name.stat" || fail "$name: port $port is not served by process $pid"
  grep -qx $'\tthreads: 4' "$tmp/$name.stat" || fail "$name: memcached does not report 4 worker threads"
}

# suite NAME: run memccapable against the server; every case must pass.
# Leaves "case [verdict]" lines in $tmp/NAME.results.
suite() {
  most_threads "$pid" "$tmp/$1.capable" "$capable" -h 127.0.0.1 -p "$port" -t 10; local rc=$?
  grep -E '\[[a-z]+\]$' "$tmp/$1.capable" | sed 's/  */ /g' > "$tmp/$1.results"
  echo "$1: memccapable: $(grep -c '\[pass\]' "$tmp/$1.results") of $(wc -l < "$tmp/$1.results") cases pass;" \
    "most OS threads seen: $most"
  grep -v '\[pass\]$' "$tmp/$1.results"
  [ $rc -eq 0 ] || fail "$1: memccapable exited $rc: $(tail -3 "$tmp/$1.capable")"
  grep -qx 'All tests passed' "$tmp/$1.capable" || fail "$1: memccapable did not report 'All tests passed'"
  grep -qv '\[pass\]$' "$tmp/$1.results" && fail "$1: some cases did not pass"
  [ "$(wc -l < "$tmp/$1.results")" -ge 50 ] || fail "$1: memccapable ran fewer than 50 cases"
}

# clients NAME CONNS: CONNS verifying clients at once.
clients() {
  most_threads "$pid" "$tmp/$1.clients" "$py" "$here/memcached_clients.py" "$port" "$2" \
    || fail "$1: $(cat "$tmp/$1.clients")"
  echo "$1: $(cat "$tmp/$1.clients"); most OS threads seen: $most"
}

# stop NAME SIGNAL: the server exits with status 0 within 10 s of SIGNAL.
stop() {
  kill -"$2" "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && fail "$1: memcached still runs 10 s after SIG$2"
  wait "$pid"; local rc=$?
  [ $rc -eq 0 ] || fail "$1: memcached exited with status $rc after SIG$2: $(cat "$tmp/$1.log")"
  echo "$1: stopped by SIG$2 with status 0"
}

start native
suite native
[ "$most" -ge 5 ] || fail "native: only $most OS threads counted: the count does not see memcached's threads"
clients native 64
stop native TERM

start kudzu "$KZ"
suite kudzu
[ "$most" -le 3 ] || fail "kudzu: $most OS threads while serving memccapable (at most 3 allowed)"
diff "$tmp/native.results" "$tmp/kudzu.results" || fail "memccapable's verdicts differ natively and under kudzu"
clients kudzu 64
[ "$most" -le 3 ] || fail "kudzu: $most OS threads while serving 64 clients (at most 3 allowed)"
stop kudzu TERM

# Several hubs (--hubs 2): the same suite and clients, and the second hub's
# OS thread (named kudzu-hub) runs some of memcached's threads: it has used
# CPU time serving them (/proc's schedstat: nanoseconds on a CPU).
start kudzu_hubs "$KZ" --hubs 2
suite kudzu_hubs
diff "$tmp/native.results" "$tmp/kudzu_hubs.results" || fail "memccapable's verdicts differ natively and under --hubs 2"
clients kudzu_hubs 64
hub_ns=0
for task in /proc/"$pid"/task/*; do
  [ "$(cat "$task/comm" 2>/dev/null)" = kudzu-hub ] || continue
  read -r ns _ < "$task/schedstat" # nanoseconds on a CPU, first
  hub_ns=$((hub_ns + ns))
done
echo "kudzu_hubs: the second hub's OS thread ran $((hub_ns / 1000)) us"
# starting the hub and idling take well under a millisecond; serving takes tens
[ "$hub_ns" -gt 5000000 ] || fail "kudzu_hubs: the second hub ran little or none of memcached's threads"
stop kudzu_hubs TERM

start kudzu_int "$KZ"
clients kudzu_int 16
[ "$most" -le 3 ] || fail "kudzu_int: $most OS threads while serving 16 clients (at most 3 allowed)"
stop kudzu_int INT
echo PASS
