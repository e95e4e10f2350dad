#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Run a local Apache Kafka (KRaft) cluster of 1 or 3 combined broker+controller
# nodes as plain background JVM processes, for Courier's integration and fault
# tests. Everything lives in one directory (--dir); ports default to free ones
# so a test cluster never collides with another instance.
#
#   cluster.sh start --brokers 1|3 --dir DIR [--port-base P] [--timeout S]
#                    [--set key=value]... [--sasl-ssl] [--fresh]
#       If DIR holds a stopped cluster of the same shape, start resumes it
#       with its data; --fresh replaces it with a new, empty one.
#       --sasl-ssl gives every broker a second client listener, SASL_SSL with
#       SCRAM-SHA-512, besides PLAINTEXT: a CA and a broker certificate for
#       127.0.0.1/localhost are made in DIR/tls (openssl), the SCRAM user
#       `courier` with a random password is created at format time, and
#       DIR/sasl-client.properties holds the librdkafka properties of a client
#       of that listener (bootstrap, security.protocol, mechanism, user,
#       password, ssl.ca.location); DIR/env exports the same as
#       COURIER_TEST_SASL_{BOOTSTRAP,USERNAME,PASSWORD,CA}.
#   cluster.sh stop --dir DIR
#   cluster.sh status --dir DIR            (exit 3 if some node is not running)
#   cluster.sh start-node --dir DIR --node I [--no-wait] [--timeout S]
#   cluster.sh kill-node --dir DIR --node I [--signal KILL|STOP|CONT|TERM]
#   cluster.sh topics --dir DIR ARGS...    (TopicCommand against the cluster)
#   cluster.sh run-class --dir DIR CLASS ARGS...  (any Kafka CLI class)
#
# Layout of DIR: nodeI.properties, nodeI/data (log.dirs), nodeI/server.log
# (full INFO log), nodeI.log (stdout/stderr: WARN+ and JVM output), nodeI.pid,
# nodeI.start (relaunches node I), cluster.conf, cluster.id, bootstrap, env;
# with --sasl-ssl also tls/ (ca.pem, broker.p12) and sasl-client.properties.
#
# Env: KAFKA_VERSION, COURIER_CACHE (see fetch.sh); KAFKA_JAVA (java binary,
# default `java`; Kafka 4.x needs 17+); KAFKA_HEAP_OPTS (default
# "-Xms256m -Xmx512m"); KAFKA_EXTRA_JVM_OPTS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=kafka-cluster

JAVA="${KAFKA_JAVA:-java}"
# Modest heap: the brokers share a 2-core machine with Rust builds and tests.
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
# The flags kafka-run-class.sh uses (KAFKA_JVM_PERFORMANCE_OPTS), plus
# ExitOnOutOfMemoryError so a sick broker dies visibly instead of limping.
PERF_OPTS="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
STARTED_MSG="Kafka Server started"
PROBE_TOPIC="__courier_ready"

usage() {
  sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

# squote S: S as a single-quoted shell word.
squote() {
  local q="'\\''"
  printf "'%s'" "${1//\'/$q}"
}

abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# Load DIR/cluster.conf (written by start): KAFKA_HOME, BROKERS, CLIENT_PORTS,
# CONTROLLER_PORTS.
load_conf() {
  [[ -f "$DIR/cluster.conf" ]] || die "no cluster in $DIR (missing cluster.conf; run start first)"
  # shellcheck source=/dev/null
  source "$DIR/cluster.conf"
}

# Short-lived CLI JVMs: small heap, serial GC and C1 only start fastest.
# TOOL_TIMEOUT (seconds) bounds a call that could hang on a sick cluster.
run_tool() {
  local guard=()
  [[ -n "${TOOL_TIMEOUT:-}" ]] && guard=(timeout "$TOOL_TIMEOUT")
  "${guard[@]}" "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$here/log4j2-tools.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

node_pid() {
  local f="$DIR/node$1.pid"
  if [[ -f "$f" ]]; then cat "$f"; fi
}

# node_state I -> running | stopped (SIGSTOP) | dead. Checks the command line
# too, so a recycled pid of some other process is not mistaken for the node.
node_state() {
  local pid state
  pid="$(node_pid "$1")"
  if ! pid_is_node "$pid" "$1"; then
    echo dead
    return
  fi
  # Field 3 of /proc/PID/stat, after the parenthesised command name.
  state="$(sed -e 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)"
  case "$state" in
    Z | X) echo dead ;;
    T | t) echo stopped ;;
    *) echo running ;;
  esac
}

