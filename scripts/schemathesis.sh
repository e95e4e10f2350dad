#!/usr/bin/env bash
# Checks the proxy's OpenAPI document against the proxy itself with schemathesis (PyPI;
# installed by scripts/setup.sh): starts the debug proxy binary on a free loopback port against
# the cluster in COURIER_TEST_BOOTSTRAP, makes an API key through the admin API, and runs
# schemathesis on the publish and operations endpoints (/v1/…, /healthz, /readyz, /metrics,
# /openapi.json) with every check but `positive_data_acceptance`: the document gives a
# CloudEvent's shape, while some of its rules (`data` and `data_base64` exclusive, `errortype`
# with category `error`, attributes that are present not being empty, a `source` naming the
# key's service) are the proxy's to check and answer per event (422 or 403). The admin API is
# left out: its writes create and delete real topics in the shared test cluster.
#
# Usage: scripts/schemathesis.sh   (COURIER_TEST_BOOTSTRAP set; scripts/test.sh runs it)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
LOG_TAG=schemathesis
cd "$root"

: "${COURIER_TEST_BOOTSTRAP:?COURIER_TEST_BOOTSTRAP must name a running Kafka cluster}"
st="$(courier_cache_dir)/schemathesis-venv/bin/schemathesis"
[ -x "$st" ] || die "schemathesis is not installed: run scripts/setup.sh"
proxy="${CARGO_TARGET_DIR:-$root/target}/debug/courier-proxy"
[ -x "$proxy" ] || cargo build --locked -p courier-proxy

work=$(mktemp -d "${TMPDIR:-/tmp}/courier-schemathesis.XXXXXX")
port=$(free_port)
base="http://127.0.0.1:$port"
admin_token="schemathesis-$(date +%s%N)"
COURIER_KAFKA__BOOTSTRAP_SERVERS="$COURIER_TEST_BOOTSTRAP" COURIER_DLQ__URL="sqlite:$work/dlq.db" \
  COURIER_ADMIN__TOKEN="$admin_token" RUST_LOG=warn "$proxy" --listen "127.0.0.1:$port" \
  >"$work/proxy.log" 2>&1 &
proxy_pid=$!
stop() {
  kill -TERM "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
  if [ "${COURIER_KEEP_LOGS:-}" = "" ]; then rm -rf "$work"; else log "logs kept in $work"; fi
}
trap stop EXIT
wait_for 60 "proxy on $base" curl -fsS -o /dev/null "$base/readyz"
key=$(curl -fsS -X POST "$base/admin/api/keys" -H "authorization: Bearer $admin_token" \
  -H 'content-type: application/json' -d '{"service":"schemathesis","label":"API conformance"}' |
  sed -n 's/.*"key":"\(ck_[A-Za-z0-9_-]*\)".*/\1/p')
[ -n "$key" ] || die "could not create an API key"

log "schemathesis $("$st" --version | grep -o '[0-9][0-9.]*' | head -1) against $base/openapi.json"
(cd "$work" && "$st" run "$base/openapi.json" \
  --header "Authorization: Bearer $key" \
  --include-path-regex '^/(v1/|healthz$|readyz$|metrics$|openapi\.json$)' \
  --checks all --exclude-checks positive_data_acceptance \
  --phases examples,coverage,fuzzing --max-examples 100 --max-time 120 \
  --seed 1 --no-color)
