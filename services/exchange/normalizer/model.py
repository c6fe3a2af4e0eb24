"""What mapping produces: canonical rows without PII, and the PII that only the tokenizer sees.

`Person` is the one type that holds PII. It lives in memory from the raw object to the tokenizer
call and is dropped after it; its `repr` shows nothing, so a stray log line or a traceback
cannot print it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

NATIVE_PATIENT = uuid.UUID(int=0)
"""Placeholder patient id of native records: bound to the subject's patient after tokenization."""

FACT_TABLES = (
    "encounters",
    "conditions",
    "observations",
    "immunizations",
    "allergy_intolerances",
    "procedures",
    "medication_requests",
    "diagnostic_reports",
    "document_references",
    "care_plans",
    "care_teams",
    "goals",
    "imaging_studies",
    "devices",
    "claims",
    "explanation_of_benefits",
)
"""Clinical fact tables, in write order (encounters first: the others reference them)."""

ENTITY_TABLES = ("organizations", "locations", "practitioners", "practitioner_roles", "medications")
"""Tables of modelled resources about no patient (referenced by canonical id, without a key)."""

RAW_ONLY_TABLE = "raw_resources"
"""Resources of types the canonical schema does not model: their type and patient only."""


@dataclass(frozen=True, slots=True)
class Person:
    """Identity attributes in the tokenizer's vocabulary (PII; never logged, never stored)."""

    first_name: str | None = None
    last_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    postal_code: str | None = None
    ssn: str | None = None

    def __repr__(self) -> str:
        return "Person(<redacted>)"

    def as_request(self, record_id: str) -> dict[str, Any]:
        return {
            "record_id": record_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "birth_date": self.birth_date,
            "sex": self.sex,
            "postal_code": self.postal_code,
            "ssn": self.ssn,
        }


@dataclass(frozen=True, slots=True)
class Demographics:
    """Safe Harbor demographics: birth year (or 90+), sex, 3-digit ZIP."""

    birth_year: int | None = None
    age_over_89: bool = False
    sex: str | None = None
    zip3: str | None = None


@dataclass(frozen=True, slots=True)
class TokenSet:
    """T1-T5 of one person under the tokenization key `key_id` (pseudonyms, not PII)."""

    key_id: str
    tokens: tuple[str, str, str, str, str]

    @property
    def blank(self) -> bool:
        return all(set(t) == {"0"} for t in self.tokens)


@dataclass(frozen=True, slots=True)
class PersonLink:
    """A patient whose subject comes from tokenizing `person`."""

    patient_id: uuid.UUID
    person: Person
    demographics: Demographics


@dataclass(slots=True)
class Row:
    """One canonical row (`tenant` and `record_id` are added by the writer)."""

    table: str
    values: dict[str, Any]
    upsert: bool = True
    """False: insert only when absent (a link that must not overwrite what the record itself says)."""


@dataclass(slots=True)
class Mapped:
    """The canonical form of one record."""

    record_type: str
    canonical_version: str
    persons: list[PersonLink] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    placeholders: list[tuple[str, uuid.UUID]] = field(default_factory=list)
    """Referenced entities (table, id) that must exist before the rows (filled when they arrive)."""

    def entity_counts(self) -> dict[str, int]:
        """Canonical rows by table, raw-only resources left out (record.normalized.v1 `entities`)."""
        counts: dict[str, int] = {}
        for row in self.rows:
            if row.table != RAW_ONLY_TABLE:
                counts[row.table] = counts.get(row.table, 0) + 1
        return counts

    @property
    def raw_only(self) -> bool:
        """The record holds only resources of types not modelled (outcome `raw-only`)."""
        return bool(self.rows) and all(row.table == RAW_ONLY_TABLE for row in self.rows)


@dataclass(slots=True)
class Outcome:
    """One event ready to write: its record's identity, its canonical rows, its outgoing event."""

    event_id: uuid.UUID
    record_id: uuid.UUID
    tenant: str
    topic: str
    partition: int | None
    offset: int | None
    record: dict[str, Any]  # canonical.records columns except id
    mapped: Mapped
    correlation_id: str
    traceparent: str
