#!/bin/sh
# Starts the node as scripts/elasticsearch/node.sh does (the server CLI is not on Maven Central):
# ServerArgsWriter turns the config into the server's startup arguments, read on stdin.
set -eu
home=/usr/share/elasticsearch
conf=/etc/elasticsearch
java=/opt/java/bin/java
tmp=/var/tmp/elasticsearch
# The server requires it (its native-access library extracts there), as scripts/elasticsearch/node.sh sets it.
export LIBFFI_TMPDIR="$tmp"
feature=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' /opt/java/release)
bridge=$(find "$home/lib/entitlement-bridge" -name "*.jar" | head -n 1)
native=org.elasticsearch.nativeaccess,org.apache.lucene.core
if ls "$home"/lib/elasticsearch-foreign-library-*.jar >/dev/null 2>&1; then native=$native,org.elasticsearch.foreign; fi

"$java" -Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -cp "$home/courier/server-args-writer.jar:$home/lib/*" courier.es.ServerArgsWriter "$home" "$conf" \
  >"$tmp/server-args.bin"

# shellcheck disable=SC2086 # ES_JAVA_OPTS is meant to be split
exec "$java" -Des.networkaddress.cache.ttl=60 -Des.networkaddress.cache.negative.ttl=10 -Xss1m \
  -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true -XX:-OmitStackTraceInFastThrow \
  -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
  -Dio.netty.recycler.maxCapacityPerThread=0 -Dlog4j.shutdownHookEnabled=false \
  -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true -Djava.locale.providers=CLDR \
  "-Dorg.apache.lucene.vectorization.upperJavaFeatureVersion=$feature" \
  "-Des.path.home=$home" "-Des.path.conf=$conf" -Des.distribution.type=docker \
  -Dorg.elasticsearch.nativeaccess.enableVectorLibrary=false -Des.java.type=ES_JAVA_HOME \
  "--enable-native-access=$native" --enable-native-access=ALL-UNNAMED --illegal-native-access=deny \
  -XX:+EnableDynamicAgentLoading -Djdk.attach.allowAttachSelf=true \
  "-Des.entitlement.agentJar=$home/lib/entitlement-agent/courier-entitlement-agent.jar" \
  "--patch-module=java.base=$bridge" \
  '--add-exports=java.base/org.elasticsearch.entitlement.bridge=org.elasticsearch.entitlement,java.logging,java.net.http,java.naming,jdk.net,jdk.zipfs,jdk.management.agent' \
  -XX:+UseG1GC "-Djava.io.tmpdir=$tmp" --add-modules=jdk.incubator.vector \
  -Dorg.apache.lucene.store.defaultReadAdvice=normal \
  -Dorg.apache.lucene.store.MMapDirectory.sharedArenaMaxPermits=1 \
  -XX:+ExitOnOutOfMemoryError "-XX:ErrorFile=/var/log/elasticsearch/hs_err_pid%p.log" \
  -XX:MaxDirectMemorySize=256m ${ES_JAVA_OPTS:-} \
  --module-path "$home/lib" --add-modules=jdk.net --add-modules=jdk.management.agent \
  --add-modules=ALL-MODULE-PATH -m org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch \
  <"$tmp/server-args.bin"
