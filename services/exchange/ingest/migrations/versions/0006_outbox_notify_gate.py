"""ingest.outbox: the insert trigger sends its NOTIFY only while a relay listens
(`ingest.outbox_listening`); a busy relay does not listen (ADR 0002).

Postgres serialises the commits of transactions that sent a NOTIFY (a database-wide lock held
through the WAL flush): with fsync on, 8 writers committed 2,300-2,500 such transactions a second
against 5,900 plain ones, 32 writers 1,650-1,850 against 5,800-6,000. Every ingest commit sent
one. The flag starts true, so a relay of the previous version, which always listens, is still
woken; this version's relay clears it while busy.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

from exchange.core.migrations import outbox_notify_gate_v1

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE, DOWNGRADE = outbox_notify_gate_v1("ingest", "ingest_outbox")


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
