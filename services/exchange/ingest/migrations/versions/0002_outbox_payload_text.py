"""ingest.outbox.payload holds the event as ingest serialised it (text, not jsonb).

The relay publishes the payload verbatim. As jsonb, Postgres parsed every event on insert and
rendered it back to text on every pick (~9 µs of a ~50 µs per-record Postgres cost in bulk
ingest), and the published bytes were Postgres' rendering (keys re-ordered, spaces added)
instead of the event ingest built. The value is still JSON: `payload::jsonb` queries it.

The type change rewrites the table under an exclusive lock, so ingest waits while it runs: on a
large outbox (published rows are kept as the registry), migrate in a quiet window.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ingest.outbox ALTER COLUMN payload TYPE text USING payload::text")


def downgrade() -> None:
    op.execute("ALTER TABLE ingest.outbox ALTER COLUMN payload TYPE jsonb USING payload::jsonb")
