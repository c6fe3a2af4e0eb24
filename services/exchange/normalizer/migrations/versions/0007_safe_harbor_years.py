"""Clinical dates keep their year only (HIPAA Safe Harbor, ADR 0014): every timestamptz of a fact
becomes a smallint `<name>_year`, converted in place from the stored dates, and the years of a
subject aged 90 or older are withheld (NULL) whatever order its facts and its Patient arrive in.

Revision ID: 0007
Revises: 0006

The conversion rewrites each fact table once (ALTER ... TYPE): migrate in a quiet window.
`canonical.withhold_years_over_89` runs before every fact write: a fact of a 90+ subject keeps no
year. It reads the patient row FOR SHARE, so it waits for a concurrent transaction linking that
patient to its subject; `canonical.withhold_patient_years` (after a patient is linked) and
`canonical.withhold_subject_years` (after a subject turns 90+) clear what was written before.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

YEARS: dict[str, dict[str, str]] = {
    "encounters": {"period_start": "period_start_year", "period_end": "period_end_year"},
    "conditions": {"onset_at": "onset_year", "abatement_at": "abatement_year", "recorded_at": "recorded_year"},
    "observations": {"effective_at": "effective_year"},
    "immunizations": {"occurred_at": "occurred_year"},
    "allergy_intolerances": {"recorded_at": "recorded_year"},
    "procedures": {"performed_start": "performed_start_year", "performed_end": "performed_end_year"},
}
"""Per fact table: old timestamptz column → its year column."""

FUNCTIONS = """
CREATE FUNCTION canonical.over_89(patient uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT s.age_over_89 FROM canonical.patients p JOIN canonical.subjects s ON s.id = p.subject_id
                     WHERE p.id = patient), false)
$$;

-- BEFORE INSERT OR UPDATE of a fact; TG_ARGV names its year columns.
CREATE FUNCTION canonical.withhold_years_over_89() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    over boolean;
BEGIN
    IF NEW.patient_id IS NOT NULL THEN
        SELECT s.age_over_89 INTO over FROM canonical.patients p
          LEFT JOIN canonical.subjects s ON s.id = p.subject_id WHERE p.id = NEW.patient_id FOR SHARE OF p;
        IF over THEN
            NEW := jsonb_populate_record(NEW, (SELECT jsonb_object_agg(c, NULL) FROM unnest(TG_ARGV) c));
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION canonical.clear_years(patient uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
{clears}
END $$;

CREATE FUNCTION canonical.withhold_patient_years() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF canonical.over_89(NEW.id) THEN
        PERFORM canonical.clear_years(NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION canonical.withhold_subject_years() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM canonical.clear_years(p.id) FROM canonical.patients p WHERE p.subject_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER withhold_years AFTER INSERT OR UPDATE OF subject_id ON canonical.patients
    FOR EACH ROW WHEN (NEW.subject_id IS NOT NULL) EXECUTE FUNCTION canonical.withhold_patient_years();
CREATE TRIGGER withhold_years AFTER INSERT OR UPDATE OF age_over_89 ON canonical.subjects
    FOR EACH ROW WHEN (NEW.age_over_89) EXECUTE FUNCTION canonical.withhold_subject_years();
"""


def upgrade() -> None:
    for table, columns in YEARS.items():
        renames = "; ".join(f"ALTER TABLE canonical.{table} RENAME COLUMN {a} TO {b}" for a, b in columns.items())
        types = ", ".join(
            f"ALTER COLUMN {new} TYPE smallint USING extract(year FROM {new} AT TIME ZONE 'UTC')::smallint"
            for new in columns.values()
        )
        op.execute(f"{renames}; ALTER TABLE canonical.{table} {types}")
    clears = "\n".join(
        f"    UPDATE canonical.{table} SET {', '.join(f'{c} = NULL' for c in columns.values())} "
        f"WHERE patient_id = patient AND ({' OR '.join(f'{c} IS NOT NULL' for c in columns.values())});"
        for table, columns in YEARS.items()
    )
    op.execute(FUNCTIONS.replace("{clears}", clears))
    for table, columns in YEARS.items():
        args = ", ".join(f"'{c}'" for c in columns.values())
        op.execute(
            f"CREATE TRIGGER withhold_years BEFORE INSERT OR UPDATE ON canonical.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION canonical.withhold_years_over_89({args})"
        )
    # Facts already stored for subjects aged 90+.
    op.execute(
        "SELECT canonical.clear_years(p.id) FROM canonical.patients p "
        "JOIN canonical.subjects s ON s.id = p.subject_id WHERE s.age_over_89"
    )


def downgrade() -> None:
    """Back to timestamptz columns holding 1 January of each year (the rest of each date is gone)."""
    op.execute("DROP TRIGGER IF EXISTS withhold_years ON canonical.patients")
    op.execute("DROP TRIGGER IF EXISTS withhold_years ON canonical.subjects")
    for table, columns in YEARS.items():
        op.execute(f"DROP TRIGGER IF EXISTS withhold_years ON canonical.{table}")
        types = ", ".join(
            f"ALTER COLUMN {new} TYPE timestamptz USING make_timestamptz({new}, 1, 1, 0, 0, 0, 'UTC')"
            for new in columns.values()
        )
        renames = "; ".join(f"ALTER TABLE canonical.{table} RENAME COLUMN {b} TO {a}" for a, b in columns.items())
        op.execute(f"ALTER TABLE canonical.{table} {types}; {renames}")
    op.execute(
        "DROP FUNCTION IF EXISTS canonical.withhold_subject_years(), canonical.withhold_patient_years(), "
        "canonical.clear_years(uuid), canonical.withhold_years_over_89(), canonical.over_89(uuid)"
    )
