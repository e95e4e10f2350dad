#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Run a real single-node Elasticsearch 9.x (built by fetch.sh from Maven Central jars) as a
# plain background JVM on 127.0.0.1, for Courier's Elasticsearch sink tests. Everything lives
# in one directory (--dir); the HTTP port defaults to a free one.
#
#   node.sh start --dir DIR [--port P] [--timeout S] [--fresh]
#       Starts the node and waits (at most S seconds, default 180) for cluster health yellow;
#       prints the URL. If DIR holds a stopped node, start resumes it with its data and port;
#       --fresh replaces it with a new, empty one.
#   node.sh stop --dir DIR [--timeout S]    SIGTERM, then SIGKILL after S seconds (default 30)
#   node.sh status --dir DIR                (exit 3 unless running and answering)
#   node.sh pause --dir DIR                 SIGSTOP: the port stays bound, requests hang
#   node.sh resume --dir DIR [--timeout S]  SIGCONT, then wait for health yellow
#   node.sh smoke --dir DIR                 index template, index, _bulk with _id, _count, ...
#
# Layout of DIR: home/ (a root-owned, read-only copy of the cached Elasticsearch home),
# config/ (elasticsearch.yml, log4j2.properties, keystore), data/, logs/ (<cluster>.log),
# tmp/, run/ (startup arguments), node.log (JVM output until the node has started),
# node.pid, node.start (relaunches the node), node.conf, url, env (exports
# COURIER_TEST_ES_URL, COURIER_TEST_ES_DIR).
#
# As root the node runs as the system user ES_USER (default courier-es, created if missing;
# Elasticsearch refuses to run as root), which owns config/, data/, logs/, tmp/ and run/; DIR
# and all its parents must be searchable by that user. As any other user it runs as that user.
#
# Env: ES_VERSION, COURIER_CACHE (see fetch.sh); ES_JAVA_HOME (default Temurin 25);
# ES_JAVA_OPTS (default "-Xms512m -Xmx512m"); ES_USER. A new node bakes the JVM and its
# options into DIR/node.start; restarting a stopped node reuses them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=es-node

ES_JAVA_HOME="${ES_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
ES_JAVA_OPTS="${ES_JAVA_OPTS:--Xms512m -Xmx512m}"
ES_USER="${ES_USER:-courier-es}"
CLUSTER_NAME=courier-test

usage() {
  sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

squote() {
  local q="'\\''"
  printf "'%s'" "${1//\'/$q}"
}

# Load DIR/node.conf (written by start): ES_VERSION, HTTP_PORT, TRANSPORT_PORT, RUN_USER.
load_conf() {
  [[ -f "$DIR/node.conf" ]] || die "no node in $DIR (missing node.conf; run start first)"
  # shellcheck source=/dev/null
  source "$DIR/node.conf"
  URL="http://127.0.0.1:$HTTP_PORT"
}

node_pid() {
  if [[ -f "$DIR/node.pid" ]]; then cat "$DIR/node.pid"; fi
}

# pid_is_node PID: PID exists and is this DIR's JVM (a recycled pid is not mistaken for it).
pid_is_node() {
  local cmdline
  [[ -n "$1" ]] || return 1
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$cmdline" == *"-Des.path.conf=$DIR/config "* ]]
}

# node_state -> running | paused (SIGSTOP) | dead
node_state() {
  local pid state
  pid="$(node_pid)"
  if ! pid_is_node "$pid"; then
    echo dead
    return
  fi
  state="$(sed -e 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)"
  case "$state" in
    Z | X) echo dead ;;
    T | t) echo paused ;;
    *) echo running ;;
  esac
}

node_alive() {
  [[ "$(node_state)" != dead ]]
}

# health_yellow: the cluster answers and is at least yellow (one short request).
health_yellow() {
  curl -fsS --max-time 5 -o /dev/null \
    "$URL/_cluster/health?wait_for_status=yellow&timeout=2s"
}

