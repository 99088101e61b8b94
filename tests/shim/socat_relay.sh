#!/usr/bin/env bash
# socat under the launcher relays TCP connections (forking per connection)
# to a local HTTP server; what comes through the relay must be identical.
. "$(dirname "$0")/lib.sh"
web=$(free_port); relay=$(free_port)
mkdir -p "$tmp/www"; head -c 2000000 /dev/urandom > "$tmp/www/blob"
(cd "$tmp/www" && exec python3 -m http.server "$web" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
wait_port "$web"
"$KZ" socat TCP-LISTEN:"$relay",bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:"$web" & pids+=($!)
wait_port "$relay"
for i in 1 2 3; do
  curl -sSf -o "$tmp/out$i" "http://127.0.0.1:$relay/blob" || fail "fetch $i through the relay"
  cmp "$tmp/www/blob" "$tmp/out$i" || fail "relayed bytes differ ($i)"
done
# A second relay run as a one-shot pipe: stdin to a TCP echo (socat itself).
echo_port=$(free_port)
"$KZ" socat TCP-LISTEN:"$echo_port",bind=127.0.0.1,reuseaddr,fork EXEC:cat & pids+=($!)
wait_port "$echo_port"
got=$(printf 'through socat\n' | "$KZ" socat -t 2 - TCP:127.0.0.1:"$echo_port")
[ "$got" = "through socat" ] || fail "echo through socat gave '$got'"
echo PASS
