#!/usr/bin/env bash
# kz.sh MODE: the gdb extension (gdb/kudzu-gdb.py) on tests/gdb/parked.c,
# whose green threads are parked in every kind of wait.  MODE is how gdb
# meets the process:
#   trap    started under gdb, stopped at a SIGTRAP it raises (live)
#   attach  gdb -p on the running process (live)
#   gcore   a core file written by gcore from the running process
#   crash   the core file of a real crash (abort()); if the kernel's cores go
#           to a pipe (core_pattern "|..."), gdb writes the core at the crash
# Each of these checks the same things: the hubs, each green thread's name,
# state and wait, that kz bt shows the helper's own function for each, that
# identical stacks are grouped, and that kz select makes a parked green
# thread's frames gdb's own (bt, frame, info locals) until kz unselect.
#   launcher  tests/gdb/threads_parked.c, a plain pthread program, started
#             under gdb through the launcher: its threads, parked in the shim
#   nodebug   libkudzu without debug information: the commands say so
# The extension is auto-loaded from next to libkudzu, as installed.
# Environment: GDB, PARKED (the helper), KUDZU_LIB (libkudzu's real file);
# for the launcher mode KZ (the launcher) and THREADS_PARKED.
set -euo pipefail
mode=$1
: "${GDB:=gdb}" "${PARKED:?}" "${KUDZU_LIB:?}"
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# No core written here may grow past 2 GiB, whatever goes wrong (bash counts
# 1 KiB blocks); every wait is bounded well below the test's timeout, so the
# clean-up above always runs.
core_cap=$((2 * 1024 * 1024))
ulimit -f "$core_cap" 2>/dev/null || true
# AddressSanitizer builds: let the crash write a core (ASan maps its shadow
# memory with MADV_DONTDUMP, so the core stays small).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0:detect_leaks=0"

# The commands every mode runs, after gdb has the process or the core.
cmds=(
  -ex "info kudzu"
  -ex "kz threads"
  -ex "kz threads --state sleeping"
  -ex "kz threads --name nap*"
  -ex "echo ==noframes\n" -ex "kz threads --no-frames --name locker"
  -ex "echo ==bt\n"
)
for n in sleeper reader holder locker joiner getter yielder napper-1 fresh remote; do
  cmds+=(-ex "kz bt $n")
done
cmds+=(
  -ex "echo ==all\n" -ex "kz bt all" -ex "echo ==select\n"
  -ex "kz select getter" -ex "bt" -ex "frame function park_getter" -ex "info locals"
  -ex "echo ==unselect\n" -ex "kz unselect" -ex "bt"
  -ex "echo ==end\n"
)
gdb_run() { # gdb_run ARGS: the commands on what ARGS give gdb (ARGS last: --args)
  timeout 40 "$GDB" -batch -nx -iex "set debuginfod enabled off" \
    -iex "add-auto-load-safe-path $(dirname "$KUDZU_LIB")" "${cmds[@]}" "$@" >"$tmp/out" 2>&1 || true
}

# Attaching needs ptrace rights over the process (root, or Yama's
# kernel.yama.ptrace_scope 0, and a container that allows ptrace): without
# them the attaching modes are skipped, saying why.
no_ptrace() {
  if grep -q "ptrace: Operation not permitted" "$1"; then
    echo "skipped: gdb may not attach here (ptrace: Operation not permitted)"
    exit 77
  fi
}

# Is the helper built with AddressSanitizer?  (grep reads all of ldd's
# output: with -q it may exit first, and pipefail would count ldd's SIGPIPE.)
sanitized() { ldd "$PARKED" | grep libasan >/dev/null; }

# Start the helper in wait mode; sets pid once every green thread is parked.
start_waiting() {
  "$PARKED" wait >"$tmp/ready" &
  pid=$!
  for _ in $(seq 200); do
    grep -q '^ready' "$tmp/ready" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: the helper did not get ready" >&2
  exit 1
}

case $mode in
trap)
  cmds=(-ex run "${cmds[@]}")
  gdb_run --args "$PARKED" trap
  ;;
