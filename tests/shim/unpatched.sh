#!/usr/bin/env bash
# Programs the shim cannot reach run under the launcher as they do natively,
# with one line on stderr saying they run unpatched, which -q and
# KUDZU_QUIET=1 silence (scripts/kudzu.c, note B): a statically linked
# program (found in PATH, or named by path), a script whose interpreter is
# one, one linked with another C library, and a set-user-ID program.  A dynamic program is patched, silently.
. "$(dirname "$0")/lib.sh"
DYN=${UNPATCHED:?path to tests/helpers/unpatched}
STATIC=${UNPATCHED_STATIC:?path to tests/helpers/unpatched_static}

# same NAME EXPECTED-STDERR-REGEX CMD...: stdout as natively; stderr is one
# line matching the regex, or empty when it is "".
same() {
  local what=$1 want=$2 native
  shift 2
  native=$("$@" 2>&1) || fail "$what natively: exit $?: $native"
  "${kz[@]}" "$@" > "$tmp/out" 2> "$tmp/err" || fail "$what under kudzu: exit $?: $(cat "$tmp/err")"
  [ "$(cat "$tmp/out")" = "$native" ] || fail "$what: output differs: $(cat "$tmp/out") / $native"
  if [ -z "$want" ]; then
    [ ! -s "$tmp/err" ] || fail "$what: unexpected stderr: $(cat "$tmp/err")"
  else
    [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -Eq "$want" "$tmp/err" ||
      fail "$what: stderr is not the one line expected ($want): $(cat "$tmp/err")"
  fi
  echo "ok: $what"
}

kz=("$KZ")
"$STATIC" | grep -q '^shim loaded: no$' || fail "the static helper is not static"
same "static, by path" "^kudzu: .*unpatched_static is statically linked: it runs unpatched" "$STATIC"
cp "$STATIC" "$tmp/static_in_path"
PATH="$tmp:$PATH"
same "static, found in PATH" "^kudzu: static_in_path is statically linked: it runs unpatched" static_in_path
kz=("$KZ" -d)
same "static, with --debug" "statically linked: it runs unpatched" "$STATIC"
kz=("$KZ" -q)
same "static, with -q" "" "$STATIC"
kz=(env KUDZU_QUIET=1 "$KZ")
same "static, with KUDZU_QUIET=1" "" "$STATIC"

printf '#!%s\n' "$STATIC" > "$tmp/script"
chmod +x "$tmp/script"
kz=("$KZ")
same "a script run by a static interpreter" "a script whose interpreter is statically linked: it runs unpatched" "$tmp/script"

# A program linked with another C library (musl): its loader cannot link
# the shim, which is left out.
if command -v musl-gcc > /dev/null; then
  printf '#include <stdio.h>\nint main(void) { puts("musl says hello"); return 0; }\n' > "$tmp/musl.c"
  musl-gcc -o "$tmp/musl_dyn" "$tmp/musl.c" || fail "musl-gcc cannot build"
  same "linked with musl" "^kudzu: .*musl_dyn is linked with another C library.*: it runs unpatched" "$tmp/musl_dyn"
else
  echo "skip: musl-gcc (musl-tools) is not installed"
fi

# A dynamic program is patched, and nothing is said.
[ "$("$KZ" "$DYN" 2> "$tmp/err" | grep 'shim loaded')" = "shim loaded: yes" ] || fail "the dynamic helper is not patched"
[ ! -s "$tmp/err" ] || fail "the dynamic helper made the launcher talk: $(cat "$tmp/err")"

# Set-user-ID to another user (the kernel gives the process AT_SECURE).
if [ "$(id -u)" -eq 0 ] && id nobody > /dev/null 2>&1; then
  cp "$DYN" "$tmp/suid"
  chown nobody "$tmp/suid"
  chmod 4755 "$tmp/suid"
  if "$tmp/suid" | grep -q '^secure: 1$'; then
    same "set-user-ID" "^kudzu: .*suid is set-user-ID: it runs unpatched" "$tmp/suid"
  else
    echo "skip: set-user-ID is not honoured here"
  fi
else
  echo "skip: set-user-ID needs root and a user nobody"
fi
echo PASS
