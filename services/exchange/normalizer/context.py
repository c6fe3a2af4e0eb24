"""What mapping one FHIR record needs and shares across its resources' mappers (mapping.py,
uscore.py): canonical ids for the tenant, the Bundle's fullUrls, today, and the rows built so far.

Every reference is read into a canonical id (a keyed derivation of the target's type and source
id, ADR 0005), never kept as written.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from exchange.normalizer import deid
from exchange.normalizer.fhir import codings, first_code, reference, token, unmappable
from exchange.normalizer.model import Mapped, Row

TABLE_OF = {
    "Patient": "patients",
    "Encounter": "encounters",
    "Condition": "conditions",
    "Observation": "observations",
    "Immunization": "immunizations",
    "AllergyIntolerance": "allergy_intolerances",
    "Procedure": "procedures",
    "MedicationRequest": "medication_requests",
    "DiagnosticReport": "diagnostic_reports",
    "DocumentReference": "document_references",
    "CarePlan": "care_plans",
    "CareTeam": "care_teams",
    "Goal": "goals",
    "ImagingStudy": "imaging_studies",
    "Device": "devices",
    "Claim": "claims",
    "ExplanationOfBenefit": "explanation_of_benefits",
    "Organization": "organizations",
    "Location": "locations",
    "Practitioner": "practitioners",
    "PractitionerRole": "practitioner_roles",
    "Medication": "medications",
}
"""The canonical table of each modelled FHIR resource type."""


class FhirContext:
    """What mapping one FHIR record needs: ids for the tenant, the Bundle's fullUrls, the date."""

    def __init__(self, ids: deid.CanonicalIds, fallback_id: str, today: date) -> None:
        self.ids = ids
        self.fallback_id = fallback_id
        self.today = today
        self.bundle_urls: dict[str, tuple[str, str]] = {}
        self.mapped = Mapped(record_type="", canonical_version="fhir-r4")

    def own_id(self, resource: dict[str, Any], where: str) -> uuid.UUID:
        kind = resource["resourceType"]
        rid = resource.get("id")
        if rid is None:
            return self.ids.of(kind, f"{self.fallback_id}:{where}")
        if not isinstance(rid, str):
            raise unmappable(f"{where}/id", "not an id")
        return self.ids.of(kind, rid)

    def ref(
        self, resource: dict[str, Any], field: str, where: str, expected: str, *, required: bool = False
    ) -> uuid.UUID | None:
        """The canonical id of `resource[field]`, a reference to an `expected` resource (see `ref_to`)."""
        return self.ref_to(resource.get(field), f"{where}/{field}", expected, required=required)

    def ref_to(self, value: Any, where: str, expected: str, *, required: bool = False) -> uuid.UUID | None:
        """The canonical id of a reference to an `expected` resource (a placeholder row until it
        arrives); unmappable when it names another type, or names none and is `required`."""
        target = reference(value, where, self.bundle_urls, expected)
        if target is None:
            if required:
                raise unmappable(where, f"no resolvable {expected} reference")
            return None
        kind, rid = target
        if kind != expected:
            raise unmappable(where, f"references a {kind}, expected {expected}")
        canonical = self.ids.of(kind, rid)
        self.mapped.placeholders.append((TABLE_OF[kind], canonical))
        return canonical

    def ref_any(self, value: Any, where: str, expected: str) -> uuid.UUID | None:
        """The canonical id of a reference to any type (`expected` for a bare `urn:uuid:`), without a
        placeholder: the targets of these references may never arrive."""
        target = reference(value, where, self.bundle_urls, expected)
        return None if target is None else self.ids.of(*target)

    def fact(self, resource: dict[str, Any], where: str, code_field: str = "code") -> dict[str, Any]:
        """The columns every fact shares, its code read from the CodeableConcept `code_field`."""
        return self.coded(resource, where, codings(resource.get(code_field), f"{where}/{code_field}"))

    def coded(self, resource: dict[str, Any], where: str, pairs: list[dict[str, str]]) -> dict[str, Any]:
        """The columns every fact shares, coded by `pairs` (the first is its code)."""
        system, code = first_code(pairs)
        return {
            "id": self.own_id(resource, where),
            "status": token(resource.get("status"), f"{where}/status"),
            "code_system": system,
            "code": code,
            "codings": pairs,
        }

    def add(self, table: str, values: dict[str, Any]) -> None:
        self.mapped.rows.append(Row(table, values))


def items(resource: dict[str, Any], field: str, where: str) -> list[tuple[Any, str]]:
    """The elements of a list-valued element with their JSON pointers ([] when absent)."""
    value = resource.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise unmappable(f"{where}/{field}", "not a list")
    return [(v, f"{where}/{field}/{i}") for i, v in enumerate(value)]


def first(resource: dict[str, Any], field: str, where: str) -> tuple[Any, str]:
    """The first element of a list-valued element and its pointer ((None, pointer) when empty)."""
    found = items(resource, field, where)
    return found[0] if found else (None, f"{where}/{field}/0")
