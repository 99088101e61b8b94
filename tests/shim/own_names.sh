#!/usr/bin/env bash
# own_names.sh LIBKUDZU LIBKUDZU_PRELOAD: libkudzu calls no function by a name
# the shim interposes (hub/internal.h, "Reaching libc, not the shim").  Such
# a call would reach the shim's interposer first, as the program's calls do:
# the runtime's own reads, writes, closes and signal handlers would become
# green waits or be wrapped as the program's.  libkudzu reaches those
# functions through its kz__os_ table instead.  Every name libkudzu leaves
# for the dynamic linker to resolve (its undefined symbols, which covers
# addresses taken too) must be one the shim does not define.
set -euo pipefail
lib=$1 preload=$2
names() { nm -D "$@" | awk '{ print $NF }' | sed 's/@.*//' | sort -u; }
both=$(comm -12 <(names --undefined-only "$lib") <(names --defined-only "$preload"))
if [ -n "$both" ]; then
  echo "libkudzu calls functions the shim interposes, by name:" $both >&2
  exit 1
fi
echo "libkudzu resolves $(names --undefined-only "$lib" | wc -l) names, none of the shim's"
