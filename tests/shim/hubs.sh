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
#  - --stats sums every hub's counts, then gives each hub a line (with
#    tests/helpers/thread_server, whose connections make calls and park on
#    every hub);
#  - the thread helpers pass under --hubs 2 as natively (CTest's
#    shim_hubs2_* tests; memcached in shim_memcached).
. "$(dirname "$0")/lib.sh"
SPREAD=${HUBS_SPREAD:?path to tests/helpers/hubs_spread}
SERVER=${THREAD_SERVER:?path to tests/helpers/thread_server}

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

# stats_sum FIELD: the sum of FIELD (the awk field number) over the per-hub
# lines of $tmp/err; stats_total FIELD: FIELD of the total line.
stats_sum() { grep '^kudzu: pid [0-9]*, hub [0-9]* (OS thread' "$tmp/err" | sed 's/.*): //' | tr -d ',;' | awk -v f="$1" '{s += $f} END {print s + 0}'; }
stats_total() { grep '^kudzu: pid [0-9]*, [0-9]* hubs: ' "$tmp/err" | sed 's/.* hubs: //' | tr -d ',;' | awk -v f="$1" '{print $f}'; }
"$KZ" --hubs 3 --stats -- "$SPREAD" 6 > "$tmp/out" 2> "$tmp/err" || fail "--stats --hubs 3: exit $?"
grep -q '^kudzu: pid [0-9]*, 3 hubs: .*; 6 green threads spawned, ' "$tmp/err" ||
  fail "--stats does not sum the 3 hubs' 6 threads: $(cat "$tmp/err")"
[ "$(grep -c '^kudzu: pid [0-9]*, hub [123] (OS thread [0-9]*[,)]' "$tmp/err")" -eq 3 ] &&
  [ "$(grep -o '(OS thread [0-9]*' "$tmp/err" | sort -u | wc -l)" -eq 3 ] ||
  fail "--stats has not a line for each of 3 hubs: $(cat "$tmp/err")"
grep -q '^kudzu: pid \([0-9]*\), hub 1 (OS thread \1, the main thread): ' "$tmp/err" || fail "hub 1 is not the main thread's: $(cat "$tmp/err")"
[ "$(stats_sum 17)" -eq 6 ] || fail "the hubs' spawns do not add up to 6: $(cat "$tmp/err")"
"$KZ" --hubs 2 --stats -- "$SERVER" > "$tmp/out" 2> "$tmp/err" || fail "--stats --hubs 2 thread_server: exit $?"
for field in 1 7 17; do # calls, parks, spawned
  [ "$(stats_sum $field)" -eq "$(stats_total $field)" ] && [ "$(stats_total $field)" -gt 0 ] ||
    fail "--stats --hubs 2: field $field: the hubs' lines do not add up to the total: $(cat "$tmp/err")"
done
grep '^kudzu: pid [0-9]*, hub [12] ' "$tmp/err" | sed 's/.*): //' | tr -d ',;' | awk '$1 == 0 || $7 == 0 {exit 1}' ||
  fail "--stats --hubs 2: a hub with no calls or no parks: $(cat "$tmp/err")"
echo "ok: --stats: $(grep ' hubs: ' "$tmp/err")"
"$KZ" --hubs 1 --stats -- "$SPREAD" 2 > "$tmp/out" 2> "$tmp/err" || fail "--stats: exit $?"
grep -q '^kudzu: pid [0-9]*, main thread: .*; 2 green threads spawned, ' "$tmp/err" && [ "$(wc -l < "$tmp/err")" -eq 1 ] ||
  fail "--stats with one hub is not the main thread's one line: $(cat "$tmp/err")"

for v in x -1 257 1000 ""; do
  "$KZ" --hubs "$v" -- "$SPREAD" 2 > "$tmp/out" 2> "$tmp/err" && fail "--hubs '$v' accepted"
  grep -q "kudzu: --hubs $v: " "$tmp/err" || fail "--hubs '$v': $(cat "$tmp/err")"
  [ -z "$v" ] && continue
  KUDZU_HUBS=$v "$KZ" -- "$SPREAD" 2 > "$tmp/out" 2> "$tmp/err" || fail "KUDZU_HUBS=$v: exit $?"
  grep -q "kudzu: ignoring KUDZU_HUBS=$v" "$tmp/err" || fail "KUDZU_HUBS=$v not said: $(cat "$tmp/err")"
  [ "$(cat "$tmp/out")" = "2 threads on $((cpus < 2 ? cpus : 2)) OS threads" ] || fail "KUDZU_HUBS=$v (the default applies): $(cat "$tmp/out")"
done
echo PASS
