#!/usr/bin/env bash
# Checks the proxy's OpenAPI document against the proxy itself with schemathesis (PyPI;
# installed by scripts/setup.sh): starts the debug proxy binary on a free loopback port against
# the cluster in COURIER_TEST_BOOTSTRAP, with a temporary SQLite store of its own, makes an API
# key through the admin API, and runs schemathesis twice, every check each time but those named:
#
# 1. The publish and operations endpoints (/v1/…, /healthz, /readyz, /metrics, /openapi.json),
#    with the API key, but `positive_data_acceptance`: the document gives a CloudEvent's shape,
#    while some of its rules (`data` and `data_base64` exclusive, `errortype` with category
#    `error`, attributes that are present not being empty, a `source` naming the key's service)
#    are the proxy's to check and answer per event (422 or 403).
# 2. The admin API (/admin/api/…), with the admin token, after the first run (its policy and
#    key writes would change what the first run sees). Its keys, DLQ and policy writes touch
#    only this proxy's temporary store. Left out are the two operations that change the shared
#    test cluster: `POST /admin/api/topics` (creates a topic) and `PATCH
#    /admin/api/topics/{name}/configs` (alters one). `DELETE /admin/api/topics/{name}` stays
#    in: it needs a confirmation token (an HMAC under the admin token, from `POST
#    …/delete-token`) that generated requests cannot forge, so every call is refused (400);
#    it would have to go if the `stateful` phase, which chains calls, were ever added. Every
#    check runs, but `positive_data_acceptance` for `PUT /admin/api/policy` and `POST
#    /admin/api/policy/preview` (only those two): the document gives a policy's and a sample
#    event's shape, while a policy's patterns must be valid globs, its naming templates must
#    use known placeholders, its templates must not contradict themselves (min.insync.replicas
#    above the replication factor), and a sample event must pass the CloudEvent rules of run 1;
#    the proxy checks those and answers 400 or 422.
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
# Both runs run; the script fails when either does.
status=0
log "run 1: publish and operations endpoints"
(cd "$work" && "$st" run "$base/openapi.json" \
  --header "Authorization: Bearer $key" \
  --include-path-regex '^/(v1/|healthz$|readyz$|metrics$|openapi\.json$)' \
  --checks all --exclude-checks positive_data_acceptance \
  --phases examples,coverage,fuzzing --max-examples 100 --max-time 120 \
  --seed 1 --no-color) || status=1

log "run 2: admin API, but the operations that change Kafka"
# Every check is on by default; `--checks all` would also override the one disabled here.
cat >"$work/admin.toml" <<'EOF'
# Schema-valid policies and sample events the proxy refuses by rules the document cannot state.
[[operations]]
include-operation-id = ["put_policy", "preview_policy"]
checks.positive_data_acceptance.enabled = false
EOF
(cd "$work" && "$st" --config-file "$work/admin.toml" run "$base/openapi.json" \
  --header "Authorization: Bearer $admin_token" \
  --include-path-regex '^/admin/api/' \
  --exclude-operation-id create_topic --exclude-operation-id alter_topic_configs \
  --phases examples,coverage,fuzzing --max-examples 100 --max-time 120 \
  --seed 1 --no-color) || status=1
exit "$status"
