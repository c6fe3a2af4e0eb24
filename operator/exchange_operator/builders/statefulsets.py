"""Managed engines: Postgres, Redpanda and MinIO as single-replica StatefulSets.

Each gets a volumeClaimTemplate (size and class from the spec), a headless Service for stable Pod
DNS and a client Service (services.py). An engine in `external` mode builds nothing: the services
read its endpoints and credentials from the user's Secret instead.
"""

from __future__ import annotations

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
from exchange_operator.builders.configmaps import postgres_init_config_map_name
from exchange_operator.builders.env import KAFKA_PORT
from exchange_operator.builders.secrets import (
    MINIO_PORT,
    POSTGRES_DB,
    POSTGRES_PORT,
    POSTGRES_ROLES,
    postgres_secret_name,
    s3_secret_name,
)
from exchange_operator.spec import ExchangePipelineSpec, ManagedEngine

ENGINE_COMPONENTS = {"postgres": "postgres", "kafka": "redpanda", "s3": "minio"}
"""spec.engines key -> component name of its StatefulSet and Services."""
DATA_VOLUME = "data"


def headless_name(meta: Meta, component: str) -> str:
    return meta.child(f"{component}-hl")


def _secret_env(env: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _statefulset(
    spec: ExchangePipelineSpec,
    meta: Meta,
    component: str,
    engine: ManagedEngine,
    container: dict[str, Any],
    data_path: str,
    run_as_user: int,
    extra_volumes: list[dict[str, Any]] | None = None,
) -> Manifest:
    tmp, tmp_mount = tmp_volume()
    container = {
        **container,
        "name": component,
        "image": engine.image,
        "resources": resources(engine.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": data_path}, tmp_mount, *container.get("volumeMounts", [])],
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": engine.storage.size}},
    }
    if engine.storage.storage_class_name:
        claim_spec["storageClassName"] = engine.storage.storage_class_name
    policy = "Delete" if spec.volume_claim_deletion_policy == "Delete" else "Retain"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(meta, meta.child(component), component, "engine"),
        "spec": {
            "replicas": 1,
            "serviceName": headless_name(meta, component),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(meta, component)},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": policy, "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": labels(meta, component, "engine")},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(run_as_user),
                    "containers": [container],
                    "volumes": [tmp, *(extra_volumes or [])],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": DATA_VOLUME, "labels": labels(meta, component, "engine")},
                    "spec": claim_spec,
                }
            ],
        },
    }


def build_postgres_statefulset(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    if spec.engines.postgres.mode != "managed":
        return None
    secret = postgres_secret_name(meta)
    env = [
        {"name": "POSTGRES_USER", "value": "postgres"},
        {"name": "POSTGRES_DB", "value": POSTGRES_DB},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        _secret_env("POSTGRES_PASSWORD", secret, "superuser-password"),
        *[_secret_env(f"EXCHANGE_{r.upper()}_PASSWORD", secret, f"{r}-password") for r in POSTGRES_ROLES],
    ]
    ready = {"exec": {"command": ["pg_isready", "-U", "postgres", "-d", POSTGRES_DB]}, "periodSeconds": 5}
    container = {
        "env": env,
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
        "readinessProbe": ready,
        "livenessProbe": {**ready, "periodSeconds": 15, "failureThreshold": 6},
        "volumeMounts": [
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
        ],
    }
    volumes = [
        {"name": "run", "emptyDir": {}},
        {"name": "init", "configMap": {"name": postgres_init_config_map_name(meta), "defaultMode": 0o555}},
    ]
    engine = spec.engines.postgres.managed
    return _statefulset(spec, meta, "postgres", engine, container, "/var/lib/postgresql/data", 999, volumes)


def build_redpanda_statefulset(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    if spec.engines.kafka.mode != "managed":
        return None
    advertised = f"{meta.child('redpanda')}-0.{headless_name(meta, 'redpanda')}.{meta.namespace}.svc"
    container = {
        "args": [
            "redpanda",
            "start",
            "--mode=dev-container",
            "--smp=1",
            "--default-log-level=warn",
            f"--kafka-addr=internal://0.0.0.0:{KAFKA_PORT}",
            f"--advertise-kafka-addr=internal://{advertised}:{KAFKA_PORT}",
        ],
        "ports": [{"name": "kafka", "containerPort": KAFKA_PORT}, {"name": "admin", "containerPort": 9644}],
        "readinessProbe": {"httpGet": {"path": "/v1/status/ready", "port": "admin"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "kafka"}, "periodSeconds": 15, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/redpanda"}],
    }
    engine = spec.engines.kafka.managed
    volumes = [{"name": "config", "emptyDir": {}}]
    return _statefulset(spec, meta, "redpanda", engine, container, "/var/lib/redpanda/data", 101, volumes)


def build_minio_statefulset(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    if spec.engines.s3.mode != "managed":
        return None
    secret = s3_secret_name(meta)
    container = {
        "args": ["server", "/data", "--address", f":{MINIO_PORT}"],
        "env": [
            _secret_env("MINIO_ROOT_USER", secret, "access-key-id"),
            _secret_env("MINIO_ROOT_PASSWORD", secret, "secret-access-key"),
        ],
        "ports": [{"name": "s3", "containerPort": MINIO_PORT}],
        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": "s3"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/minio/health/live", "port": "s3"}, "periodSeconds": 15},
        "volumeMounts": [{"name": "home", "mountPath": "/.minio"}],
    }
    engine = spec.engines.s3.managed
    volumes = [{"name": "home", "emptyDir": {}}]
    return _statefulset(spec, meta, "minio", engine, container, "/data", 1000, volumes)


def build_statefulsets(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    built = (
        build_postgres_statefulset(spec, meta),
        build_redpanda_statefulset(spec, meta),
        build_minio_statefulset(spec, meta),
    )
    return [m for m in built if m is not None]
