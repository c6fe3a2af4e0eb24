#!/usr/bin/env bash
# Python toolchain: a pinned uv in the cache, then .venv synced exactly to requirements.lock.
# Second run: uv sees nothing to do and returns in about a second.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

UV_VERSION=0.13.8
UV_HOME="$EXCHANGE_CACHE/tools/uv-$UV_VERSION"
UV="$UV_HOME/bin/uv"
export UV_CACHE_DIR="$EXCHANGE_CACHE/uv-cache"

if [ ! -x "$UV" ]; then
  log "installing uv $UV_VERSION into $UV_HOME"
  python3 -m venv "$UV_HOME"
  "$UV_HOME/bin/pip" install --quiet "uv==$UV_VERSION"
fi

cd "$REPO_ROOT"
PY="${EXCHANGE_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$UV" venv --quiet --python "$PY" .venv
fi
"$UV" pip sync --quiet --python .venv/bin/python requirements.lock
# The project itself, editable, without touching the locked dependencies.
"$UV" pip install --quiet --python .venv/bin/python --no-deps -e .
