#!/usr/bin/env bash
# Install every engine the tests and `make dev` use. Each installer is idempotent and cached.
set -euo pipefail
here="$(dirname "$0")"
for engine in postgres kafka s3 etcd kube helm; do
  bash "$here/$engine.sh"
done
