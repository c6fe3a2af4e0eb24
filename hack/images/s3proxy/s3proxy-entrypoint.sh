#!/usr/bin/env bash
# Entrypoint of localhost/s3proxy:3.0.0. The upstream s3proxy image's variables, with the
# behaviour of the local engine (hack/exchange_devtools/engines/s3.py): path-style requests only
# (no virtual host unless S3PROXY_VIRTUALHOST is set), AWS SigV2 or SigV4, unknown x-amz-checksum-*
# headers ignored (botocore >= 1.36 sends them), a small Jetty pool.
#
#   S3PROXY_ENDPOINT            default http://0.0.0.0:9000
#   S3PROXY_AUTHORIZATION       aws-v2, aws-v4, aws-v2-or-v4 (default) or none
#   S3PROXY_IDENTITY, S3PROXY_CREDENTIAL   access key and secret; required unless authorization is none
#   S3PROXY_VIRTUALHOST         host name for virtual-host-style requests (default: none)
#   S3PROXY_IGNORE_UNKNOWN_HEADERS         default true
#   S3PROXY_JETTY_MAX_THREADS   default 8
#   S3PROXY_CORS_ALLOW_ORIGINS, S3PROXY_CORS_ALLOW_METHODS, S3PROXY_CORS_ALLOW_HEADERS   when set
#   JCLOUDS_PROVIDER            default filesystem-nio2 (as the local engine; s3proxy 3 logs that
#                               the older `filesystem` backend is deprecated). Buckets are
#                               directories, object metadata extended attributes.
#   JCLOUDS_FILESYSTEM_BASEDIR  default /data
#   JCLOUDS_IDENTITY, JCLOUDS_CREDENTIAL   default: the S3PROXY ones
#   JCLOUDS_REGION              default us-east-1;  JCLOUDS_ENDPOINT when set
#   S3PROXY_JAVA_OPTS           default -Xmx256m -Xms32m -XX:+UseSerialGC ...
#   LOG_LEVEL                   default info
#
# The properties are rendered to $TMPDIR/s3proxy/s3proxy.conf (mode 600; TMPDIR defaults to /tmp).
# `s3proxy-entrypoint.sh --print-config` prints them and exits; another command runs as is.
set -Eeuo pipefail

die() { printf 's3proxy-entrypoint.sh: error: %s\n' "$*" >&2; exit 1; }

CONFIG_DIR="${TMPDIR:-/tmp}/s3proxy"
CONFIG="$CONFIG_DIR/s3proxy.conf"

render() {
  local authorization="${S3PROXY_AUTHORIZATION:-aws-v2-or-v4}"
  local identity="${S3PROXY_IDENTITY:-}" credential="${S3PROXY_CREDENTIAL:-}"
  if [ "$authorization" != none ] && { [ -z "$identity" ] || [ -z "$credential" ]; }; then
    die "S3PROXY_IDENTITY and S3PROXY_CREDENTIAL are required with S3PROXY_AUTHORIZATION=$authorization"
  fi
  local props=(
    "s3proxy.endpoint=${S3PROXY_ENDPOINT:-http://0.0.0.0:9000}"
    "s3proxy.authorization=$authorization"
    "s3proxy.ignore-unknown-headers=${S3PROXY_IGNORE_UNKNOWN_HEADERS:-true}"
    "s3proxy.jetty.max-threads=${S3PROXY_JETTY_MAX_THREADS:-8}"
    "jclouds.provider=${JCLOUDS_PROVIDER:-filesystem-nio2}"
    "jclouds.filesystem.basedir=${JCLOUDS_FILESYSTEM_BASEDIR:-/data}"
    "jclouds.identity=${JCLOUDS_IDENTITY:-${identity:-none}}"
    "jclouds.credential=${JCLOUDS_CREDENTIAL:-${credential:-none}}"
    "jclouds.region=${JCLOUDS_REGION:-us-east-1}"
  )
  if [ "$authorization" != none ]; then
    props+=("s3proxy.identity=$identity" "s3proxy.credential=$credential")
  fi
  [ -z "${S3PROXY_VIRTUALHOST:-}" ] || props+=("s3proxy.virtual-host=$S3PROXY_VIRTUALHOST")
  [ -z "${S3PROXY_CORS_ALLOW_ORIGINS:-}" ] || props+=("s3proxy.cors-allow-origins=$S3PROXY_CORS_ALLOW_ORIGINS")
  [ -z "${S3PROXY_CORS_ALLOW_METHODS:-}" ] || props+=("s3proxy.cors-allow-methods=$S3PROXY_CORS_ALLOW_METHODS")
  [ -z "${S3PROXY_CORS_ALLOW_HEADERS:-}" ] || props+=("s3proxy.cors-allow-headers=$S3PROXY_CORS_ALLOW_HEADERS")
  [ -z "${JCLOUDS_ENDPOINT:-}" ] || props+=("jclouds.endpoint=$JCLOUDS_ENDPOINT")

  mkdir -p "$CONFIG_DIR"
  (umask 077 && printf '%s\n' "# Rendered by s3proxy-entrypoint.sh from the environment." "${props[@]}" >"$CONFIG")
}

case "${1:-}" in
  --print-config)
    render
    cat "$CONFIG"
    exit 0
    ;;
  "") ;;
  *) exec "$@" ;;
esac

render
# Word splitting on purpose: JVM flags.
# shellcheck disable=SC2086
exec java ${S3PROXY_JAVA_OPTS:--Xmx256m -Xms32m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Djava.awt.headless=true -Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener} \
  -DLOG_LEVEL="${LOG_LEVEL:-info}" -jar /opt/s3proxy/s3proxy.jar --properties "$CONFIG"
