"""Kafka helpers (aiokafka): producer and consumer factories and header utilities."""

from __future__ import annotations

import secrets
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from exchange.core.settings import KafkaSettings


def _common(settings: KafkaSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return opts


def admin_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaAdminClient."""
    return {**_common(settings), "client_id": f"{settings.kafka_client_id}-admin"}


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (acks=all, enable_idempotence): retries never duplicate within a session."""
    opts = {
        **_common(settings),
        "client_id": f"{settings.kafka_client_id}-producer",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "request_timeout_ms": 15000,
        **overrides,
    }
    return AIOKafkaProducer(**opts)


def make_consumer(settings: KafkaSettings, *topics: str, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer-group member with manual commits (commit after the database transaction)."""
    opts = {
        **_common(settings),
        "client_id": f"{settings.kafka_client_id}-consumer",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **opts)


def traceparent(trace_id: str | None = None) -> str:
    """A W3C traceparent header value (version 00, sampled)."""
    tid = trace_id if trace_id and len(trace_id) == 32 else secrets.token_hex(16)
    return f"00-{tid}-{secrets.token_hex(8)}-01"


def header_map(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> dict[str, str]:
    """Kafka record headers as a str→str dict (last value wins)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or ())}
