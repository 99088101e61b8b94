#!/usr/bin/env bash
# curl under the launcher fetches files from a local python3 http.server,
# also several at once with its parallel transfers; checksums must match.
. "$(dirname "$0")/lib.sh"
port=$(free_port)
mkdir -p "$tmp/www"
head -c 3000000 /dev/urandom > "$tmp/www/big"
for i in 1 2 3 4 5; do head -c 100000 /dev/urandom > "$tmp/www/f$i"; done
(cd "$tmp/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
wait_port "$port"
"$KZ" curl -sSf -o "$tmp/big.out" "http://127.0.0.1:$port/big" || fail "curl exited $?"
cmp "$tmp/www/big" "$tmp/big.out" || fail "downloaded bytes differ"
"$KZ" curl -sSf --parallel --parallel-max 5 $(for i in 1 2 3 4 5; do echo "-o $tmp/f$i.out http://127.0.0.1:$port/f$i"; done) \
  || fail "parallel curl exited $?"
for i in 1 2 3 4 5; do cmp "$tmp/www/f$i" "$tmp/f$i.out" || fail "f$i differs"; done
echo PASS
