"""PostgreSQL as a real local process: a round trip through asyncpg, and data across a restart."""

from __future__ import annotations

import asyncpg

from exchange_devtools.engines.postgres import PostgresServer


async def test_round_trip_through_asyncpg(postgres: PostgresServer) -> None:
    assert postgres.dsn.startswith(f"postgresql://exchange:exchange@127.0.0.1:{postgres.port}/")
    conn = await asyncpg.connect(postgres.dsn, timeout=10)
    try:
        await conn.execute("CREATE TABLE smoke_round_trip (id int PRIMARY KEY, name text NOT NULL)")
        await conn.executemany("INSERT INTO smoke_round_trip (id, name) VALUES ($1, $2)", [(1, "one"), (2, "two")])
        rows = await conn.fetch("SELECT id, name FROM smoke_round_trip ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await conn.fetchval("SELECT current_database()") == postgres.database
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await conn.close()


async def test_committed_row_survives_a_restart(postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres.dsn, timeout=10)
    try:
        await conn.execute("CREATE TABLE smoke_restart (v text)")
        await conn.execute("INSERT INTO smoke_restart VALUES ('kept')")
    finally:
        await conn.close()
    port, data_dir = postgres.port, postgres.data_dir
    postgres.restart()
    assert (postgres.port, postgres.data_dir) == (port, data_dir)
    conn = await asyncpg.connect(postgres.dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT v FROM smoke_restart") == "kept"
    finally:
        await conn.close()
