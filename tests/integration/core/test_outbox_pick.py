"""The relay's pick against real Postgres, on an outbox made the way the services' revisions made
theirs (the earlier shape, then `outbox_pending_queue_v1`): the upgrade queues exactly the rows
not yet published; with a backlog the planner has no statistics for, the pick (under
PICK_PLAN_SQL) walks the pending queue's primary key, stops at one batch and reads each row
through the outbox's primary key; a rolled-back pick leaves its entries queued, a committed one
takes them for good."""

from __future__ import annotations

import asyncpg

from exchange.core.db import GENERIC_PLANS
from exchange.core.migrations import outbox_pending_queue_v1
from exchange.core.outbox import PICK_PLAN_SQL, Outbox
from exchange_devtools.engines.postgres import PostgresServer
from exchange_devtools.outbox_probe import legacy_outbox_sql

_PROBE = (
    legacy_outbox_sql("pick_probe", payload_type="jsonb")
    + """
INSERT INTO pick_probe.outbox (event_id, record_id, topic, payload, correlation_id, traceparent, published_at)
SELECT gen_random_uuid(), gen_random_uuid(), 't', jsonb_build_object('n', n), 'c', 'tp',
       CASE WHEN n <= 300 THEN now() END
  FROM generate_series(1, 1000) AS n;
"""
)
_MORE = """
INSERT INTO pick_probe.outbox (event_id, record_id, topic, payload, correlation_id, traceparent)
SELECT gen_random_uuid(), gen_random_uuid(), 't', jsonb_build_object('n', n), 'c', 'tp'
  FROM generate_series(1001, 20000) AS n
"""


class _PublishFailed(Exception):
    pass


async def _plan(conn: asyncpg.Connection, sql: str) -> str:
    return "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql, 500))


async def _pending(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM pick_probe.outbox_pending"))


async def test_the_pick_takes_the_oldest_pending_rows_through_the_primary_keys(postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS pick_probe CASCADE")
        async with conn.transaction():
            await conn.execute(_PROBE + outbox_pending_queue_v1("pick_probe")[0])
        assert await _pending(conn) == 700  # the rows not yet published
        await conn.execute(_MORE)  # queued by the trigger
        assert await _pending(conn) == 19_700
        pick = Outbox("pick_probe.outbox").pick_sql

        try:
            async with conn.transaction():
                await conn.execute(PICK_PLAN_SQL)
                plan = await _plan(conn, pick)
                assert "Index Scan using outbox_pending_pkey" in plan and "Index Scan using outbox_pkey" in plan, plan
                assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
                taken = await conn.fetch(pick, 500)
                assert [row["payload"] for row in taken] == [f'{{"n": {n}}}' for n in range(301, 801)]
                raise _PublishFailed
        except _PublishFailed:
            pass
        assert await conn.fetchval("SHOW enable_bitmapscan") == "on"  # the settings ended with the transaction
        assert await _pending(conn) == 19_700  # a failed publish leaves its rows queued

        async with conn.transaction():
            again = await conn.fetch(pick, 500)
        assert [row["event_id"] for row in again] == [row["event_id"] for row in taken]
        assert await _pending(conn) == 19_200
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS pick_probe CASCADE")
        await conn.close()


async def test_the_pending_queue_revision_downgrades_and_upgrades_again(postgres: PostgresServer) -> None:
    upgrade, downgrade = outbox_pending_queue_v1("pick_probe")
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS pick_probe CASCADE")
        await conn.execute(_PROBE + upgrade)
        async with conn.transaction():
            await conn.fetch(Outbox("pick_probe.outbox").pick_sql, 200)  # 200 more published
        await conn.execute(downgrade)
        flags = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE published_at IS NULL) AS unpublished, count(*) AS total"
            " FROM pick_probe.outbox"
        )
        assert (flags["unpublished"], flags["total"]) == (500, 1000)
        await conn.execute(upgrade)
        assert await _pending(conn) == 500
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS pick_probe CASCADE")
        await conn.close()


async def test_the_backlog_gauges_count_the_queue_and_read_one_row_without_jit(postgres: PostgresServer) -> None:
    """As the services' pools run it (generic plans, whole-table plans disabled): the count and
    the age of the next row to publish, one row read through the primary keys, no JIT."""
    conn = await asyncpg.connect(postgres.dsn, server_settings=GENERIC_PLANS)
    backlog = Outbox("pick_probe.outbox").backlog_sql
    try:
        await conn.execute("DROP SCHEMA IF EXISTS pick_probe CASCADE")
        await conn.execute(_PROBE + outbox_pending_queue_v1("pick_probe")[0] + _MORE)
        await conn.execute(
            "UPDATE pick_probe.outbox SET created_at = now() - interval '1 hour'"
            " WHERE seq = (SELECT min(seq) FROM pick_probe.outbox_pending)"
        )
        await conn.execute("UPDATE pick_probe.outbox SET created_at = now() - interval '2 hours' WHERE seq = 1")
        row = await conn.fetchrow(backlog)
        assert row["backlog"] == 19_700
        assert 3600 <= row["oldest"] < 3700  # the next to publish, not the published row 1
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN (VERBOSE) " + backlog))
        assert "JIT" not in plan and "Seq Scan" not in plan, plan
        assert "Limit" in plan and "Index Scan using outbox_pkey" in plan, plan  # one row looked up
        async with conn.transaction():
            await conn.fetch(Outbox("pick_probe.outbox").pick_sql, 20_000)
        assert dict(await conn.fetchrow(backlog)) == {"backlog": 0, "oldest": 0.0}
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS pick_probe CASCADE")
        await conn.close()
