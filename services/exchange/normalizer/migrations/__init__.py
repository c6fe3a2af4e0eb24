"""The canonical schema (`canonical.*`) and the normalizer's inbox/outbox (`normalizer.*`).

alembic revisions of raw SQL in `versions/`, applied by `exchange.core.migrations` in one
transaction under an advisory lock. `exchange migrate` calls `upgrade_from_env()`; the worker
calls `upgrade()` at start when `NORMALIZER_MIGRATE_ON_START` (default: ENV=local).
`grant_role_from_env()` (also `exchange migrate`) gives the normalizer role (NORMALIZER_DB_ROLE,
default `exchange_normalizer`) read/write on `canonical` and `normalizer`, and nothing else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchange.core import migrations
from exchange.core.settings import DatabaseSettings, load

VERSION_TABLE = "normalizer_alembic_version"
LOCK_KEY = 0x5E0A11  # pg_advisory_xact_lock key of normalizer migrations
SCRIPT_LOCATION = Path(__file__).resolve().parent
ROLE = "exchange_normalizer"


async def upgrade(dsn: str, target: str = "head") -> str | None:
    """Apply pending revisions; returns the revision the database ends at."""
    return await migrations.upgrade_async(dsn, SCRIPT_LOCATION, VERSION_TABLE, LOCK_KEY, target)


def upgrade_from_env() -> str | None:
    """`exchange migrate`: read DATABASE_URL and apply pending revisions."""
    settings = load(DatabaseSettings)
    return asyncio.run(upgrade(settings.database_url.get_secret_value()))


def grant_role_from_env() -> bool:
    """`exchange migrate`: grant NORMALIZER_DB_ROLE its privileges; False when the role does not exist."""
    return migrations.grant_role_from_env("NORMALIZER_DB_ROLE", ROLE, write_schemas=("canonical", "normalizer"))
