#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build a runnable Elasticsearch 9.x home in $(courier_cache_dir)/elasticsearch-<version>/ from
# Maven Central artifacts, so tests can run a real single-node Elasticsearch as a plain JVM
# process (no Docker, no tarball: only Maven Central is reachable here).
#
# Why not the integ-test-zip (org.elasticsearch.distribution.integ-test-zip:elasticsearch:zip):
# Central serves it up to 8.19.x only; no 9.x version of it resolves (9.3.0 and 9.5.6 answer
# "not found", and its maven-metadata lists no 9.x). The 9.x server jars are served, so this
# script assembles the same minimal distribution the integ-test-zip is, from them:
#   lib/                    org.elasticsearch:elasticsearch:<v> and its runtime dependencies
#   lib/entitlement-bridge/ org.elasticsearch:elasticsearch-entitlement-bridge:<v>
#   modules/transport-netty4/  org.elasticsearch.plugin:transport-netty4:<v> + deps, with the
#                           plugin descriptor and entitlement policy the jar carries
#   lib/platform/linux-x64/libzstd.so  the system's libzstd (the distribution bundles its own)
# plus three small classes of ours (launcher/, compiled here with ES_JAVA_HOME's javac) standing
# in for what is not on Central: the entitlement agent, an empty console loader, and the writer
# of the server's startup arguments (the server CLI's job). scripts/elasticsearch/node.sh runs it.
#
# Usage: scripts/elasticsearch/fetch.sh        (prints the Elasticsearch home on stdout)
# Env:   ES_VERSION (default 9.5.3), ES_JAVA_HOME (default Temurin 25), COURIER_CACHE, MVN
#        (default mvn). MAVEN_OPTS=-Dmaven.repo.local=... points Maven at another local repo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$here/../lib.sh"
LOG_TAG=es-fetch

ES_VERSION="${ES_VERSION:-9.5.3}"
ES_JAVA_HOME="${ES_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
# Pinned so the resolution does not depend on Maven's (old) default binding.
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

home="$(courier_cache_dir)/elasticsearch-${ES_VERSION}"
marker="$home/.fetched"
# The marker records the recipe (this script, our launcher sources), so changing it rebuilds.
src_sum="$(cd "$here" && find fetch.sh launcher log4j2.properties -type f | LC_ALL=C sort |
  xargs sha256sum | sha256sum | cut -c1-16)"
want="es-from-jars ${ES_VERSION} v1 ${src_sum}"

if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
  printf '%s\n' "$home"
  exit 0
fi

command -v mvn >/dev/null || die "mvn not found (run scripts/setup.sh)"
[[ -x "$ES_JAVA_HOME/bin/javac" ]] ||
  die "no JDK at ES_JAVA_HOME=$ES_JAVA_HOME (Elasticsearch 9 needs Java 21+; set ES_JAVA_HOME)"

work="$(mktemp -d)"
trap 'rm -rf "$work" "$home.tmp"' EXIT

# resolve NAME DEP...: copy the runtime closure of the given G:A:V dependencies into
# $work/NAME/ (one throwaway pom per set, as for Kafka).
resolve() {
  local name=$1 gav g a v
  shift
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo "<groupId>courier.local</groupId><artifactId>es-$name</artifactId><version>1</version>"
    echo '<packaging>pom</packaging><dependencies>'
    for gav in "$@"; do
      IFS=: read -r g a v <<<"$gav"
      echo "<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
    done
    echo '</dependencies></project>'
  } >"$work/$name.pom"
  if ! "${MVN:-mvn}" -B -q --no-transfer-progress -f "$work/$name.pom" \
    "${DEP_PLUGIN}:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$work/$name" >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    die "maven could not resolve: $*"
  fi
}

log "resolving Elasticsearch ${ES_VERSION} from Maven Central into $home"
start=$SECONDS
resolve server "org.elasticsearch:elasticsearch:${ES_VERSION}" \
  "org.elasticsearch:elasticsearch-entitlement-bridge:${ES_VERSION}"
resolve netty4 "org.elasticsearch.plugin:transport-netty4:${ES_VERSION}"

# Build in a temp dir and rename at the end, so an interrupted fetch never leaves a
# half-built home that looks usable.
tmp="$home.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"/{lib/entitlement-bridge,lib/entitlement-agent,lib/tools/ansi-console} \
  "$tmp"/{modules/transport-netty4,plugins,config,courier}

