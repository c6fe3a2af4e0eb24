"""subject lookup by any single token (the query service's linkage entry point).

Revision ID: 0002
Revises: 0001

The unique key (token_key_id, t1, …, t5) serves only lookups by the whole set or by T1; the
query service finds a subject by any one of T1-T5, so each token gets its own index.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOKENS = ("t1", "t2", "t3", "t4", "t5")


def upgrade() -> None:
    for token in TOKENS:
        op.execute(f"CREATE INDEX IF NOT EXISTS subjects_{token} ON canonical.subjects ({token})")


def downgrade() -> None:
    for token in TOKENS:
        op.execute(f"DROP INDEX IF EXISTS canonical.subjects_{token}")
