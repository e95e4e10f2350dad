#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# mmdebstrap runs each hook with a shell, the root filesystem's path in $1: single quotes.
# shellcheck disable=SC2016
# Build Courier's container images locally, from Debian packages (mmdebstrap) and what the
# repository's scripts already fetched (Kafka jars, the Elasticsearch home) and builds (the
# release binaries); no image registry, no `FROM` of a remote image. An image whose inputs
# did not change since its last build is kept: every image carries the label courier.inputs,
# a hash of its Containerfile, its build context and its base image's hash. Prints each
# image's size at the end.
#
# Usage: scripts/images/build.sh [IMAGE...]       (default: all)
#   base-runtime   localhost/courier-base-runtime:bookworm — glibc and the libraries the
#                  Courier binaries link (found with ldd), busybox for health checks, CA
#                  certificates, user courier (65532)
#   base-jre       localhost/courier-base-jre:bookworm — Debian's essential set plus
#                  openjdk-17-jre-headless
#   kafka          localhost/courier-kafka:<KAFKA_VERSION> — Apache Kafka (KRaft), jars from
#                  scripts/kafka/fetch.sh (deploy/images/kafka/)
#   postgres       localhost/courier-postgres:15 — PostgreSQL 15 server (deploy/images/postgres/)
#   elasticsearch  localhost/courier-elasticsearch:<ES_VERSION> — the home from
#                  scripts/elasticsearch/fetch.sh and ES_JAVA_HOME's JDK (Java 21+)
#   proxy, consumer-main, consumer-es
#                  localhost/courier-<name>:<version> (and :dev) — the release binary on
#                  base-runtime, non-root, with a HEALTHCHECK (deploy/images/courier-*/)
# Images an asked-for image is built on are built (or checked) first.
#
# Env: COURIER_CACHE (root filesystems are cached in $COURIER_CACHE/images), CARGO_TARGET_DIR,
#      KAFKA_VERSION, ES_VERSION, ES_JAVA_HOME, COURIER_IMAGES_SKIP_CARGO=1 (use the
#      binaries as they are instead of running cargo build first),
#      COURIER_IMAGES_PROFILE=debug (the Courier images carry the debug binaries instead, tagged
#      :test only — what scripts/test.sh does, right after building them for the tests, rather
#      than paying for a release build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=images

SUITE=bookworm
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
ES_VERSION="${ES_VERSION:-9.5.3}"
ES_JAVA_HOME="${ES_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
deploy="$root/deploy/images"
cache="$(courier_cache_dir)/images"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
courier_version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
ALL=(base-runtime base-jre kafka postgres elasticsearch proxy consumer-main consumer-es)
COURIER_BINARIES=(courier-proxy courier-consumer-main courier-consumer-es)
PROFILE="${COURIER_IMAGES_PROFILE:-release}"
[[ "$PROFILE" == release || "$PROFILE" == debug ]] || die "COURIER_IMAGES_PROFILE must be release or debug"

command -v podman >/dev/null || die "podman not found (run scripts/setup.sh --containers)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (run scripts/setup.sh --containers)"
mkdir -p "$cache"

# ---------------------------------------------------------------- helpers

image_ref() {
  case "$1" in
    base-runtime) echo "localhost/courier-base-runtime:$SUITE" ;;
    base-jre) echo "localhost/courier-base-jre:$SUITE" ;;
    kafka) echo "localhost/courier-kafka:$KAFKA_VERSION" ;;
    postgres) echo "localhost/courier-postgres:15" ;;
    elasticsearch) echo "localhost/courier-elasticsearch:$ES_VERSION" ;;
    proxy | consumer-main | consumer-es)
      if [[ "$PROFILE" == release ]]; then
        echo "localhost/courier-$1:$courier_version"
      else
        echo "localhost/courier-$1:test"
      fi
      ;;
    *) die "unknown image $1 (one of: ${ALL[*]})" ;;
  esac
}

# label_of REF: the courier.inputs label of a local image, empty if there is none.
label_of() {
  podman image inspect --format '{{ index .Labels "courier.inputs" }}' "$1" 2>/dev/null || true
}

sha() { sha256sum | cut -c1-32; }

# recipe FUNCTION: hash of the shell function that builds an image (so does a change to it).
recipe() { declare -f "$1" | sha; }

