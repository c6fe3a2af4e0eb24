"""Managed engines: Postgres, Kafka (Redpanda or Apache Kafka) and S3 (MinIO or s3proxy) as
single-replica StatefulSets.

Each gets a volumeClaimTemplate (size and class from the spec), a headless Service for stable Pod
DNS and a client Service (services.py); engine.py says how they are named. An engine in `external`
mode builds nothing: the services read its endpoints and credentials from the user's Secret instead.
"""

from __future__ import annotations

from exchange_operator.builders.common import Manifest, Meta
from exchange_operator.builders.kafka import build_kafka_statefulset
from exchange_operator.builders.postgres import build_postgres_statefulset
from exchange_operator.builders.s3 import build_s3_statefulset
from exchange_operator.spec import ExchangePipelineSpec

__all__ = ["build_kafka_statefulset", "build_postgres_statefulset", "build_s3_statefulset", "build_statefulsets"]


def build_statefulsets(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    built = (
        build_postgres_statefulset(spec, meta),
        build_kafka_statefulset(spec, meta),
        build_s3_statefulset(spec, meta),
    )
    return [m for m in built if m is not None]
