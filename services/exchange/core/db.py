"""Postgres connection helpers (asyncpg pool) with JSON codecs and a readiness check."""

from __future__ import annotations

from collections.abc import Callable
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


# What a statement raises when Postgres is unreachable or the connection broke (the second idle
# connection of a pool whose server shut down raises InternalClientError, not a connection error).
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that remembers whether a statement on it failed since its checkout.

    On release a clean connection goes back as it is: services keep no session state on pooled
    connections (settings are startup parameters, locks are transaction-scoped, LISTEN has its
    own connection), and asyncpg itself rolls back a transaction left open. asyncpg's default
    would run `RESET ALL; CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()` on every
    release: one more round trip per checkout, ~10 % of the ingest process's CPU and as many
    statements for Postgres as the work itself. A connection on which a statement failed (or was
    cancelled) does get that reset, which also proves it usable: when the server went away
    mid-statement the reset fails and the pool replaces the connection.
    """

    _failed = False

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._tracked(super().execute(*args, **kwargs))

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._tracked(super().executemany(*args, **kwargs))

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._tracked(super().fetch(*args, **kwargs))

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._tracked(super().fetchval(*args, **kwargs))

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._tracked(super().fetchrow(*args, **kwargs))

    async def _tracked(self, call: Any) -> Any:
        try:
            return await call
        except BaseException:
            self._failed = True
            raise


async def _reset_if_failed(conn: asyncpg.Connection) -> None:
    """Pool release hook (see `_Connection`)."""
    if getattr(conn, "_failed", False):
        conn._failed = False
        query = conn.get_reset_query()
        if query:
            await asyncpg.Connection.execute(conn, query)


# Settings of a pool whose statements are all key lookups, batched through arrays: plan once, and
# never as a whole-table scan or hash join (a generic plan made while the tables were small kept
# seq-scanning them: ~1.3 ms of Postgres CPU a statement instead of ~0.1; ADR 0002). JIT is off: a
# statement that still needs a disabled plan type costs above `jit_above_cost` and was compiled on
# every execution.
GENERIC_PLANS = {
    "plan_cache_mode": "force_generic_plan",
    "enable_seqscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "jit": "off",
}


async def create_pool(settings: DatabaseSettings, *, generic_plans: bool = False, **overrides: Any) -> asyncpg.Pool:
    """Open an asyncpg pool for the service's role; DependencyError when Postgres is unreachable.

    `generic_plans=True` (`GENERIC_PLANS`) is for a service whose statements are key lookups taking
    arrays (batches): each prepared statement is planned once instead of on every execution, and
    never as a whole-table scan or hash join, whatever the table sizes when it was planned.
    """
    if generic_plans:
        overrides["server_settings"] = {**GENERIC_PLANS, **overrides.get("server_settings", {})}
    try:
        pool = await asyncpg.create_pool(
            dsn=settings.database_url.get_secret_value(),
            min_size=overrides.pop("min_size", settings.db_pool_min),
            max_size=overrides.pop("max_size", settings.db_pool_max),
            command_timeout=settings.db_command_timeout,
            # asyncpg waits 60 s by default: a SYN sent to a Postgres Pod that is gone (a Service
            # not yet re-pointed) is then retransmitted for ~40 s while every request waits on it.
            timeout=settings.db_connect_timeout,
            init=_init_connection,
            reset=overrides.pop("reset", _reset_if_failed),
            connection_class=overrides.pop("connection_class", _Connection),
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


async def delete_in_batches(
    pool: asyncpg.Pool, sql: str, *args: Any, batch: int, deleted: Callable[[int], object] | None = None
) -> int:
    """Run `sql`, a DELETE of at most `batch` rows (its last parameter), until a statement deletes
    fewer than that: each batch its own short transaction. `deleted` hears each non-empty batch's
    count; returns the total."""
    total = 0
    while True:
        count = int(str(await pool.execute(sql, *args, batch)).rsplit(" ", 1)[-1])
        total += count
        if deleted is not None and count:
            deleted(count)
        if count < batch:
            return total
