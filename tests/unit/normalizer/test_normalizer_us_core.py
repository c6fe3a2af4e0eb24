"""The US Core / Synthea set → canonical rows (ADR 0015): codes, counts, amounts, years and
canonical ids kept; free text, source ids and full dates never."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from exchange.core.errors import PoisonError
from exchange.normalizer.deid import CanonicalIds
from exchange.normalizer.mapping import map_record
from exchange.normalizer.model import ENTITY_TABLES, FACT_TABLES
from exchange_devtools.testdata import FREE_TEXT, FULL_DATE, SOURCE_IDENTIFIER, us_core_resources

IDS = CanonicalIds(b"test-key", "acme")
P, E = IDS.of("Patient", "p1"), IDS.of("Encounter", "e1")
RESOURCES = {r["resourceType"]: r for r in us_core_resources("p1", "e1")}


def row_of(kind: str, resource: dict | None = None) -> dict:
    mapped = map_record(
        resource or RESOURCES[kind], source_format="fhir", ids=IDS, fallback_id="o:1", today=date(2026, 1, 1)
    )
    (row,) = mapped.rows
    assert not mapped.raw_only and mapped.persons == []
    return {"table": row.table, **row.values}


EXPECTED = {
    "MedicationRequest": {"table": "medication_requests", "code": "834060", "intent": "order", "medication_id": None,
                          "requester_id": IDS.of("Practitioner", "pr-p1"), "authored_year": 2020, "encounter_id": E},
    "DiagnosticReport": {"table": "diagnostic_reports", "code": "51990-0", "category": "LAB", "effective_year": 2020,
                         "issued_year": 2020, "result_ids": [IDS.of("Observation", "obs-p1")], "encounter_id": E},
    "DocumentReference": {"table": "document_references", "code": "34117-2", "category": "clinical-note",
                          "content_type": "text/plain", "date_year": 2020, "encounter_id": E},
    "CarePlan": {"table": "care_plans", "code": "734163000", "intent": "plan", "period_start_year": 2020,
                 "period_end_year": None, "encounter_id": E},
    "CareTeam": {"table": "care_teams", "code": "116154003", "status": "active", "period_start_year": 2020},
    "Goal": {"table": "goals", "code": "281004", "status": "active", "achievement_status": "in-progress",
             "start_year": 2020},
    "ImagingStudy": {"table": "imaging_studies", "code": "DX", "series_count": 1, "instance_count": 2,
                     "started_year": 2020, "encounter_id": E},
    "Device": {"table": "devices", "code": "72506001", "status": "active"},
    "Claim": {"table": "claims", "code": "professional", "use": "claim", "total_value": Decimal("129.5"),
              "currency": "USD", "created_year": 2020, "billable_start_year": 2020, "billable_end_year": 2020,
              "provider_id": IDS.of("Organization", "org-p1"), "payment_value": None,
              "item_codings": [{"system": "http://snomed.info/sct", "code": "185349003"}]},
    "ExplanationOfBenefit": {"table": "explanation_of_benefits", "total_value": Decimal("129.5"),
                             "payment_value": Decimal("103.6"), "outcome": "complete",
                             "claim_id": IDS.of("Claim", "claim-p1"), "provider_id": IDS.of("Organization", "org-p1")},
    "Organization": {"table": "organizations", "code": "prov", "active": True, "zip3": "000"},  # 036: restricted
    "Location": {"table": "locations", "code": "HOSP", "zip3": "017",
                 "organization_id": IDS.of("Organization", "org-p1")},
    "Practitioner": {"table": "practitioners", "code": "MD", "active": True},
    "PractitionerRole": {"table": "practitioner_roles", "code": "208D00000X", "active": True,
                         "practitioner_id": IDS.of("Practitioner", "pr-p1"),
                         "organization_id": IDS.of("Organization", "org-p1")},
    "Medication": {"table": "medications", "code": "834060", "form_code": "385055001"},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_each_us_core_type_maps_to_its_table_with_codes_years_and_canonical_ids(kind: str) -> None:
    row = row_of(kind)
    assert {k: row[k] for k in EXPECTED[kind]} == EXPECTED[kind]
    assert row["id"] == IDS.of(kind, RESOURCES[kind]["id"])
    if row["table"] in FACT_TABLES:
        assert row["patient_id"] == P
    else:
        assert row["table"] in ENTITY_TABLES and "patient_id" not in row


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_no_free_text_source_id_or_full_date_survives_mapping(kind: str) -> None:
    text = repr(row_of(kind))
    for secret in (FREE_TEXT, SOURCE_IDENTIFIER, FULL_DATE, "Bedford", "555-0100", "71.26", "p1", "1.2.840.9999"):
        assert secret not in text, (kind, secret)


def test_every_type_of_the_set_is_in_one_table_and_the_tables_are_all_covered() -> None:
    tables = {row_of(kind)["table"] for kind in RESOURCES}
    assert tables == set(FACT_TABLES[6:]) | set(ENTITY_TABLES)


def test_a_medication_reference_becomes_the_medications_canonical_id() -> None:
    request = {**RESOURCES["MedicationRequest"], "medicationReference": {"reference": "Medication/med-p1"}}
    del request["medicationCodeableConcept"]
    row = row_of("MedicationRequest", request)
    assert row["medication_id"] == IDS.of("Medication", "med-p1") and row["code"] is None


def test_counts_default_to_the_series_and_instances_listed_and_a_bad_count_is_unmappable() -> None:
    study = {k: v for k, v in RESOURCES["ImagingStudy"].items() if not k.startswith("numberOf")}
    row = row_of("ImagingStudy", study)
    assert (row["series_count"], row["instance_count"]) == (1, 2)
    with pytest.raises(PoisonError, match="/numberOfSeries"):
        row_of("ImagingStudy", {**study, "numberOfSeries": "one"})


def test_a_device_about_no_patient_is_kept_without_one() -> None:
    device = {k: v for k, v in RESOURCES["Device"].items() if k != "patient"}
    assert row_of("Device", device)["patient_id"] is None


@pytest.mark.parametrize("kind", [k for k, r in RESOURCES.items() if "subject" in r])
def test_a_resource_about_a_group_or_no_one_is_kept_about_no_patient(kind: str) -> None:
    about_group = {**RESOURCES[kind], "subject": {"reference": "Group/g1"}}
    assert row_of(kind, about_group)["patient_id"] is None
    about_no_one = {k: v for k, v in RESOURCES[kind].items() if k != "subject"}
    assert row_of(kind, about_no_one)["patient_id"] is None
    with pytest.raises(PoisonError, match="/patient"):
        row_of("Claim", {**RESOURCES["Claim"], "patient": {"reference": "Group/g1"}})  # a Claim's is a Patient
