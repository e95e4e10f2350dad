#!/usr/bin/env bash
# Starts the whole system on this machine, detached: installs what is missing, builds the
# release binaries, starts a one-broker Kafka on 127.0.0.1:9092 and the proxy on
# 127.0.0.1:8080 with the embedded defaults. State and logs live in .run/; stop everything
# with scripts/down.sh. Running it again restarts the proxy and keeps Kafka's data.
#
# Authentication stays on, as in production: the script makes an API key for each service the
# examples use (billing, orders) through the admin API, once, and keeps them in .run/keys.env
# (`. .run/keys.env` exports BILLING_COURIER_KEY and ORDERS_COURIER_KEY).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
LOG_TAG=up
cd "$root"
run_dir="$root/.run"
mkdir -p "$run_dir"

"$here/setup.sh"
log "building release binaries"
cargo build --release --locked -p courier-proxy

if [ -f "$run_dir/kafka/node1.pid" ] && kill -0 "$(cat "$run_dir/kafka/node1.pid")" 2>/dev/null; then
  log "Kafka already running"
else
  "$here/kafka/cluster.sh" start --brokers 1 --dir "$run_dir/kafka" --port-base 9092
fi

if [ -f "$run_dir/proxy.pid" ] && kill -0 "$(cat "$run_dir/proxy.pid")" 2>/dev/null; then
  log "restarting the proxy"
  kill -TERM "$(cat "$run_dir/proxy.pid")" || true
  wait_for 30 "old proxy to exit" sh -c "! kill -0 $(cat "$run_dir/proxy.pid") 2>/dev/null"
fi
# A local admin token for the admin page; set COURIER_ADMIN__TOKEN to choose another.
admin_token="${COURIER_ADMIN__TOKEN:-courier-admin}"
COURIER_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092 COURIER_DLQ__URL="sqlite:$run_dir/dlq.db" \
  COURIER_ADMIN__TOKEN="$admin_token" nohup "$root/target/release/courier-proxy" \
  --listen 127.0.0.1:8080 >>"$run_dir/proxy.log" 2>&1 &
echo $! >"$run_dir/proxy.pid"
wait_for 60 "proxy ready on 127.0.0.1:8080" curl -fsS -o /dev/null http://127.0.0.1:8080/readyz
# One key per example service, made once and reused while the proxy still accepts it (a
# publish without a body is refused for its key first: 401 means the key is not valid).
keys_file="$run_dir/keys.env"
key_ok() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $1" \
    http://127.0.0.1:8080/v1/events)" != 401 ]
}
new_keys=$(mktemp "$run_dir/keys.XXXXXX")
chmod 600 "$new_keys"
for service in billing orders; do
  var="$(printf %s "$service" | tr '[:lower:]' '[:upper:]')_COURIER_KEY"
  key=$(sed -n "s/^export $var=//p" "$keys_file" 2>/dev/null || true)
  if [ -z "$key" ] || ! key_ok "$key"; then
    key=$(curl -fsS -X POST http://127.0.0.1:8080/admin/api/keys \
      -H "authorization: Bearer $admin_token" -H 'x-courier-actor: scripts/up.sh' \
      -H 'content-type: application/json' \
      -d "{\"service\":\"$service\",\"label\":\"local development (scripts/up.sh)\"}" |
      sed -n 's/.*"key":"\(ck_[A-Za-z0-9_-]*\)".*/\1/p')
    [ -n "$key" ] || die "could not create an API key for $service"
    log "created an API key for service $service"
  fi
  printf 'export %s=%s\n' "$var" "$key" >>"$new_keys"
done
mv "$new_keys" "$keys_file"
log "Courier is up: proxy http://127.0.0.1:8080, Kafka 127.0.0.1:9092 (logs in .run/, stop with scripts/down.sh)"
log "admin page: http://127.0.0.1:8080/admin (admin token: $admin_token)"
log "API keys of the example services in .run/keys.env: . .run/keys.env, then publish with -H \"authorization: Bearer \$BILLING_COURIER_KEY\""
