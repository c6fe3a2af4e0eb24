"""normalizer.inbox gets an index on `processed_at`, so its retention deletes the oldest event ids
batch by batch and reads the oldest row's age without scanning the table (ADR 0013). A plain
CREATE INDEX blocks inbox inserts (the worker's batches) while it builds: migrate in a quiet window.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS inbox_processed_at ON normalizer.inbox (processed_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS normalizer.inbox_processed_at")
