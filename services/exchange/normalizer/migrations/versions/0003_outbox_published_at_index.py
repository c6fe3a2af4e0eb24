"""normalizer.outbox gets a partial index on `published_at`, so the relay's retention can delete
the oldest published rows batch by batch without scanning the table (see ingest's revision 0004:
inserts do not touch it; a plain CREATE INDEX blocks outbox inserts while it builds).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS outbox_published_at ON normalizer.outbox (published_at)"
        " WHERE published_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS normalizer.outbox_published_at")