show_logs() {
  log "---- tail of $DIR/node.log"
  tail -n 15 "$DIR/node.log" >&2 2>/dev/null || true
  log "---- errors in $DIR/logs/$CLUSTER_NAME.log"
  grep -E '\]\[(ERROR|FATAL)' "$DIR/logs/$CLUSTER_NAME.log" 2>/dev/null | tail -n 5 | cut -c1-400 >&2 || true
}

# wait_ready TIMEOUT: health yellow within TIMEOUT seconds; fail at once if the JVM died.
wait_ready() {
  local deadline=$((SECONDS + $1))
  while :; do
    if ! node_alive; then
      log "the node exited during startup"
      show_logs
      return 1
    fi
    health_yellow 2>/dev/null && return 0
    if ((SECONDS >= deadline)); then
      log "timed out after $1s waiting for cluster health yellow at $URL"
      show_logs
      return 1
    fi
    sleep 0.5
  done
}

# as_user CMD...: run CMD as the node's user (directly when that is us).
as_user() {
  if [[ "$RUN_USER" == "$(id -un)" ]]; then
    "$@"
  else
    setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups -- "$@"
  fi
}

ensure_user() {
  if ((EUID != 0)); then
    RUN_USER="$(id -un)"
    return
  fi
  RUN_USER="$ES_USER"
  if ! id -u "$RUN_USER" >/dev/null 2>&1; then
    log "creating system user $RUN_USER"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$RUN_USER"
  fi
}

# ------------------------------------------------------------- node files

write_config() {
  cat >"$DIR/config/elasticsearch.yml" <<YML
# Generated by scripts/elasticsearch/node.sh: a throwaway single-node test cluster.
cluster.name: $CLUSTER_NAME
node.name: courier-es
discovery.type: single-node
network.host: 127.0.0.1
http.port: $HTTP_PORT
transport.port: $TRANSPORT_PORT
path.data: $DIR/data
path.logs: $DIR/logs
# Test machines run with little free disk; never mark indices read-only or refuse shards
# for that (disables the low/high/flood-stage watermarks).
cluster.routing.allocation.disk.threshold_enabled: false
YML
  cp "$ES_HOME_SRC/config/log4j2.properties" "$DIR/config/log4j2.properties"
}

