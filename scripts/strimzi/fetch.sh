#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Resolve the Strimzi Kafka HTTP bridge (io.strimzi:kafka-bridge) and its runtime
# dependencies from Maven Central into $(courier_cache_dir)/strimzi-bridge-<version>/libs/,
# so the benchmark can run it as a plain JVM process beside the proxy (the peer a user would
# pick instead of Courier).
#
# Usage: scripts/strimzi/fetch.sh        (prints the bridge home dir on stdout; exit 1 when
#                                         the registry does not serve the artifact)
# Env:   STRIMZI_BRIDGE_VERSION (default 0.33.1), COURIER_CACHE, MVN (default mvn)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=strimzi-fetch

VERSION="${STRIMZI_BRIDGE_VERSION:-0.33.1}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

home="$(courier_cache_dir)/strimzi-bridge-${VERSION}"
marker="$home/.fetched"
want="kafka-bridge ${VERSION} v1"

if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
  printf '%s\n' "$home"
  exit 0
fi

command -v mvn >/dev/null || die "mvn not found (run scripts/setup.sh)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>courier.local</groupId>
  <artifactId>strimzi-bridge-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.strimzi</groupId>
      <artifactId>kafka-bridge</artifactId>
      <version>${VERSION}</version>
    </dependency>
  </dependencies>
</project>
POM

log "resolving io.strimzi:kafka-bridge:${VERSION} from Maven Central into $home/libs"
mkdir -p "$home"
rm -rf "$home/libs.tmp"
# -U: a refusal cached by an earlier attempt is asked again.
if ! "${MVN:-mvn}" -B -U -q --no-transfer-progress -f "$work/pom.xml" \
  "${DEP_PLUGIN}:copy-dependencies" \
  -DincludeScope=runtime -DoutputDirectory="$home/libs.tmp" >"$work/mvn.log" 2>&1; then
  grep -E 'ERROR.*(not found|Could not|Failed)' "$work/mvn.log" | head -n 3 >&2 || true
  rm -rf "$home/libs.tmp"
  die "maven could not resolve io.strimzi:kafka-bridge:${VERSION} (set STRIMZI_BRIDGE_VERSION to a version the registry serves)"
fi
[[ -f "$home/libs.tmp/kafka-bridge-${VERSION}.jar" ]] ||
  die "expected kafka-bridge-${VERSION}.jar among the resolved jars"

rm -rf "$home/libs"
mv "$home/libs.tmp" "$home/libs"
printf '%s\n' "$want" >"$marker"
log "fetched $(find "$home/libs" -name '*.jar' | wc -l) jars"
printf '%s\n' "$home"
