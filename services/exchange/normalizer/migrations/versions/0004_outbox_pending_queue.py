"""normalizer.outbox: unpublished rows are entries of a pending queue, `normalizer.outbox_pending`,
instead of rows with `published_at` NULL, as ingest's revision 0005 does for its outbox (the
relay is the same code). Retention counts from `created_at`; the upgrade locks the outbox against
inserts while it queues the unpublished rows.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from exchange.core.migrations import outbox_pending_queue_v1

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE, DOWNGRADE = outbox_pending_queue_v1("normalizer")


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