# pid_is_node PID I: PID exists and is the JVM of node I.
pid_is_node() {
  local cmdline
  [[ -n "$1" ]] || return 1
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$cmdline" == *"$DIR/node$2.properties"* ]]
}

node_alive() {
  [[ "$(node_state "$1")" != dead ]]
}

server_log() {
  echo "$DIR/node$1/server.log"
}

log_size() {
  local f
  f="$(server_log "$1")"
  if [[ -f "$f" ]]; then stat -c %s "$f"; else echo 0; fi
}

# started_since I OFFSET: node I logged STARTED_MSG after byte OFFSET of its
# server.log (from the start if the file was rolled over and is now shorter).
started_since() {
  local f off=$2
  f="$(server_log "$1")"
  [[ -f "$f" ]] || return 1
  if (($(stat -c %s "$f") < off)); then off=0; fi
  # No grep -q: exiting early could SIGPIPE tail and, with pipefail, turn a
  # match into a failure.
  tail -c +"$((off + 1))" "$f" | grep -F "$STARTED_MSG" >/dev/null
}

show_node_logs() {
  local i
  for i in "$@"; do
    log "---- node $i: tail of $DIR/node$i.log"
    tail -n 20 "$DIR/node$i.log" >&2 2>/dev/null || true
    log "---- node $i: errors in $(server_log "$i")"
    grep -E ' (ERROR|FATAL) ' "$(server_log "$i")" 2>/dev/null | tail -n 10 >&2 || true
  done
}

# A Kafka Uuid as `StorageTool random-uuid` prints it (URL-safe base64 of 16
# random bytes, unpadded, never starting with '-'), without paying for a JVM.
random_cluster_id() {
  python3 -c 'import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-") and s not in ("AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAQ"):
        print(s)
        break'
}

# ------------------------------------------------------------- node config

