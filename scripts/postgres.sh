#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Run a throwaway PostgreSQL server for Courier's tests, entirely inside one
# directory (--dir), listening only on 127.0.0.1 on a free port. It never
# touches the machine's default cluster (Debian's `main` on 5432).
#
#   postgres.sh start --dir DIR [--timeout S] [--tls-cert PEM --tls-key PEM]
#       Creates a cluster in DIR (initdb) if there is none, starts it, makes
#       sure role `courier` (password `courier`) and database `courier` exist,
#       and prints the connection URL on stdout. On an initialised DIR it just
#       starts the existing cluster (same port if still free); if the server
#       is already running it only prints the URL.
#       --tls-cert/--tls-key (given together, on the first start of DIR): the
#       server speaks TLS with this certificate (chain) and key, copied into
#       DIR, and its pg_hba.conf takes TCP connections over TLS only
#       (`hostssl`, password auth; `hostnossl` rejected), like a managed
#       PostgreSQL that requires SSL. The URL printed ends in ?sslmode=require.
#   postgres.sh stop --dir DIR [--timeout S]   (no-op if not running)
#   postgres.sh status --dir DIR               (exit 3 if not running)
#
# Layout of DIR: data/ (PGDATA), postgres.log, port, env (sourceable:
# export COURIER_TEST_POSTGRES_URL=...), and the unix socket .s.PGSQL.PORT.
# DIR is chowned to the `postgres` user when run as root, since the server
# refuses to run as root.
#
# Env: PG_BIN (directory with initdb/pg_ctl/psql; default the newest
# /usr/lib/postgresql/<ver>/bin).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
LOG_TAG=postgres

PG_USER=postgres
DB_NAME=courier
DB_ROLE=courier
DB_PASSWORD=courier

usage() {
  sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

find_pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    printf '%s\n' "$PG_BIN"
    return
  fi
  local d
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$d" ]] || die "no PostgreSQL server under /usr/lib/postgresql (run scripts/setup.sh)"
  printf '%s\n' "$d"
}

# as_pg CMD [ARGS...]: run CMD as the postgres user when we are root (the
# server refuses to run as root), from DIR so that a cwd the postgres user
# cannot read (e.g. /root) does not produce warnings.
as_pg() {
  if ((EUID == 0)); then
    (cd "$DIR" && runuser -u "$PG_USER" -- "$@")
  else
    (cd "$DIR" && "$@")
  fi
}

pg_ctl_() {
  as_pg "$BIN/pg_ctl" -D "$DATA" "$@"
}

# postmaster_state -> running | zombie | gone, from the PID in postmaster.pid.
# A killed postmaster stays a zombie until init reaps it (about a second
# here); pg_ctl counts that as running, and a new postmaster refuses to start
# while it exists.
postmaster_state() {
  local pid stat
  pid="$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && stat="$(cat "/proc/$pid/stat" 2>/dev/null)"; then
    stat="${stat##*) }"
    if [[ "${stat:0:1}" == Z ]]; then echo zombie; else echo running; fi
  else
    echo gone
  fi
}

postmaster_not_zombie() {
  [[ "$(postmaster_state)" != zombie ]]
}

is_running() {
  [[ -f "$DATA/PG_VERSION" && "$(postmaster_state)" == running ]] &&
    pg_ctl_ status >/dev/null 2>&1
}

# A cluster started with --tls-cert keeps its certificate in DIR (tls.crt, tls.key).
tls_on() {
  [[ -f "$DIR/tls.crt" ]]
}

url_for() {
  local query=""
  if tls_on; then query="?sslmode=require"; fi
  printf 'postgres://%s:%s@127.0.0.1:%s/%s%s\n' "$DB_ROLE" "$DB_PASSWORD" "$1" "$DB_NAME" "$query"
}

parse_dir_args() {
  TIMEOUT=60
  TLS_CERT=""
  TLS_KEY=""
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --timeout) TIMEOUT=$2; shift 2 ;;
      --tls-cert) [[ "$CMD" == start ]] || usage; TLS_CERT=$2; shift 2 ;;
      --tls-key) [[ "$CMD" == start ]] || usage; TLS_KEY=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "${DIR:-}" ]] || usage
  if [[ -n "$TLS_CERT" || -n "$TLS_KEY" ]]; then
    [[ -n "$TLS_CERT" && -n "$TLS_KEY" ]] || die "--tls-cert and --tls-key go together"
  fi
  if [[ "$CMD" == start ]]; then mkdir -p "$DIR"; fi
  if [[ -d "$DIR" ]]; then DIR="$(cd "$DIR" && pwd)"; fi
  # DIR goes unquoted into pg_ctl's -o string.
  [[ "$DIR" != *[[:space:]]* ]] || die "--dir must not contain whitespace: $DIR"
  DATA="$DIR/data"
  BIN="$(find_pg_bin)"
  [[ -x "$BIN/pg_ctl" ]] || die "no pg_ctl in $BIN"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  parse_dir_args "$@"

  if is_running; then
    log "already running in $DIR"
    url_for "$(cat "$DIR/port")"
    return
  fi
  wait_for "$TIMEOUT" "the killed postmaster of $DIR to be reaped" postmaster_not_zombie ||
    die "a killed postmaster of $DIR is still a zombie"

  if ((EUID == 0)); then
    chown "$PG_USER:" "$DIR"
    chmod 0700 "$DIR"
    runuser -u "$PG_USER" -- test -w "$DIR" ||
      die "user $PG_USER cannot write $DIR (a parent directory is not traversable?)"
  fi

  if [[ -n "$TLS_CERT" ]]; then
    [[ ! -f "$DATA/PG_VERSION" ]] || die "--tls-cert: $DIR is initialised already; TLS is chosen on its first start"
    [[ -r "$TLS_CERT" && -r "$TLS_KEY" ]] || die "cannot read $TLS_CERT or $TLS_KEY"
    # The server refuses a key others can read; it must belong to the user it runs as.
    install -m 0644 "$TLS_CERT" "$DIR/tls.crt"
    install -m 0600 "$TLS_KEY" "$DIR/tls.key"
    if ((EUID == 0)); then chown "$PG_USER:" "$DIR/tls.crt" "$DIR/tls.key"; fi
  fi

  if [[ ! -f "$DATA/PG_VERSION" ]]; then
    log "initdb in $DATA"
    # fsync stays on: the tests check durability. Trust auth is fine: the
    # socket lives in DIR (mode 0700) and TCP listens on 127.0.0.1 only.
    as_pg "$BIN/initdb" -D "$DATA" -U "$PG_USER" -E UTF8 --locale=C \
      --auth-local=trust --auth-host=trust --no-instructions >"$DIR/initdb.log" 2>&1 ||
      die "initdb failed; see $DIR/initdb.log"
    if tls_on; then
      cat >"$DATA/pg_hba.conf" <<'EOF'