# tree_sum DIR...: hash of the files under DIR (names, modes and contents).
tree_sum() {
  local d
  for d in "$@"; do
    (cd "$d" && find . -type f -printf '%P %m\n' | LC_ALL=C sort &&
      find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
  done | sha
}

# The Debian package sources mmdebstrap installs from (the machine's own, a pinned snapshot
# here): part of every root filesystem's inputs.
apt_sources_sum() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | sha
}

declare -A VISITED=()
BUILT=()
KEPT=()

# rootfs_image NAME REF SUM -- MMDEBSTRAP_ARGS...: a base image imported from a root
# filesystem that mmdebstrap builds (cached as a tarball keyed by SUM).
rootfs_image() {
  local name=$1 ref=$2 sum=$3
  shift 4
  if [[ "$(label_of "$ref")" == "$sum" ]]; then
    KEPT+=("$name")
    return
  fi
  local tar="$cache/rootfs-$name-$sum.tar"
  if [[ ! -s "$tar" ]]; then
    log "building the $name root filesystem with mmdebstrap (cached in $cache)"
    rm -f "$cache/rootfs-$name-"*.tar
    local t0=$SECONDS
    mmdebstrap --quiet --format=tar "$@" "$SUITE" "$tar.tmp" </dev/null || {
      rm -rf "$tar.tmp"
      die "mmdebstrap failed for $name"
    }
    mv "$tar.tmp" "$tar"
    log "$name root filesystem: $(du -h "$tar" | cut -f1) in $((SECONDS - t0))s"
  fi
  podman import --quiet --change "LABEL courier.inputs=$sum" \
    --change 'CMD ["/bin/sh"]' "$tar" "$ref" >/dev/null
  BUILT+=("$name")
}

# containerfile_image NAME REF CONTEXT SUM [BUILD_ARGS...]: podman build of
# CONTEXT/Containerfile (docker format, so HEALTHCHECK is kept; never pulls).
containerfile_image() {
  local name=$1 ref=$2 context=$3 sum=$4
  shift 4
  if [[ "$(label_of "$ref")" == "$sum" ]]; then
    KEPT+=("$name")
    return
  fi
  log "building $ref"
  podman build --quiet --format docker --pull=never --layers=false \
    --label "courier.inputs=$sum" "$@" -t "$ref" "$context" >/dev/null ||
    die "podman build of $name failed"
  BUILT+=("$name")
}

# stage DIR FILE...: a fresh build context with copies (hard links when possible) of FILEs.
stage() {
  local dir=$1
  shift
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -a "$@" "$dir/"
}

# ---------------------------------------------------------------- images

courier_binaries() {
  if [[ "${COURIER_IMAGES_SKIP_CARGO:-}" != 1 ]]; then
    log "cargo build ($PROFILE: the binaries the images carry)"
    local p=() b
    for b in "${COURIER_BINARIES[@]}"; do p+=(-p "$b"); done
    [[ "$PROFILE" == release ]] && p+=(--release)
    (cd "$root" && cargo build --locked "${p[@]}" 2>&1 | tail -n 3 >&2)
  fi
  [[ -x "$target_dir/$PROFILE/courier-proxy" ]] ||
    die "$target_dir/$PROFILE/courier-proxy missing (cargo build)"
}

# runtime_packages: the Debian packages holding the shared libraries the Courier binaries
# link (ldd), one per line.
runtime_packages() {
  local lib path pkg
  for b in "${COURIER_BINARIES[@]}"; do
    [[ -x "$target_dir/$PROFILE/$b" ]] || continue
    ldd "$target_dir/$PROFILE/$b" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }'
  done | LC_ALL=C sort -u | while read -r lib; do
    pkg=""
    for path in "$lib" "$(readlink -f "$lib")" "/usr$lib" "${lib#/usr}"; do
      pkg="$(dpkg-query -S "$path" 2>/dev/null | head -n1 | cut -d: -f1)" && [[ -n "$pkg" ]] && break
    done
    [[ -n "$pkg" ]] || die "no Debian package holds $lib (linked by the Courier binaries)"
    echo "$pkg"
  done | LC_ALL=C sort -u
}