# write_node_files I: nodeI.properties and the nodeI.start launcher.
write_node_files() {
  local i=$1 cport=${CLIENT_PORT_ARR[$1 - 1]} kport=${CONTROLLER_PORT_ARR[$1 - 1]}
  local rf=$BROKERS min_isr=1
  ((BROKERS > 1)) && min_isr=2
  local props="$DIR/node$i.properties"
  {
    echo "# Generated by scripts/kafka/cluster.sh; node $i of $BROKERS."
    echo "process.roles=broker,controller"
    echo "node.id=$i"
    # Static quorum: every node knows all voters up front, so formatting needs
    # no --standalone / --initial-controllers and all nodes format alike.
    echo "controller.quorum.voters=$VOTERS"
    local listeners="PLAINTEXT://127.0.0.1:$cport,CONTROLLER://127.0.0.1:$kport"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if ((SASL_SSL)); then
      listeners+=",SASL_SSL://127.0.0.1:${SASL_PORT_ARR[$1 - 1]}"
      protocols+=",SASL_SSL:SASL_SSL"
    fi
    echo "listeners=$listeners"
    echo "advertised.listeners=$listeners"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "controller.listener.names=CONTROLLER"
    echo "listener.security.protocol.map=$protocols"
    if ((SASL_SSL)); then
      # Clients only: brokers and controllers keep talking PLAINTEXT among themselves.
      echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
      echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
      echo "ssl.keystore.type=PKCS12"
      echo "ssl.keystore.location=$DIR/tls/broker.p12"
      echo "ssl.keystore.password=$TLS_STORE_PASSWORD"
      echo "ssl.key.password=$TLS_STORE_PASSWORD"
    fi
    echo "log.dirs=$DIR/node$i/data"
    echo "num.partitions=$BROKERS"
    echo "default.replication.factor=$rf"
    echo "min.insync.replicas=$min_isr"
    echo "offsets.topic.replication.factor=$rf"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$min_isr"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$min_isr"
    # Fewer internal partitions than the default 50: creating
    # __consumer_offsets on first consumer-group use is then quick on 2 cores.
    echo "offsets.topic.num.partitions=5"
    echo "transaction.state.log.num.partitions=5"
    echo "share.coordinator.state.topic.num.partitions=5"
    echo "group.initial.rebalance.delay.ms=0"
    # Tests create their topics explicitly; a typo must not create one.
    echo "auto.create.topics.enable=false"
    echo "num.network.threads=2"
    echo "num.io.threads=4"
    local kv
    for kv in "${EXTRA_SETTINGS[@]}"; do
      echo "$kv"
    done
  } >"$props"

  local start="$DIR/node$i.start"
  local java_cmd=("$JAVA")
  local opt
  # Word splitting of the option strings is intended here.
  # shellcheck disable=SC2206
  java_cmd+=($HEAP_OPTS $PERF_OPTS ${KAFKA_EXTRA_JVM_OPTS:-})
  java_cmd+=("-Dlog4j2.configurationFile=$here/log4j2.properties"
    "-Dkafka.logs.dir=$DIR/node$i"
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$props")
  {
    echo '#!/usr/bin/env bash'
    echo "# Relaunch node $i of the Kafka cluster in $DIR with the same config,"
    echo "# appending to its log. Generated by scripts/kafka/cluster.sh."
    echo 'set -euo pipefail'
    printf 'cd %q\n' "$DIR"
    # nohup + full redirection (stdin too): the broker survives the calling
    # shell and never holds a caller's pipe open (e.g. $(cluster.sh start)).
    printf 'nohup'
    for opt in "${java_cmd[@]}"; do printf ' %q' "$opt"; done
    printf ' >>%q 2>&1 </dev/null &\n' "$DIR/node$i.log"
    printf 'echo "$!" >%q\n' "$DIR/node$i.pid"
  } >"$start"
  chmod +x "$start"
}

launch_node() {
  local i=$1
  mkdir -p "$DIR/node$i"
  printf '==== %s launching node %s\n' "$(date '+%F %T')" "$i" >>"$DIR/node$i.log"
  "$DIR/node$i.start"
}

# ------------------------------------------------------------- readiness

# probe_ready: the probe topic with RF=N exists and every partition has all N
# replicas in its ISR, i.e. all brokers are registered, unfenced and
# replicating. Creating it needs N live brokers; describing checks the ISR.
probe_ready() {
  local bs out
  bs="$(cat "$DIR/bootstrap")"
  TOOL_TIMEOUT=30 run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" \
    --create --if-not-exists --topic "$PROBE_TOPIC" --partitions 1 \
    --replication-factor "$BROKERS" >/dev/null || return 1
  out="$(TOOL_TIMEOUT=30 run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" \
    --describe --topic "$PROBE_TOPIC")" || return 1
  # Lines look like: "Topic: t Partition: 0 Leader: 2 Replicas: 2,3,1 Isr: 2,3,1 ..."
  awk -v n="$BROKERS" '
    /Partition:/ { parts++; for (f = 1; f < NF; f++) if ($f == "Isr:") { if (split($(f + 1), a, ",") == n) ok++ } }
    END { exit !(parts > 0 && parts == ok) }' <<<"$out"
}

