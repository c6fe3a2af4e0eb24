#!/usr/bin/env bash
# Install Apache Kafka (KRaft, single node) for local dev and tests: the broker jars from Maven
# Central (through `mvn`, from the committed hack/engines/kafka/pom.xml) plus a log4j2 backend and
# config, into $EXCHANGE_CACHE/kafka-<version>/{libs,config}; and the Prometheus JMX exporter agent
# (Maven Central too; `make dev` attaches it to the broker) into $EXCHANGE_CACHE/jmx-exporter-<version>/,
# with a stamp of its own. Idempotent: a second run is a no-op.
# Needs Java 17+ and Maven; installs them with apt-get when missing and we may.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

KAFKA_VERSION="4.1.1" # keep equal to <kafka.version> in hack/engines/kafka/pom.xml
JMX_EXPORTER_VERSION="1.0.1" # keep equal to JMX_EXPORTER_VERSION in exchange_devtools/engines/kafka.py
SRC="$REPO_ROOT/hack/engines/kafka"
DEST="$EXCHANGE_CACHE/kafka-$KAFKA_VERSION"
# Keyed by the pinned version, plus a digest of the pom and log config so editing them reinstalls.
STAMP="$KAFKA_VERSION-$(cat "$SRC/pom.xml" "$SRC/log4j2.properties" | sha256sum | cut -c1-12)"

install_jmx_exporter() {
  local dest="$EXCHANGE_CACHE/jmx-exporter-$JMX_EXPORTER_VERSION" jar="jmx_prometheus_javaagent-$JMX_EXPORTER_VERSION.jar"
  if have_stamp jmx-exporter "$JMX_EXPORTER_VERSION" && [ -f "$dest/$jar" ]; then
    return 0
  fi
  ensure_java_maven
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn -B -q -Dstyle.color=never -f "$SRC/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_EXPORTER_VERSION" -DoutputDirectory="$tmp" \
    >"$tmp/mvn.log" 2>&1 \
    || { tail -n 30 "$tmp/mvn.log" >&2; rm -rf "$tmp"; die "mvn could not fetch the JMX exporter agent $JMX_EXPORTER_VERSION"; }
  [ -f "$tmp/$jar" ] || { rm -rf "$tmp"; die "$jar not fetched"; }
  rm -f "$tmp/mvn.log"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  write_stamp jmx-exporter "$JMX_EXPORTER_VERSION"
  log "JMX exporter agent $JMX_EXPORTER_VERSION installed in $dest"
}
install_jmx_exporter

if have_stamp kafka "$STAMP" && [ -f "$DEST/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  log "kafka $KAFKA_VERSION already installed in $DEST"
  exit 0
fi

ensure_java_maven

[ -f "$SRC/pom.xml" ] || die "missing $SRC/pom.xml"
grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" "$SRC/pom.xml" \
  || die "KAFKA_VERSION=$KAFKA_VERSION differs from <kafka.version> in $SRC/pom.xml"

log "fetching Kafka $KAFKA_VERSION jars with Maven into $DEST"
started=$SECONDS
tmp="$DEST.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/libs" "$tmp/config"
mvn -B -q -Dstyle.color=never -f "$SRC/pom.xml" \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1 \
  || { tail -n 30 "$tmp/mvn.log" >&2; die "mvn could not fetch the Kafka $KAFKA_VERSION jars (output above)"; }
rm -f "$tmp/mvn.log"
cp "$SRC/log4j2.properties" "$tmp/config/log4j2.properties"
[ -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar not fetched"

# Smoke check: the storage tool loads from these jars.
java -cp "$tmp/libs/*" kafka.tools.StorageTool random-uuid >/dev/null 2>"$tmp/check.log" \
  || die "kafka.tools.StorageTool does not run from the fetched jars: $(tail -1 "$tmp/check.log")"
rm -f "$tmp/check.log"

rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
write_stamp kafka "$STAMP"
log "kafka $KAFKA_VERSION installed in $DEST ($(find "$DEST/libs" -name "*.jar" | wc -l) jars, $((SECONDS - started))s)"
