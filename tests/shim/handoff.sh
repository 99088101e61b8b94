#!/usr/bin/env bash
# Hand-off of a hub (hub/handoff.c): KUDZU_MAX_THREADS bounds the spare OS
# threads, and 0 turns hand-off off.
#  - with 0, a thread (or the main thread) in a raw ppoll holds its hub:
#    the other threads never tick again and tests/helpers/raw_block dies of
#    its alarm (3 s), in every mode but semop; with the default each passes
#    (shim_handoff_* run every mode);
#  - a bad value is said and ignored (the default applies).
. "$(dirname "$0")/lib.sh"
RB=${RAW_BLOCK:?path to tests/helpers/raw_block}

modes="ppoll many self signal again fork main main_again main_signal main_many main_fork"
# (not semop: killed, it would leave its semaphore set behind)
for m in $modes; do # at once: each takes its 3 s alarm
  (RB_ALARM=3 KUDZU_MAX_THREADS=0 "$KZ" --hubs 1 -- "$RB" $m > "$tmp/out.$m" 2>&1; echo $? > "$tmp/rc.$m") &
done
wait
for m in $modes; do
  rc=$(cat "$tmp/rc.$m")
  [ "$rc" -eq 142 ] || fail "KUDZU_MAX_THREADS=0, $m: expected death by SIGALRM (142), got $rc: $(cat "$tmp/out.$m")"
  echo "ok: KUDZU_MAX_THREADS=0, $m: the hub waits behind the call (exit $rc)"
done
out=$(RB_ALARM=10 KUDZU_MAX_THREADS=1 "$KZ" --hubs 1 -- "$RB" again) || fail "KUDZU_MAX_THREADS=1: exit $?: $out"
echo "ok: KUDZU_MAX_THREADS=1: $out"
for v in x -1 4097 ""; do
  out=$(RB_ALARM=10 KUDZU_MAX_THREADS=$v "$KZ" --hubs 1 -- "$RB" ppoll 2> "$tmp/err") || fail "KUDZU_MAX_THREADS='$v': exit $?"
  [ "$out" = "ppoll: ok" ] || fail "KUDZU_MAX_THREADS='$v': $out"
  grep -q "kudzu: ignoring KUDZU_MAX_THREADS=$v: " "$tmp/err" || fail "KUDZU_MAX_THREADS='$v' not said: $(cat "$tmp/err")"
done
echo PASS
