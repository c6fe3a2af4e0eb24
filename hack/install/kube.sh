#!/usr/bin/env bash
# Build the Kubernetes binaries of a single node from k8s.io/kubernetes into $EXCHANGE_BIN:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl, in one
# `go build` (static, CGO_ENABLED=0; the node's other pieces come from hack/install/node.sh).
#
# k8s.io/kubernetes is built through the wrapper module hack/kube/ (go.mod + committed go.sum),
# which replaces every staging module (k8s.io/api, apimachinery, apiserver, client-go, ...) with
# its published v0.x twin. To bump: change KUBE_VERSION here, then in hack/kube/go.mod the
# `require k8s.io/kubernetes` line and every `=> k8s.io/... v0.x` replace, then
# `GOFLAGS=-mod=mod go mod tidy`. To add a binary: add it to BINARIES here and to the `tool` block
# of hack/kube/go.mod, tidy, and change KUBE_STAMP so older installs rebuild.
# Idempotent: a second run with the same stamp and every binary present does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

KUBE_VERSION="v1.34.4"
KUBE_MODULE_DIR="$REPO_ROOT/hack/kube"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
# Stamp: the version plus the set built ("+node" = the six above; the earlier stamp, the bare
# version, meant kube-apiserver + kubectl only).
KUBE_STAMP="$KUBE_VERSION+node"

installed() {
  have_stamp kube "$KUBE_STAMP" || return 1
  local b
  for b in "${BINARIES[@]}"; do [ -x "$EXCHANGE_BIN/$b" ] || return 1; done
}

if installed; then
  log "${BINARIES[*]} $KUBE_VERSION already in $EXCHANGE_BIN"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "go not found (need Go >= 1.24 on PATH or at /usr/local/go/bin/go)"

grep -Eq "^[[:space:]]*(require[[:space:]]+)?k8s\.io/kubernetes $KUBE_VERSION([[:space:]]|\$)" "$KUBE_MODULE_DIR/go.mod" \
  || die "hack/kube/go.mod does not require k8s.io/kubernetes $KUBE_VERSION; bump both together"

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
pkg_flags=()
for pkg in client-go/pkg/version component-base/version; do
  pkg_flags+=(
    "-X" "k8s.io/$pkg.gitVersion=$KUBE_VERSION"
    "-X" "k8s.io/$pkg.gitMajor=1"
    "-X" "k8s.io/$pkg.gitMinor=$minor"
    "-X" "k8s.io/$pkg.gitTreeState=clean"
    "-X" "k8s.io/$pkg.gitCommit="
    "-X" "k8s.io/$pkg.buildDate=1970-01-01T00:00:00Z"
  )
done
ldflags="-s -w ${pkg_flags[*]}"

out="$(mktemp -d "$EXCHANGE_CACHE/kube-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
log "building ${BINARIES[*]} $KUBE_VERSION with $("$GO" env GOVERSION) (cold: ~7 min on 2 cores)"
started=$SECONDS
pkgs=()
for b in "${BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
(
  cd "$KUBE_MODULE_DIR"
  GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    "$GO" build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
)
for b in "${BINARIES[@]}"; do
  [ -x "$out/$b" ] || die "build produced no $b"
done
"$out/kubectl" version --client >/dev/null || die "built kubectl does not run"
for b in "${BINARIES[@]}"; do
  [ "$b" = kubectl ] && continue
  v="$("$out/$b" --version 2>&1 || true)"
  [ "$v" = "Kubernetes $KUBE_VERSION" ] || die "built $b does not report $KUBE_VERSION: ${v%%$'\n'*}"
done
for b in "${BINARIES[@]}"; do mv -f "$out/$b" "$EXCHANGE_BIN/$b"; done
write_stamp kube "$KUBE_STAMP"
log "installed ${BINARIES[*]} ($KUBE_VERSION) into $EXCHANGE_BIN in $((SECONDS - started))s"
