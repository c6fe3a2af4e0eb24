#!/usr/bin/env bash
# Re-resolve requirements.lock from pyproject.toml (the base, services, operator and dev sets, with hashes;
# dev names the other two, so `--extra dev` locks them all).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO_ROOT/hack/install/python.sh" >/dev/null 2>&1 || true
UV="$EXCHANGE_CACHE/tools/uv-0.13.8/bin/uv"
export UV_CACHE_DIR="$EXCHANGE_CACHE/uv-cache"
cd "$REPO_ROOT"
"$UV" pip compile --quiet --python-version 3.11 --extra dev --generate-hashes --no-header \
  --universal -o requirements.lock pyproject.toml
