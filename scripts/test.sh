#!/usr/bin/env bash
# The whole test suite, as the README's second command and as CI runs it:
#   1. install what is missing (scripts/setup.sh: build deps, Kafka jars),
#   2. check formatting and lints,
#   3. build every test once,
#   4. start ONE three-broker Kafka cluster (RF 3, min.insync.replicas 2) on free loopback
#      ports and hand its address to the tests through COURIER_TEST_BOOTSTRAP,
#      and a throwaway PostgreSQL (scripts/postgres.sh) through COURIER_TEST_POSTGRES_URL,
#   5. run every test of the workspace against it, then stop the cluster.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p courier-shared`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
LOG_TAG='test'
cd "$root"

"$here/setup.sh"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building tests"
cargo test --workspace --locked --no-run

cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-kafka.XXXXXX")
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/courier-test-pg.XXXXXX")
cleanup() {
  "$here/kafka/cluster.sh" stop --dir "$cluster_dir" || true
  "$here/postgres.sh" stop --dir "$pg_dir" || true
  if [ "${COURIER_KEEP_LOGS:-}" = "" ]; then rm -rf "$cluster_dir" "$pg_dir"; else log "cluster logs kept in $cluster_dir, PostgreSQL's in $pg_dir"; fi
}
trap cleanup EXIT
"$here/kafka/cluster.sh" start --brokers 3 --dir "$cluster_dir"
# shellcheck disable=SC1091
. "$cluster_dir/env"
export COURIER_TEST_BOOTSTRAP COURIER_TEST_KAFKA_DIR
log "Kafka test cluster at $COURIER_TEST_BOOTSTRAP"
"$here/postgres.sh" start --dir "$pg_dir" >/dev/null
# shellcheck disable=SC1091
. "$pg_dir/env"
export COURIER_TEST_POSTGRES_URL
log "PostgreSQL test server at $COURIER_TEST_POSTGRES_URL"

log "cargo test"
cargo test --workspace --locked "$@"
