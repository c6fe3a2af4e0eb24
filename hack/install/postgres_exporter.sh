#!/usr/bin/env bash
# Build postgres_exporter (github.com/prometheus-community/postgres_exporter) into
# $EXCHANGE_BIN/postgres_exporter: Postgres's metrics for the Prometheus of `make dev` and the
# observability tests.
#
# The wrapper module hack/postgres_exporter/ (go.mod with a `tool` line + committed go.sum) pins
# the version. To bump: `cd hack/postgres_exporter && go get -tool
# github.com/prometheus-community/postgres_exporter/cmd/postgres_exporter@<version>`, then change
# PG_EXPORTER_VERSION here. Idempotent: a second run with the same version does nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

PG_EXPORTER_VERSION="v0.17.1"
MODULE_DIR="$REPO_ROOT/hack/postgres_exporter"

if have_stamp postgres_exporter "$PG_EXPORTER_VERSION" && [ -x "$EXCHANGE_BIN/postgres_exporter" ]; then
  log "postgres_exporter $PG_EXPORTER_VERSION already in $EXCHANGE_BIN"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || die "go not found (need Go >= 1.26 on PATH or at /usr/local/go/bin/go)"

grep -Eq "github\.com/prometheus-community/postgres_exporter $PG_EXPORTER_VERSION([[:space:]]|\$)" \
  "$MODULE_DIR/go.mod" || die "hack/postgres_exporter/go.mod does not require $PG_EXPORTER_VERSION; bump both together"

out="$(mktemp -d "$EXCHANGE_CACHE/postgres-exporter-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
log "building postgres_exporter $PG_EXPORTER_VERSION with $("$GO" env GOVERSION)"
started=$SECONDS
(
  cd "$MODULE_DIR"
  GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    "$GO" build -trimpath -ldflags "-s -w" -o "$out/postgres_exporter" \
    github.com/prometheus-community/postgres_exporter/cmd/postgres_exporter
)
"$out/postgres_exporter" --version >/dev/null 2>&1 || die "built postgres_exporter does not run"
mv -f "$out/postgres_exporter" "$EXCHANGE_BIN/postgres_exporter"
write_stamp postgres_exporter "$PG_EXPORTER_VERSION"
log "installed $EXCHANGE_BIN/postgres_exporter ($PG_EXPORTER_VERSION) in $((SECONDS - started))s"
