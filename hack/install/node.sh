#!/usr/bin/env bash
# What a single Kubernetes node needs besides the kube binaries (hack/install/kube.sh):
#   - Debian packages, installed with apt-get only when `dpkg -s` says one is missing: runc (the
#     OCI runtime), iptables + conntrack (kube-proxy), socat (port-forward), the CNI plugins
#     (/usr/lib/cni), and the rootless image tools mmdebstrap, skopeo, umoci, buildah, uidmap;
#   - containerd, containerd-shim-runc-v2 and ctr, built from the Go module
#     github.com/containerd/containerd/v2 (no btrfs/devmapper/zfs snapshotters, so no cgo);
#   - crictl from sigs.k8s.io/cri-tools.
# `go install module/cmd@version` uses the module's own go.mod and checks every module against the
# checksum database, so the version pin is the whole lock. Each Go piece has its own stamp.
# Idempotent: a second run checks the packages and stamps and does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

NODE_PACKAGES=(runc iptables conntrack socat containernetworking-plugins mmdebstrap skopeo umoci buildah uidmap)

CONTAINERD_VERSION="v2.4.2"
CONTAINERD_MODULE="github.com/containerd/containerd/v2"
CONTAINERD_BINARIES=(containerd containerd-shim-runc-v2 ctr)
CONTAINERD_TAGS="no_btrfs no_devmapper no_zfs"

CRICTL_VERSION="v1.34.0"
CRICTL_MODULE="sigs.k8s.io/cri-tools"

# --- Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${NODE_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "no apt-get here: install ${missing[*]} and rerun"
  apt_install "${missing[@]}"
fi

# --- Go pieces -------------------------------------------------------------------------------
# installed STAMP VERSION BINARY...: the stamp says VERSION and every binary is in $EXCHANGE_BIN.
installed() {
  local name="$1" version="$2" b
  shift 2
  have_stamp "$name" "$version" || return 1
  for b in "$@"; do [ -x "$EXCHANGE_BIN/$b" ] || return 1; done
}

GO=""
find_go() {
  [ -z "$GO" ] || return 0
  GO="$(command -v go || true)"
  [ -n "$GO" ] || GO=/usr/local/go/bin/go
  [ -x "$GO" ] || die "go not found (need Go >= 1.26 on PATH or at /usr/local/go/bin/go)"
  export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0
}

out=""
trap '[ -z "$out" ] || rm -rf "$out"' EXIT

if installed containerd "$CONTAINERD_VERSION" "${CONTAINERD_BINARIES[@]}"; then
  log "containerd $CONTAINERD_VERSION already in $EXCHANGE_BIN"
else
  find_go
  out="$(mktemp -d "$EXCHANGE_CACHE/containerd-build.XXXXXX")"
  log "building containerd $CONTAINERD_VERSION with $("$GO" env GOVERSION) (cold: ~1 min on 2 cores)"
  started=$SECONDS
  pkgs=()
  for b in "${CONTAINERD_BINARIES[@]}"; do pkgs+=("$CONTAINERD_MODULE/cmd/$b@$CONTAINERD_VERSION"); done
  (cd "$out" && GOBIN="$out" "$GO" install -trimpath -tags "$CONTAINERD_TAGS" \
    -ldflags "-s -w -X $CONTAINERD_MODULE/version.Version=$CONTAINERD_VERSION" "${pkgs[@]}")
  v="$("$out/containerd" --version 2>&1 || true)"
  case "$v" in *" $CONTAINERD_VERSION"*) ;; *) die "built containerd does not report $CONTAINERD_VERSION: $v" ;; esac
  for b in "${CONTAINERD_BINARIES[@]}"; do
    [ -x "$out/$b" ] || die "build produced no $b"
    mv -f "$out/$b" "$EXCHANGE_BIN/$b"
  done
  rm -rf "$out"
  out=""
  write_stamp containerd "$CONTAINERD_VERSION"
  log "installed ${CONTAINERD_BINARIES[*]} ($CONTAINERD_VERSION) into $EXCHANGE_BIN in $((SECONDS - started))s"
fi

if installed crictl "$CRICTL_VERSION" crictl; then
  log "crictl $CRICTL_VERSION already in $EXCHANGE_BIN"
else
  find_go
  out="$(mktemp -d "$EXCHANGE_CACHE/crictl-build.XXXXXX")"
  log "building crictl $CRICTL_VERSION with $("$GO" env GOVERSION)"
  started=$SECONDS
  (cd "$out" && GOBIN="$out" "$GO" install -trimpath \
    -ldflags "-s -w -X $CRICTL_MODULE/pkg/version.Version=$CRICTL_VERSION" "$CRICTL_MODULE/cmd/crictl@$CRICTL_VERSION")
  v="$("$out/crictl" --version 2>&1 || true)"
  [ "$v" = "crictl version $CRICTL_VERSION" ] || die "built crictl does not report $CRICTL_VERSION: $v"
  mv -f "$out/crictl" "$EXCHANGE_BIN/crictl"
  rm -rf "$out"
  out=""
  write_stamp crictl "$CRICTL_VERSION"
  log "installed $EXCHANGE_BIN/crictl ($CRICTL_VERSION) in $((SECONDS - started))s"
fi
