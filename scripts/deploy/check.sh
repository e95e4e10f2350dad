#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Checks the Helm chart deploy/helm/courier without a cluster: `helm lint --strict`, then
# `helm template` with each set of values a deployment uses (the defaults; a managed
# PostgreSQL with an existing Secret; one host under podman kube play), each rendering checked
# by check_manifests.py (structure, security context, probes, the grace period against the
# proxy's drain, what the pods reference); and renderings the chart must refuse (a grace period
# shorter than the drain, no store). Schema validation with kubeconform is NOT run: it fetches
# its schemas from the internet, which CI cannot reach.
#
# Usage: scripts/deploy/check.sh        (helm from scripts/setup.sh --test, or HELM=...)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=chart

helm="${HELM:-$(courier_cache_dir)/go-bin/helm}"
[[ -x "$helm" ]] || die "helm not found at $helm (scripts/setup.sh --test builds it)"
chart="$root/deploy/helm/courier"
# A go-installed helm assumes Kubernetes 1.20 when no cluster tells it otherwise.
kube=(--kube-version 1.31.0)

"$helm" lint --strict "$chart" "${kube[@]}" | grep -v '^$' >&2
"$helm" lint --strict "$chart" "${kube[@]}" -f "$chart/values-podman.yaml" \
  --set secret.existingSecret=courier-credentials | grep -v '^$' >&2

# render NAME CHECK_ARGS -- HELM_ARGS...: one rendering, checked.
render() {
  local name=$1 check_args=()
  shift
  while [[ $1 != -- ]]; do check_args+=("$1"); shift; done
  shift
  local out
  out="$("$helm" template courier "$chart" "${kube[@]}" "$@" |
    python3 "$here/check_manifests.py" "${check_args[@]}")" || die "rendering '$name' fails its checks"
  log "rendering '$name': $out"
}
render "defaults" --
render "managed PostgreSQL, existing Secret" --existing-secret courier-credentials -- \
  --set postgres.enabled=false --set secret.existingSecret=courier-credentials
render "one host, podman kube play" --podman --existing-secret courier-credentials -- \
  -f "$chart/values-podman.yaml" --set secret.existingSecret=courier-credentials

# refused NAME MESSAGE HELM_ARGS...: the chart must refuse this rendering, saying MESSAGE.
refused() {
  local name=$1 message=$2 err
  shift 2
  if err="$("$helm" template courier "$chart" "${kube[@]}" "$@" 2>&1 >/dev/null)"; then
    die "the chart rendered '$name', which it must refuse"
  fi
  grep -q "$message" <<<"$err" || die "'$name' refused for another reason: $err"
  log "refused as it should: $name"
}
refused "a grace period shorter than the drain" "must exceed the proxy's shutdown drain" \
  --set proxy.terminationGracePeriodSeconds=60
refused "a longer ack timeout without a longer grace period" "must exceed the proxy's shutdown drain" \
  --set proxy.config.delivery.ack_timeout_ms=30000
refused "no PostgreSQL and no database URL" "secret.databaseUrl is required" \
  --set postgres.enabled=false
log "kubeconform NOT run: its Kubernetes schemas come from the internet, unreachable here"
