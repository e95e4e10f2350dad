#!/usr/bin/env bash
# Shared helpers for Courier's scripts. Source it; it defines functions only
# and never changes shell options of the caller (callers set -euo pipefail).

# Log to stderr so that stdout stays usable for values a caller captures.
log() {
  printf '[%s] %s: %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-courier}" "$*" >&2
}

die() {
  log "ERROR: $*"
  exit 1
}

# One cache root for everything fetched (Kafka jars, ...); overridable so CI or
# a developer can point it at a persistent or throwaway location.
courier_cache_dir() {
  printf '%s\n' "${COURIER_CACHE:-$HOME/.cache/courier}"
}

# Ask the kernel for a free TCP port on 127.0.0.1 (bind to port 0). There is a
# small race between closing the socket and the real server binding it; that is
# acceptable for tests, and far better than fixed ports that collide with a
# running instance.
free_port() {
  python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# free_ports N: N distinct free ports, one per line. The sockets are all held
# open until every port is chosen so the same port is never handed out twice.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
PY
}

# port_in_use PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

# wait_for TIMEOUT_SECONDS DESCRIPTION CMD [ARGS...]: re-run CMD every second
# until it succeeds; fail (return 1) once TIMEOUT_SECONDS have passed, so a
# broken service makes scripts fail fast instead of hanging CI.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for: $what"
      return 1
    fi
    sleep 1
  done
}

# pid_alive PID: true if the process exists (zombies included, which is fine:
# callers only use this for processes they wait on or signal).
pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null
}
