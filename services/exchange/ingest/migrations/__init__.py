"""The ingest schema, as alembic revisions of raw SQL, applied through asyncpg.

`upgrade(dsn)` is what `exchange migrate` and local start-up call. alembic renders the pending
revisions as SQL (its offline mode: ordering, the version table and the revision graph stay
alembic's), and the script runs in ONE asyncpg transaction under an advisory lock, so replicas
starting together apply it once and a failed migration leaves nothing half done. This keeps
the image free of a second (synchronous) Postgres driver.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

VERSION_TABLE = "ingest_alembic_version"
_LOCK_KEY = 0x1A9E57  # pg_advisory_xact_lock key of ingest migrations
_HERE = Path(__file__).resolve().parent


def _config(buffer: io.StringIO) -> Config:
    cfg = Config(output_buffer=buffer)
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


def render_sql(current: str | None, target: str = "head") -> str:
    """The SQL that moves the schema from revision `current` (None: empty) to `target`."""
    buffer = io.StringIO()
    command.upgrade(_config(buffer), f"{current}:{target}" if current else target, sql=True)
    return buffer.getvalue()


async def current_revision(conn: asyncpg.Connection) -> str | None:
    if await conn.fetchval("SELECT to_regclass($1)", f"public.{VERSION_TABLE}") is None:
        return None
    value = await conn.fetchval(f"SELECT version_num FROM public.{VERSION_TABLE}")
    return str(value) if value else None


async def upgrade_async(dsn: str, target: str = "head") -> str | None:
    """Apply pending revisions; returns the revision the database ends at."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            current = await current_revision(conn)
            sql = await asyncio.to_thread(render_sql, current, target)
            if sql.strip():
                await conn.execute(sql)
            return await current_revision(conn)
    finally:
        await conn.close()


def upgrade(dsn: str, target: str = "head") -> str | None:
    """Synchronous entry point for `exchange migrate` (runs its own event loop)."""
    return asyncio.run(upgrade_async(dsn, target))
