#!/usr/bin/env bash
# Build Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger: an OpenTelemetry Collector with
# Jaeger's storage and query API) into $EXCHANGE_BIN/jaeger: the trace backend of `make dev` and
# of the tracing tests (OTLP in, `/api/traces` out).
#
# The wrapper module hack/jaeger/ (go.mod with a `tool` line + committed go.sum) pins the version.
# To bump: `cd hack/jaeger && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@<version>`,
# then change JAEGER_VERSION here. A cold build takes several minutes on 2 cores.
# Idempotent: a second run with the same version does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

JAEGER_VERSION="v1.75.0"
JAEGER_MODULE_DIR="$REPO_ROOT/hack/jaeger"

if have_stamp jaeger "$JAEGER_VERSION" && [ -x "$EXCHANGE_BIN/jaeger" ]; then
  log "jaeger $JAEGER_VERSION already in $EXCHANGE_BIN"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "go not found (need Go >= 1.26 on PATH or at /usr/local/go/bin/go)"

grep -Eq "^[[:space:]]*(require[[:space:]]+)?github\.com/jaegertracing/jaeger $JAEGER_VERSION([[:space:]]|\$)" \
  "$JAEGER_MODULE_DIR/go.mod" || die "hack/jaeger/go.mod does not require jaeger $JAEGER_VERSION; bump both together"

out="$(mktemp -d "$EXCHANGE_CACHE/jaeger-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
log "building jaeger $JAEGER_VERSION with $("$GO" env GOVERSION) (cold: several minutes on 2 cores)"
started=$SECONDS
(
  cd "$JAEGER_MODULE_DIR"
  GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    "$GO" build -trimpath -ldflags "-s -w" -o "$out/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
)
"$out/jaeger" --help >/dev/null || die "built jaeger does not run"
mv -f "$out/jaeger" "$EXCHANGE_BIN/jaeger"
write_stamp jaeger "$JAEGER_VERSION"
log "installed $EXCHANGE_BIN/jaeger ($JAEGER_VERSION) in $((SECONDS - started))s"
