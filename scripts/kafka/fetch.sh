#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Resolve Apache Kafka (broker + CLI tools) and its runtime dependencies from
# Maven Central into $(courier_cache_dir)/kafka-<version>/libs/, so tests can
# run a real KRaft cluster as plain JVM processes (no Docker, no tarball: only
# Maven Central is reachable here).
#
# Usage: scripts/kafka/fetch.sh        (prints the kafka home dir on stdout)
# Env:   KAFKA_VERSION (default 4.1.1), COURIER_CACHE, MVN (default mvn)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=kafka-fetch

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
# Pinned so the resolution does not depend on Maven's (old) default binding.
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

home="$(courier_cache_dir)/kafka-${KAFKA_VERSION}"
marker="$home/.fetched"
# The marker records what was resolved; bump it when the recipe changes so
# old caches are refetched.
want="kafka_2.13+kafka-tools+log4j2-binding ${KAFKA_VERSION} v1"

if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
  printf '%s\n' "$home"
  exit 0
fi

command -v mvn >/dev/null || die "mvn not found (run scripts/setup.sh)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kafka_2.13 is the broker (kafka.Kafka, kafka.tools.StorageTool); kafka-tools
# holds the CLI classes (TopicCommand, ConsoleProducer, ...) that
# cluster.sh uses for readiness checks and tests use for produce/consume.
cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>courier.local</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
  </dependencies>
</project>
POM

log "resolving Kafka ${KAFKA_VERSION} from Maven Central into $home/libs"
start=$SECONDS
# Copy into a temp dir first and rename at the end, so an interrupted fetch
# never leaves a half-filled libs/ that looks usable.
mkdir -p "$home"
rm -rf "$home/libs.tmp"
if ! "${MVN:-mvn}" -B -q --no-transfer-progress -f "$work/pom.xml" \
  "${DEP_PLUGIN}:copy-dependencies" \
  -DincludeScope=runtime -DoutputDirectory="$home/libs.tmp" >"$work/mvn.log" 2>&1; then
  cat "$work/mvn.log" >&2
  die "maven could not resolve Kafka ${KAFKA_VERSION}"
fi

# Sanity check: the classes cluster.sh relies on must be on the classpath.
for jar in "kafka_2.13-${KAFKA_VERSION}.jar" "kafka-tools-${KAFKA_VERSION}.jar"; do
  [[ -f "$home/libs.tmp/$jar" ]] || die "expected $jar among the resolved jars"
done

# kafka_2.13 (4.1.1) pulls log4j-api/-core but no SLF4J binding, so the broker
# would log through SLF4J's NOP logger (nothing at all). Add the binding that
# matches what was resolved: the log4j-core version, and the SLF4J major
# (4.1 uses slf4j-api 1.7.x -> log4j-slf4j-impl; 2.x -> log4j-slf4j2-impl).
jar_version() { # jar_version PREFIX: version of libs.tmp/PREFIX-<v>.jar
  find "$home/libs.tmp" -maxdepth 1 -name "$1-[0-9]*.jar" -printf '%f\n' |
    sed -e "s/^$1-//" -e 's/\.jar$//' | head -n1
}
log4j_version="$(jar_version log4j-core)"
slf4j_version="$(jar_version slf4j-api)"
[[ -n "$log4j_version" && -n "$slf4j_version" ]] ||
  die "log4j-core or slf4j-api missing from Kafka's dependencies; logging recipe needs updating"
binding=log4j-slf4j-impl
[[ "$slf4j_version" == 1.* ]] || binding=log4j-slf4j2-impl
if ! "${MVN:-mvn}" -B -q --no-transfer-progress -f "$work/pom.xml" \
  "${DEP_PLUGIN}:copy" \
  -Dartifact="org.apache.logging.log4j:${binding}:${log4j_version}" \
  -DoutputDirectory="$home/libs.tmp" >"$work/mvn.log" 2>&1; then
  cat "$work/mvn.log" >&2
  die "maven could not resolve ${binding} ${log4j_version}"
fi

rm -rf "$home/libs"
mv "$home/libs.tmp" "$home/libs"
printf '%s\n' "$want" >"$marker"
log "fetched $(find "$home/libs" -name '*.jar' | wc -l) jars in $((SECONDS - start))s"
printf '%s\n' "$home"
