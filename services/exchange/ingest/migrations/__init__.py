"""The ingest schema (`ingest.*`), as alembic revisions of raw SQL in `versions/`.

Applied by `exchange.core.migrations` in one asyncpg transaction under an advisory lock:
`upgrade(dsn)` is what `exchange migrate` calls, `upgrade_async(dsn)` local start-up.
`grant_role_from_env()` (also `exchange migrate`) gives the ingest role (INGEST_DB_ROLE, default
`exchange_ingest`) read/write on the tables and sequences of schema `ingest`, and nothing else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchange.core import migrations

VERSION_TABLE = "ingest_alembic_version"
LOCK_KEY = 0x1A9E57  # pg_advisory_xact_lock key of ingest migrations
SCRIPT_LOCATION = Path(__file__).resolve().parent
ROLE = "exchange_ingest"


def render_sql(current: str | None, target: str = "head") -> str:
    """The SQL that moves the schema from revision `current` (None: empty) to `target`."""
    return migrations.render_sql(SCRIPT_LOCATION, VERSION_TABLE, current, target)


async def upgrade_async(dsn: str, target: str = "head") -> str | None:
    """Apply pending revisions; returns the revision the database ends at."""
    return await migrations.upgrade_async(dsn, SCRIPT_LOCATION, VERSION_TABLE, LOCK_KEY, target)


def upgrade(dsn: str, target: str = "head") -> str | None:
    """Synchronous entry point for `exchange migrate` (runs its own event loop)."""
    return asyncio.run(upgrade_async(dsn, target))


def grant_role_from_env() -> bool:
    """`exchange migrate`: grant INGEST_DB_ROLE its privileges; False when the role does not exist."""
    return migrations.grant_role_from_env("INGEST_DB_ROLE", ROLE, write_schemas=("ingest",))
