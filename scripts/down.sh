#!/usr/bin/env bash
# Stops what scripts/up.sh started: the proxy first (SIGTERM: it drains and flushes), then
# Kafka. Data stays in .run/ for the next start.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
LOG_TAG=down
run_dir="$root/.run"
if [ -f "$run_dir/proxy.pid" ]; then
  pid=$(cat "$run_dir/proxy.pid")
  if kill -TERM "$pid" 2>/dev/null; then
    wait_for 30 "proxy to exit" sh -c "! kill -0 $pid 2>/dev/null"
  fi
  rm -f "$run_dir/proxy.pid"
fi
if [ -d "$run_dir/kafka" ]; then
  "$here/kafka/cluster.sh" stop --dir "$run_dir/kafka"
fi
log "stopped"
