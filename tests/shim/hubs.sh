#!/usr/bin/env bash
# Several hubs (--hubs N, KUDZU_HUBS; hub/hubs.c): a program's threads
# are spread over N hubs, each on an OS thread of its own, and run there.
#  - tests/helpers/hubs_spread: 6 threads alive together read the id of the
#    OS thread they run on with the raw system call: natively 6 OS threads;
#    under --hubs 1, 2, 3: 1, 2, 3 (placement by load spreads them evenly
#    enough to use every hub); --hubs 0 (one per CPU): as many as CPUs, up
#    to 6;
#  - by default as many as CPUs (up to 6);
#  - a bad count is refused by the launcher and said and ignored in the
#    variable (the default applies);
#  - the thread helpers pass under --hubs 2 as natively (CTest's
#    shim_hubs2_* tests; memcached in shim_memcached).
. "$(dirname "$0")/lib.sh"
SPREAD=${HUBS_SPREAD:?path to tests/helpers/hubs_spread}

out=$("$SPREAD" 6) || fail "hubs_spread natively: exit $?"
[ "$out" = "6 threads on 6 OS threads" ] || fail "natively: $out"
for n in 1 2 3; do
  out=$("$KZ" --hubs $n -- "$SPREAD" 6) || fail "--hubs $n: exit $?"
  [ "$out" = "6 threads on $n OS threads" ] || fail "--hubs $n: $out"
  echo "ok: --hubs $n: $out"
done
cpus=$(nproc)
want=$((cpus < 6 ? cpus : 6))
out=$("$KZ" --hubs 0 -- "$SPREAD" 6) || fail "--hubs 0: exit $?"
[ "$out" = "6 threads on $want OS threads" ] || fail "--hubs 0 ($cpus CPUs): $out"
echo "ok: --hubs 0 ($cpus CPUs): $out"
out=$("$KZ" -- "$SPREAD" 6) || fail "default: exit $?"
[ "$out" = "6 threads on $want OS threads" ] || fail "default ($cpus CPUs): $out"
echo "ok: by default one hub per CPU ($cpus CPUs): $out"
out=$(KUDZU_HUBS=2 "$KZ" -- "$SPREAD" 4) || fail "KUDZU_HUBS=2: exit $?"
[ "$out" = "4 threads on 2 OS threads" ] || fail "KUDZU_HUBS=2: $out"

for v in x -1 257 1000 ""; do
  "$KZ" --hubs "$v" -- "$SPREAD" 2 > "$tmp/out" 2> "$tmp/err" && fail "--hubs '$v' accepted"
  grep -q "kudzu: --hubs $v: " "$tmp/err" || fail "--hubs '$v': $(cat "$tmp/err")"
  [ -z "$v" ] && continue
  KUDZU_HUBS=$v "$KZ" -- "$SPREAD" 2 > "$tmp/out" 2> "$tmp/err" || fail "KUDZU_HUBS=$v: exit $?"
  grep -q "kudzu: ignoring KUDZU_HUBS=$v" "$tmp/err" || fail "KUDZU_HUBS=$v not said: $(cat "$tmp/err")"
  [ "$(cat "$tmp/out")" = "2 threads on $((cpus < 2 ? cpus : 2)) OS threads" ] || fail "KUDZU_HUBS=$v (the default applies): $(cat "$tmp/out")"
done
echo PASS
