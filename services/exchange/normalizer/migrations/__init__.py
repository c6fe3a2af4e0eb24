"""The canonical schema (`canonical.*`) and the normalizer's inbox/outbox (`normalizer.*`).

alembic revisions of raw SQL in `versions/`, applied by `exchange.core.migrations` in one
transaction under an advisory lock. `exchange migrate` calls `upgrade_from_env()`; the worker
calls `upgrade()` at start when `NORMALIZER_MIGRATE_ON_START` (default: ENV=local).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchange.core import migrations
from exchange.core.settings import DatabaseSettings, load

VERSION_TABLE = "normalizer_alembic_version"
LOCK_KEY = 0x5E0A11  # pg_advisory_xact_lock key of normalizer migrations
SCRIPT_LOCATION = Path(__file__).resolve().parent


async def upgrade(dsn: str, target: str = "head") -> str | None:
    """Apply pending revisions; returns the revision the database ends at."""
    return await migrations.upgrade_async(dsn, SCRIPT_LOCATION, VERSION_TABLE, LOCK_KEY, target)


def upgrade_from_env() -> str | None:
    """`exchange migrate`: read DATABASE_URL and apply pending revisions."""
    settings = load(DatabaseSettings)
    return asyncio.run(upgrade(settings.database_url.get_secret_value()))
