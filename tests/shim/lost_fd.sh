#!/usr/bin/env bash
# lost_fd.sh LAUNCHER HELPER ARG: a program that closes the runtime's
# descriptors with the system call instruction works natively; under the launcher it
# stops with a message naming the descriptor, by SIGABRT, without libev's
# assertion.
set -u
launcher=$1 helper=$2
out=$("$helper" "$3" 2>&1) || { echo "FAIL: natively: $out"; exit 1; }
echo "native: $out"
out=$("$launcher" "$helper" "$3" 2>&1); rc=$?
echo "kudzu (exit $rc): $out"
[ $rc -eq 134 ] || { echo "FAIL: expected SIGABRT (134)"; exit 1; }
echo "$out" | grep -q "kudzu: the runtime's descriptor [0-9]* (a hub's .*) was closed or replaced behind its back" \
  || { echo "FAIL: no message naming the descriptor"; exit 1; }
echo "$out" | grep -q "Assertion" && { echo "FAIL: libev's assertion"; exit 1; }
echo PASS
