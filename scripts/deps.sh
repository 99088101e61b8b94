# scripts/deps.sh: the Debian packages kudzu builds, tests and benchmarks with.
# Sourced by scripts/test, scripts/demo and scripts/bench.

KUDZU_DEPS=(cmake make gcc libc6-dev pkg-config libev-dev libunwind-dev libzydis-dev liburing-dev libcriterion-dev valgrind gdb
            python3 musl-tools curl socat redis-server redis-tools memcached libmemcached-tools gnuplot-nox
            libpython3.11-testsuite default-jre-headless)

kudzu_install_deps() {
  local missing=() p
  for p in "${KUDZU_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "kudzu: missing packages; install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "kudzu: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Servers from packages must not start as system services: tests start
  # their own instances on free ports.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}