# wait_started TIMEOUT I:OFFSET...: wait for each node's STARTED_MSG; fail at
# once if a node's process died.
wait_started() {
  local deadline=$((SECONDS + $1)) spec i off pending
  shift
  while :; do
    pending=()
    for spec in "$@"; do
      i=${spec%%:*} off=${spec#*:}
      if ! node_alive "$i"; then
        log "node $i exited during startup"
        show_node_logs "$i"
        return 1
      fi
      started_since "$i" "$off" || pending+=("$i")
    done
    ((${#pending[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      log "timed out waiting for '$STARTED_MSG' from node(s) ${pending[*]}"
      show_node_logs "${pending[@]}"
      return 1
    fi
    sleep 0.5
  done
}

# --------------------------------------------------------------- commands

cmd_start() {
  local port_base="" timeout=90 fresh=0
  BROKERS=""
  SASL_SSL=0
  EXTRA_SETTINGS=()
  while (($#)); do
    case "$1" in
      --brokers) BROKERS=$2; shift 2 ;;
      --dir) DIR=$2; shift 2 ;;
      --port-base) port_base=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      --set) EXTRA_SETTINGS+=("$2"); shift 2 ;;
      --fresh) fresh=1; shift ;;
      --sasl-ssl) SASL_SSL=1; shift ;;
      *) usage ;;
    esac
  done
  [[ "$BROKERS" == 1 || "$BROKERS" == 3 ]] || die "--brokers must be 1 or 3"
  [[ -n "${DIR:-}" ]] || usage
  DIR="$(abs_dir "$DIR")"
  local t0=$SECONDS i resume=0

  # DIR may hold a cluster from an earlier start. Running: refuse. Stopped and
  # started with the same shape: resume it with its data (scripts/up.sh relies
  # on that). Otherwise only --fresh may replace it, so no data is lost by a
  # typo in the arguments.
  if [[ -f "$DIR/cluster.conf" ]]; then
    local want=$BROKERS want_sasl=$SASL_SSL
    SASL_PORTS=""
    # shellcheck source=/dev/null
    source "$DIR/cluster.conf"
    for ((i = 1; i <= BROKERS; i++)); do
      node_alive "$i" && die "node $i of the cluster in $DIR is still running; stop it first"
    done
    if ((!fresh)); then
      local first_port=${CLIENT_PORTS%% *}
      [[ "$BROKERS" == "$want" && (-z "$port_base" || "$port_base" == "$first_port") ]] ||
        die "$DIR holds a stopped $BROKERS-node cluster (first port $first_port); pass --fresh to replace it"
      [[ -n "$SASL_PORTS" || "$want_sasl" == 0 ]] ||
        die "$DIR holds a stopped cluster without --sasl-ssl; pass --fresh to replace it"
      for ((i = 1; i <= BROKERS; i++)); do
        [[ -f "$DIR/node$i/data/meta.properties" && -x "$DIR/node$i.start" ]] ||
          die "$DIR: node $i was never formatted; pass --fresh to recreate the cluster"
      done
      resume=1
    fi
    BROKERS=$want
  fi

  if ((resume)); then
    ((${#EXTRA_SETTINGS[@]} == 0)) || log "resuming: --set ignored (config kept in $DIR/node*.properties)"
    # The node*.start scripts name this version's jars; make sure they exist.
    KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
    KAFKA_HOME="$(KAFKA_VERSION="$KAFKA_VERSION" "$here/fetch.sh")"
    read -r -a CLIENT_PORT_ARR <<<"$CLIENT_PORTS"
    read -r -a CONTROLLER_PORT_ARR <<<"$CONTROLLER_PORTS"
    read -r -a SASL_PORT_ARR <<<"${SASL_PORTS:-}"
    for i in "${CLIENT_PORT_ARR[@]}" "${CONTROLLER_PORT_ARR[@]}" "${SASL_PORT_ARR[@]}"; do
      port_in_use "$i" && die "port $i of the stopped cluster in $DIR is now in use; pass --fresh"
    done
  else
    # Remove only what this script creates, so a --dir pointing somewhere
    # unexpected loses nothing else.
    rm -rf "$DIR"/node[0-9] "$DIR"/node[0-9].* "$DIR"/{cluster.conf,cluster.id,bootstrap,env}
    rm -rf "$DIR"/tls "$DIR"/sasl-client.properties
    KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
    KAFKA_HOME="$(KAFKA_VERSION="$KAFKA_VERSION" "$here/fetch.sh")"
    create_cluster "$port_base"
  fi

  local bootstrap specs=() all
  bootstrap="$(cat "$DIR/bootstrap")"
  # An interrupted or killed start must not leave orphan brokers behind.
  trap 'log "interrupted; stopping nodes"; cmd_stop_loaded; exit 130' INT TERM
  for ((i = 1; i <= BROKERS; i++)); do
    specs+=("$i:$(log_size "$i")")
    launch_node "$i"
  done
  log "$( ((resume)) && echo resumed || echo started) $BROKERS node(s) in $DIR (bootstrap $bootstrap), waiting up to ${timeout}s"

  local deadline=$((SECONDS + timeout))
  if ! wait_started "$timeout" "${specs[@]}"; then
    cmd_stop_loaded
    die "cluster did not start"
  fi
  if ! wait_for $((deadline > SECONDS ? deadline - SECONDS : 1)) \
    "topic $PROBE_TOPIC with RF=$BROKERS and full ISR" probe_ready; then
    mapfile -t all < <(seq 1 "$BROKERS")
    show_node_logs "${all[@]}"
    cmd_stop_loaded
    die "cluster did not become ready"
  fi
  trap - INT TERM
  log "cluster ready in $((SECONDS - t0))s: $bootstrap (env: $DIR/env)"
  echo "$bootstrap"
}

# create_cluster PORT_BASE: pick ports, write all config files of a new
# cluster and format every node's storage.
create_cluster() {
  local port_base=$1 i ports
  # Ports: client ports from --port-base (consecutive) or free ones; the
  # controller ports are always free ones, so only client ports are fixed.
  mapfile -t ports < <(free_ports $(((2 + SASL_SSL) * BROKERS)))
  CLIENT_PORT_ARR=() CONTROLLER_PORT_ARR=() SASL_PORT_ARR=()
  for ((i = 0; i < BROKERS; i++)); do
    if [[ -n "$port_base" ]]; then
      CLIENT_PORT_ARR+=($((port_base + i)))
      port_in_use $((port_base + i)) && die "port $((port_base + i)) is already in use"
    else
      CLIENT_PORT_ARR+=("${ports[$((BROKERS + i))]}")
    fi
    CONTROLLER_PORT_ARR+=("${ports[$i]}")
    if ((SASL_SSL)); then SASL_PORT_ARR+=("${ports[$((2 * BROKERS + i))]}"); fi
  done
  VOTERS=""
  local bootstrap=""
  for ((i = 1; i <= BROKERS; i++)); do
    VOTERS+="${VOTERS:+,}$i@127.0.0.1:${CONTROLLER_PORT_ARR[$i - 1]}"
    bootstrap+="${bootstrap:+,}127.0.0.1:${CLIENT_PORT_ARR[$i - 1]}"
  done

  local scram=()
  if ((SASL_SSL)); then
    make_tls
    scram=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]")
  fi
  for ((i = 1; i <= BROKERS; i++)); do
    write_node_files "$i"
  done
  {
    printf 'KAFKA_VERSION=%q\n' "$KAFKA_VERSION"
    printf 'KAFKA_HOME=%q\n' "$KAFKA_HOME"
    printf 'BROKERS=%q\n' "$BROKERS"
    printf 'CLIENT_PORTS=%q\n' "${CLIENT_PORT_ARR[*]}"
    printf 'CONTROLLER_PORTS=%q\n' "${CONTROLLER_PORT_ARR[*]}"
    printf 'SASL_PORTS=%q\n' "${SASL_PORT_ARR[*]}"
  } >"$DIR/cluster.conf"
  echo "$bootstrap" >"$DIR/bootstrap"
  # Single-quoted (not %q, which escapes the commas) so the file also reads
  # well for tools that parse KEY='value' lines rather than sourcing them.
  {
    echo "export COURIER_TEST_BOOTSTRAP=$(squote "$bootstrap")"
    echo "export COURIER_TEST_KAFKA_DIR=$(squote "$DIR")"
    echo "export COURIER_TEST_KAFKA_BROKERS=$BROKERS"
  } >"$DIR/env"
  if ((SASL_SSL)); then write_sasl_client_files; fi

  # Format every node's storage with one shared cluster id (in parallel: each
  # StorageTool run is a JVM start, seconds on a busy 2-core machine). With a
  # static controller.quorum.voters no --standalone/--initial-controllers.
  local cluster_id pids=()
  cluster_id="$(random_cluster_id)"
  echo "$cluster_id" >"$DIR/cluster.id"
  for ((i = 1; i <= BROKERS; i++)); do
    mkdir -p "$DIR/node$i"
    run_tool kafka.tools.StorageTool format -t "$cluster_id" "${scram[@]}" \
      -c "$DIR/node$i.properties" >"$DIR/node$i/format.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= BROKERS; i++)); do
    wait "${pids[$i - 1]}" || { cat "$DIR/node$i/format.log" >&2; die "formatting node $i failed"; }
  done
}

# make_tls: a CA and a certificate for 127.0.0.1/localhost signed by it in
# DIR/tls (ca.pem for clients, broker.p12 for the brokers), and the SCRAM
# user's credentials. Throwaway material for a local cluster, made anew by
# every fresh start.
make_tls() {
  local tls="$DIR/tls"
  mkdir -p "$tls"
  chmod 700 "$tls"
  SASL_USER=courier
  SASL_PASSWORD="$(openssl rand -hex 16)"
  TLS_STORE_PASSWORD="$(openssl rand -hex 16)"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -subj "/CN=Courier local Kafka CA" -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
      -keyout broker.key -out broker.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -sha256 -days 3650 -in broker.csr -CA ca.pem -CAkey ca.key \
      -CAcreateserial -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key \
      -certfile ca.pem -out broker.p12 -passout "pass:$TLS_STORE_PASSWORD"
  ) >"$tls/openssl.log" 2>&1 || { cat "$tls/openssl.log" >&2; die "making the TLS material failed"; }
}

