"""canonical.raw_resources: one row per FHIR resource of a type the canonical schema does not model.

Such a resource stays in the raw zone; the canonical schema keeps only that it exists: its type,
its canonical id and the patient it is about (when it references a Patient), so a subject's
resources can be counted by type. Nothing else of it leaves the raw zone.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE canonical.raw_resources (
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    record_id     uuid        REFERENCES canonical.records (id),
    resource_type text        NOT NULL CHECK (resource_type ~ '^[A-Z][A-Za-z]{1,63}$'),
    patient_id    uuid        REFERENCES canonical.patients (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_resources_patient ON canonical.raw_resources (patient_id, resource_type);
CREATE INDEX raw_resources_record ON canonical.raw_resources (record_id);
"""

DOWNGRADE = "DROP TABLE IF EXISTS canonical.raw_resources;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
