#!/usr/bin/env bash
# The whole test suite, as the README's second command and as CI runs it:
#   1. install what is missing (scripts/setup.sh --test: build deps, Kafka jars, test tools,
#      the container engine),
#   2. check formatting and lints, that the proxy's top-level modules import each other
#      without a cycle (scripts/check_module_cycles.py), the dependency tree with cargo-deny,
#      and the Helm chart (scripts/deploy/check.sh: helm lint --strict, renderings checked
#      without a cluster),
#   3. build every test once,
#   4. start two three-broker Kafka clusters (RF 3, min.insync.replicas 2) on free loopback
#      ports — one shared by the tests (COURIER_TEST_BOOTSTRAP), one that the fault tests
#      stop and kill (COURIER_TEST_FAULT_KAFKA_DIR) — and a throwaway PostgreSQL
#      (COURIER_TEST_POSTGRES_URL; proxy/tests/store_tls.rs starts a TLS-only one of its own
#      with scripts/postgres.sh --tls-cert),
#   5. start a single-node Elasticsearch for the sink tests (COURIER_TEST_ES_URL) and a
#      one-broker cluster with a SASL_SSL listener (COURIER_TEST_SASL_KAFKA_DIR),
#   6. run every test of the workspace against them (the CloudEvents SDK conformance test with
#      the Python SDK's venv from setup.sh and `npm ci --prefix e2e/sdk/js`),
#   7. run the admin page's browser tests (headless Chromium, e2e/browser) against a proxy
#      process on the shared cluster,
#   8. check the served OpenAPI document against a running proxy with schemathesis
#      (scripts/schemathesis.sh), and run each fuzz target shortly (fuzz/),
#   9. the container suite: Podman's Docker API (scripts/containers/setup.sh --socket), the
#      Kafka, proxy, consumer and PostgreSQL images (scripts/images/build.sh, unchanged ones
#      kept), then e2e/tests/containers.rs — three Kafka brokers in containers under faults,
#      the proxy as a process and as a container, zero loss by id — and, timed apart, the Helm
#      chart played with podman kube play (two proxy pods, one killed) — then stop everything.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p courier-shared`) and skip the
# browser tests, schemathesis, the fuzz smoke run and the container suite.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
LOG_TAG='test'
cd "$root"

"$here/setup.sh" --test --elasticsearch

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo clippy of the container fixtures and suite (feature testcontainers)"
cargo clippy -p courier-e2e --features testcontainers --all-targets --locked -- -D warnings
log "proxy: no import cycle between top-level modules (scripts/check_module_cycles.py)"
python3 "$here/check_module_cycles.py"
# ---- cargo-deny (deny.toml): licences, bans and sources always; advisories need the RustSec
# database, fetched from GitHub, so they are checked only when it can be fetched.
log "cargo deny check licenses bans sources"
cargo deny --locked check licenses bans sources
if timeout 120 cargo deny fetch db >/dev/null 2>&1; then
  log "cargo deny check advisories"
  cargo deny --locked --offline check advisories
else
  log "RustSec advisory database unreachable: advisories NOT checked"
fi
# ---- end cargo-deny
log "Helm chart: lint, renderings and their structural checks (scripts/deploy/check.sh)"
"$here/deploy/check.sh"
log "building tests"
cargo test --workspace --locked --no-run

cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-kafka.XXXXXX")
fault_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-kafka-faults.XXXXXX")
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-pg.XXXXXX")
# ---- Elasticsearch for the consumer and sink tests (started beside the Kafka clusters)
es_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-es.XXXXXX")
chmod 755 "$es_dir" # the node runs as an unprivileged user
cleanup_es() {
  "$here/elasticsearch/node.sh" stop --dir "$es_dir" >/dev/null 2>&1 || true
  if [ "${COURIER_KEEP_LOGS:-}" = "" ]; then rm -rf "$es_dir"; else log "Elasticsearch logs kept in $es_dir"; fi
}
"$here/elasticsearch/node.sh" start --dir "$es_dir" >/dev/null &
es_pid=$!
# ---- end Elasticsearch
# ---- SASL_SSL Kafka (one broker, SCRAM-SHA-512 over TLS) for e2e/tests/sasl.rs
sasl_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-kafka-sasl.XXXXXX")
cleanup_sasl() {
  "$here/kafka/cluster.sh" stop --dir "$sasl_dir" >/dev/null 2>&1 || true
  if [ "${COURIER_KEEP_LOGS:-}" = "" ]; then rm -rf "$sasl_dir"; else log "SASL_SSL Kafka logs kept in $sasl_dir"; fi
}
"$here/kafka/cluster.sh" start --brokers 1 --sasl-ssl --timeout 180 --dir "$sasl_dir" >/dev/null &
sasl_pid=$!
# ---- end SASL_SSL Kafka

