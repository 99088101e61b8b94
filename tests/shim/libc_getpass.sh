#!/usr/bin/env bash
# getpass on a terminal (glibc reads /dev/tty with __read_nocancel) parks
# only its thread: the helper's main thread ticks on time meanwhile, natively
# and under the launcher.  The helper runs on a new pseudo-terminal; this
# side answers with the password once the helper says "ticked".
. "$(dirname "$0")/lib.sh"
HELPER=${HELPER:?path to libc_getpass_ticker}
drive='import os, pty, sys, select, time
pid, master = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out, answered, deadline = b"", False, time.monotonic() + 15
while time.monotonic() < deadline:
    r, _, _ = select.select([master], [], [], 0.5)
    if not r:
        continue
    try:
        data = os.read(master, 1024)
    except OSError:
        break
    if not data:
        break
    out += data
    if not answered and b"ticked" in out:
        os.write(master, b"secret\n")
        answered = True
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(0 if os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 and b"got it" in out else 1)'
out=$(python3 -c "$drive" "$HELPER") || fail "natively: $out"
out=$(python3 -c "$drive" "$KZ" "$HELPER") || fail "under the launcher: $out"
echo PASS
