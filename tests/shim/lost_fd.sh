#!/usr/bin/env bash
# lost_fd.sh LAUNCHER HELPER ARG: a program that closes the runtime's
# descriptors with the system call instruction works natively; under the launcher it
# stops with a message naming the descriptor, by SIGABRT, without libev's
# assertion.  With two hubs too (--hubs 2): the extra hub, started after the
# close, is given the lost numbers, and the message names the hub that
# owned them (hub/rtfd.c, note E), where the two hubs used to share one
# epoll instance and the program ran on.
set -u
launcher=$1 helper=$2
out=$("$helper" "$3" 2>&1) || { echo "FAIL: natively: $out"; exit 1; }
echo "native: $out"
for hubs in 1 2; do
  out=$("$launcher" --hubs $hubs "$helper" "$3" 2>&1); rc=$?
  echo "kudzu --hubs $hubs (exit $rc): $out"
  [ $rc -eq 134 ] || { echo "FAIL: --hubs $hubs: expected SIGABRT (134)"; exit 1; }
  echo "$out" | grep -q "kudzu: the runtime's descriptor [0-9]* (a hub's .*) was closed or replaced behind its back" \
    || { echo "FAIL: --hubs $hubs: no message naming the descriptor"; exit 1; }
  echo "$out" | grep -q "Assertion" && { echo "FAIL: --hubs $hubs: libev's assertion"; exit 1; }
done
echo "$out" | grep -q "kudzu: the runtime's descriptor [0-9]* (a hub's [a-z -]*, the hub of OS thread [0-9]*) was closed" \
  || { echo "FAIL: --hubs 2: the message does not name the hub that owned the descriptor"; exit 1; }
echo PASS
