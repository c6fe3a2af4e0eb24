"""The relay's pick against real Postgres: with a backlog the planner has no statistics for, it
walks the partial index of unpublished rows and stops at one batch (no scan + sort of it all)."""

from __future__ import annotations

import asyncpg

from exchange.core.outbox import PICK_PLAN_SQL, Outbox
from exchange_devtools.engines.postgres import PostgresServer

_PROBE = """
CREATE TEMP TABLE outbox_probe (
    event_id uuid PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, record_id uuid NOT NULL,
    topic text NOT NULL, payload jsonb NOT NULL, correlation_id text NOT NULL, traceparent text NOT NULL,
    published_at timestamptz
) ON COMMIT DROP;
CREATE INDEX outbox_probe_unpublished ON outbox_probe (seq) WHERE published_at IS NULL;
INSERT INTO outbox_probe (event_id, record_id, topic, payload, correlation_id, traceparent)
SELECT gen_random_uuid(), gen_random_uuid(), 't', '{"n": 1}', 'c', 'tp' FROM generate_series(1, 20000);
"""


async def _plan(conn: asyncpg.Connection, sql: str) -> str:
    return "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql, 500))


async def test_the_pick_walks_the_unpublished_index_with_a_backlog_of_unknown_size(postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        async with conn.transaction():
            await conn.execute(_PROBE)
            pick = Outbox("pg_temp.outbox_probe").pick_sql
            assert "Sort" in await _plan(conn, pick)  # what the planner does on its own here
            await conn.execute(PICK_PLAN_SQL)
            plan = await _plan(conn, pick)
            assert "Index Scan using outbox_probe_unpublished" in plan and "Sort" not in plan, plan
            rows = await conn.fetch(pick, 500)
            assert len(rows) == 500
        assert await conn.fetchval("SHOW enable_bitmapscan") == "on"  # the settings ended with the transaction
    finally:
        await conn.close()
