#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Courier's benchmark in one command: builds the release binaries, starts a three-broker
# Kafka cluster (replication factor 3, min.insync.replicas 2) and the Strimzi Kafka HTTP
# bridge on free loopback ports, runs `courier-bench --mode produce` (proxy single-event and
# batched POSTs, one and two proxies, the Rust client, a direct rdkafka producer, the bridge;
# single events at 256, 1,024 and 4,096 connections from courier-bench's own generator and
# from wrk side by side (scripts/bench/events.lua: the same realistic events); the same single
# events to the HTTP floor, the proxy's HTTP server with no event path (courier-http-floor);
# fixed rate and maximum; CPU per event, CPU and RSS per process), appends the rows to
# docs/bench/results.csv, writes the charts to docs/bench/*.svg and the summary to
# docs/bench/summary-<UTC time>.md; then `courier-bench --mode dlq` (the store's intake with
# Kafka unreachable, then its drain by a proxy that reaches Kafka: pipelined retry rounds) into
# the same summary; then stops everything it started.
#
# Usage: scripts/bench.sh [--sinks] [--no-bridge] [-- COURIER_BENCH_ARGS...]
#   --sinks      also start Elasticsearch and run `--mode sinks` (the Elasticsearch sink vs a
#                direct _bulk loader, and the handler runtime), summary in the same file
#   --no-bridge  leave the Strimzi bridge out
#   Arguments after -- go to courier-bench, in both modes (e.g. -- --rounds 3 --events 200000).
# Env: CARGO_TARGET_DIR; BENCH_OUT (default docs/bench); STRIMZI_BRIDGE_VERSION;
# BENCH_PREBUILT=1 runs the release binaries already in CARGO_TARGET_DIR without building.
# The bridge is skipped, with a note, when the registry does not serve it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
LOG_TAG=bench

sinks=0 bridge=1 pass=()
while (($#)); do
  case "$1" in
  --sinks) sinks=1; shift ;;
  --no-bridge) bridge=0; shift ;;
  --) shift; pass=("$@"); break ;;
  *) sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done

out="${BENCH_OUT:-$root/docs/bench}"
mkdir -p "$out"
cd "$root"
command -v wrk >/dev/null || "$here/setup.sh" --bench
if [[ -z "${BENCH_PREBUILT:-}" ]]; then
  log "building release binaries"
  cargo build --release -q -p courier-proxy -p courier-e2e
fi
bin="${CARGO_TARGET_DIR:-$root/target}/release/courier-bench"

work="$(mktemp -d /tmp/courier-bench.XXXXXX)"
chmod 755 "$work" # Elasticsearch runs as an unprivileged user and must reach its dir.
cleanup() {
  "$here/strimzi/bridge.sh" stop --dir "$work/bridge" >/dev/null 2>&1 || true
  if [[ -d "$work/es" ]]; then "$here/elasticsearch/node.sh" stop --dir "$work/es" >/dev/null 2>&1 || true; fi
  "$here/kafka/cluster.sh" stop --dir "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$here/kafka/cluster.sh" start --brokers 3 --dir "$work/kafka" >/dev/null
# shellcheck disable=SC1091
source "$work/kafka/env"

if ((bridge)); then
  if "$here/strimzi/bridge.sh" start --dir "$work/bridge" --bootstrap "$COURIER_TEST_BOOTSTRAP" >/dev/null; then
    # shellcheck disable=SC1091
    source "$work/bridge/env"
  else
    log "the Strimzi bridge is not available: its scenarios are skipped"
  fi
fi

stamp="$(date -u +%Y-%m-%dT%H%MZ)"
summary="$out/summary-$stamp.md"
{
  printf '# courier-bench, %s\n\n' "$stamp"
  printf 'Machine: %s cores, %s; load average before: %s\n\n' "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)" "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$summary"
log "running courier-bench --mode produce (progress below, summary in $summary)"
"$bin" --mode produce --kafka-dir "$work/kafka" --csv "$out/results.csv" --svg-dir "$out" \
  --wrk-script "$here/bench/events.lua" \
  "${pass[@]}" | tee -a "$summary"

log "running courier-bench --mode dlq (the store's intake with Kafka unreachable, then its drain)"
printf '\n## The store (--mode dlq)\n\n' >>"$summary"
"$bin" --mode dlq "${pass[@]}" | tee -a "$summary"

if ((sinks)); then
  "$here/elasticsearch/node.sh" start --dir "$work/es" >/dev/null
  # shellcheck disable=SC1091
  source "$work/es/env"
  log "running courier-bench --mode sinks"
  printf '\n## Consumers (--mode sinks)\n\n' >>"$summary"
  "$bin" --mode sinks "${pass[@]}" | tee -a "$summary"
fi
printf '\nLoad average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$summary"
log "done: $summary, $out/results.csv, $out/*.svg"
