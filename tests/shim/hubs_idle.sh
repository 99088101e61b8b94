#!/usr/bin/env bash
# Idle hubs cost nothing: a program whose threads all wait, spread over 4
# hubs, leaves every hub's OS thread asleep in its loop.  python3 starts 8
# threads that sleep 3 s; once they all sleep, the CPU time of each OS
# thread named kudzu-hub (/proc/PID/task/TID/schedstat, nanoseconds run) is
# read twice, 1 s apart: each may have run at most 2 ms in that second
# (a hub that polled, woke on a timer of its own or spun would show
# tens to hundreds of ms).  The 1 s is the measuring window, not a wait
# for something to happen.
. "$(dirname "$0")/lib.sh"
command -v python3 > /dev/null || fail "python3 missing"

cat > "$tmp/idle.py" <<'PY'
import sys, threading, time
n = 8
started = threading.Barrier(n + 1)
def sleeper():
    started.wait()
    time.sleep(3)
ts = [threading.Thread(target=sleeper) for _ in range(n)]
for t in ts: t.start()
started.wait()
print("sleeping", flush=True)
for t in ts: t.join()
print("done", flush=True)
PY

"$KZ" --hubs 4 -- python3 "$tmp/idle.py" > "$tmp/out" 2> "$tmp/err" & pid=$!
pids+=("$pid")
for _ in $(seq 1 100); do
  grep -q sleeping "$tmp/out" 2>/dev/null && break
  sleep 0.05
done
grep -q sleeping "$tmp/out" || fail "the program did not start its threads: $(cat "$tmp/err")"

# run_ns TID: nanoseconds TID has run so far
run_ns() { cut -d' ' -f1 "/proc/$pid/task/$1/schedstat"; }
hubs=()
for t in /proc/$pid/task/*; do
  [ "$(cat "$t/comm" 2>/dev/null)" = kudzu-hub ] && hubs+=("${t##*/}")
done
[ "${#hubs[@]}" -eq 3 ] || fail "expected 3 extra hubs' OS threads, found ${#hubs[@]}"
declare -A before
for h in "${hubs[@]}"; do before[$h]=$(run_ns "$h"); done
sleep 1
for h in "${hubs[@]}"; do
  ran=$(( $(run_ns "$h") - ${before[$h]} ))
  echo "hub thread $h ran $((ran / 1000)) us in 1 s while idle"
  [ "$ran" -le 2000000 ] || fail "hub thread $h ran $((ran / 1000)) us in 1 s while idle"
done
wait "$pid" || fail "the program failed: $(cat "$tmp/err")"
grep -q done "$tmp/out" || fail "no 'done'"
echo PASS
