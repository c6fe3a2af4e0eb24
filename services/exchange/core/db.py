"""Postgres connection helpers (asyncpg pool) with JSON codecs and a readiness check."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from exchange.core.errors import DependencyError
from exchange.core.settings import DatabaseSettings


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def create_pool(settings: DatabaseSettings, **overrides: Any) -> asyncpg.Pool:
    """Open an asyncpg pool for the service's role; DependencyError when Postgres is unreachable."""
    try:
        pool = await asyncpg.create_pool(
            dsn=settings.database_url.get_secret_value(),
            min_size=overrides.pop("min_size", settings.db_pool_min),
            max_size=overrides.pop("max_size", settings.db_pool_max),
            command_timeout=settings.db_command_timeout,
            init=_init_connection,
            **overrides,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        # asyncpg messages can include the DSN host and user; keep only the class.
        raise DependencyError("postgres", type(exc).__name__) from exc
    assert pool is not None
    return pool


def pool_readiness(pool: asyncpg.Pool) -> Any:
    """A readiness check: one round trip on a pooled connection."""

    async def check() -> None:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    return check
