"""ingest.outbox gets a partial index on `published_at`, so the relay's retention can delete the
oldest published rows batch by batch without scanning the table.

Only published rows are in it (`WHERE published_at IS NOT NULL`): an insert does not touch it,
and marking a row published (already a non-HOT update, since `published_at` is in the predicate of
`outbox_unpublished`) adds one entry at its right-hand end. Built with a plain CREATE INDEX inside
the migration's transaction, which blocks inserts into the outbox while it runs: on a deployment
with a large outbox, run the migration in a quiet window.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS outbox_published_at ON ingest.outbox (published_at) WHERE published_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ingest.outbox_published_at")