# write_sasl_client_files: what a client of the SASL_SSL listener needs, as
# librdkafka properties (sasl-client.properties) and in DIR/env.
write_sasl_client_files() {
  local bootstrap="" port
  for port in "${SASL_PORT_ARR[@]}"; do
    bootstrap+="${bootstrap:+,}127.0.0.1:$port"
  done
  {
    echo "# librdkafka properties of a client of the SASL_SSL listener; generated by scripts/kafka/cluster.sh."
    echo "bootstrap.servers=$bootstrap"
    echo "security.protocol=SASL_SSL"
    echo "sasl.mechanism=SCRAM-SHA-512"
    echo "sasl.username=$SASL_USER"
    echo "sasl.password=$SASL_PASSWORD"
    echo "ssl.ca.location=$DIR/tls/ca.pem"
  } >"$DIR/sasl-client.properties"
  chmod 600 "$DIR/sasl-client.properties"
  {
    echo "export COURIER_TEST_SASL_BOOTSTRAP=$(squote "$bootstrap")"
    echo "export COURIER_TEST_SASL_USERNAME=$(squote "$SASL_USER")"
    echo "export COURIER_TEST_SASL_PASSWORD=$(squote "$SASL_PASSWORD")"
    echo "export COURIER_TEST_SASL_CA=$(squote "$DIR/tls/ca.pem")"
  } >>"$DIR/env"
}

