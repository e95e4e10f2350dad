#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Prepare a Debian machine for Courier. Idempotent and non-interactive (CI=true, no stdin,
# root); a second run installs nothing and needs no network.
#
# Without options, only what building and running needs (scripts/up.sh): native build deps of
# the Rust crates (rdkafka's librdkafka build: zlib, OpenSSL, zstd, lz4, SASL, curl), Java +
# Maven for the local Kafka and its jars (fetched here), python3 and curl for the scripts.
#
# Usage: scripts/setup.sh [--test] [--bench] [--containers] [--elasticsearch]
#   --test           also what only the tests use (scripts/test.sh): the PostgreSQL server and
#                    client for the throwaway test database (scripts/postgres.sh; the package
#                    may create Debian's default cluster `main` on 5432, which we never use),
#                    Chromium and Node.js for the admin page's browser tests, haproxy and
#                    iptables for the HA and network-fault tests, cargo-deny and cargo-fuzz,
#                    schemathesis (PyPI, in a venv under the cache) for the API conformance
#                    run, helm (built with Go from the Go module proxy, in the cache) and
#                    python3-yaml for the chart's checks, and the container engine
#                    (--containers).
#   --bench          also what only the benchmark uses (scripts/bench.sh): wrk, the external
#                    load generator it cross-checks its own with, and perf for profiles.
#   --containers     the container engine: Podman from Debian's packages, configured for this
#                    machine (scripts/containers/setup.sh; its --socket serves the Docker API).
#   --elasticsearch  also build the Elasticsearch 9 home that scripts/elasticsearch/node.sh
#                    runs (scripts/elasticsearch/fetch.sh; needs the Temurin 25 JDK, no
#                    further system packages).
set -euo pipefail

with_es=0 with_test=0 with_containers=0 with_bench=0
for arg in "$@"; do
  case "$arg" in
    --elasticsearch) with_es=1 ;;
    --test) with_test=1 with_containers=1 ;;
    --containers) with_containers=1 ;;
    --bench) with_bench=1 ;;
    *) echo "usage: $0 [--test] [--bench] [--containers] [--elasticsearch]" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
LOG_TAG=setup

PACKAGES=(
  build-essential pkg-config zlib1g-dev libssl-dev libcurl4-openssl-dev
  libzstd-dev liblz4-dev libsasl2-dev python3 maven default-jdk-headless curl
)
TEST_PACKAGES=(
  python3-venv python3-yaml postgresql postgresql-client chromium fonts-dejavu-core haproxy
  iptables
)
BENCH_PACKAGES=(wrk linux-perf)
if ((with_test)); then PACKAGES+=("${TEST_PACKAGES[@]}"); fi
if ((with_bench)); then PACKAGES+=("${BENCH_PACKAGES[@]}"); fi

# dpkg -s is local and fast; only packages not fully installed are missing.
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

# Node.js may come from elsewhere than Debian (a newer release); any node with npm will do.
if ((with_test)) && ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
  ((EUID == 0)) || die "missing packages (${missing[*]}) and not root; install them with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run (e.g. unattended or a parallel setup) may hold the lock;
  # wait for it instead of failing.
  apt_opts=(-y -q -o DPkg::Lock::Timeout=600)
  log "installing: ${missing[*]}"
  apt-get "${apt_opts[@]}" update
  apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null
else
  log "system packages already installed"
fi

# Kafka 4.x needs Java 17+; fail here with a clear message rather than in a
# broker log later.
java_major="$(java -XshowSettings:properties -version 2>&1 |
  sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p')"
((${java_major:-0} >= 17)) || die "java ${java_major:-?} found; Kafka 4.x needs Java 17 or newer"

"$here/kafka/fetch.sh" >/dev/null
if ((with_es)); then
  "$here/elasticsearch/fetch.sh" >/dev/null
fi
if ((with_containers)); then
  "$here/containers/setup.sh"
fi
if ((!with_test)); then
  log "done"
  exit 0
fi

# ---- cargo tools: cargo-deny (dependency checks in scripts/test.sh) and cargo-fuzz (fuzz/),
# built from crates.io once and kept in ~/.cargo/bin.
for tool in cargo-deny@0.20.2 cargo-fuzz@0.13.2; do
  if ! command -v "${tool%@*}" >/dev/null; then
    log "installing $tool"
    cargo install --locked "$tool"
  fi
done
# ---- end cargo tools

# ---- Helm, for the chart's checks (scripts/deploy/check.sh) and the kube play fleet test:
# built from the Go module proxy with the machine's Go into the cache (no prebuilt binary is
# downloaded). A go-installed helm reports no patch version; `go version -m` tells the module's.
HELM_VERSION=v3.21.4
helm_bin="$(courier_cache_dir)/go-bin/helm"
if [ "$(go version -m "$helm_bin" 2>/dev/null | awk '$1 == "mod" { print $3 }')" != "$HELM_VERSION" ]; then
  command -v go >/dev/null || die "go not found: it builds helm (the Go module helm.sh/helm/v3)"
  log "installing helm $HELM_VERSION into $(dirname "$helm_bin") (go install, a few minutes)"
  GOBIN="$(dirname "$helm_bin")" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
# ---- end Helm

# schemathesis checks the served OpenAPI document against the running proxy
# (scripts/schemathesis.sh); pinned, in a venv of its own.
SCHEMATHESIS_VERSION=4.32.5
venv="$(courier_cache_dir)/schemathesis-venv"
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1)" != "$SCHEMATHESIS_VERSION" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# ---- the official CloudEvents SDK for Python and a pure-Python Kafka reader, pinned, in a venv
# of their own: e2e/tests/sdks.rs runs e2e/sdk/python/conformance.py with its interpreter
# (scripts/test.sh hands it over as COURIER_TEST_PYTHON). The JavaScript SDK is installed by
# scripts/test.sh from e2e/sdk/js/package-lock.json.
sdk_requirements="$(dirname "$here")/e2e/sdk/python/requirements.txt"
sdk_venv="$(courier_cache_dir)/sdk-venv"
sdk_stamp="$sdk_venv/.courier-requirements.sha256"
sdk_sum="$(sha256sum <"$sdk_requirements" | cut -d' ' -f1)"
if [ "$(cat "$sdk_stamp" 2>/dev/null)" != "$sdk_sum" ] || [ ! -x "$sdk_venv/bin/python" ]; then
  log "installing the CloudEvents SDK for Python ($sdk_requirements) into $sdk_venv"
  python3 -m venv "$sdk_venv"
  "$sdk_venv/bin/pip" install --quiet --disable-pip-version-check -r "$sdk_requirements"
  printf '%s\n' "$sdk_sum" >"$sdk_stamp"
fi
# ---- end CloudEvents SDK for Python
log "done"
