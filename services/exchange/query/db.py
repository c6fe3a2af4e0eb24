"""The query service's connection to Postgres: read-only sessions, one counted `fetch()`.

Every statement goes through `Database.fetch()`, which counts it (`query_sql_statements_total`
on /metrics): that is how tests prove DataLoaders batch nested fields, and how an operator sees
statements per request rate. Sessions are read-only twice over: the role (see
`roles.py`) has SELECT on `canonical` only, and every session starts with
`default_transaction_read_only=on`.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from exchange.core.db import create_pool
from exchange.core.errors import ConfigError
from exchange.query.settings import QuerySettings


class Database:
    """A pool plus the counted `fetch()` every repository query uses."""

    def __init__(self, pool: asyncpg.Pool, registry: CollectorRegistry | None = None) -> None:
        self.pool = pool
        self.total = Counter("query_sql_statements_total", "SQL statements run by GraphQL resolvers", registry=registry)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.total.inc()
        async with self.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows


async def open_pool(settings: QuerySettings) -> asyncpg.Pool:
    """A pool of read-only sessions, switched to QUERY_DB_ROLE when it is set."""
    server_settings = {"default_transaction_read_only": "on", "application_name": "exchange-query"}
    if settings.query_db_role:
        if not settings.query_db_role.replace("_", "").isalnum():
            raise ConfigError("QUERY_DB_ROLE must be a plain identifier")
        server_settings["role"] = settings.query_db_role
    return await create_pool(settings, server_settings=server_settings)
