"""Environment of the service containers and Jobs: which engine settings each one gets.

Settings shared by all (auth, URLs, bucket, managed endpoints) come from the pipeline ConfigMap;
credentials come from Secrets: the generated ones when an engine is managed, the user's Secret when
it is external (same keys either way, see spec.py). Each process gets only what it needs.
"""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import HTTP_PORT, KAFKA_PORT, Meta
from exchange_operator.builders.secrets import (
    NORMALIZER_ID_KEY,
    TOKENIZATION_KEY,
    platform_secret_name,
    postgres_secret_name,
    s3_secret_name,
    tokenization_secret_name,
)
from exchange_operator.spec import ExchangePipelineSpec

TOKENIZATION_MOUNT = "/var/run/secrets/exchange/tokenization"

NEEDS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"postgres", "kafka", "s3"}),
    "relay": frozenset({"postgres", "kafka"}),
    "tokenizer": frozenset({"tokenization"}),
    "normalizer": frozenset({"postgres", "kafka", "s3", "platform"}),
    "query": frozenset({"postgres"}),
    "migrate": frozenset({"postgres"}),
    "bootstrap": frozenset({"kafka", "s3"}),
}
"""What each process reaches; also drives the NetworkPolicies (engine clients)."""
DATABASE_ROLE = {"relay": "ingest"}
"""Processes that connect as another process's Postgres role: the relay publishes ingest's outbox."""


def config_map_name(meta: Meta) -> str:
    return meta.child("config")


def config_data(spec: ExchangePipelineSpec, meta: Meta) -> dict[str, str]:
    """Non-secret settings every service reads (the pipeline ConfigMap)."""
    auth = spec.auth
    data = {
        "ENV": "local" if auth.mode == "dev" else "production",
        "AUTH_MODE": auth.mode,
        "HOST": "0.0.0.0",
        "PORT": str(HTTP_PORT),
        "TOKENIZER_URL": f"http://{meta.service_host('tokenizer')}",
        "S3_BUCKET_RAW": spec.engines.s3.bucket,
        "KAFKA_TOPIC_PARTITIONS": str(spec.engines.kafka.partitions),
        "PIPELINE_NAME": meta.name,
        # The migrate Job owns the schema; the services' roles cannot create it (with ENV=local
        # ingest and the normalizer would otherwise migrate on start and crash-loop on privileges).
        "INGEST_MIGRATE_ON_START": "false",
        "NORMALIZER_MIGRATE_ON_START": "false",
        # The bootstrap Job owns the bucket too: ingest is not ready until it exists (creating it
        # at start, a dev-auth ingest crashed on a half-started S3).
        "INGEST_CREATE_BUCKET_ON_START": "false",
    }
    if auth.mode == "jwt":
        data |= {"JWT_ISSUER": auth.issuer or "", "JWT_AUDIENCE": auth.audience or "", "JWKS_URL": auth.jwks_url or ""}
        if auth.token_cache_seconds is not None:
            data["JWT_CACHE_SECONDS"] = str(auth.token_cache_seconds)
    if spec.engines.kafka.mode == "managed":
        data["KAFKA_BOOTSTRAP_SERVERS"] = f"{meta.service_host('kafka')}:{KAFKA_PORT}"
    if spec.monitoring.otlp_endpoint:
        data["OTEL_EXPORTER_OTLP_ENDPOINT"] = spec.monitoring.otlp_endpoint
    return data


def _from_secret(env: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": env, "valueFrom": {"secretKeyRef": ref}}


def tokenization_secret(spec: ExchangePipelineSpec, meta: Meta) -> tuple[str, str]:
    """(Secret name, key) holding the tokenization secret."""
    ref = spec.tokenization.secret_ref
    return (ref.name, ref.key) if ref else (tokenization_secret_name(meta), TOKENIZATION_KEY)


def engine_env(spec: ExchangePipelineSpec, meta: Meta, process: str) -> list[dict[str, Any]]:
    """Secret-backed env of one process (`ingest`, ..., `migrate`, `bootstrap`)."""
    needs = NEEDS[process]
    engines = spec.engines
    env: list[dict[str, Any]] = []
    if "postgres" in needs:
        pg = engines.postgres
        secret = pg.secret_ref.name if pg.secret_ref else postgres_secret_name(meta)
        env.append(_from_secret("DATABASE_URL", secret, f"{DATABASE_ROLE.get(process, process)}-url"))
    if "s3" in needs:
        s3 = engines.s3
        secret = s3.secret_ref.name if s3.secret_ref else s3_secret_name(meta)
        env += [
            _from_secret("S3_ENDPOINT_URL", secret, "endpoint-url"),
            _from_secret("S3_ACCESS_KEY_ID", secret, "access-key-id"),
            _from_secret("S3_SECRET_ACCESS_KEY", secret, "secret-access-key"),
            _from_secret("S3_REGION", secret, "region", optional=True),
        ]
    if "kafka" in needs and engines.kafka.secret_ref is not None:
        secret = engines.kafka.secret_ref.name
        env += [
            _from_secret("KAFKA_BOOTSTRAP_SERVERS", secret, "bootstrap-servers"),
            _from_secret("KAFKA_SECURITY_PROTOCOL", secret, "security-protocol", optional=True),
            _from_secret("KAFKA_SASL_MECHANISM", secret, "sasl-mechanism", optional=True),
            _from_secret("KAFKA_SASL_USERNAME", secret, "sasl-username", optional=True),
            _from_secret("KAFKA_SASL_PASSWORD", secret, "sasl-password", optional=True),
        ]
    if "platform" in needs:
        env.append(_from_secret("NORMALIZER_ID_KEY", platform_secret_name(meta), NORMALIZER_ID_KEY))
    if "tokenization" in needs:
        env.append({"name": "TOKENIZATION_SECRET_FILE", "value": f"{TOKENIZATION_MOUNT}/{TOKENIZATION_KEY}"})
    return env


def uses_engines(process: str) -> bool:
    """True when the process talks to Postgres, Kafka or S3 (NetworkPolicy label)."""
    return bool(NEEDS[process] & {"postgres", "kafka", "s3"})
