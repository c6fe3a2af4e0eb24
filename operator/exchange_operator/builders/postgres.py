"""The managed PostgreSQL: the official image's contract (POSTGRES_* variables, PGDATA, init scripts
in /docker-entrypoint-initdb.d, uid 999, pg_isready), one login role per service created on the
first start from the generated Secret."""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import POSTGRES_EXPORTER_PORT, POSTGRES_PORT, Manifest, Meta
from exchange_operator.builders.configmaps import postgres_init_config_map_name
from exchange_operator.builders.engine import EnginePod, engine_statefulset, secret_env
from exchange_operator.builders.secrets import POSTGRES_DB, POSTGRES_ROLES, postgres_secret_name
from exchange_operator.spec import ExchangePipelineSpec

POSTGRES_UID = 999


def postgres_exporter(spec: ExchangePipelineSpec, meta: Meta) -> dict[str, Any]:
    """The postgres_exporter sidecar: the superuser over the Pod's loopback (no Service exposes
    it), the settings collector off (hundreds of series nobody charts)."""
    return {
        "name": "postgres-exporter",
        "image": spec.monitoring.postgres_exporter.image,
        "args": [f"--web.listen-address=:{POSTGRES_EXPORTER_PORT}", "--disable-settings-metrics", "--log.level=warn"],
        "env": [
            {"name": "DATA_SOURCE_URI", "value": f"127.0.0.1:{POSTGRES_PORT}/{POSTGRES_DB}?sslmode=disable"},
            {"name": "DATA_SOURCE_USER", "value": "postgres"},
            secret_env("DATA_SOURCE_PASS", postgres_secret_name(meta), "superuser-password"),
        ],
        "ports": [{"name": "metrics", "containerPort": POSTGRES_EXPORTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }


def postgres_pod(spec: ExchangePipelineSpec, meta: Meta) -> EnginePod:
    secret = postgres_secret_name(meta)
    env = [
        {"name": "POSTGRES_USER", "value": "postgres"},
        {"name": "POSTGRES_DB", "value": POSTGRES_DB},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},  # a subdirectory: lost+found
        secret_env("POSTGRES_PASSWORD", secret, "superuser-password"),
        *[secret_env(f"EXCHANGE_{r.upper()}_PASSWORD", secret, f"{r}-password") for r in POSTGRES_ROLES],
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
    if not spec.monitoring.postgres_exporter.enabled:
        return EnginePod(container, "/var/lib/postgresql/data", POSTGRES_UID, volumes)
    sidecar = postgres_exporter(spec, meta)
    return EnginePod(container, "/var/lib/postgresql/data", POSTGRES_UID, volumes, sidecars=[sidecar],
                     metrics_port=POSTGRES_EXPORTER_PORT)  # fmt: skip


def build_postgres_statefulset(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    if spec.engines.postgres.mode != "managed":
        return None
    managed = spec.engines.postgres.managed
    return engine_statefulset(
        spec, meta, "postgres", managed.image, managed.resources, managed.storage, postgres_pod(spec, meta)
    )
