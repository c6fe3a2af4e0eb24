"""The US Core / Synthea set (issue 22, point 2): a typed table per FHIR resource type, de-identified.

Revision ID: 0008
Revises: 0007

Patient-linked types are clinical facts like those of 0001 (codes with systems, the patient, the
record) with their own typed columns; the others (Organization, Location, Practitioner,
PractitionerRole, Medication) are entities without a patient. What each keeps is in ADR 0015:
codes, statuses, counts, amounts, years and canonical ids, never free text, source ids or a date
finer than its year. References to patients and encounters are foreign keys (placeholders fill
them, as in 0001); references to the other types are canonical ids without a key (their targets
may never arrive: a bulk export may hold a Claim but not its insurer). Year columns follow 0007:
a 90+ subject's facts keep none (the same trigger, and `canonical.clear_years` covers them).
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_0007 = importlib.import_module("exchange.normalizer.migrations.versions.0007_safe_harbor_years")

_COMMON = """
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    record_id     uuid        REFERENCES canonical.records (id),
    status        text,
    code_system   text,
    code          text,
    codings       jsonb       NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()"""
_PATIENT = "patient_id uuid REFERENCES canonical.patients (id)"
_ENCOUNTER = "encounter_id uuid REFERENCES canonical.encounters (id)"
_AMOUNTS = """use text, outcome text, created_year smallint, billable_start_year smallint,
    billable_end_year smallint, total_value numeric, payment_value numeric, currency text,
    provider_id uuid, item_codings jsonb NOT NULL DEFAULT '[]'"""

FACTS: dict[str, str] = {
    "medication_requests": f"{_PATIENT}, {_ENCOUNTER}, intent text, medication_id uuid, requester_id uuid, "
    "authored_year smallint",
    "diagnostic_reports": f"{_PATIENT}, {_ENCOUNTER}, category text, effective_year smallint, issued_year smallint, "
    "result_ids uuid[] NOT NULL DEFAULT '{}'",
    "document_references": f"{_PATIENT}, {_ENCOUNTER}, category text, content_type text, date_year smallint",
    "care_plans": f"{_PATIENT}, {_ENCOUNTER}, intent text, period_start_year smallint, period_end_year smallint",
    "care_teams": f"{_PATIENT}, {_ENCOUNTER}, period_start_year smallint, period_end_year smallint",
    "goals": f"{_PATIENT}, achievement_status text, start_year smallint",
    "imaging_studies": f"{_PATIENT}, {_ENCOUNTER}, started_year smallint, series_count integer, instance_count integer",
    "devices": _PATIENT,
    "claims": f"{_PATIENT}, {_AMOUNTS}",
    "explanation_of_benefits": f"{_PATIENT}, {_AMOUNTS}, claim_id uuid",
}
"""Patient-linked tables: their columns beyond the common ones."""

ENTITIES: dict[str, str] = {
    "organizations": "active boolean, zip3 char(3) CHECK (zip3 ~ '^[0-9]{3}$')",
    "locations": "organization_id uuid, zip3 char(3) CHECK (zip3 ~ '^[0-9]{3}$')",
    "practitioners": "active boolean",
    "practitioner_roles": "active boolean, practitioner_id uuid, organization_id uuid",
    "medications": "form_code text",
}
"""Tables of entities without a patient: their columns beyond the common ones."""

YEARS: dict[str, tuple[str, ...]] = {
    "medication_requests": ("authored_year",),
    "diagnostic_reports": ("effective_year", "issued_year"),
    "document_references": ("date_year",),
    "care_plans": ("period_start_year", "period_end_year"),
    "care_teams": ("period_start_year", "period_end_year"),
    "goals": ("start_year",),
    "imaging_studies": ("started_year",),
    "claims": ("created_year", "billable_start_year", "billable_end_year"),
    "explanation_of_benefits": ("created_year", "billable_start_year", "billable_end_year"),
}
"""Per fact table: its year columns, withheld for subjects aged 90+ (as in 0007)."""


def _clear_years(years: dict[str, tuple[str, ...]]) -> str:
    clears = "\n".join(
        f"    UPDATE canonical.{table} SET {', '.join(f'{c} = NULL' for c in columns)} "
        f"WHERE patient_id = patient AND ({' OR '.join(f'{c} IS NOT NULL' for c in columns)});"
        for table, columns in years.items()
    )
    head = "CREATE OR REPLACE FUNCTION canonical.clear_years(patient uuid) RETURNS void LANGUAGE plpgsql AS $$"
    return f"{head}\nBEGIN\n{clears}\nEND $$"


def upgrade() -> None:
    for table, columns in FACTS.items():
        op.execute(f"CREATE TABLE canonical.{table} ({_COMMON}, {columns})")
        op.execute(f"CREATE INDEX {table}_patient ON canonical.{table} (patient_id)")
        op.execute(f"CREATE INDEX {table}_record ON canonical.{table} (record_id)")
    for table, columns in ENTITIES.items():
        op.execute(f"CREATE TABLE canonical.{table} ({_COMMON}, {columns})")
        op.execute(f"CREATE INDEX {table}_record ON canonical.{table} (record_id)")
    for table, years in YEARS.items():
        args = ", ".join(f"'{c}'" for c in years)
        op.execute(
            f"CREATE TRIGGER withhold_years BEFORE INSERT OR UPDATE ON canonical.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION canonical.withhold_years_over_89({args})"
        )
    old = {table: tuple(columns.values()) for table, columns in _0007.YEARS.items()}
    op.execute(_clear_years(old | YEARS))


def downgrade() -> None:
    op.execute(_clear_years({table: tuple(columns.values()) for table, columns in _0007.YEARS.items()}))
    op.execute(f"DROP TABLE IF EXISTS {', '.join(f'canonical.{t}' for t in (*FACTS, *ENTITIES))}")