build_base_runtime() {
  courier_binaries
  local pkgs
  pkgs="$(runtime_packages | paste -sd, -)"
  local sum
  sum="$(printf '%s\n' "v3 $pkgs,busybox" "$(apt_sources_sum)" | sha)"
  # extract: unpack the packages (and what they depend on), run no maintainer script — no
  # shell, no package manager in the image (in this variant only extract hooks run). Then busybox's applets (sh, wget for the health
  # check), the machine's CA bundle, a non-root user, /tmp.
  rootfs_image base-runtime "$(image_ref base-runtime)" "$sum" -- \
    --variant=extract --include="$pkgs,busybox" \
    --extract-hook="$BUSYBOX_LINKS" \
    --extract-hook='mkdir -p "$1/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"' \
    --extract-hook='printf "root:x:0:0:root:/root:/bin/sh\ncourier:x:65532:65532:courier:/nonexistent:/bin/false\n" >"$1/etc/passwd"' \
    --extract-hook='printf "root:x:0:\ncourier:x:65532:\n" >"$1/etc/group"' \
    --extract-hook='mkdir -p -m 1777 "$1/tmp"' \
    --extract-hook='rm -rf "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/lintian'
}

# A link in /bin for each busybox applet (sh, wget, kill, ...) that no package put there
# (`busybox --install` needs /proc, which the hook's chroot lacks).
BUSYBOX_LINKS='for a in $(chroot "$1" /bin/busybox --list); do [ -e "$1/bin/$a" ] || ln -s busybox "$1/bin/$a"; done'

# Paths dpkg does not unpack in the Debian-based root filesystems.
SLIM=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright')

build_base_jre() {
  local sum
  sum="$(printf '%s\n' "v2 essential openjdk-17-jre-headless ${SLIM[*]}" "$(apt_sources_sum)" | sha)"
  rootfs_image base-jre "$(image_ref base-jre)" "$sum" -- \
    --variant=essential --include=openjdk-17-jre-headless "${SLIM[@]}" \
    --essential-hook='mkdir -p "$1"/usr/share/man/man1' \
    --customize-hook='rm -rf "$1"/usr/share/man "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
}

build_kafka() {
  local home ctx="$cache/context-kafka"
  home="$(KAFKA_VERSION="$KAFKA_VERSION" "$root/scripts/kafka/fetch.sh")"
  stage "$ctx" "$deploy/kafka/Containerfile" "$deploy/kafka/entrypoint.sh" \
    "$deploy/kafka/log4j2.properties"
  cp -al "$home/libs" "$ctx/libs" 2>/dev/null || cp -a "$home/libs" "$ctx/libs"
  local sum
  sum="$(printf '%s\n' "$(recipe build_kafka)" "$(label_of "$(image_ref base-jre)")" "$(tree_sum "$deploy/kafka")" \
    "$(cat "$home/.fetched")" "$(cd "$home/libs" && ls -l)" | sha)"
  containerfile_image kafka "$(image_ref kafka)" "$ctx" "$sum" \
    --build-arg "BASE=$(image_ref base-jre)" --build-arg "KAFKA_VERSION=$KAFKA_VERSION"
}

build_postgres() {
  local sum
  sum="$(printf '%s\n' "v4 postgresql-15" "$(tree_sum "$deploy/postgres")" "$(apt_sources_sum)" | sha)"
  # The server and its libraries only: extract (no maintainer scripts, so no cluster made at
  # install), without the JIT's LLVM (and its Z3) and postgresql-common's Perl wrappers, which
  # the server never runs (jit=off).
  rootfs_image base-postgres "localhost/courier-base-postgres:$SUITE" "$sum" -- \
    --variant=extract --include=postgresql-15,busybox \
    --extract-hook="$BUSYBOX_LINKS" \
    --extract-hook='rm -rf "$1"/usr/lib/x86_64-linux-gnu/libLLVM* "$1"/usr/lib/x86_64-linux-gnu/libz3.so* "$1"/usr/lib/x86_64-linux-gnu/libperl.so* "$1"/usr/lib/postgresql/15/lib/llvmjit* "$1"/usr/lib/postgresql/15/lib/bitcode "$1"/usr/share/perl* "$1"/usr/lib/x86_64-linux-gnu/perl* "$1"/usr/bin/perl* "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/locale' \
    --extract-hook='printf "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n" >"$1/etc/passwd"' \
    --extract-hook='printf "root:x:0:\npostgres:x:999:\n" >"$1/etc/group"' \
    --extract-hook='mkdir -p -m 1777 "$1/tmp"'
  local ctx="$cache/context-postgres"
  stage "$ctx" "$deploy/postgres/Containerfile" "$deploy/postgres/entrypoint.sh"
  containerfile_image postgres "$(image_ref postgres)" "$ctx" "$sum" \
    --build-arg "BASE=localhost/courier-base-postgres:$SUITE"
}

