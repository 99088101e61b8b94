#!/usr/bin/env bash
# both.sh LAUNCHER PROGRAM [ARGS...]: run PROGRAM natively and under the
# launcher; both must exit 0 and print the same thing.  stdin is given to
# both runs (the test harness passes an input file with KUDZU_TEST_STDIN).
set -u
launcher=$1; shift
input=${KUDZU_TEST_STDIN:-/dev/null}
native=$("$@" < <(cat "$input") 2>&1); nrc=$?
shim=$("$launcher" "$@" < <(cat "$input") 2>&1); src=$?
echo "native (exit $nrc): $native"
echo "kudzu  (exit $src): $shim"
[ $nrc -eq 0 ] || { echo "FAIL: the program fails natively"; exit 1; }
[ $src -eq 0 ] || { echo "FAIL: the program fails under kudzu"; exit 1; }
[ "$native" = "$shim" ] || { echo "FAIL: outputs differ"; exit 1; }
echo PASS