attach)
  start_waiting
  gdb_run -p "$pid"
  no_ptrace "$tmp/out"
  ;;
gcore)
  # gdb reads the process's memory for gcore in chunks of 1 MiB, and a chunk
  # that holds a guard region of MADV_GUARD_INSTALL (Linux >= 6.13) fails to
  # read as a whole: the stacks would be missing from the core.  Guard pages
  # made with mprotect are mappings of their own, which gcore skips.
  export KUDZU_STACK_GUARD=mprotect
  # gdb's gcore of a process under AddressSanitizer writes the sanitizer's
  # reserved regions too (tens of GiB here); sanitizer builds take the
  # kernel's core instead (the crash mode, ASAN_OPTIONS=disable_coredump=0).
  if sanitized; then
    echo "skipped: gcore of a sanitizer build (see the crash mode)"
    exit 77
  fi
  start_waiting
  timeout 40 "$GDB" -batch -nx -iex "set debuginfod enabled off" -p "$pid" \
    -ex "generate-core-file $tmp/core" >"$tmp/gcore.out" 2>&1 || true
  no_ptrace "$tmp/gcore.out"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  [ -s "$tmp/core" ] || { cat "$tmp/gcore.out"; echo "FAIL: gcore wrote no core" >&2; exit 1; }
  gdb_run "$PARKED" "$tmp/core"
  ;;
crash)
  pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo core)
  if [ "${pattern:0:1}" != "|" ] && ulimit -c "$core_cap" 2>/dev/null; then
    (cd "$tmp" && exec "$PARKED" abort) 2>"$tmp/crash.err" || true
    core=$(ls -t "$tmp"/core* 2>/dev/null | head -1 || true)
  fi
  if [ -z "${core:-}" ]; then
    echo "the kernel's core went elsewhere ($pattern): gdb writes the crash's core"
    if sanitized; then
      echo "skipped: gdb's core of a sanitizer build (see the gcore mode)"
      exit 77
    fi
    export KUDZU_STACK_GUARD=mprotect # see the gcore mode
    core=$tmp/core.gdb
    timeout 40 "$GDB" -batch -nx -iex "set debuginfod enabled off" -ex run \
      -ex "generate-core-file $core" --args "$PARKED" abort >"$tmp/crash.out" 2>&1 || true
    [ -s "$core" ] || { cat "$tmp/crash.out"; echo "FAIL: no core" >&2; exit 1; }
  fi
  gdb_run "$PARKED" "$core"
  grep -q "SIGABRT" "$tmp/out" || { cat "$tmp/out"; echo "FAIL: not the core of the abort" >&2; exit 1; }
  ;;
launcher)
  cmds=(-ex run -ex "info kudzu" -ex "kz threads" -ex "echo ==bt\n")
  for n in reader locker waiter sleeper joiner spinner; do
    cmds+=(-ex "kz bt t-$n")
  done
  cmds+=(-ex "echo ==end\n")
  gdb_run --args "${KZ:?}" -- "${THREADS_PARKED:?}"
  ;;
nodebug)
  # The same library with its debug information stripped, found first.
  mkdir "$tmp/lib"
  cp "$KUDZU_LIB" "$tmp/lib/"
  strip --strip-debug "$tmp/lib/$(basename "$KUDZU_LIB")"
  ln -s "$(basename "$KUDZU_LIB")" "$tmp/lib/libkudzu.so.0"
  cp "$(dirname "$KUDZU_LIB")/$(basename "$KUDZU_LIB")-gdb.py" "$tmp/lib/"
  KUDZU_LIB=$tmp/lib/$(basename "$KUDZU_LIB")
  cmds=(-ex run -ex "info kudzu" -ex "kz threads" -ex "kz bt 2" -ex "echo ==end\n")
  gdb_run -iex "set environment LD_LIBRARY_PATH=$tmp/lib" --args "$PARKED" trap
  ;;
*)
  echo "usage: kz.sh trap|attach|gcore|crash|launcher|nodebug" >&2
  exit 2
  ;;
esac

