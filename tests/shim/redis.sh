#!/usr/bin/env bash
# redis-server under the launcher serves redis-benchmark, saves in the
# background (a fork) and shuts down cleanly.  Launcher options (for
# instance --no-threads) come in KZ_OPTS.
. "$(dirname "$0")/lib.sh"
port=$(free_port)
"$KZ" ${KZ_OPTS:-} redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save "" --appendonly no \
  --daemonize no > "$tmp/log" 2>&1 & pid=$!; pids+=($pid)
wait_port "$port"
out=$(redis-benchmark -p "$port" -n 20000 -c 50 -q -t set,get,lpush,incr 2>&1 | tr '\r' '\n' | grep 'requests per second') \
  || fail "redis-benchmark failed"
echo "$out"
[ "$(echo "$out" | wc -l)" -eq 4 ] || fail "expected 4 benchmark results"
# Saved when no change is left unsaved and no save runs (LASTSAVE has a
# resolution of a second, which a fast start, load and save fit into).
saved() {
  local info
  info=$(redis-cli -p "$port" info persistence | tr -d '\r')
  echo "$info" | grep -q '^rdb_bgsave_in_progress:0$' &&
    echo "$info" | grep -q '^rdb_changes_since_last_save:0$'
}
redis-cli -p "$port" set kudzu green > /dev/null
redis-cli -p "$port" bgsave | grep -q "Background saving started" || fail "bgsave refused"
for _ in $(seq 1 100); do
  saved && break
  sleep 0.1
done
saved || fail "the background save never finished"
[ -s "$tmp/dump.rdb" ] || fail "no dump.rdb"
grep -q "Background saving terminated with success" "$tmp/log" || fail "the forked save failed"
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "redis-server did not exit"
wait "$pid"; rc=$?
[ $rc -eq 0 ] || fail "redis-server exited $rc"
echo PASS
