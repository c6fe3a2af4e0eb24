#!/usr/bin/env bash
# Install every engine the tests and `make dev` use (Postgres and its exporter, Kafka, S3, the Jaeger trace
# backend, Prometheus), then the local Kubernetes node (node: Debian packages, containerd, crictl; addons:
# coredns, local-path-provisioner, skipper). Each installer is idempotent and cached.
set -euo pipefail
here="$(dirname "$0")"
for engine in postgres postgres_exporter kafka s3 jaeger prometheus etcd kube helm node addons; do
  bash "$here/$engine.sh"
done
