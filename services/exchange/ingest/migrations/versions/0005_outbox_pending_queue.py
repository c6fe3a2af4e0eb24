"""ingest.outbox: unpublished rows are entries of a pending queue, `ingest.outbox_pending`,
instead of rows with `published_at` NULL; publishing deletes the entry and never updates the row.

Marking a row published used to write a new version of the whole row (payload included) plus an
entry in each of its indexes: in a Postgres-only replay of bulk commits and relay batches, the
relay's pick and mark cost Postgres 29-38 µs a record, more than the commit that inserted it;
with the queue, 11-18 µs, and 42-53 µs in all against 56-71 (ADR 0002, decision 9).

Retention now counts from `created_at` (a new index); `published_at` and its two partial indexes
are dropped. The upgrade locks the outbox against inserts while it queues the unpublished rows,
and a relay of the previous version fails (and retries) until it is replaced: migrate in a quiet
window and roll the relays with it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from exchange.core.migrations import outbox_pending_queue_v1

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE, DOWNGRADE = outbox_pending_queue_v1("ingest")


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
