"""canonical schema: records, subjects (token sets), patients and clinical facts; inbox, outbox.

Revision ID: 0001
Revises:

De-identified by construction: no column can hold a name, a full birth date, an SSN, a street
address, a phone number or free text. Subjects carry tokens and Safe Harbor demographics only
(birth year — NULL with `age_over_89` for people 90 or older —, sex, 3-digit ZIP with the
restricted prefixes as '000'). Source ids (which may be MRNs) are never stored: canonical ids
are keyed derivations of them (see docs/adr/0005-record-schema-v2.md). Coded values keep their
system and code only, never `display` or `text`.

Entities referenced before they arrive (an Encounter's Patient, a Condition's Encounter) get a
placeholder row (`record_id` NULL) that the referenced record fills in, so every reference is a
foreign key to a canonical id, whatever the arrival order.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_FACT_COMMON = """
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    record_id     uuid        REFERENCES canonical.records (id),
    patient_id    uuid        REFERENCES canonical.patients (id),
    status        text,
    code_system   text,
    code          text,
    codings       jsonb       NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()"""

UPGRADE = f"""
CREATE SCHEMA IF NOT EXISTS canonical;
CREATE SCHEMA IF NOT EXISTS normalizer;

-- One row per ingested record (a single resource, a Bundle, or one NDJSON line). The natural
-- key is the raw object and line, so a replay of the same bytes lands on the same row.
CREATE TABLE canonical.records (
    id                uuid        PRIMARY KEY,
    tenant            text        NOT NULL,
    source_format     text        NOT NULL CHECK (source_format IN ('native', 'fhir')),
    record_type       text        NOT NULL,
    schema_version    text        NOT NULL,
    canonical_version text        NOT NULL,
    object_bucket     text        NOT NULL,
    object_key        text        NOT NULL,
    object_sha256     char(64)    NOT NULL CHECK (object_sha256 ~ '^[0-9a-f]{{64}}$'),
    line              integer     NOT NULL DEFAULT 0,
    received_at       timestamptz NOT NULL,
    normalized_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, object_key, line)
);
CREATE INDEX records_received ON canonical.records (tenant, received_at);
CREATE INDEX records_object ON canonical.records (object_key);

-- A person, identified only by the token set (T1-T5 under one tokenization key).
CREATE TABLE canonical.subjects (
    id            uuid        PRIMARY KEY,
    token_key_id  text        NOT NULL,
    t1            text        NOT NULL,
    t2            text        NOT NULL,
    t3            text        NOT NULL,
    t4            text        NOT NULL,
    t5            text        NOT NULL,
    birth_year    smallint    CHECK (birth_year BETWEEN 1800 AND 2200),
    age_over_89   boolean     NOT NULL DEFAULT false,
    sex           text        CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    zip3          char(3)     CHECK (zip3 ~ '^[0-9]{{3}}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (token_key_id, t1, t2, t3, t4, t5),
    CHECK (birth_year IS NULL OR NOT age_over_89)
);

-- A tenant's patient (FHIR Patient, or the subject of native records), linked to a subject.
CREATE TABLE canonical.patients (
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    record_id     uuid        REFERENCES canonical.records (id),
    subject_id    uuid        REFERENCES canonical.subjects (id),
    deceased      boolean,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_subject ON canonical.patients (subject_id);

CREATE TABLE canonical.encounters ({_FACT_COMMON},
    class_code    text,
    period_start  timestamptz,
    period_end    timestamptz
);
CREATE TABLE canonical.conditions ({_FACT_COMMON},
    encounter_id        uuid REFERENCES canonical.encounters (id),
    clinical_status     text,
    verification_status text,
    onset_at            timestamptz,
    abatement_at        timestamptz,
    recorded_at         timestamptz
);
CREATE TABLE canonical.observations ({_FACT_COMMON},
    encounter_id      uuid REFERENCES canonical.encounters (id),
    category          text,
    effective_at      timestamptz,
    value_num         numeric,
    value_unit        text,
    value_code_system text,
    value_code        text,
    value_bool        boolean
);
CREATE TABLE canonical.immunizations ({_FACT_COMMON},
    encounter_id  uuid REFERENCES canonical.encounters (id),
    occurred_at   timestamptz
);
CREATE TABLE canonical.allergy_intolerances ({_FACT_COMMON},
    encounter_id        uuid REFERENCES canonical.encounters (id),
    clinical_status     text,
    verification_status text,
    category            text,
    criticality         text,
    recorded_at         timestamptz
);
CREATE TABLE canonical.procedures ({_FACT_COMMON},
    encounter_id    uuid REFERENCES canonical.encounters (id),
    performed_start timestamptz,
    performed_end   timestamptz
);
CREATE INDEX encounters_patient ON canonical.encounters (patient_id);
CREATE INDEX conditions_patient ON canonical.conditions (patient_id);
CREATE INDEX observations_patient ON canonical.observations (patient_id);
CREATE INDEX immunizations_patient ON canonical.immunizations (patient_id);
CREATE INDEX allergy_intolerances_patient ON canonical.allergy_intolerances (patient_id);
CREATE INDEX procedures_patient ON canonical.procedures (patient_id);
CREATE INDEX encounters_record ON canonical.encounters (record_id);
CREATE INDEX conditions_record ON canonical.conditions (record_id);
CREATE INDEX observations_record ON canonical.observations (record_id);
CREATE INDEX immunizations_record ON canonical.immunizations (record_id);
CREATE INDEX allergy_intolerances_record ON canonical.allergy_intolerances (record_id);
CREATE INDEX procedures_record ON canonical.procedures (record_id);

-- Inbox: one row per consumed event id, written in the transaction of its canonical rows.
CREATE TABLE normalizer.inbox (
    event_id      uuid        PRIMARY KEY,
    record_id     uuid        NOT NULL,
    topic         text        NOT NULL,
    kafka_partition integer,
    kafka_offset  bigint,
    processed_at  timestamptz NOT NULL DEFAULT now()
);

-- Outbox of record.normalized.v1, published by the worker's relay.
CREATE TABLE normalizer.outbox (
    event_id       uuid        PRIMARY KEY,
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    record_id      uuid        NOT NULL,
    topic          text        NOT NULL,
    payload        jsonb       NOT NULL,
    correlation_id text        NOT NULL,
    traceparent    text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON normalizer.outbox (seq) WHERE published_at IS NULL;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS normalizer.outbox, normalizer.inbox;
DROP TABLE IF EXISTS canonical.procedures, canonical.allergy_intolerances, canonical.immunizations,
    canonical.observations, canonical.conditions, canonical.encounters, canonical.patients,
    canonical.subjects, canonical.records;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
