"""The shared asyncpg pool against real Postgres: no reset round trip for a clean connection, a
full reset after a failed statement, and broken connections replaced after a restart."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import pytest

from exchange.core.db import DB_ERRORS, create_pool
from exchange.core.errors import DependencyError
from exchange.core.settings import DatabaseSettings
from exchange_devtools.engines.postgres import PostgresServer


async def _pool(postgres: PostgresServer) -> asyncpg.Pool:
    return await create_pool(DatabaseSettings(DATABASE_URL=postgres.dsn, DB_POOL_MIN=1, DB_POOL_MAX=1))


async def test_a_clean_connection_goes_back_as_it_is_and_a_failed_one_is_reset(postgres: PostgresServer) -> None:
    pool = await _pool(postgres)
    try:
        async with pool.acquire() as conn:  # one connection: every checkout gets the same one
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SET statement_timeout = '1234ms'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert await conn.fetchval("SHOW statement_timeout") == "1234ms"  # no RESET ALL on release
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert await conn.fetchval("SHOW statement_timeout") == "0"  # reset after the failure
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = '5s'")
        assert await pool.fetchval("SHOW statement_timeout") == "0"
    finally:
        await pool.close()


async def test_connections_broken_by_a_restart_are_replaced(postgres: PostgresServer) -> None:
    pool = await create_pool(DatabaseSettings(DATABASE_URL=postgres.dsn, DB_POOL_MIN=3, DB_POOL_MAX=3))
    try:
        conns = [await pool.acquire() for _ in range(3)]  # three open connections
        for conn in conns:
            await pool.release(conn)
        postgres.restart()
        failures = 0
        for _ in range(6):
            try:
                assert await pool.fetchval("SELECT 1") == 1
                break
            except DB_ERRORS:  # each broken connection fails once, then is replaced
                failures += 1
        else:
            pytest.fail("the pool never recovered")
        assert failures <= 3
        assert [await pool.fetchval("SELECT 1") for _ in range(6)] == [1] * 6
    finally:
        await pool.close()


async def test_generic_plans_are_a_pool_option(postgres: PostgresServer) -> None:
    settings = DatabaseSettings(DATABASE_URL=postgres.dsn, DB_POOL_MIN=1, DB_POOL_MAX=1)
    batched = await create_pool(settings, generic_plans=True, server_settings={"application_name": "probe"})
    default = await create_pool(settings)
    try:
        assert await batched.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await batched.fetchval("SHOW jit") == "off" and await default.fetchval("SHOW jit") == "on"
        assert await batched.fetchval("SHOW application_name") == "probe"
        assert await default.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await batched.close()
        await default.close()


_PROBE = """
SELECT p.v FROM unnest($1::text[], $2::text[]) AS i(tenant, key)
  JOIN plan_probe AS p ON p.tenant = i.tenant AND p.key = i.key
"""


async def _cached_plan(pool: asyncpg.Pool) -> str:
    """The plan a batched lookup keeps after being planned on an empty table that then grew."""
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS plan_probe")
        await conn.execute("CREATE TABLE plan_probe (tenant text, key text, v int, PRIMARY KEY (tenant, key))")
        await conn.execute(f"PREPARE probe(text[], text[]) AS {_PROBE}")
        await conn.execute("EXECUTE probe('{t}', '{k}')")  # the generic plan is made (and cached) here
        await conn.execute("INSERT INTO plan_probe SELECT 't', g::text, g FROM generate_series(1, 20000) AS g")
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) EXECUTE probe('{t}', '{42}')")
        await conn.execute("DEALLOCATE probe")
        await conn.execute("DROP TABLE plan_probe")
        return str(plan)


async def test_generic_plans_of_a_pool_never_scan_a_whole_table(postgres: PostgresServer) -> None:
    """Planned while the table was empty, a cached generic plan still looks rows up by index once
    the table has grown; with plan caching alone it keeps scanning the whole table."""
    settings = DatabaseSettings(DATABASE_URL=postgres.dsn, DB_POOL_MIN=1, DB_POOL_MAX=1)
    batched = await create_pool(settings, generic_plans=True)
    caching_only = await create_pool(settings, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        plan = await _cached_plan(batched)
        assert "Index Scan" in plan and "Seq Scan" not in plan and "Hash Join" not in plan
        assert "Seq Scan" in await _cached_plan(caching_only)  # what the pool option prevents
    finally:
        await batched.close()
        await caching_only.close()


async def test_a_connection_that_never_answers_is_given_up_after_the_connect_timeout() -> None:
    """A peer that takes the TCP connection and never answers (as a SYN to a Pod that is gone never
    does) fails the pool's start within DB_CONNECT_TIMEOUT instead of asyncpg's 60 s."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts into its backlog, never replies
        port = silent.getsockname()[1]
        settings = DatabaseSettings(
            DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/none", DB_POOL_MIN=1, DB_CONNECT_TIMEOUT=0.5
        )
        with pytest.raises(DependencyError):
            # 20 s is far above the setting and far below asyncpg's default, which the test must not wait for
            await asyncio.wait_for(create_pool(settings), timeout=20)