out=$tmp/out
fails=0
section() { sed -n "/^==$1\$/,/^==/p" "$out"; }
expect() { # expect WHAT REGEX [SECTION]: a line of the output (or of a section) matches
  local text
  if [ -n "${3:-}" ]; then text=$(section "$3"); else text=$(cat "$out"); fi
  if ! grep -Eq -- "$2" <<<"$text"; then
    echo "FAIL: $1 (no line matches: $2)"
    fails=$((fails + 1))
  fi
}
refuse() { # refuse WHAT REGEX SECTION: no line of the section matches
  if section "$3" | grep -Eq -- "$2"; then
    echo "FAIL: $1 (a line matches: $2)"
    fails=$((fails + 1))
  fi
}

launcher_checks() {
  # with KUDZU_HUBS=2 or more the threads are spread over the hubs
  expect "the first hub" '^hub 1 at 0x[0-9a-f]+: OS thread [0-9]+ \(gdb thread [0-9]+\)'
  if [ "${KUDZU_HUBS:-1}" -ge 2 ] 2>/dev/null; then
    expect "the second hub" '^hub 2 at 0x[0-9a-f]+: OS thread [0-9]+ \(gdb thread [0-9]+\)'
  fi
  expect "the thread in read, named by pthread_setname_np" \
    '^ +[0-9]+ +[0-9]+ +waiting +t-reader +fd [0-9]+ read +block_in_read at threads_parked\.c'
  expect "the thread in pthread_mutex_lock" '^ +[0-9]+ +[0-9]+ +waiting +t-locker +a pthread mutex +block_in_lock at threads_parked\.c'
  expect "the thread in pthread_cond_wait" '^ +[0-9]+ +[0-9]+ +waiting +t-waiter +a condition variable +block_in_wait at threads_parked\.c'
  expect "the thread in nanosleep" '^ +[0-9]+ +[0-9]+ +sleeping +t-sleeper +sleep, .* block_in_sleep at threads_parked\.c'
  expect "the thread in pthread_join" \
    '^ +[0-9]+ +[0-9]+ +waiting +t-joiner +(join [0-9]+ "t-sleeper"|a join from another thread) +block_in_join at threads_parked\.c'
  expect "the computing thread, preempted or running on its hub" \
    '^ +[0-9]+ +[0-9]+ +(runnable|running) +t-spinner +- +spin_forever at threads_parked\.c:[0-9]+( \(preempted\))?$'
  for n in read lock wait sleep join; do
    expect "kz bt shows block_in_$n" "^#[0-9]+ +(0x[0-9a-f]+ in )?block_in_$n \\(.*threads_parked\\.c:[0-9]+" bt
  done
  expect "kz bt of the preempted thread shows spin_forever" '^#[0-9]+ +(0x[0-9a-f]+ in )?spin_forever \(.*threads_parked\.c:[0-9]+' bt
  expect "kz bt goes through the shim" '^#[0-9]+ .* in thr_start \(' bt
}

nodebug_checks() {
  expect "the commands say the debug information is missing" \
    '^kudzu: libkudzu has no debug information: build it with -DCMAKE_BUILD_TYPE=RelWithDebInfo'
}

