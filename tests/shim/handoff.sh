#!/usr/bin/env bash
# Hand-off of a hub (hub/handoff.c): KUDZU_MAX_THREADS bounds the spare OS
# threads, and 0 turns hand-off off.
#  - with 0, a thread in a raw ppoll holds its hub: the main thread never
#    ticks again and tests/helpers/raw_block dies of its alarm (3 s); with
#    the default it passes (shim_handoff_* run every mode);
#  - a bad value is said and ignored (the default applies).
. "$(dirname "$0")/lib.sh"
RB=${RAW_BLOCK:?path to tests/helpers/raw_block}

RB_ALARM=3 KUDZU_MAX_THREADS=0 "$KZ" --hubs 1 -- "$RB" ppoll > "$tmp/out" 2>&1
rc=$?
[ $rc -eq 142 ] || fail "KUDZU_MAX_THREADS=0: expected death by SIGALRM (142), got $rc: $(cat "$tmp/out")"
echo "ok: KUDZU_MAX_THREADS=0: the hub waits behind the call (exit $rc)"
out=$(RB_ALARM=10 KUDZU_MAX_THREADS=1 "$KZ" --hubs 1 -- "$RB" again) || fail "KUDZU_MAX_THREADS=1: exit $?: $out"
echo "ok: KUDZU_MAX_THREADS=1: $out"
for v in x -1 4097 ""; do
  out=$(RB_ALARM=10 KUDZU_MAX_THREADS=$v "$KZ" --hubs 1 -- "$RB" ppoll 2> "$tmp/err") || fail "KUDZU_MAX_THREADS='$v': exit $?"
  [ "$out" = "ppoll: ok" ] || fail "KUDZU_MAX_THREADS='$v': $out"
  grep -q "kudzu: ignoring KUDZU_MAX_THREADS=$v: " "$tmp/err" || fail "KUDZU_MAX_THREADS='$v' not said: $(cat "$tmp/err")"
done
echo PASS
