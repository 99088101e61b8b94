#!/usr/bin/env bash
# The diagnostics thread under the launcher, on a plain pthread program
# (tests/helpers/stall.c): --monitor reports a hub blocked by a thread that
# computes without yielding, naming the thread and showing the function in a
# backtrace; without it nothing is reported; --dump-signal makes the hub dump
# every green thread, with what it waits on, while the program goes on, and
# reports a hub that cannot run the dump because a thread computes.  A
# thread that computes is preempted (hub/preempt.c), so the hub is not
# blocked by it: the blocked-hub cases turn preemption off (--preempt 0),
# and with preemption on the dump runs while the thread computes.  With
# --hubs 2, each hub dumps its own threads, and the monitor watches the
# extra hub too.
. "$(dirname "$0")/lib.sh"
STALL=${STALL:?path to tests/helpers/stall}
EXIT_WORKER=${EXIT_WORKER:?path to tests/helpers/thread_exit_worker}

# 1. A 0.6 s computation with a 0.1 s threshold: one report, with a backtrace.
"$KZ" --preempt 0 --monitor 0.1 "$STALL" spin 2> "$tmp/err" || fail "stall spin under --monitor: exit $?"
grep -q 'monitor: the hub of OS thread [0-9]* has not run for 0\.[0-9]* s (threshold 0\.100 s)' "$tmp/err" ||
  fail "no blocked-hub report: $(cat "$tmp/err")"
grep -q 'monitor: blocked in green thread [0-9]* "spinner":' "$tmp/err" ||
  fail "the report does not name the spinning thread: $(cat "$tmp/err")"
grep -q 'spin_without_yielding' "$tmp/err" || fail "the backtrace misses the spinning function: $(cat "$tmp/err")"
[ "$(grep -c 'has not run for' "$tmp/err")" -eq 1 ] || fail "one stall reported more than once: $(cat "$tmp/err")"

# 2. Without the option, the same program says nothing.
"$KZ" --preempt 0 "$STALL" spin 2> "$tmp/err" || fail "stall spin: exit $?"
[ ! -s "$tmp/err" ] || fail "unexpected output without --monitor: $(cat "$tmp/err")"

# 3. A bad threshold is said and ignored; the program runs.
KUDZU_MONITOR=soon "$KZ" "$STALL" spin 2> "$tmp/err" || fail "stall spin with a bad KUDZU_MONITOR: exit $?"
grep -q 'ignoring KUDZU_MONITOR=soon' "$tmp/err" || fail "a bad KUDZU_MONITOR was not reported: $(cat "$tmp/err")"

# 4. The dump signal, while three threads wait on a pipe.
mkfifo "$tmp/in"
"$KZ" --dump-signal USR2 "$STALL" wait < "$tmp/in" > "$tmp/out" 2> "$tmp/err" & pid=$!; pids+=($pid)
exec 7> "$tmp/in"
for _ in $(seq 1 100); do grep -q '^ready' "$tmp/out" && break; sleep 0.05; done
grep -q '^ready' "$tmp/out" || fail "stall wait did not start"
kill -USR2 "$pid"
for _ in $(seq 1 100); do grep -q 'waiter-3' "$tmp/err" && break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null || fail "the dump signal ended the program"
exec 7>&-
wait "$pid" || fail "stall wait: exit $?"
grep -q '^kudzu: dump of the hub of OS thread [0-9]*:' "$tmp/err" || fail "no dump: $(cat "$tmp/err")"
for i in 1 2 3; do
  grep -q "^green [0-9]* \"waiter-$i\" blocked waiting on fd [0-9]* for read" "$tmp/err" ||
    fail "the dump misses waiter-$i: $(cat "$tmp/err")"
done
grep -q ' waiter+0x' "$tmp/err" || fail "the dump has no backtrace through waiter(): $(cat "$tmp/err")"

# 4b. The same with the threads spread over two hubs (--hubs 2): each hub
#     dumps its own green threads, so every waiter appears once, some in
#     the extra hub's dump.
"$KZ" --hubs 2 --dump-signal USR2 "$STALL" wait < "$tmp/in" > "$tmp/out" 2> "$tmp/err" & pid=$!; pids+=($pid)
exec 7> "$tmp/in"
for _ in $(seq 1 100); do grep -q '^ready' "$tmp/out" && break; sleep 0.05; done
grep -q '^ready' "$tmp/out" || fail "stall wait --hubs 2 did not start"
kill -USR2 "$pid"
for _ in $(seq 1 100); do [ "$(grep -c '"waiter-[123]"' "$tmp/err")" -ge 3 ] && break; sleep 0.05; done
exec 7>&-
wait "$pid" || fail "stall wait --hubs 2: exit $?"
[ "$(grep -c '^kudzu: dump of the hub of OS thread [0-9]*:' "$tmp/err")" -eq 2 ] ||
  fail "--hubs 2: not one dump per hub: $(cat "$tmp/err")"