# Stop all nodes of the loaded cluster: CONT (a SIGSTOPped JVM cannot act on
# TERM), TERM for a clean shutdown, then KILL whatever is left after 30 s.
cmd_stop_loaded() {
  local i pid any=0
  for ((i = 1; i <= BROKERS; i++)); do
    if node_alive "$i"; then
      pid="$(node_pid "$i")"
      kill -CONT "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
      any=1
    fi
  done
  ((any)) || return 0
  local deadline=$((SECONDS + 30)) left
  while :; do
    left=()
    for ((i = 1; i <= BROKERS; i++)); do
      node_alive "$i" && left+=("$i")
    done
    ((${#left[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      log "node(s) ${left[*]} ignored SIGTERM for 30s; sending SIGKILL"
      for i in "${left[@]}"; do
        kill -KILL "$(node_pid "$i")" 2>/dev/null || true
      done
      sleep 1
      break
    fi
    sleep 0.5
  done
  log "stopped cluster in $DIR"
}

cmd_stop() {
  parse_dir_only "$@"
  load_conf
  cmd_stop_loaded
}

cmd_status() {
  parse_dir_only "$@"
  load_conf
  local i st rc=0 cports kports
  read -r -a cports <<<"$CLIENT_PORTS"
  read -r -a kports <<<"$CONTROLLER_PORTS"
  echo "cluster $DIR: $BROKERS node(s), bootstrap $(cat "$DIR/bootstrap")"
  for ((i = 1; i <= BROKERS; i++)); do
    st="$(node_state "$i")"
    [[ "$st" == running ]] || rc=3
    printf 'node %d: %-8s pid %-8s client 127.0.0.1:%s controller 127.0.0.1:%s\n' \
      "$i" "$st" "$(node_pid "$i")" "${cports[$i - 1]}" "${kports[$i - 1]}"
  done
  return "$rc"
}

cmd_start_node() {
  local node="" wait=1 timeout=60
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --node) node=$2; shift 2 ;;
      --no-wait) wait=0; shift ;;
      --timeout) timeout=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "${DIR:-}" && -n "$node" ]] || usage
  DIR="$(abs_dir "$DIR")"
  load_conf
  ((node >= 1 && node <= BROKERS)) || die "no node $node (cluster has $BROKERS)"
  node_alive "$node" && die "node $node is already running (pid $(node_pid "$node"))"
  local off
  off="$(log_size "$node")"
  launch_node "$node"
  log "relaunched node $node (pid $(node_pid "$node"))"
  if ((wait)); then
    wait_started "$timeout" "$node:$off" || die "node $node did not start"
    log "node $node started"
  fi
}

