#!/usr/bin/env bash
# Build tilt from its Go module into $EXCHANGE_BIN/tilt (for `tilt up` and
# `tilt alpha tiltfile-result`). Optional: nothing in `make test` needs it.
#
# Unverified on the project's machines: the Go module proxy they reach answers 403 for
# github.com/tilt-dev/tilt, so tests/unit/packaging/test_tiltfile.py checks the Tiltfile without
# tilt. Where the module is reachable this builds the pinned version; elsewhere install tilt from
# its releases and put it on PATH.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

TILT_VERSION="v0.35.2"

if have_stamp tilt "$TILT_VERSION" && [ -x "$EXCHANGE_BIN/tilt" ]; then
  log "tilt $TILT_VERSION already in $EXCHANGE_BIN"
  exit 0
fi
GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "go not found (need Go on PATH or at /usr/local/go/bin/go)"

out="$(mktemp -d "$EXCHANGE_CACHE/tilt-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
log "building tilt $TILT_VERSION (large: several minutes on 2 cores)"
(cd "$out" && GOBIN="$out" GOFLAGS="-buildvcs=false" "$GO" install "github.com/tilt-dev/tilt/cmd/tilt@$TILT_VERSION") \
  || die "could not build github.com/tilt-dev/tilt@$TILT_VERSION (module not reachable?); install tilt by hand"
mv -f "$out/tilt" "$EXCHANGE_BIN/tilt"
write_stamp tilt "$TILT_VERSION"
log "installed $EXCHANGE_BIN/tilt ($TILT_VERSION)"
