"""alembic environment: offline rendering only (see `exchange.core.migrations`)."""

from alembic import context

from exchange.core.migrations import run_offline

run_offline(context)
