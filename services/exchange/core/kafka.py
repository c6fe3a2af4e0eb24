"""Kafka helpers (aiokafka): producer and consumer factories and header utilities."""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
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
        # A request on a connection to a broker Pod that was deleted never gets an answer: the
        # consumer stalls this long (aiokafka's 40 s kept the normalizer idle 40 s after Kafka was
        # back); above the rebalance timeout (the 10 s session), which a JoinGroup may wait out.
        "request_timeout_ms": 15000,
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **opts)


def bootstrap_readiness(bootstrap_servers: str) -> Callable[[], Awaitable[None]]:
    """A readiness check: a TCP connection to one of the bootstrap brokers (the first that answers).

    Cheap and independent of any client's state; it says the brokers are reachable, which is
    what a producer or consumer needs before anything else."""
    addresses = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        addresses.append((host.strip("[]") or "127.0.0.1", int(port)))

    async def check() -> None:
        error: OSError = OSError("no bootstrap server")
        for host, port in addresses:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                error = exc
                continue
            writer.close()
            return
        raise error

    return check


def traceparent(trace_id: str | None = None) -> str:
    """A W3C traceparent header value (version 00, sampled)."""
    tid = trace_id if trace_id and len(trace_id) == 32 else secrets.token_hex(16)
    return f"00-{tid}-{secrets.token_hex(8)}-01"


def header_map(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> dict[str, str]:
    """Kafka record headers as a str→str dict (last value wins)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or ())}


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@lru_cache(maxsize=64)
def _words(length: int) -> struct.Struct:
    return struct.Struct(f"<{length >> 2}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c) as an unsigned 32-bit
    value, like `aiokafka.partitioner.murmur2` but about twice as fast: the 4-byte words are
    unpacked in one call and the masks are only where a product can pass 32 bits."""
    length = len(data)
    h = 0x9747B28C ^ length
    for k in _words(length).unpack_from(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = length - rest
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka alike) gives a keyed record:
    `partitions` are the topic's partition ids, sorted."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
