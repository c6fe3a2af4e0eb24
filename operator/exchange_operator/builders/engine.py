"""What every managed engine's StatefulSet shares: names, selectors, the Pod and the data volume.

An engine's component name is its spec.engines key (`postgres`, `kafka`, `s3`): its Pods' labels,
its client Service, its NetworkPolicy and its status entry carry it, whatever the flavor. The
StatefulSet and its headless Service are named after the flavor's workload (`redpanda`, `kafka`,
`minio`, `s3proxy`; Postgres has one) and select it by the flavor label too, so switching flavors
makes a new StatefulSet with a new volume instead of starting one engine on another's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exchange_operator.builders.common import (
    Manifest,
    Meta,
    container_security_context,
    labels,
    object_meta,
    pod_security_context,
    resources,
    selector_labels,
    tmp_volume,
)
from exchange_operator.builders.monitoring import scrape_annotations
from exchange_operator.spec import ExchangePipelineSpec, Resources, Storage

FLAVOR_LABEL = "exchange.dev/flavor"
WORKLOADS = {"redpanda": "redpanda", "apache-kafka": "kafka", "minio": "minio", "s3proxy": "s3proxy"}
"""Flavor -> StatefulSet name suffix (kept short: the Pods' revision label must fit in 63 characters)."""
DATA_VOLUME = "data"


def secret_env(env: str, secret: str, key: str) -> dict[str, Any]:
    """A container variable from a Secret's key."""
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def flavor_of(spec: ExchangePipelineSpec, engine: str) -> str | None:
    """The flavor of a managed engine; None for Postgres, which has one."""
    if engine == "kafka":
        return spec.engines.kafka.managed.kind
    if engine == "s3":
        return spec.engines.s3.managed.kind
    return None


def workload_name(spec: ExchangePipelineSpec, engine: str) -> str:
    """Suffix of the engine's StatefulSet and headless Service."""
    flavor = flavor_of(spec, engine)
    return WORKLOADS[flavor] if flavor else engine


def headless_name(meta: Meta, workload: str) -> str:
    return meta.child(f"{workload}-hl")


def engine_selector(spec: ExchangePipelineSpec, meta: Meta, engine: str) -> dict[str, str]:
    """Labels selecting the Pods of the engine's current workload (not another flavor's)."""
    flavor = flavor_of(spec, engine)
    return {**selector_labels(meta, engine), **({FLAVOR_LABEL: flavor} if flavor else {})}


@dataclass
class EnginePod:
    """What differs between engines: one container (name, image, security and mounts are added),
    where the data volume goes, the user it runs as, extra volumes and init containers, sidecars
    (complete but for their security context) and the port the Pod serves metrics on, if any."""

    container: dict[str, Any]
    data_path: str
    run_as_user: int
    volumes: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    sidecars: list[dict[str, Any]] = field(default_factory=list)
    metrics_port: int | None = None


def engine_statefulset(
    spec: ExchangePipelineSpec,
    meta: Meta,
    engine: str,
    image: str,
    res: Resources,
    storage: Storage,
    pod: EnginePod,
) -> Manifest:
    """A single-replica StatefulSet with a volumeClaimTemplate and a writable /tmp."""
    workload = workload_name(spec, engine)
    tmp, tmp_mount = tmp_volume()
    data_mount = {"name": DATA_VOLUME, "mountPath": pod.data_path}
    container = {
        **pod.container,
        "name": workload,
        "image": image,
        "resources": resources(res),
        "securityContext": container_security_context(),
        "volumeMounts": [data_mount, tmp_mount, *pod.container.get("volumeMounts", [])],
    }
    init = [
        {**c, "image": image, "resources": resources(res), "securityContext": container_security_context()}
        for c in pod.init_containers
    ]
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        claim_spec["storageClassName"] = storage.storage_class_name
    policy = "Delete" if spec.volume_claim_deletion_policy == "Delete" else "Retain"
    selector = engine_selector(spec, meta, engine)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(pod.run_as_user),
        "containers": [container, *({**c, "securityContext": container_security_context()} for c in pod.sidecars)],
        "volumes": [tmp, *pod.volumes],
    }
    if init:
        pod_spec["initContainers"] = init
    template_meta: dict[str, Any] = {"labels": {**labels(meta, engine, "engine"), **selector}}
    if pod.metrics_port:
        template_meta["annotations"] = scrape_annotations(pod.metrics_port)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(meta, meta.child(workload), engine, "engine"),
        "spec": {
            "replicas": 1,
            "serviceName": headless_name(meta, workload),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": policy, "whenScaled": "Retain"},
            "template": {"metadata": template_meta, "spec": pod_spec},
            "volumeClaimTemplates": [
                {"metadata": {"name": DATA_VOLUME, "labels": labels(meta, engine, "engine")}, "spec": claim_spec}
            ],
        },
    }


def tcp_probes(port: str, startup_seconds: int = 300) -> dict[str, Any]:
    """Readiness, liveness and a startup allowance (a JVM's first start) on a TCP port."""
    tcp = {"tcpSocket": {"port": port}}
    return {
        "readinessProbe": {**tcp, "periodSeconds": 5},
        "livenessProbe": {**tcp, "periodSeconds": 15, "failureThreshold": 6},
        "startupProbe": {**tcp, "periodSeconds": 5, "failureThreshold": startup_seconds // 5},
    }