build_elasticsearch() {
  local home ctx="$cache/context-elasticsearch"
  home="$(ES_VERSION="$ES_VERSION" ES_JAVA_HOME="$ES_JAVA_HOME" "$root/scripts/elasticsearch/fetch.sh")"
  [[ -x "$ES_JAVA_HOME/bin/java" ]] || die "no JDK at ES_JAVA_HOME=$ES_JAVA_HOME (Elasticsearch 9 needs Java 21+)"
  local sum
  sum="$(printf '%s\n' "$(recipe build_elasticsearch)" "$(label_of "$(image_ref base-runtime)")" "$(tree_sum "$deploy/elasticsearch")" \
    "$(cat "$home/.fetched")" "$(cat "$ES_JAVA_HOME/release")" | sha)"
  if [[ "$(label_of "$(image_ref elasticsearch)")" == "$sum" ]]; then
    KEPT+=(elasticsearch)
    return
  fi
  stage "$ctx" "$deploy/elasticsearch/Containerfile" "$deploy/elasticsearch/entrypoint.sh" \
    "$deploy/elasticsearch/elasticsearch.yml"
  cp -al "$home" "$ctx/home" 2>/dev/null || cp -a "$home" "$ctx/home"
  # The JDK without its sources, headers and manual. Not a jlinked runtime: Elasticsearch's
  # entitlement module requires jdk.jlink, which jlink cannot copy out of a JDK without
  # packaged modules (JEP 493), as Temurin 25 is.
  cp -a "$ES_JAVA_HOME" "$ctx/jre"
  rm -rf "$ctx/jre/lib/src.zip" "$ctx/jre/man" "$ctx/jre/include" "$ctx/jre/demo" "$ctx/jre/sample"
  containerfile_image elasticsearch "$(image_ref elasticsearch)" "$ctx" "$sum" \
    --build-arg "BASE=$(image_ref base-runtime)"
}

build_courier() {
  local name=$1 bin="courier-$1" ctx="$cache/context-$1"
  courier_binaries
  [[ -x "$target_dir/$PROFILE/$bin" ]] || die "$target_dir/$PROFILE/$bin missing (cargo build)"
  stage "$ctx" "$deploy/$bin"/*
  # The release profile keeps line tables for backtraces on the build machine; the image
  # carries the symbols only.
  strip --strip-debug -o "$ctx/$bin" "$target_dir/$PROFILE/$bin"
  local sum
  sum="$(printf '%s\n' "$(recipe build_courier)" "$(label_of "$(image_ref base-runtime)")" "$(tree_sum "$ctx")" | sha)"
  containerfile_image "$name" "$(image_ref "$name")" "$ctx" "$sum" \
    --build-arg "BASE=$(image_ref base-runtime)"
  if [[ "$PROFILE" == release ]]; then podman tag "$(image_ref "$name")" "localhost/$bin:dev"; fi
}

# need NAME: build NAME (and what it is built on) once per run.
need() {
  [[ -n "${VISITED[$1]:-}" ]] && return
  case "$1" in
    base-runtime) build_base_runtime ;;
    base-jre) build_base_jre ;;
    kafka) need base-jre && build_kafka ;;
    postgres) build_postgres ;;
    elasticsearch) need base-runtime && build_elasticsearch ;;
    proxy | consumer-main | consumer-es) need base-runtime && build_courier "$1" ;;
    *) die "unknown image $1 (one of: ${ALL[*]})" ;;
  esac
  VISITED[$1]=1
}

t0=$SECONDS
wanted=("$@")
((${#wanted[@]})) || wanted=("${ALL[@]}")
# With --layers=false no intermediate images are kept; replaced images leave dangling ones.
for name in "${wanted[@]}"; do need "$name"; done
podman image prune --force >/dev/null 2>&1 || true
# The build contexts hold copies of jars, a JDK and binaries; the images have them now.
rm -rf "$cache"/context-*

log "built: ${BUILT[*]:-none}; unchanged: ${KEPT[*]:-none} ($((SECONDS - t0))s)"
for name in "${!VISITED[@]}"; do
  ref="$(image_ref "$name" 2>/dev/null || true)"
  [[ "$name" == postgres ]] && ref="$(image_ref postgres)"
  size="$(podman image inspect --format '{{.Size}}' "$ref")"
  printf '%-48s %6s MB\n' "$ref" "$((size / 1000000))"
done | LC_ALL=C sort