bridge="elasticsearch-entitlement-bridge-${ES_VERSION}.jar"
[[ -f "$work/server/elasticsearch-${ES_VERSION}.jar" && -f "$work/server/$bridge" ]] ||
  die "expected elasticsearch-${ES_VERSION}.jar and $bridge among the resolved jars"
mv "$work/server/$bridge" "$tmp/lib/entitlement-bridge/"
mv "$work/server/"*.jar "$tmp/lib/"
# The module gets the jars of transport-netty4's closure that the server does not already have
# (its own jar, Netty, ssl-config), as in the distribution.
for jar in "$work/netty4/"*.jar; do
  [[ -e "$tmp/lib/$(basename "$jar")" ]] || mv "$jar" "$tmp/modules/transport-netty4/"
done
module_jar="$tmp/modules/transport-netty4/transport-netty4-${ES_VERSION}.jar"
[[ -f "$module_jar" ]] || die "transport-netty4-${ES_VERSION}.jar missing from the module"
# The plugin descriptor and entitlement policy ride inside the module's jar.
(cd "$tmp/modules/transport-netty4" &&
  "$ES_JAVA_HOME/bin/jar" xf "$module_jar" META-INF/es-plugins/transport-netty4 &&
  mv META-INF/es-plugins/transport-netty4/* . && rm -rf META-INF)
[[ -f "$tmp/modules/transport-netty4/plugin-descriptor.properties" ]] ||
  die "transport-netty4 jar carries no plugin-descriptor.properties; recipe needs updating"

# Our stand-ins, compiled against this version's jars.
javac_out="$work/classes"
mkdir -p "$javac_out"
mapfile -t sources < <(find "$here/launcher" -name '*.java' | LC_ALL=C sort)
"$ES_JAVA_HOME/bin/javac" -nowarn --release 21 -d "$javac_out" -cp "$tmp/lib/*" "${sources[@]}" ||
  die "compiling the launcher classes against Elasticsearch ${ES_VERSION} failed"
printf 'Agent-Class: courier.es.EntitlementAgent\nCan-Retransform-Classes: true\n' >"$work/agent.mf"
"$ES_JAVA_HOME/bin/jar" --create --file "$tmp/lib/entitlement-agent/courier-entitlement-agent.jar" \
  --manifest "$work/agent.mf" -C "$javac_out" courier/es/EntitlementAgent.class
"$ES_JAVA_HOME/bin/jar" --create --file "$tmp/lib/tools/ansi-console/courier-no-console.jar" \
  -C "$javac_out" org/elasticsearch/io/ansi
"$ES_JAVA_HOME/bin/jar" --create --file "$tmp/courier/server-args-writer.jar" \
  -C "$javac_out" courier/es/ServerArgsWriter.class

# Native code: the server loads libzstd from lib/platform/<os-arch>/ (it bundles one; Central
# does not). With it, "native access" works (system call filter, zstd for best_compression);
# without it the node still runs, with a warning and those features off. libvec (SIMD vector
# scoring) is not to be had; vector search then falls back to the JDK's vector API.
case "$(uname -m)" in
  x86_64) platform=linux-x64 ;;
  aarch64) platform=linux-aarch64 ;;
  *) platform="" ;;
esac
zstd=""
for f in "/usr/lib/$(uname -m)-linux-gnu/libzstd.so.1" "/lib/$(uname -m)-linux-gnu/libzstd.so.1" \
  /usr/lib64/libzstd.so.1 /usr/lib/libzstd.so.1; do
  if [[ -r "$f" ]]; then
    zstd=$f
    break
  fi
done
if [[ -n "$platform" && -n "$zstd" && -r "$zstd" ]]; then
  mkdir -p "$tmp/lib/platform/$platform"
  cp -L "$zstd" "$tmp/lib/platform/$platform/libzstd.so"
else
  log "WARNING: no system libzstd.so.1 found; the node will run without native access"
fi

cp "$here/log4j2.properties" "$tmp/config/log4j2.properties"
printf '# Settings of a node started by scripts/elasticsearch/node.sh live in its DIR/config.\n' \
  >"$tmp/config/elasticsearch.yml"
chmod -R a+rX,go-w "$tmp"

rm -rf "$home"
mv "$tmp" "$home"
printf '%s\n' "$want" >"$marker"
log "built Elasticsearch ${ES_VERSION} ($(find "$home" -name '*.jar' | wc -l) jars, $(du -sh "$home" | cut -f1)) in $((SECONDS - start))s"
printf '%s\n' "$home"