parked_checks() {
  expect "one hub, on an OS thread of the process" '^hub 1 at 0x[0-9a-f]+: OS thread [0-9]+ \(gdb thread [0-9]+\)'
  expect "the hub's counts" ' 1 running, 1 runnable, 1 pending, [0-9]+ waiting, 4 sleeping$'
  # (its green thread has parked; its hub may not have entered libev yet)
  expect "the remote hub, on its own OS thread" \
    '^hub 2 at 0x[0-9a-f]+: OS thread [0-9]+ \(gdb thread [0-9]+\), (polling in libev|on the hub context),'
  expect "the remote hub's counts" ' 0 running, 0 runnable, 0 pending, [0-9]+ waiting, 1 sleeping$'
  expect "remote sleeps on hub 2" '^ +[0-9]+ +2 +sleeping +remote +sleep, .* park_remote at parked\.c'
  # kz threads: ID HUB STATE NAME WAITS-ON PARKED-IN
  expect "sleeper sleeps" '^ +[0-9]+ +1 +sleeping +sleeper +sleep, .* park_sleeper at parked\.c:[0-9]+$'
  expect "reader waits to read its fd" '^ +[0-9]+ +1 +waiting +reader +fd [0-9]+ read +park_reader at parked\.c'
  expect "holder waits on the event" '^ +[0-9]+ +1 +waiting +holder +event 0x[0-9a-f]+ +park_holder at parked\.c'
  expect "locker waits on the mutex holder holds" \
    '^ +[0-9]+ +1 +waiting +locker +mutex 0x[0-9a-f]+, held by [0-9]+ "holder" +park_locker at parked\.c'
  expect "joiner waits to join sleeper" '^ +[0-9]+ +1 +waiting +joiner +join [0-9]+ "sleeper" +park_joiner at parked\.c'
  expect "getter waits on the queue" '^ +[0-9]+ +1 +waiting +getter +queue get 0x[0-9a-f]+, 0 items +park_getter at parked\.c'
  expect "fresh has not started" '^ +[0-9]+ +1 +pending +fresh .*not started: will run park_fresh'
  expect "--no-frames leaves the frames out" '^ +[0-9]+ +1 +waiting +locker +mutex 0x[0-9a-f]+, held by [0-9]+ "holder"$' noframes
  expect "yielder is runnable" '^ +[0-9]+ +1 +runnable +yielder +- +park_yielder at parked\.c'
  expect "the running green thread" '^ +[0-9]+ +1 +running '
  for n in 1 2 3; do
    expect "napper-$n sleeps" "^ +[0-9]+ +1 +sleeping +napper-$n +sleep, .* park_napper at parked\.c"
  done
  # kz bt NAME: the helper's own function, below the runtime's frames.
  for n in sleeper reader holder locker joiner getter yielder; do
    expect "kz bt $n shows park_$n" "^#[0-9]+ +(0x[0-9a-f]+ in )?park_$n \(.*parked\.c:[0-9]+" bt
  done
  expect "kz bt remote shows park_remote" '^#[0-9]+ +(0x[0-9a-f]+ in )?park_remote \(' bt
  expect "kz bt napper-1 shows park_napper" '^#[0-9]+ +(0x[0-9a-f]+ in )?park_napper \(' bt
  expect "kz bt starts at the park" '^#1 +0x[0-9a-f]+ in (switch_to|kz__switch_to|kz__schedule)' bt
  expect "kz bt of a green thread that has not started" 'not started: will run park_fresh' bt
  refuse "kz bt shows no OS-thread frame for a parked green thread" '^#0 ' bt
  # kz bt all: the three nappers share one stack.
  expect "kz bt all groups identical stacks" '^3 green threads: [0-9]+ "napper-1" sleeping, [0-9]+ "napper-2" sleeping, [0-9]+ "napper-3" sleeping$' all
  expect "kz bt all lists every stack" '^ +#[0-9]+ +park_locker at parked\.c' all
  # kz select: gdb's own commands on the green thread's frames.
  expect "after kz select, bt shows the green thread" '^#[0-9]+ +(0x[0-9a-f]+ in )?park_getter \(' select
  expect "frame 0 names the green thread" '^#0 +.*green [0-9]+ "getter" follows' select
  expect "info locals in the green thread's frame" '^item = ' select
  refuse "after kz unselect, bt is the OS thread's own" 'park_getter' unselect
}

case $mode in
launcher) launcher_checks ;;
nodebug) nodebug_checks ;;
*) parked_checks ;;
esac
expect "the commands all ran" '^==end$'
if grep -Eq 'Traceback|Python Exception|Error occurred in Python' "$out"; then
  echo "FAIL: the extension raised a Python exception"
  fails=$((fails + 1))
fi
if [ "$fails" -ne 0 ]; then
  echo "---- gdb's output ($mode) ----"
  cat "$out"
  exit 1
fi
[ -n "${KZ_SHOW:-}" ] && cat "$out"
echo "gdb extension, $mode: every check passed"