# ---- containers: what the container suite leaves behind if it is killed (its containers,
# networks, and the kube play fleet's pods, volumes and secrets are named under this prefix; a
# finished test removes its own).
export COURIER_TEST_CONTAINER_PREFIX="courier-ct-$$"
cleanup_containers() {
  command -v podman >/dev/null || return 0
  local ids
  podman pod ls -q --filter "name=^$COURIER_TEST_CONTAINER_PREFIX-" 2>/dev/null |
    xargs -r podman pod rm -f >/dev/null 2>&1 || true
  podman volume ls -q --filter "name=^$COURIER_TEST_CONTAINER_PREFIX-" 2>/dev/null |
    xargs -r podman volume rm -f >/dev/null 2>&1 || true
  podman secret ls --noheading --format '{{.Name}}' 2>/dev/null |
    grep "^$COURIER_TEST_CONTAINER_PREFIX-" | xargs -r podman secret rm >/dev/null 2>&1 || true
  ids=$(podman ps -aq --filter "name=^$COURIER_TEST_CONTAINER_PREFIX-" 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086 # one id per word
    podman rm -f $ids >/dev/null 2>&1 || true
  fi
  podman network ls -q --filter "name=^$COURIER_TEST_CONTAINER_PREFIX-" 2>/dev/null |
    xargs -r podman network rm -f >/dev/null 2>&1 || true
}
# ---- end containers

cleanup() {
  cleanup_containers
  cleanup_es
  cleanup_sasl
  # Each only while its directory is there: the container suite's cleanup removed them.
  for dir in "$cluster_dir" "$fault_dir"; do
    if [[ -d "$dir" ]]; then "$here/kafka/cluster.sh" stop --dir "$dir" || true; fi
  done
  if [[ -d "$pg_dir" ]]; then "$here/postgres.sh" stop --dir "$pg_dir" || true; fi
  if [ "${COURIER_KEEP_LOGS:-}" = "" ]; then
    rm -rf "$cluster_dir" "$fault_dir" "$pg_dir"
  else
    log "logs kept in $cluster_dir, $fault_dir and $pg_dir"
  fi
}
trap cleanup EXIT
# Two clusters, started side by side: one shared by the ordinary tests, one that the fault
# tests stop and kill without disturbing the others.
# COURIER_TEST_KAFKA=external|mock|testcontainers: the tests bring their own cluster (see
# e2e/src/cluster.rs); COURIER_TEST_BROKERS=1 makes the shared local cluster a single broker.
case "${COURIER_TEST_KAFKA:-local}" in
  local) "$here/kafka/cluster.sh" start --brokers "${COURIER_TEST_BROKERS:-3}" --dir "$cluster_dir" >/dev/null & ;;
  *) true & ;;
esac
shared_pid=$!
"$here/kafka/cluster.sh" start --brokers 3 --dir "$fault_dir" >/dev/null &
fault_pid=$!
wait "$shared_pid" || die "the shared Kafka test cluster did not start"
wait "$fault_pid" || die "the fault-test Kafka cluster did not start"
if [ -f "$cluster_dir/env" ]; then
  # shellcheck disable=SC1091
  . "$cluster_dir/env"
  export COURIER_TEST_BOOTSTRAP COURIER_TEST_KAFKA_DIR
fi
export COURIER_TEST_FAULT_KAFKA_DIR="$fault_dir"
log "Kafka test cluster at ${COURIER_TEST_BOOTSTRAP:-(${COURIER_TEST_KAFKA:-local} fixture)}; fault-test cluster in $fault_dir"
"$here/postgres.sh" start --dir "$pg_dir" >/dev/null
# shellcheck disable=SC1091
. "$pg_dir/env"
export COURIER_TEST_POSTGRES_URL
log "PostgreSQL at $COURIER_TEST_POSTGRES_URL"

# ---- Elasticsearch
wait "$es_pid" || die "the Elasticsearch test node did not start"
# shellcheck disable=SC1091
. "$es_dir/env"
export COURIER_TEST_ES_URL COURIER_TEST_ES_DIR
log "Elasticsearch at $COURIER_TEST_ES_URL"
# ---- end Elasticsearch
# ---- SASL_SSL Kafka
wait "$sasl_pid" || die "the SASL_SSL Kafka test cluster did not start"
export COURIER_TEST_SASL_KAFKA_DIR="$sasl_dir"
log "SASL_SSL Kafka cluster in $sasl_dir"
# ---- end SASL_SSL Kafka

