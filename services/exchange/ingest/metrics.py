"""Prometheus metrics of ingest and its outbox relay. Labels never carry ids, tenants or PII."""

from __future__ import annotations

import asyncio

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exchange.core.db import DB_ERRORS
from exchange.core.logging import get_logger
from exchange.core.outbox import Outbox
from exchange.core.retention import TableMetrics

log = get_logger(__name__)

_BACKLOG = Outbox("ingest.outbox").backlog_sql


class IngestMetrics:
    """Records accepted, outbox backlog and age, relay publishes and publish errors; size and oldest
    row of the bounded tables (`tables`, ADR 0013)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "ingest_records_total", "Records accepted, by source format.", ["source_format"], registry=registry
        )
        # Read from Postgres by every process: with several, the latest reading is the value.
        self.backlog = Gauge(
            "ingest_outbox_backlog", "Outbox rows not yet published.", registry=registry, multiprocess_mode="mostrecent"
        )
        self.oldest_age = Gauge(
            "ingest_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.published = Counter("ingest_relay_published_total", "Events published by the relay.", registry=registry)
        self.keys_purged = Counter(
            "ingest_idempotency_keys_purged_total", "Expired Idempotency-Key rows deleted.", registry=registry
        )
        self.db_batch = Histogram(
            "ingest_db_batch_requests",
            "Requests per group-committed Postgres statement, by statement (claim or commit).",
            ["statement"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.publish_errors = Counter(
            "ingest_relay_publish_errors_total", "Failed relay publish attempts (batches).", registry=registry
        )
        self.pruned = Counter(
            "ingest_outbox_pruned_total", "Published outbox rows deleted after the retention.", registry=registry
        )
        self.tables = TableMetrics(registry)

    async def refresh_outbox(self, pool: asyncpg.Pool) -> None:
        """Read the backlog gauges from Postgres (see `Outbox.backlog_sql`)."""
        row = await pool.fetchrow(_BACKLOG)
        if row is not None:
            self.backlog.set(row["backlog"])
            self.oldest_age.set(row["oldest"])

    async def refresh_forever(self, pool: asyncpg.Pool, every: float = 5.0) -> None:
        while True:
            try:
                await self.refresh_outbox(pool)
            except DB_ERRORS as exc:
                log.warning("outbox_metrics_failed", error_class=type(exc).__name__)
            await asyncio.sleep(every)
