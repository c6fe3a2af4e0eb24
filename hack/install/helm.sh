#!/usr/bin/env bash
# Build helm from its Go module (helm.sh/helm/v3/cmd/helm@HELM_VERSION) into $EXCHANGE_BIN/helm.
# `go install pkg@version` uses helm's own go.mod and checks every module against the checksum
# database, so the version pin is the whole lock. Idempotent: a second run does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

HELM_VERSION="v3.22.0"
HELM_MODULE="helm.sh/helm/v3"

if have_stamp helm "$HELM_VERSION" && [ -x "$EXCHANGE_BIN/helm" ]; then
  log "helm $HELM_VERSION already in $EXCHANGE_BIN"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "go not found (need Go >= 1.26 on PATH or at /usr/local/go/bin/go)"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0

# helm's Makefile stamps the Kubernetes version its client-go implies (client-go v0.X -> 1.X)
# into `helm lint` / `.Capabilities`; do the same from helm's own go.mod.
gomod="$(cd "$EXCHANGE_CACHE" && "$GO" mod download -json "$HELM_MODULE@$HELM_VERSION" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[ -f "$gomod" ] || die "could not download $HELM_MODULE@$HELM_VERSION"
k8s_minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)"
[ -n "$k8s_minor" ] || die "no k8s.io/client-go in $gomod"

ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
done

out="$(mktemp -d "$EXCHANGE_CACHE/helm-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
log "building helm $HELM_VERSION with $("$GO" env GOVERSION)"
started=$SECONDS
(cd "$out" && GOBIN="$out" "$GO" install -trimpath -ldflags "$ldflags" "$HELM_MODULE/cmd/helm@$HELM_VERSION")
"$out/helm" version --short >/dev/null || die "built helm does not run"
mv -f "$out/helm" "$EXCHANGE_BIN/helm"
write_stamp helm "$HELM_VERSION"
log "installed $EXCHANGE_BIN/helm ($HELM_VERSION) in $((SECONDS - started))s"
