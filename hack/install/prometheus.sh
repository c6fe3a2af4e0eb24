#!/usr/bin/env bash
# Install Prometheus and promtool for `make dev` and the tests: Debian 12's `prometheus` package
# (upstream 2.42), downloaded with `apt-get download` and unpacked with `dpkg-deb -x` into
# $EXCHANGE_CACHE/prometheus-<version>/bin. Unpacked, not installed: installing it would start a
# system Prometheus on :9090, the port `make dev` uses. Both are static Go binaries (libc only);
# only the HTTP API is used (the package's web UI needs its libjs-* dependencies).
# Idempotent: a second run checks the stamp and the binaries and does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PROMETHEUS_VERSION="2.42.0" # upstream version of Debian 12's package; keep equal to engines/prometheus.py
DEST="$EXCHANGE_CACHE/prometheus-$PROMETHEUS_VERSION"

if have_stamp prometheus "$PROMETHEUS_VERSION" && [ -x "$DEST/bin/prometheus" ] && [ -x "$DEST/bin/promtool" ]; then
  log "prometheus $PROMETHEUS_VERSION already installed in $DEST"
  exit 0
fi

command -v apt-get >/dev/null || die "no apt-get here: Debian's prometheus package is how this installs"
tmp="$(mktemp -d "$EXCHANGE_CACHE/prometheus-dl.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt's download user must be able to write here
started=$SECONDS
candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
version="$(candidate)"
case "$version" in
  "$PROMETHEUS_VERSION"+*) ;;
  *)
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    version="$(candidate)"
    ;;
esac
case "$version" in
  "$PROMETHEUS_VERSION"+*) ;;
  *) die "Debian's prometheus candidate is '${version:-none}', not $PROMETHEUS_VERSION (Debian 12 ships it)" ;;
esac
log "downloading Debian's prometheus $version"
(cd "$tmp" && apt-get download -qq "prometheus=$version" >/dev/null 2>"$tmp/apt.log") \
  || { cat "$tmp/apt.log" >&2; die "apt-get download prometheus=$version failed"; }
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
mkdir -p "$tmp/out/bin"
cp "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$tmp/out/bin/"
for b in prometheus promtool; do
  v="$("$tmp/out/bin/$b" --version 2>&1 | head -1)"
  case "$v" in *"version $PROMETHEUS_VERSION"*) ;; *) die "$b does not report $PROMETHEUS_VERSION: $v" ;; esac
done
rm -rf "$DEST"
mv "$tmp/out" "$DEST"
write_stamp prometheus "$PROMETHEUS_VERSION"
log "prometheus and promtool $PROMETHEUS_VERSION installed in $DEST/bin ($((SECONDS - started))s)"
