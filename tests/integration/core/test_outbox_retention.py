"""Outbox retention against real Postgres (and Kafka for the running relay): published rows created
longer ago than the retention are deleted in batches through the `created_at` index; unpublished
rows stay however old, and so do recent ones. The probe outbox is made the way the services'
revisions made theirs: the earlier shape, then `outbox_pending_queue_v1`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, Counter

from exchange.core.db import GENERIC_PLANS
from exchange.core.kafka import make_producer
from exchange.core.migrations import outbox_pending_queue_v1
from exchange.core.outbox import Outbox, OutboxRelay
from exchange.core.retention import TableMetrics
from exchange.core.settings import KafkaSettings
from exchange_devtools.engines.kafka import KafkaServer
from exchange_devtools.engines.postgres import PostgresServer
from exchange_devtools.outbox_probe import legacy_outbox_sql

DAY = 86_400.0
_SCHEMA = legacy_outbox_sql("retention_probe")
_ROWS = """
INSERT INTO retention_probe.outbox (event_id, record_id, topic, payload, correlation_id, traceparent, created_at)
SELECT gen_random_uuid(), gen_random_uuid(), $1, '{}', 'c', '00-' || repeat('a', 32) || '-' || repeat('b', 16) || '-01',
       now() - make_interval(secs => $2)
  FROM generate_series(1, $3)
RETURNING seq
"""


@pytest.fixture
async def pool(postgres: PostgresServer) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=3)
    assert pool is not None
    await pool.execute(_SCHEMA + outbox_pending_queue_v1("retention_probe")[0])
    try:
        yield pool
    finally:
        await pool.execute("DROP SCHEMA IF EXISTS retention_probe CASCADE")
        await pool.close()


async def _rows(pool: asyncpg.Pool, topic: str, created_ago: float, count: int, *, published: bool) -> None:
    seqs = [row["seq"] for row in await pool.fetch(_ROWS, topic, created_ago, count)]
    if published:  # what the relay's pick does once the broker acked
        await pool.execute("DELETE FROM retention_probe.outbox_pending WHERE seq = ANY($1::bigint[])", seqs)


async def _seed(
    pool: asyncpg.Pool,
    topic: str,
    *,
    old_published: int,
    unpublished: int,
    recent: int,
    unpublished_ago: float = 3 * DAY,
) -> None:
    await _rows(pool, topic, 3 * DAY, old_published, published=True)
    await _rows(pool, topic, unpublished_ago, unpublished, published=False)  # by default long ago, never published
    await _rows(pool, topic, 120.0, recent, published=True)


async def _counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """(unpublished, published) rows of the probe outbox."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM retention_probe.outbox_pending) AS unpublished,"
        " (SELECT count(*) FROM retention_probe.outbox) AS total"
    )
    assert row is not None
    return row["unpublished"], row["total"] - row["unpublished"]


def _relay(
    pool: asyncpg.Pool,
    outbox: Outbox,
    pruned: Counter,
    bootstrap: str = "127.0.0.1:1",
    tables: TableMetrics | None = None,
) -> OutboxRelay:
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    return OutboxRelay(outbox, pool, producer_factory=lambda: make_producer(settings), pruned=pruned, tables=tables)


async def test_prune_deletes_only_published_rows_older_than_the_retention_batch_by_batch(
    pool: asyncpg.Pool,
) -> None:
    await _seed(pool, "t", old_published=7, unpublished=3, recent=2)
    assert await _counts(pool) == (3, 9)
    registry = CollectorRegistry()
    pruned = Counter("probe_pruned", "rows pruned", registry=registry)
    relay = _relay(pool, Outbox("retention_probe.outbox", retention_seconds=DAY, prune_batch=2), pruned)

    assert await relay.prune() == 7  # four batches: 2, 2, 2, 1
    assert await _counts(pool) == (3, 2)  # the old unpublished rows and the recent ones stay
    assert registry.get_sample_value("probe_pruned_total") == 7
    assert await relay.prune() == 0


async def test_without_a_retention_nothing_is_pruned(pool: asyncpg.Pool) -> None:
    await _seed(pool, "t", old_published=3, unpublished=0, recent=0)
    pruned = Counter("probe_kept", "rows pruned", registry=CollectorRegistry())
    assert await _relay(pool, Outbox("retention_probe.outbox"), pruned).prune() == 0
    assert await _counts(pool) == (0, 3)


async def test_the_prune_walks_the_created_at_index_under_generic_plans(pool: asyncpg.Pool) -> None:
    """As the relay's pool plans it (one generic plan, made while the table was small), the prune
    reads the index, not the table: it must stay cheap on a large outbox."""
    prune = Outbox("retention_probe.outbox", retention_seconds=DAY).prune_sql
    async with pool.acquire() as conn:
        for name, value in GENERIC_PLANS.items():
            await conn.execute(f"SET {name} = '{value}'")
        try:
            await conn.execute(f"PREPARE probe_prune(float8, int) AS {prune}")
            await conn.execute("EXECUTE probe_prune(86400, 5000)")  # the plan is made on the empty table
            await _seed(pool, "t", old_published=20_000, unpublished=0, recent=10)
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN EXECUTE probe_prune(86400, 5000)"))
        finally:
            await conn.execute("DEALLOCATE ALL")
            await conn.execute("RESET ALL")
    assert "Index Scan using outbox_created_at" in plan and "Seq Scan" not in plan, plan


async def test_a_running_relay_publishes_and_prunes(pool: asyncpg.Pool, kafka: KafkaServer) -> None:
    topic = f"retention-probe-{uuid.uuid4().hex[:8]}"
    # unpublished rows within the retention: once published they stay, so the end state is stable
    # (old ones would be pruned by whichever prune round follows their publication)
    await _seed(pool, topic, old_published=5, unpublished=4, recent=1, unpublished_ago=120.0)
    registry = CollectorRegistry()
    pruned = Counter("probe_running", "rows pruned", registry=registry)
    outbox = Outbox("retention_probe.outbox", retention_seconds=DAY, prune_seconds=0.2, poll_seconds=0.2)
    relay = _relay(pool, outbox, pruned, kafka.bootstrap_servers, TableMetrics(registry))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        async with asyncio.timeout(60):
            while await _counts(pool) != (0, 5):  # 4 published now + the recent one; 5 old ones gone
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await relay.close()
    assert registry.get_sample_value("probe_running_total") == 5
    # the shared bounded-table gauges (ADR 0013): the oldest row left is the recent one, 120 s old
    label = {"table": "retention_probe.outbox"}
    assert registry.get_sample_value("exchange_retention_deleted_rows_total", label) == 5
    oldest = registry.get_sample_value("exchange_table_oldest_row_age_seconds", label)
    assert oldest is not None and 120 <= oldest < 3600
    assert registry.get_sample_value("exchange_table_rows", label) is not None
