# lib.sh: shared by the real-tool tests.  Every server a test starts is
# stopped on exit, whatever happens.
set -u
KZ=${KZ:?path to build/bin/kudzu}
pids=()
tmp=$(mktemp -d)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Wait (bounded) until something listens on port $1.
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: nothing listens on port $1"; exit 1
}
fail() { echo "FAIL: $*"; exit 1; }

# most_threads PID OUT CMD...: run the client CMD (output to OUT) while
# counting the OS threads of process PID every 20 ms; sets most to the
# highest count seen; returns CMD's status.
most_threads() {
  local server=$1 out=$2 client n
  shift 2
  "$@" > "$out" 2>&1 & client=$!
  most=0
  while kill -0 "$client" 2>/dev/null; do
    n=$(ls "/proc/$server/task" 2>/dev/null | wc -l)
    [ "$n" -gt "$most" ] && most=$n
    sleep 0.02
  done
  wait "$client"
}
