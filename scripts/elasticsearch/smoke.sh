#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Prove a running Elasticsearch answers the requests Courier's sink makes: an index template,
# an explicitly created index, _bulk with _id (index and create, into a date-math index name
# the template applies to), a create conflict (409 per item), _count, _mapping; then it
# removes what it created. Every request is bounded (curl --max-time); so is the whole run
# when called through `node.sh smoke`.
#
# Usage: scripts/elasticsearch/smoke.sh URL      (e.g. "$(cat DIR/url)")
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=es-smoke

URL="${1:?usage: smoke.sh URL}"
prefix="courier-smoke-$$"
today="$(date -u +%Y.%m.%d)"
body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT

# req METHOD PATH [BODY] [CONTENT_TYPE]: the response body in $body_file, the status in $status.
req() {
  local args=(-sS --max-time 15 -o "$body_file" -w '%{http_code}' -X "$1" "$URL$2")
  if (($# >= 3)); then
    args+=(-H "Content-Type: ${4:-application/json}" --data-binary "$3")
  fi
  status="$(curl "${args[@]}")" || die "$1 $2: no answer from $URL"
}

# expect CODE WHAT: the last request answered CODE.
expect() {
  [[ "$status" == "$1" ]] || die "$2: expected HTTP $1, got $status: $(head -c 600 "$body_file")"
  log "ok: $2"
}

# json EXPR: evaluate a Python expression over the last response (bound to `r`).
json() {
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$body_file" "$1"
}

check() { # check EXPR WANT WHAT
  local got
  got="$(json "$1")"
  [[ "$got" == "$2" ]] || die "$3: expected $2, got $got: $(head -c 600 "$body_file")"
  log "ok: $3"
}

# No `GET /` here: that handler lives in the rest-root module, which neither this build nor
# the integ-test-zip has (it answers 405). The node's version comes from _nodes instead.
req GET "/_nodes/_local?filter_path=nodes.*.version"
expect 200 "GET /_nodes/_local (version $(json 'list(r["nodes"].values())[0]["version"]'))"

req PUT "/_index_template/$prefix" '{
  "index_patterns": ["'"$prefix"'-*"],
  "template": {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {"properties": {"ts": {"type": "date"}, "msg": {"type": "keyword"}, "n": {"type": "long"}}}
  }
}'
expect 200 "PUT _index_template/$prefix"

req PUT "/$prefix-explicit" '{"settings": {"number_of_shards": 1, "number_of_replicas": 0}}'
expect 200 "PUT /$prefix-explicit (template mappings applied to it too)"

# Date math in the bulk metadata: <prefix-{now/d}> resolves to prefix-YYYY.MM.DD (UTC).
dm="<$prefix-{now/d}>"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
bulk=""
for i in 1 2 3; do
  bulk+='{"index":{"_index":"'"$dm"'","_id":"ev-'"$i"'"}}'$'\n'
  bulk+='{"ts":"'"$now"'","msg":"hello '"$i"'","n":'"$i"'}'$'\n'
done
for i in 4 5; do
  bulk+='{"create":{"_index":"'"$prefix-explicit"'","_id":"ev-'"$i"'"}}'$'\n'
  bulk+='{"ts":"'"$now"'","msg":"hello '"$i"'","n":'"$i"'}'$'\n'
done
req POST "/_bulk?refresh=wait_for" "$bulk" application/x-ndjson
expect 200 "_bulk of 5 docs with _id"
check 'r["errors"]' False "_bulk reports no item errors"
check '",".join(str(list(i.values())[0]["status"]) for i in r["items"])' 201,201,201,201,201 "every _bulk item created (201)"
check 'list(r["items"][0].values())[0]["_index"]' "$prefix-$today" "date-math index name resolved to $prefix-$today"

# A resend of the same _id: `create` answers 409 for that item, `index` overwrites (200).
resend='{"create":{"_index":"'"$prefix-explicit"'","_id":"ev-4"}}'$'\n''{"n":40}'$'\n'
resend+='{"index":{"_index":"'"$prefix-explicit"'","_id":"ev-5"}}'$'\n''{"n":50}'$'\n'
req POST "/_bulk?refresh=wait_for" "$resend" application/x-ndjson
expect 200 "_bulk resend of existing _ids"
check 'r["errors"]' True "_bulk flags the conflicting item"
check '",".join(str(list(i.values())[0]["status"]) for i in r["items"])' 409,200 "create of an existing _id is 409, index of one is 200"
check 'r["items"][0]["create"]["error"]["type"]' version_conflict_engine_exception "409 item carries version_conflict_engine_exception"

req GET "/$prefix-*/_count"
expect 200 "_count over $prefix-*"
check 'r["count"]' 5 "_count is 5"

req GET "/%3C$prefix-%7Bnow%2Fd%7D%3E/_count"
expect 200 "_count on the date-math name in the URL"
check 'r["count"]' 3 "_count of today's index is 3"

req GET "/$prefix-$today/_mapping"
expect 200 "GET _mapping of the auto-created index"
check 'r["'"$prefix-$today"'"]["mappings"]["properties"]["n"]["type"]' long "template mapping applied (n: long)"

req GET "/$prefix-explicit/_doc/ev-5"
expect 200 "GET _doc by _id"
check 'r["_source"]["n"]' 50 "document overwritten by the index resend"

# Clean up by exact names (action.destructive_requires_name is true by default: no wildcards).
req DELETE "/$prefix-$today,$prefix-explicit"
expect 200 "DELETE the smoke indices"
req DELETE "/_index_template/$prefix"
expect 200 "DELETE the smoke index template"
log "smoke test passed against $URL"