# write_start: DIR/node.start, the launcher (run as root or the user). The server reads its
# startup arguments on stdin; ServerArgsWriter produces them from config/ (the server CLI's
# job, which is not published to Maven Central) and the JVM flags are those the CLI passes.
write_start() {
  local java_feature java_opts=() opt
  java_feature="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$ES_JAVA_HOME/release")"
  [[ -n "$java_feature" ]] || die "cannot read the Java version of ES_JAVA_HOME=$ES_JAVA_HOME"
  ((java_feature >= 21)) || die "Elasticsearch 9 needs Java 21+; ES_JAVA_HOME has $java_feature"
  local home="$DIR/home" bridge
  bridge="$(find "$home/lib/entitlement-bridge" -name '*.jar' | head -n1)"
  # Modules that call native code (9.5 added org.elasticsearch.foreign; naming an absent
  # module only makes the JVM warn, but list what is there).
  local native_modules=org.elasticsearch.nativeaccess,org.apache.lucene.core
  if compgen -G "$home/lib/elasticsearch-foreign-library-*.jar" >/dev/null; then
    native_modules+=,org.elasticsearch.foreign
  fi
  # ES's own SIMD library (libvec) is not on Maven Central; without this flag its absence
  # switches off all native access (libzstd, system call filter) instead of vectors only.
  local no_vec=()
  compgen -G "$home/lib/platform/*/libvec.so" >/dev/null ||
    no_vec=(-Dorg.elasticsearch.nativeaccess.enableVectorLibrary=false)
  # Word splitting of ES_JAVA_OPTS is intended.
  # shellcheck disable=SC2206
  java_opts=(
    -Des.networkaddress.cache.ttl=60 -Des.networkaddress.cache.negative.ttl=10 -Xss1m
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true -XX:-OmitStackTraceInFastThrow
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dlog4j.shutdownHookEnabled=false
    -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true -Djava.locale.providers=CLDR
    "-Dorg.apache.lucene.vectorization.upperJavaFeatureVersion=$java_feature"
    "-Des.path.home=$home" "-Des.path.conf=$DIR/config" -Des.distribution.type=zip "${no_vec[@]}"
    -Des.java.type=ES_JAVA_HOME
    "--enable-native-access=$native_modules"
    --enable-native-access=ALL-UNNAMED --illegal-native-access=deny
    # Entitlements (Java 24+ has no SecurityManager): the server attaches its agent to itself
    # and JDK classes call into the bridge patched into java.base.
    -XX:+EnableDynamicAgentLoading -Djdk.attach.allowAttachSelf=true
    "-Des.entitlement.agentJar=$home/lib/entitlement-agent/courier-entitlement-agent.jar"
    "--patch-module=java.base=$bridge"
    '--add-exports=java.base/org.elasticsearch.entitlement.bridge=org.elasticsearch.entitlement,java.logging,java.net.http,java.naming,jdk.net,jdk.zipfs,jdk.management.agent'
    -XX:+UseG1GC "-Djava.io.tmpdir=$DIR/tmp" --add-modules=jdk.incubator.vector
    -Dorg.apache.lucene.store.defaultReadAdvice=normal
    -Dorg.apache.lucene.store.MMapDirectory.sharedArenaMaxPermits=1
    -XX:+ExitOnOutOfMemoryError "-XX:ErrorFile=$DIR/logs/hs_err_pid%p.log"
    -XX:MaxDirectMemorySize=256m $ES_JAVA_OPTS
    --module-path "$home/lib" --add-modules=jdk.net --add-modules=jdk.management.agent
    --add-modules=ALL-MODULE-PATH -m org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch
  )
  local user_cmd=()
  [[ "$RUN_USER" == "$(id -un)" ]] ||
    user_cmd=(setpriv "--reuid=$RUN_USER" "--regid=$RUN_USER" --init-groups --)
  # A clean environment: nothing of the caller's (JAVA_TOOL_OPTIONS, ...) reaches the JVM.
  local env_cmd=(env -i "PATH=/usr/bin:/bin" "HOME=$DIR/tmp" "LIBFFI_TMPDIR=$DIR/tmp" "ES_JAVA_HOME=$ES_JAVA_HOME")
  {
    echo '#!/usr/bin/env bash'
    echo "# Relaunch the Elasticsearch node in $DIR with the same config, appending to its"
    echo "# logs. Generated by scripts/elasticsearch/node.sh."
    echo 'set -euo pipefail'
    printf 'cd %q\n' "$DIR/logs"
    # The startup arguments only change with config/elasticsearch.yml; reuse them otherwise
    # (their writer is a JVM start of its own).
    printf 'if [[ ! -s %q || %q -nt %q ]]; then\n' "$DIR/run/server-args.bin" \
      "$DIR/config/elasticsearch.yml" "$DIR/run/server-args.bin"
    printf '  '
    for opt in "${user_cmd[@]}" "${env_cmd[@]}" "$ES_JAVA_HOME/bin/java" -Xmx64m -XX:+UseSerialGC \
      -XX:TieredStopAtLevel=1 -cp "$home/courier/server-args-writer.jar:$home/lib/*" \
      courier.es.ServerArgsWriter "$home" "$DIR/config"; do printf '%q ' "$opt"; done
    printf '>%q 2>>%q || { rm -f %q; exit 1; }\n' "$DIR/run/server-args.bin" "$DIR/node.log" \
      "$DIR/run/server-args.bin"
    echo 'fi'
    # nohup + setpriv + env all exec, so $! is the JVM itself; full redirection (stdin is
    # the arguments file) so the node never holds a caller's pipe open.
    printf 'nohup'
    for opt in "${user_cmd[@]}" "${env_cmd[@]}" "$ES_JAVA_HOME/bin/java" "${java_opts[@]}"; do
      printf ' %q' "$opt"
    done
    printf ' <%q >>%q 2>&1 &\n' "$DIR/run/server-args.bin" "$DIR/node.log"
    printf 'echo "$!" >%q\n' "$DIR/node.pid"
  } >"$DIR/node.start"
  chmod 755 "$DIR/node.start"
}

