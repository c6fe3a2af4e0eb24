"""Names, labels, security contexts and small helpers every builder shares.

Builders are pure: `(spec, meta) -> dict`. They never talk to the API server and never set
owner references (the handler adopts every child with `kopf.adopt`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from exchange_operator.spec import ExchangePipelineSpec, Resources

MANAGED_BY = "exchange-operator"
PART_OF = "exchange"
PIPELINE_LABEL = "exchange.dev/pipeline"
ENGINE_CLIENT_LABEL = "exchange.dev/engine-client"
"""Pods carrying this label may reach the managed engines (NetworkPolicy)."""
CONFIG_HASH_ANNOTATION = "exchange.dev/config-hash"
HTTP_PORT = 8080
POSTGRES_PORT = 5432
KAFKA_PORT = 9092
S3_PORT = 9000
ENGINE_PORTS = {"postgres": ("postgres", POSTGRES_PORT), "kafka": ("kafka", KAFKA_PORT), "s3": ("s3", S3_PORT)}
"""Engine (spec.engines key, also its component name) -> (port name, port) of its client Service."""
METRICS_PORT = 9102
POSTGRES_EXPORTER_PORT = 9187
"""The postgres_exporter sidecar's `metrics` port (its usual one)."""
WORKER_PORT_ENV = {"relay": "RELAY_METRICS_PORT", "normalizer": "NORMALIZER_METRICS_PORT"}
"""Services without an HTTP API (workers): the variable that makes each serve /healthz, /readyz
and /metrics on METRICS_PORT."""
HTTP_METRICS_PORT_ENV = "METRICS_PORT"
"""The variable that makes an HTTP service serve /metrics on METRICS_PORT (outside ENV=local it
serves them nowhere else), a port no Ingress routes."""

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Meta:
    """Identity of the ExchangePipeline being built."""

    name: str
    namespace: str

    def child(self, suffix: str) -> str:
        """Name of a child object: `<pipeline>-<suffix>`."""
        return f"{self.name}-{suffix}"

    def service_host(self, suffix: str) -> str:
        """In-cluster DNS name of a child Service."""
        return f"{self.child(suffix)}.{self.namespace}.svc"


def selector_labels(meta: Meta, component: str) -> dict[str, str]:
    """Labels that select a workload's Pods; immutable once a Deployment/StatefulSet exists."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": meta.name,
        "app.kubernetes.io/part-of": PART_OF,
    }


def labels(meta: Meta, component: str, tier: str) -> dict[str, str]:
    """Every label a child carries. tier: service, engine, job or config."""
    return {
        **selector_labels(meta, component),
        "app.kubernetes.io/component": tier,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        PIPELINE_LABEL: meta.name,
    }


def instance_selector(meta: Meta) -> str:
    """Label selector matching every child of one pipeline."""
    return f"{PIPELINE_LABEL}={meta.name},app.kubernetes.io/managed-by={MANAGED_BY}"


def object_meta(
    meta: Meta, name: str, component: str, tier: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "namespace": meta.namespace, "labels": labels(meta, component, tier)}
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def pod_security_context(run_as_user: int = 10001) -> dict[str, Any]:
    """Pod-level part of the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level part of `restricted`, plus a read-only root filesystem."""
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(res: Resources) -> dict[str, Any]:
    """A container `resources` block without empty entries."""
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        values = getattr(res, part).model_dump(exclude_none=True)
        if values:
            out[part] = values
    return out


def probe_port(component: str) -> tuple[str, int]:
    """(name, number) of the port a service answers its probes on: `http`, or `metrics` for a worker."""
    return ("metrics", METRICS_PORT) if component in WORKER_PORT_ENV else ("http", HTTP_PORT)


def service_image(spec: ExchangePipelineSpec, component: str) -> str:
    """The image of one service: its override, else spec.image."""
    override = getattr(spec.components, component).image
    return override or f"{spec.image.repository}:{spec.image.tag}"


def pull_secrets(spec: ExchangePipelineSpec) -> list[dict[str, str]]:
    return [{"name": n} for n in spec.image_pull_secrets]


def digest(value: Any, length: int = 10) -> str:
    """Stable short hash of JSON-able data (pod-template annotations, Job names)."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:length]


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A writable /tmp for containers with a read-only root filesystem: (volume, mount)."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 - a Pod-private emptyDir
