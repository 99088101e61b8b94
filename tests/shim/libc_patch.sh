#!/usr/bin/env bash
# The libc family switches the patching of libc's code (preload/patch.c):
# on by default, libc's read starts with the jump to the shim, the debug
# log says how many functions were patched, no mapping is left
# writable and executable, and libc's text is in as many mappings as
# natively; with -libc the code is libc's own and the log
# says so.  Nothing is refused on Debian 12's glibc.
. "$(dirname "$0")/lib.sh"
first_byte='import ctypes
libc = ctypes.CDLL("libc.so.6")
print("%02x" % ctypes.cast(ctypes.cast(libc.read, ctypes.c_void_p), ctypes.POINTER(ctypes.c_ubyte))[0])'

log=$("$KZ" -d -- true 2>&1) || fail "true failed: $log"
grep -Eq '^kudzu: libc: [1-9][0-9]* functions patched \([0-9]+ us\)$' <<<"$log" || fail "no patch line: $log"
grep -q 'not patched' <<<"$log" && fail "functions refused: $log"
byte=$("$KZ" -- python3 -c "$first_byte") || fail "python3 failed"
[ "$byte" = e9 ] || fail "libc's read starts with $byte, not the jump (e9)"

# Written and sealed again: no mapping is left writable and executable
# (libc's text is r-x again, the trampolines' page too).
maps=$("$KZ" -- cat /proc/self/maps) || fail "cat failed"
grep -q 'libc\.so' <<<"$maps" || fail "no libc in the maps: $maps"
if grep -E '^[0-9a-f]+-[0-9a-f]+ .wx' <<<"$maps"; then fail "a writable, executable mapping is left"; fi
# Patched in one change of protection: libc's text stays in as many
# mappings as natively (patch.c, note L; page by page it was a dozen, each
# copied by every fork).
text() { grep -cE '^[0-9a-f]+-[0-9a-f]+ r-xp .*/libc\.so' <<<"$1"; }
native=$(cat /proc/self/maps) || fail "cat failed"
[ "$(text "$maps")" = "$(text "$native")" ] ||
  fail "libc's text in $(text "$maps") mappings under the launcher, $(text "$native") natively"

log=$("$KZ" -d -p all,-libc -- true 2>&1) || fail "true failed: $log"
grep -q '^kudzu: libc: not patched (family libc off)$' <<<"$log" || fail "no off line: $log"
grep -q 'functions patched' <<<"$log" && fail "patched with -libc: $log"
byte=$("$KZ" -p all,-libc -- python3 -c "$first_byte") || fail "python3 failed"
[ "$byte" != e9 ] || fail "libc's read patched with -libc"
byte=$(python3 -c "$first_byte")
[ "$byte" != e9 ] || fail "libc's read starts with a jump natively: the check cannot tell"

# Link-time patching: the same line without the launcher.
log=$(KUDZU_DEBUG=1 "${LINKED:?}" 3 2>&1) || fail "linked server failed: $log"
grep -Eq '^kudzu: libc: [1-9][0-9]* functions patched \([0-9]+ us\)$' <<<"$log" || fail "linked: no patch line: $log"
echo PASS