# Written by scripts/postgres.sh --tls-cert: throwaway test cluster that, like a managed
# PostgreSQL requiring SSL, takes TCP connections over TLS only.
local     all all trust
hostssl   all all 127.0.0.1/32 scram-sha-256
hostnossl all all 127.0.0.1/32 reject
EOF
    else
      cat >"$DATA/pg_hba.conf" <<'EOF'
# Written by scripts/postgres.sh: throwaway test cluster.
local all all trust
host  all all 127.0.0.1/32 trust
EOF
    fi
    cat >>"$DATA/postgresql.conf" <<'EOF'

# scripts/postgres.sh: durability on (the tests check it); port, socket dir and
# listen address are passed on the pg_ctl command line.
fsync = on
synchronous_commit = on
full_page_writes = on
# Crash recovery (after a kill -9) first syncs the data dir; one syncfs() is
# as durable as fsync()ing every file and takes ~0.2s instead of ~2-4s here.
recovery_init_sync_method = syncfs
EOF
  fi

  # Keep the previous port (stable URL) when it is still free.
  local port=""
  if [[ -f "$DIR/port" ]]; then
    port="$(cat "$DIR/port")"
    if port_in_use "$port"; then
      log "port $port of the previous run is in use; picking a new one"
      port=""
    fi
  fi
  [[ -n "$port" ]] || port="$(free_port)"
  # Unix socket paths are limited to 107 bytes.
  local sock="$DIR/.s.PGSQL.$port"
  ((${#sock} <= 107)) || die "socket path $sock too long; use a shorter --dir"

  local tls_opts=""
  if tls_on; then
    tls_opts="-c ssl=on -c ssl_cert_file=$DIR/tls.crt -c ssl_key_file=$DIR/tls.key"
  fi
  log "starting on 127.0.0.1:$port${tls_opts:+ (TLS only)}"
  if ! pg_ctl_ -l "$DIR/postgres.log" -w -t "$TIMEOUT" \
    -o "-p $port -k $DIR -c listen_addresses=127.0.0.1 $tls_opts" start >/dev/null; then
    tail -n 20 "$DIR/postgres.log" >&2 || true
    die "server did not start within ${TIMEOUT}s; see $DIR/postgres.log"
  fi
  printf '%s\n' "$port" >"$DIR/port"

  # Idempotent: a restart of an initialised DIR finds both already there.
  if ! as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U "$PG_USER" -d postgres >/dev/null <<EOF; then
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', '$DB_ROLE', '$DB_PASSWORD')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$DB_NAME', '$DB_ROLE')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME') \gexec
EOF
    pg_ctl_ stop -m fast -w -t "$TIMEOUT" >/dev/null 2>&1 || true
    die "creating role/database $DB_NAME failed"
  fi

  local url
  url="$(url_for "$port")"
  printf "export COURIER_TEST_POSTGRES_URL='%s'\n" "$url" >"$DIR/env"
  log "ready: $url"
  printf '%s\n' "$url"
}

cmd_stop() {
  parse_dir_args "$@"
  if ! is_running; then
    log "not running in $DIR"
    return
  fi
  if ! pg_ctl_ stop -m fast -w -t "$TIMEOUT" >/dev/null; then
    log "fast shutdown timed out after ${TIMEOUT}s; immediate shutdown"
    pg_ctl_ stop -m immediate -w -t "$TIMEOUT" >/dev/null || die "could not stop the server in $DIR"
  fi
  log "stopped server in $DIR"
}

cmd_status() {
  parse_dir_args "$@"
  if is_running; then
    printf 'running: %s\n' "$(url_for "$(cat "$DIR/port")")"
  else
    printf 'not running\n'
    exit 3
  fi
}

main() {
  (($#)) || usage
  CMD=$1
  shift
  case "$CMD" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