# ---- CloudEvents SDK conformance (e2e/tests/sdks.rs): the Python SDK's venv from setup.sh, the
# JavaScript SDK from its lock file, installed again only when the lock file changed (a second
# run needs no network).
COURIER_TEST_PYTHON="$(courier_cache_dir)/sdk-venv/bin/python"
export COURIER_TEST_PYTHON
sdk_js_sum="$(sha256sum <e2e/sdk/js/package-lock.json | cut -d' ' -f1)"
if [ "$(cat e2e/sdk/js/node_modules/.courier-lock.sha256 2>/dev/null)" != "$sdk_js_sum" ]; then
  log "installing the CloudEvents SDK for JavaScript (npm ci --prefix e2e/sdk/js)"
  npm ci --prefix e2e/sdk/js --no-audit --no-fund --loglevel=error --prefer-offline
  printf '%s\n' "$sdk_js_sum" >e2e/sdk/js/node_modules/.courier-lock.sha256
fi
# ---- end CloudEvents SDK conformance

log "cargo test"
cargo test --workspace --locked "$@"

if (($# == 0)); then
  log "admin page in headless Chromium"
  npm ci --prefix e2e/browser --no-audit --no-fund --loglevel=error
  # The proxy binary the browser tests start was built with the tests (debug profile).
  (cd e2e/browser && node --test --test-concurrency=1 admin.test.mjs)
  log "OpenAPI document against the running proxy (schemathesis)"
  "$here/schemathesis.sh"
  # ---- fuzz smoke run: each target for 10 s from its seeds, with AddressSanitizer
  # (fuzz/README.md). cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable
  # compiler take them.
  log "fuzz smoke run"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build)
  fuzz_corpus=$(mktemp -d "${TMPDIR:-/tmp}/courier-fuzz.XXXXXX")
  for target in envelope batch ndjson naming policy binding http_binary; do
    mkdir -p "$fuzz_corpus/$target"
    seeds=()
    if [ -d "fuzz/seeds/$target" ]; then seeds=("seeds/$target"); fi
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" \
      "$fuzz_corpus/$target" "${seeds[@]}" -- -max_total_time=10 -print_final_stats=1 \
      >"$fuzz_corpus/$target.log" 2>&1); then
      tail -n 40 "$fuzz_corpus/$target.log" >&2
      die "fuzz target $target failed; the input is in fuzz/artifacts/$target"
    fi
    log "fuzz $target: $(awk '/^stat::number_of_executed_units/ {print $2}' "$fuzz_corpus/$target.log") runs, no failure"
  done
  rm -rf "$fuzz_corpus"
  # ---- end fuzz smoke run
fi

if (($# == 0)); then
  # ---- container suite (e2e/tests/containers.rs): its time is logged apart.
  log "container suite: Docker API, images, tests"
  # The process-based clusters have done their part: their memory and cores go to the
  # containers (the EXIT trap's second cleanup finds nothing left to stop, and says nothing).
  cleanup
  containers_t0=$SECONDS
  docker_env=$("$here/containers/setup.sh" --socket)
  eval "$docker_env"
  export DOCKER_HOST
  # The Courier images carry the debug binaries `cargo test --workspace` just built (tag
  # :test): a release build only for this would double the run. PostgreSQL and the consumer
  # are for the kube play fleet.
  COURIER_IMAGES_PROFILE=debug COURIER_IMAGES_SKIP_CARGO=1 "$here/images/build.sh" \
    kafka proxy consumer-main postgres
  export COURIER_TEST_PROXY_IMAGE=localhost/courier-proxy:test
  images_s=$((SECONDS - containers_t0))
  fleet_test=a_proxy_pod_of_the_kube_play_fleet_killed_loses_nothing
  cargo test -p courier-e2e --features testcontainers --locked --lib --test containers -- \
    --nocapture --skip "$fleet_test"
  tests_s=$((SECONDS - containers_t0 - images_s))
  # ---- kube play fleet: the Helm chart (deploy/helm/courier) played by Podman on a Kafka
  # container cluster, two proxy pods, one killed; timed apart.
  fleet_t0=$SECONDS
  cargo test -p courier-e2e --features testcontainers --locked --test containers -- \
    --nocapture --exact "$fleet_test"
  fleet_s=$((SECONDS - fleet_t0))
  log "kube play fleet scenario took ${fleet_s}s"
  # ---- end kube play fleet
  log "container suite took $((SECONDS - containers_t0))s (images ${images_s}s, tests ${tests_s}s, kube play fleet ${fleet_s}s)"
  # ---- end container suite
fi