cmd_kill_node() {
  local node="" sig=KILL
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --node) node=$2; shift 2 ;;
      --signal) sig=${2#SIG}; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "${DIR:-}" && -n "$node" ]] || usage
  DIR="$(abs_dir "$DIR")"
  load_conf
  case "$sig" in KILL | STOP | CONT | TERM) ;; *) die "unsupported signal $sig" ;; esac
  node_alive "$node" || die "node $node is not running"
  local pid
  pid="$(node_pid "$node")"
  kill -"$sig" "$pid"
  # A stopped JVM only acts on TERM once continued.
  if [[ "$sig" == TERM ]]; then kill -CONT "$pid" 2>/dev/null || true; fi
  # For KILL/TERM, return only once the process is gone, so a test can
  # relaunch the node (same ports, same data dir) right away.
  if [[ "$sig" == KILL || "$sig" == TERM ]]; then
    if ! wait_for 30 "node $node (pid $pid) to exit after SIG$sig" \
      pid_gone "$pid" "$node"; then
      die "node $node still running after SIG$sig"
    fi
  fi
  log "sent SIG$sig to node $node (pid $pid)"
}

pid_gone() {
  ! pid_is_node "$1" "$2" || [[ "$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" == Z ]]
}

cmd_topics() {
  [[ "${1:-}" == --dir ]] || usage
  DIR="$(abs_dir "$2")"
  shift 2
  load_conf
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cat "$DIR/bootstrap")" "$@"
}

cmd_run_class() {
  [[ "${1:-}" == --dir ]] || usage
  DIR="$(abs_dir "$2")"
  shift 2
  load_conf
  (($#)) || usage
  run_tool "$@"
}

parse_dir_only() {
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "${DIR:-}" ]] || usage
  DIR="$(abs_dir "$DIR")"
}

main() {
  (($#)) || usage
  local cmd=$1
  shift
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    start-node) cmd_start_node "$@" ;;
    kill-node) cmd_kill_node "$@" ;;
    topics) cmd_topics "$@" ;;
    run-class) cmd_run_class "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
