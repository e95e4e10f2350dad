#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Prepare this machine to run containers with Podman from Debian's packages (no Docker engine
# here, no image registry): install the engine and what it needs, write
# /etc/containers/containers.conf for this sandbox, and, with --socket, serve the Docker API
# on a unix socket for testcontainers. Prints every change it makes; a second run changes
# nothing. Idempotent and non-interactive (CI=true, no stdin, root).
#
# Usage: scripts/containers/setup.sh [--socket]
#   --socket  also run `podman system service` on unix:///run/podman/podman.sock (kept
#             running in the background; its pid and log in /run/podman/courier-service.*;
#             one this script started earlier is started anew) and print
#             `export DOCKER_HOST=unix:///run/podman/podman.sock` on stdout.
#
# Why these settings (the written file says the same):
#   runtime = "runc"  crun fails here ("cgroups in hybrid mode not supported");
#   default_ulimits   podman raises RLIMIT_NOFILE/NPROC above the sandbox's hard limits by
#                     default, which the sandbox refuses; we ask for exactly the hard limits.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=containers-setup

with_socket=0
for arg in "$@"; do
  case "$arg" in
    --socket) with_socket=1 ;;
    *) echo "usage: $0 [--socket]" >&2; exit 2 ;;
  esac
done

SOCKET_PATH=/run/podman/podman.sock
CONF=/etc/containers/containers.conf
PACKAGES=(podman runc netavark aardvark-dns slirp4netns fuse-overlayfs uidmap catatonit mmdebstrap)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  ((EUID == 0)) || die "missing packages (${missing[*]}) and not root; install them with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-y -q -o DPkg::Lock::Timeout=600)
  log "changed: installing ${missing[*]}"
  apt-get "${apt_opts[@]}" update >/dev/null
  apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null >/dev/null
else
  log "container packages already installed"
fi

# hard_limit OPT: the hard limit `ulimit -H OPT` reports, capped (unlimited -> 1048576).
hard_limit() {
  local v
  v="$(ulimit -H "$1")"
  if [[ "$v" == unlimited ]] || ((v > 1048576)); then v=1048576; fi
  printf '%s\n' "$v"
}
conf_changed=0
nofile="$(hard_limit -n)"
nproc="$(hard_limit -u)"
# Podman caps its own process limit at kernel.pid_max, and runc cannot raise a container's
# limit past podman's.
pid_max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo "$nproc")"
((nproc <= pid_max)) || nproc=$pid_max
want="$(
  cat <<CONF
# Written by scripts/containers/setup.sh (Courier); rewritten when the machine's limits change.
[containers]
# Within the hard limits of this machine (ulimit -Hn; ulimit -Hu capped at kernel.pid_max):
# podman's defaults ask for more, which the sandbox refuses.
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# crun fails here ("cgroups in hybrid mode not supported"); runc works.
runtime = "runc"
CONF
)"
if [[ -f "$CONF" && "$(cat "$CONF")" == "$want" ]]; then
  log "$CONF already as wanted (runtime runc, nofile $nofile, nproc $nproc)"
else
  ((EUID == 0)) || die "$CONF needs writing and we are not root"
  mkdir -p "$(dirname "$CONF")"
  if [[ -f "$CONF" ]] && ! grep -q '^# Written by scripts/containers/setup.sh' "$CONF"; then
    cp "$CONF" "$CONF.before-courier"
    log "changed: kept the previous $CONF as $CONF.before-courier"
  fi
  printf '%s\n' "$want" >"$CONF"
  conf_changed=1
  log "changed: wrote $CONF (runtime runc, default_ulimits nofile=$nofile nproc=$nproc)"
fi

socket_answers() {
  curl -fsS --max-time 5 --unix-socket "$SOCKET_PATH" http://podman/_ping >/dev/null 2>&1
}

SERVICE_PID=/run/podman/courier-service.pid
# A service started before the configuration changed still runs with the old one.
if ((conf_changed)) && [[ -f "$SERVICE_PID" ]] && kill -0 "$(cat "$SERVICE_PID")" 2>/dev/null; then
  kill -TERM "$(cat "$SERVICE_PID")"
  wait_for 30 "the old podman service to exit" sh -c "! kill -0 $(cat "$SERVICE_PID")" ||
    die "podman service (pid $(cat "$SERVICE_PID")) did not stop"
  rm -f "$SERVICE_PID"
  log "changed: stopped the Docker API service so that it rereads $CONF"
fi

if ((with_socket)); then
  # A service this script started earlier is started anew: one left from an earlier session
  # can answer pings and still fail every container start ("write child: broken pipe").
  if [[ -f "$SERVICE_PID" ]] && kill -0 "$(cat "$SERVICE_PID")" 2>/dev/null; then
    kill -TERM "$(cat "$SERVICE_PID")"
    wait_for 30 "the earlier podman service to exit" sh -c "! kill -0 $(cat "$SERVICE_PID")" ||
      die "podman service (pid $(cat "$SERVICE_PID")) did not stop"
    rm -f "$SERVICE_PID"
    log "changed: stopped the Docker API service of an earlier run, to start it anew"
  fi
  if socket_answers; then
    log "Docker API already served on $SOCKET_PATH"
  else
    mkdir -p "$(dirname "$SOCKET_PATH")"
    rm -f "$SOCKET_PATH"
    # setsid + nohup + full redirection: the service outlives this script and holds no
    # caller's pipe open.
    setsid nohup podman system service --time=0 "unix://$SOCKET_PATH" \
      >>/run/podman/courier-service.log 2>&1 </dev/null &
    echo "$!" >"$SERVICE_PID"
    wait_for 30 "the Docker API on $SOCKET_PATH" socket_answers ||
      die "podman system service did not answer; see /run/podman/courier-service.log"
    log "changed: started the Docker API on $SOCKET_PATH (pid $(cat "$SERVICE_PID"))"
  fi
  printf 'export DOCKER_HOST=unix://%s\n' "$SOCKET_PATH"
fi
log "podman $(podman version --format '{{.Client.Version}}' 2>/dev/null || echo '?') ready"