# The user must be able to enter DIR and every parent (a `mktemp -d` parent is 0700, say).
check_reachable() {
  [[ "$RUN_USER" == "$(id -un)" ]] && return 0
  local d="" part parts
  IFS=/ read -r -a parts <<<"${DIR#/}"
  for part in "${parts[@]}"; do
    d+="/$part"
    as_user test -x "$d" ||
      die "user $RUN_USER cannot enter $d, so not $DIR; use a directory it can reach (e.g. under /var/tmp) or chmod o+x $d"
  done
}

create_node() {
  local port=$1 ports
  rm -rf "${DIR:?}"/{home,config,data,logs,tmp,run} "$DIR"/{node.conf,node.pid,node.start,node.log,url,env}
  mapfile -t ports < <(free_ports 2)
  HTTP_PORT=${port:-${ports[0]}}
  TRANSPORT_PORT=${ports[1]}
  [[ -n "$port" ]] && port_in_use "$port" && die "port $port is already in use"

  # A private copy of the home: the cache (under root's $HOME, say) need not be readable by
  # the node's user. Hard links when on the same file system (instant, no space), else a copy.
  # Owned by root and not writable by the user.
  if ! cp -al "$ES_HOME_SRC" "$DIR/home" 2>/dev/null; then
    rm -rf "${DIR:?}/home"
    cp -a "$ES_HOME_SRC" "$DIR/home"
  fi
  mkdir -p "$DIR"/{config,data,logs,tmp,run}
  {
    printf 'ES_VERSION=%q\n' "$ES_VERSION"
    printf 'HTTP_PORT=%q\n' "$HTTP_PORT"
    printf 'TRANSPORT_PORT=%q\n' "$TRANSPORT_PORT"
    printf 'RUN_USER=%q\n' "$RUN_USER"
  } >"$DIR/node.conf"
  URL="http://127.0.0.1:$HTTP_PORT"
  write_config
  write_start
  echo "$URL" >"$DIR/url"
  {
    echo "export COURIER_TEST_ES_URL=$(squote "$URL")"
    echo "export COURIER_TEST_ES_DIR=$(squote "$DIR")"
  } >"$DIR/env"
}

# --------------------------------------------------------------- commands

cmd_start() {
  local port="" timeout=180 fresh=0
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      --fresh) fresh=1; shift ;;
      *) usage ;;
    esac
  done
  [[ -n "${DIR:-}" ]] || usage
  DIR="$(abs_dir "$DIR")"
  local t0=$SECONDS resume=0
  ensure_user
  chmod 755 "$DIR"
  check_reachable

  # DIR may hold a node from an earlier start. Running: refuse. Stopped: resume it with its
  # data and port. --fresh replaces it; so does nothing else, so no data is lost by a typo.
  if [[ -f "$DIR/node.conf" ]]; then
    local want_user=$RUN_USER
    load_conf
    node_alive && die "the node in $DIR is still running (pid $(node_pid)); stop it first"
    if ((!fresh)); then
      [[ -z "$port" || "$port" == "$HTTP_PORT" ]] ||
        die "$DIR holds a stopped node on port $HTTP_PORT; pass --fresh to replace it"
      [[ "$RUN_USER" == "$want_user" ]] || die "$DIR belongs to user $RUN_USER; pass --fresh"
      [[ -x "$DIR/node.start" && -d "$DIR/home/lib" ]] || die "$DIR is incomplete; pass --fresh"
      port_in_use "$HTTP_PORT" && die "port $HTTP_PORT of the stopped node in $DIR is now in use"
      port_in_use "$TRANSPORT_PORT" && die "transport port $TRANSPORT_PORT of the stopped node in $DIR is now in use"
      resume=1
    fi
    RUN_USER=$want_user
  fi

  if ((!resume)); then
    ES_VERSION="${ES_VERSION:-9.5.3}"
    ES_HOME_SRC="$(ES_VERSION="$ES_VERSION" ES_JAVA_HOME="$ES_JAVA_HOME" "$here/fetch.sh")"
    create_node "$port"
  fi
  if [[ "$RUN_USER" != "$(id -un)" ]]; then
    chown -R "$RUN_USER:" "$DIR"/{config,data,logs,tmp,run}
    chmod 750 "$DIR"/{config,data,logs,tmp,run}
  fi

  trap 'log "interrupted; stopping the node"; stop_loaded 10; exit 130' INT TERM
  printf '==== %s %s\n' "$(date '+%F %T')" "$( ((resume)) && echo resuming || echo starting)" >>"$DIR/node.log"
  "$DIR/node.start" || { show_logs; die "could not launch the node (see $DIR/node.log)"; }
  log "$( ((resume)) && echo resumed || echo started) Elasticsearch ${ES_VERSION} in $DIR (pid $(node_pid), $URL), waiting up to ${timeout}s"
  if ! wait_ready "$timeout"; then
    stop_loaded 10
    die "Elasticsearch did not become ready"
  fi
  trap - INT TERM
  log "ready in $((SECONDS - t0))s: $URL (env: $DIR/env)"
  echo "$URL"
}

