#!/usr/bin/env bash
# Pipes a program under the launcher inherits on stdin and stdout are shared
# open files: after it used them (its reads parked on the hub), a process
# outside the runtime that shares them finds them exactly as before, blocking.
. "$(dirname "$0")/lib.sh"
check='import fcntl, os, sys
for fd in (0, 1):
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK:
        sys.exit("descriptor %d was left non-blocking" % fd)'
# The data comes late, so the program's first read waits (on the hub).
out=$( { sleep 0.2; printf 'line\n'; } |
       { "$KZ" head -n 1 && env -u LD_PRELOAD python3 -c "$check"; } ) || fail "exit $?"
[ "$out" = "line" ] || fail "got '$out'"
echo PASS
