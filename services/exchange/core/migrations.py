"""Run a service's alembic revisions (raw SQL) through asyncpg, once, under an advisory lock.

alembic renders the pending revisions as SQL (its offline mode: ordering, the version table and
the revision graph stay alembic's) and the script runs in ONE asyncpg transaction under
`pg_advisory_xact_lock(lock_key)`, so replicas starting together apply it once and a failed
migration leaves nothing half done. This keeps the image free of a second (synchronous) driver.
A service's `migrations/env.py` configures alembic offline with `literal_binds` and reads
`version_table` from `config.attributes`.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config


def render_sql(script_location: Path, version_table: str, current: str | None, target: str = "head") -> str:
    """The SQL that moves a schema from revision `current` (None: empty) to `target`."""
    buffer = io.StringIO()
    cfg = Config(output_buffer=buffer)
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["version_table"] = version_table
    command.upgrade(cfg, f"{current}:{target}" if current else target, sql=True)
    return buffer.getvalue()


async def current_revision(conn: asyncpg.Connection, version_table: str) -> str | None:
    if await conn.fetchval("SELECT to_regclass($1)", f"public.{version_table}") is None:
        return None
    value = await conn.fetchval(f"SELECT version_num FROM public.{version_table}")
    return str(value) if value else None


async def upgrade_async(
    dsn: str, script_location: Path, version_table: str, lock_key: int, target: str = "head"
) -> str | None:
    """Apply pending revisions in one transaction; returns the revision the database ends at."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
            current = await current_revision(conn, version_table)
            sql = await asyncio.to_thread(render_sql, script_location, version_table, current, target)
            if sql.strip():
                await conn.execute(sql)
            return await current_revision(conn, version_table)
    finally:
        await conn.close()