# stop_loaded TIMEOUT: CONT (a stopped JVM cannot act on TERM), TERM for a clean shutdown,
# KILL whatever is left after TIMEOUT seconds.
stop_loaded() {
  local timeout=$1 pid
  node_alive || return 0
  pid="$(node_pid)"
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while node_alive; do
    if ((SECONDS >= deadline)); then
      log "node ignored SIGTERM for ${timeout}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_for 10 "pid $pid to exit after SIGKILL" pid_gone "$pid" || die "pid $pid survived SIGKILL"
      break
    fi
    sleep 0.3
  done
  log "stopped the node in $DIR"
}

pid_gone() {
  ! node_alive
}

cmd_stop() {
  local timeout=30
  parse_dir "$@"
  load_conf
  stop_loaded "${OPT_TIMEOUT:-$timeout}"
}

cmd_status() {
  parse_dir "$@"
  load_conf
  local st health=""
  st="$(node_state)"
  if [[ "$st" == running ]]; then
    health="$(curl -fsS --max-time 3 "$URL/_cluster/health" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)" || health="no answer"
  fi
  printf 'elasticsearch %s in %s: %s pid %s %s%s\n' "$ES_VERSION" "$DIR" "$st" "$(node_pid)" "$URL" \
    "${health:+ health $health}"
  [[ "$st" == running && -n "$health" && "$health" != "no answer" ]] || return 3
}

cmd_pause() {
  parse_dir "$@"
  load_conf
  [[ "$(node_state)" == running ]] || die "the node in $DIR is not running"
  kill -STOP "$(node_pid)"
  log "paused the node (pid $(node_pid)); its port stays bound and requests hang until resume"
}

cmd_resume() {
  parse_dir "$@"
  load_conf
  node_alive || die "the node in $DIR is not running"
  kill -CONT "$(node_pid)"
  wait_ready "${OPT_TIMEOUT:-60}" || die "the node did not answer after SIGCONT"
  log "resumed the node: $URL"
}

cmd_smoke() {
  parse_dir "$@"
  load_conf
  [[ "$(node_state)" == running ]] || die "the node in $DIR is not running"
  timeout "${OPT_TIMEOUT:-120}" "$here/smoke.sh" "$URL"
}

parse_dir() {
  OPT_TIMEOUT=""
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --timeout) OPT_TIMEOUT=$2; shift 2 ;;
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
    pause) cmd_pause "$@" ;;
    resume) cmd_resume "$@" ;;
    smoke) cmd_smoke "$@" ;;
    *) usage ;;
  esac
}

main "$@"
