#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Run the Strimzi Kafka HTTP bridge (fetched by fetch.sh) as a background JVM on 127.0.0.1
# against a Kafka cluster, with producer settings matching the proxy's (acks=all,
# idempotence, lz4, linger.ms 20), for the benchmark.
#
#   bridge.sh start --dir DIR --bootstrap SERVERS [--timeout S]
#       Starts the bridge on a free port and waits (at most S seconds, default 90) until it
#       answers; writes DIR/env (COURIER_TEST_BRIDGE_URL, COURIER_TEST_BRIDGE_PID).
#   bridge.sh stop --dir DIR                SIGTERM, then SIGKILL after 20 s
#
# Layout of DIR: application.properties, log4j2.properties, bridge.log, bridge.pid, env.
# Env: STRIMZI_BRIDGE_VERSION, COURIER_CACHE (see fetch.sh); BRIDGE_JAVA (default Temurin 25:
# the bridge 1.x needs Java 21); BRIDGE_HEAP_OPTS (default "-Xms256m -Xmx512m").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=strimzi-bridge

JAVA="${BRIDGE_JAVA:-/usr/lib/jvm/temurin-25-jdk-amd64/bin/java}"
[[ -x "$JAVA" ]] || JAVA=java
HEAP_OPTS="${BRIDGE_HEAP_OPTS:--Xms256m -Xmx512m}"

usage() {
  sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
DIR="" BOOTSTRAP="" TIMEOUT=90
while (($#)); do
  case "$1" in
  --dir) DIR="$2"; shift 2 ;;
  --bootstrap) BOOTSTRAP="$2"; shift 2 ;;
  --timeout) TIMEOUT="$2"; shift 2 ;;
  *) usage ;;
  esac
done
[[ -n "$DIR" ]] || usage
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"


case "$cmd" in
start)
  [[ -n "$BOOTSTRAP" ]] || usage
  home="$("$here/fetch.sh")"
  read -r port mport < <(free_ports 2 | paste -sd' ')
  cat >"$DIR/application.properties" <<PROPS
bridge.id=courier-bench-bridge
kafka.bootstrap.servers=${BOOTSTRAP}
kafka.producer.acks=all
kafka.producer.enable.idempotence=true
kafka.producer.compression.type=lz4
kafka.producer.linger.ms=20
kafka.producer.batch.size=1048576
http.host=127.0.0.1
http.port=${port}
http.management.port=${mport}
http.producer.enabled=true
http.consumer.enabled=false
PROPS
  cat >"$DIR/log4j2.properties" <<'LOG'
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDOUT
LOG
  # shellcheck disable=SC2086 # HEAP_OPTS holds several flags
  nohup "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
    -Dvertx.cacheDirBase="$DIR/vertx-cache" \
    -Dlog4j2.configurationFile="file:$DIR/log4j2.properties" \
    -cp "$home/libs/*" io.strimzi.kafka.bridge.Application \
    --config-file "$DIR/application.properties" >"$DIR/bridge.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$DIR/bridge.pid"
  url="http://127.0.0.1:${port}"
  # GET / answers with the bridge's version; 1.x also has /ready on the management port.
  if ! wait_for "$TIMEOUT" "the bridge at $url" \
    bash -c "kill -0 $pid && { curl -sf -o /dev/null --max-time 2 $url/ || curl -sf -o /dev/null --max-time 2 http://127.0.0.1:${mport}/ready; }"; then
    tail -n 20 "$DIR/bridge.log" >&2
    kill "$pid" 2>/dev/null || true
    die "the bridge did not start"
  fi
  printf "export COURIER_TEST_BRIDGE_URL='%s'\nexport COURIER_TEST_BRIDGE_PID=%s\n" "$url" "$pid" >"$DIR/env"
  log "bridge $(basename "$home") at $url (pid $pid)"
  printf '%s\n' "$url"
  ;;
stop)
  [[ -f "$DIR/bridge.pid" ]] || exit 0
  pid="$(cat "$DIR/bridge.pid")"
  if pid_alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do pid_alive "$pid" || break; sleep 1; done
    if pid_alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$DIR/bridge.pid"
  ;;
*) usage ;;
esac
