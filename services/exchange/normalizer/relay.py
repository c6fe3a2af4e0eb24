"""Outbox relay of `record.normalized.v1`: publishes `normalizer.outbox` rows, at least once.

The relay itself is `exchange.core.outbox.OutboxRelay` (snapshot-safe polling of the pending
queue `normalizer.outbox_pending` with `FOR UPDATE SKIP LOCKED`, key = record id, event id
headers, its entries taken for good only after every broker ack, backoff while Kafka is down).
It shares the worker's idempotent producer, and the worker wakes it after each committed batch
(no NOTIFY channel).
"""

from __future__ import annotations

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from exchange.core import outbox
from exchange.normalizer.metrics import NormalizerMetrics


class OutboxRelay(outbox.OutboxRelay):
    """The relay of `normalizer.outbox` over the worker's (shared) producer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        batch: int = 500,
        poll: float = 0.5,
        retention: float | None = None,
        prune: float = 60.0,
        metrics: NormalizerMetrics | None = None,
    ) -> None:
        table = outbox.Outbox(
            "normalizer.outbox",
            encode_payload=orjson.dumps,
            batch_size=batch,
            poll_seconds=poll,
            failure_event="normalized_relay_failed",
            retention_seconds=retention,
            prune_seconds=prune,
        )
        super().__init__(
            table,
            pool,
            producer=producer,
            published=metrics.published if metrics else None,
            errors=metrics.publish_errors if metrics else None,
            pruned=metrics.pruned if metrics else None,
            tables=metrics.tables if metrics else None,
        )
