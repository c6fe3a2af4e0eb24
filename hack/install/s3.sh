#!/usr/bin/env bash
# Install the local S3 server for dev and tests: s3proxy (Apache-2.0, Maven Central, the
# self-contained jar-with-dependencies) with its filesystem backend, fetched with `mvn` into
# $EXCHANGE_CACHE/s3proxy-<version>/s3proxy.jar. Idempotent: a second run is a no-op.
# Needs Java 17+ and Maven; installs them with apt-get when missing and we may.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

S3PROXY_VERSION="3.0.0" # org.gaul:s3proxy, classifier jar-with-dependencies (Java 17 bytecode)
DEST="$EXCHANGE_CACHE/s3proxy-$S3PROXY_VERSION"
JAR="$DEST/s3proxy.jar"

if have_stamp s3proxy "$S3PROXY_VERSION" && [ -f "$JAR" ]; then
  log "s3proxy $S3PROXY_VERSION already installed in $DEST"
  exit 0
fi

ensure_java_maven

log "fetching s3proxy $S3PROXY_VERSION with Maven into $DEST"
started=$SECONDS
tmp="$DEST.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
mvn -B -q -Dstyle.color=never \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
  -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
  -DoutputDirectory="$tmp" >"$DEST.mvn.log" 2>&1 \
  || { tail -n 30 "$DEST.mvn.log" >&2; die "mvn could not fetch org.gaul:s3proxy:$S3PROXY_VERSION (output above)"; }
rm -f "$DEST.mvn.log"
mv "$tmp/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar" "$tmp/s3proxy.jar"

# Smoke check: the jar is a runnable s3proxy.
java -jar "$tmp/s3proxy.jar" --version >"$tmp/check.log" 2>&1 \
  || die "s3proxy.jar does not run: $(tail -1 "$tmp/check.log")"
rm -f "$tmp/check.log"

rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
write_stamp s3proxy "$S3PROXY_VERSION"
log "s3proxy $S3PROXY_VERSION installed in $DEST ($((SECONDS - started))s)"
