# shellcheck shell=bash
# Shared helpers for the scripts under hack/. Source it; do not run it.
# Everything installed lives in $EXCHANGE_CACHE (outside the repo) so a second run is a no-op.
set -euo pipefail

EXCHANGE_CACHE="${EXCHANGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/exchange}"
EXCHANGE_BIN="$EXCHANGE_CACHE/bin"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EXCHANGE_CACHE EXCHANGE_BIN REPO_ROOT
mkdir -p "$EXCHANGE_BIN"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# have_stamp NAME VERSION: true when NAME was already installed at VERSION.
have_stamp() { [ "$(cat "$EXCHANGE_CACHE/stamps/$1" 2>/dev/null || true)" = "$2" ]; }
# write_stamp NAME VERSION: record a finished install.
write_stamp() { mkdir -p "$EXCHANGE_CACHE/stamps"; printf '%s' "$2" >"$EXCHANGE_CACHE/stamps/$1"; }