grep -q "^kudzu: dump of the hub of OS thread $pid:" "$tmp/err" || fail "--hubs 2: no dump of the main thread's hub: $(cat "$tmp/err")"
for i in 1 2 3; do
  [ "$(grep -c "^green [0-9]* \"waiter-$i\" blocked waiting on fd [0-9]* for read" "$tmp/err")" -eq 1 ] ||
    fail "--hubs 2: waiter-$i is not dumped once: $(cat "$tmp/err")"
done
sed -n "/^kudzu: dump of the hub of OS thread $pid:/,/^kudzu: dump of the hub/p" "$tmp/err" > "$tmp/main.dump"
sed "/^kudzu: dump of the hub of OS thread $pid:/,/^kudzu: dump of the hub/d" "$tmp/err" > "$tmp/extra.dump"
grep -q '"waiter-' "$tmp/main.dump" && grep -q '"waiter-' "$tmp/extra.dump" ||
  fail "--hubs 2: the waiters are not dumped by both hubs: $(cat "$tmp/err")"

# 4c. The monitor with two hubs: "spinner" is placed on the extra hub (the
#     second thread made), whose block is reported with its backtrace.
"$KZ" --hubs 2 --preempt 0 --monitor 0.1 "$STALL" spin 2> "$tmp/err" & pid=$!; pids+=($pid)
wait "$pid" || fail "stall spin --hubs 2 under --monitor: exit $?"
grep -q 'monitor: the hub of OS thread [0-9]* has not run for' "$tmp/err" &&
  ! grep -q "monitor: the hub of OS thread $pid has not run for" "$tmp/err" ||
  fail "--hubs 2: the extra hub's block is not reported: $(cat "$tmp/err")"
grep -q 'monitor: blocked in green thread [0-9]* "spinner":' "$tmp/err" && grep -q 'spin_without_yielding' "$tmp/err" ||
  fail "--hubs 2: the report does not show the spinning thread: $(cat "$tmp/err")"

# 5. The dump signal while a thread computes without yielding: the hub cannot
#    run the dump, so after a second it is reported as not running, with a
#    backtrace of the spinning thread; the dump follows once the thread ends.
"$KZ" --preempt 0 --dump-signal USR2 "$STALL" spin-until-usr1 > "$tmp/out" 2> "$tmp/err" & pid=$!; pids+=($pid)
for _ in $(seq 1 100); do grep -q '^spinning' "$tmp/out" && break; sleep 0.05; done
grep -q '^spinning' "$tmp/out" || fail "stall spin-until-usr1 did not start"
kill -USR2 "$pid"
for _ in $(seq 1 200); do grep -q 'spin_until_signalled' "$tmp/err" && break; sleep 0.05; done
grep -q 'monitor: the hub of OS thread [0-9]* has not run for [0-9.]* s since the dump request' "$tmp/err" ||
  fail "a hub that cannot run the dump is not reported: $(cat "$tmp/err")"
grep -q 'monitor: blocked in green thread [0-9]* "spinner":' "$tmp/err" ||
  fail "the report does not name the spinning thread: $(cat "$tmp/err")"
grep -q 'spin_until_signalled' "$tmp/err" || fail "the backtrace misses the spinning function: $(cat "$tmp/err")"
kill -USR1 "$pid"
wait "$pid" || fail "stall spin-until-usr1: exit $?"
grep -q '^kudzu: dump of the hub of OS thread [0-9]*:' "$tmp/err" || fail "no dump once the thread ended: $(cat "$tmp/err")"

# 5b. The same with preemption on: the dump runs while the thread still
#     computes, and shows where it computes.
"$KZ" --dump-signal USR2 "$STALL" spin-until-usr1 > "$tmp/out" 2> "$tmp/err" & pid=$!; pids+=($pid)
for _ in $(seq 1 100); do grep -q '^spinning' "$tmp/out" && break; sleep 0.05; done
grep -q '^spinning' "$tmp/out" || fail "stall spin-until-usr1 did not start (preempted)"
kill -USR2 "$pid"
for _ in $(seq 1 200); do grep -q 'spin_until_signalled' "$tmp/err" && break; sleep 0.05; done
grep -q '^kudzu: dump of the hub of OS thread [0-9]*:' "$tmp/err" ||
  fail "no dump while a preempted thread computes: $(cat "$tmp/err")"
grep -q 'spin_until_signalled' "$tmp/err" || fail "the dump misses the computing function: $(cat "$tmp/err")"
kill -0 "$pid" 2>/dev/null || fail "the program ended before SIGUSR1"
kill -USR1 "$pid"
wait "$pid" || fail "stall spin-until-usr1 (preempted): exit $?"

# 6. The monitor thread does not keep a process alive after main's
#    pthread_exit: it ends with its last own thread, as natively (a hang is
#    killed, and fails the test).
for opts in "" "--no-threads"; do
  timeout -s KILL 30 "$KZ" $opts --monitor 1 "$EXIT_WORKER" > "$tmp/out" 2>&1 ||
    fail "pthread_exit from main under --monitor $opts: exit $? (137: hung): $(cat "$tmp/out")"
done
echo PASS
