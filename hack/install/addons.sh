#!/usr/bin/env bash
# Build the in-cluster add-ons of the local node into $EXCHANGE_BIN, each from its Go module
# (static, CGO_ENABLED=0), so their images can be made from host binaries:
#   - coredns                 github.com/coredns/coredns (cluster DNS)
#   - local-path-provisioner  github.com/rancher/local-path-provisioner (hostPath-backed PVs)
#   - skipper                 github.com/zalando/skipper/cmd/skipper (ingress controller)
# `go install module/cmd@version` uses the module's own go.mod and checks every module against the
# checksum database, so the version pin is the whole lock. Skipper is the exception: its module
# proxy serves v0.23.0 but not the module's version list, which `go install ...@v0.23.0` reads
# (to look for a deprecation notice) and fails on; so skipper is built inside its downloaded module
# (`go mod download`, checked against the checksum database) with `-mod=readonly`, i.e. locked by
# skipper's own go.sum. Each add-on has its own stamp.
# Idempotent: a second run checks the stamps and does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

COREDNS_VERSION="v1.15.0"
LOCAL_PATH_VERSION="v0.0.30"
SKIPPER_VERSION="v0.23.0"

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

# build NAME VERSION TARGET EXTRA_LDFLAGS EXPECTED VERSION_ARG...: unless the stamp says VERSION
# and $EXCHANGE_BIN/NAME exists, build TARGET, check that `NAME VERSION_ARG...` prints EXPECTED,
# and move NAME into $EXCHANGE_BIN. TARGET is PACKAGE@VERSION (`go install`) or
# MODULE@VERSION//PACKAGE_DIR (`go build ./PACKAGE_DIR` inside the downloaded module).
build() {
  local name="$1" version="$2" target="$3" extra="$4" expected="$5" started v dir
  shift 5
  if have_stamp "$name" "$version" && [ -x "$EXCHANGE_BIN/$name" ]; then
    log "$name $version already in $EXCHANGE_BIN"
    return 0
  fi
  find_go
  out="$(mktemp -d "$EXCHANGE_CACHE/$name-build.XXXXXX")"
  log "building $name $version with $("$GO" env GOVERSION)"
  started=$SECONDS
  case "$target" in
    *//*)
      dir="$(cd "$out" && "$GO" mod download -json "${target%%//*}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
      [ -f "$dir/go.mod" ] || die "could not download ${target%%//*}"
      (cd "$dir" && "$GO" build -mod=readonly -trimpath -ldflags "-s -w $extra" -o "$out/$name" "./${target#*//}")
      ;;
    *) (cd "$out" && GOBIN="$out" "$GO" install -trimpath -ldflags "-s -w $extra" "$target") ;;
  esac
  [ -x "$out/$name" ] || die "build produced no $name"
  v="$("$out/$name" "$@" 2>&1 || true)"
  case "$v" in *"$expected"*) ;; *) die "built $name does not report $expected: $v" ;; esac
  mv -f "$out/$name" "$EXCHANGE_BIN/$name"
  rm -rf "$out"
  out=""
  write_stamp "$name" "$version"
  log "installed $EXCHANGE_BIN/$name ($version) in $((SECONDS - started))s"
}

build coredns "$COREDNS_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION" \
  "" "CoreDNS-${COREDNS_VERSION#v}" -version
build local-path-provisioner "$LOCAL_PATH_VERSION" "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION" \
  "-X main.VERSION=$LOCAL_PATH_VERSION" "version $LOCAL_PATH_VERSION" --version
build skipper "$SKIPPER_VERSION" "github.com/zalando/skipper@$SKIPPER_VERSION//cmd/skipper" \
  "-X main.version=$SKIPPER_VERSION" "Skipper version $SKIPPER_VERSION " -version
