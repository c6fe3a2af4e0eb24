"""FHIR R4 and native records → canonical rows: codes kept, PII and free text never."""

from __future__ import annotations

import json
from datetime import date

import pytest

from exchange.core.errors import PoisonError
from exchange.normalizer.deid import CanonicalIds
from exchange.normalizer.mapping import bind_subjects, map_record
from exchange.normalizer.model import NATIVE_PATIENT, TokenSet
from exchange_devtools.testdata import SYNTHEA_DIR as DATA

TODAY = date(2026, 1, 1)
IDS = CanonicalIds(b"test-key", "acme")
TOKENS = TokenSet("k1", ("a" * 44, "b" * 44, "c" * 44, "d" * 44, "e" * 44))


def first(resource_type: str) -> dict:
    with (DATA / f"{resource_type}.ndjson").open() as f:
        return json.loads(f.readline())


def fhir(resource, fallback="object:x:1"):
    return map_record(resource, source_format="fhir", ids=IDS, fallback_id=fallback, today=TODAY)


def all_strings(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(all_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(all_strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


def test_a_synthea_patient_gives_a_person_to_tokenize_and_only_safe_harbor_demographics():
    patient = first("Patient")
    mapped = fhir(patient)
    (link,) = mapped.persons
    assert link.patient_id == IDS.of("Patient", patient["id"])
    assert link.person.last_name == patient["name"][0]["family"]
    assert link.person.ssn and link.person.birth_date == patient["birthDate"]
    assert "redacted" in repr(link.person) and patient["name"][0]["family"] not in repr(link.person)
    assert link.demographics.sex == patient["gender"]
    assert link.demographics.zip3 is None or len(link.demographics.zip3) == 3
    (row,) = mapped.rows
    assert row.table == "patients" and set(row.values) == {"id", "subject_id", "deceased"}


def test_an_encounter_keeps_codes_and_years_and_resolves_its_patient():
    encounter = first("Encounter")
    mapped = fhir(encounter)
    (row,) = mapped.rows
    values = row.values
    assert row.table == "encounters"
    assert values["id"] == IDS.of("Encounter", encounter["id"])
    patient_ref = encounter["subject"]["reference"].split("/")[1]
    assert values["patient_id"] == IDS.of("Patient", patient_ref)
    assert ("patients", values["patient_id"]) in mapped.placeholders
    assert values["code"] == encounter["type"][0]["coding"][0]["code"]
    assert values["code_system"] == "http://snomed.info/sct"
    assert values["class_code"] == "AMB" and values["status"] == "finished"
    # Safe Harbor: the year of each date only (ADR 0014)
    assert values["period_start_year"] == int(encounter["period"]["start"][:4])
    assert values["period_end_year"] == int(encounter["period"]["end"][:4])
    assert not any(isinstance(v, date) for v in values.values())
    # display texts (which here carry a person's name) are gone
    assert encounter["subject"]["display"] not in all_strings(values)
    assert not any("display" in c for c in values["codings"])


@pytest.mark.parametrize("resource_type", ["Condition", "Immunization", "AllergyIntolerance", "Procedure"])
def test_every_synthea_resource_type_maps_with_its_encounter_and_patient(resource_type):
    resource = first(resource_type)
    mapped = fhir(resource)
    (row,) = mapped.rows
    assert row.values["patient_id"] is not None
    assert row.values["code"]
    if "encounter" in resource:
        assert row.values["encounter_id"] == IDS.of("Encounter", resource["encounter"]["reference"].split("/")[1])


def test_every_line_of_the_synthea_sample_maps():
    for path in DATA.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            assert fhir(json.loads(line)).rows


def test_an_observation_keeps_value_and_unit_but_not_free_text():
    obs = {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}],
                 "text": "Height of Jane Doe"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-01-02T03:04:05Z",
        "valueQuantity": {"value": 170.2, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
        "note": [{"text": "patient Jane Doe, 555-1234"}],
    }  # fmt: skip
    (row,) = fhir(obs).rows
    assert (row.values["code"], str(row.values["value_num"]), row.values["value_unit"]) == ("8302-2", "170.2", "cm")
    assert row.values["category"] == "vital-signs"
    assert not any("Jane" in s or "555" in s for s in all_strings(row.values))


def test_dates_keep_their_year_as_written_and_a_units_free_text_is_dropped():
    obs = {
        "resourceType": "Observation", "id": "o2", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]}, "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2019-12-31T23:30:00-05:00", "valueQuantity": {"value": 3, "unit": "Jane Doe units"},
    }  # fmt: skip
    (row,) = fhir(obs).rows
    assert row.values["effective_year"] == 2019  # 2020 in UTC: the year is the one the source wrote
    assert row.values["value_unit"] is None and "effective_at" not in row.values
    native = {**NATIVE, "data": {**NATIVE["data"], "effective": "2023-07-08"}}
    (fact,) = map_record(native, source_format="native", ids=IDS, fallback_id="object:n:1", today=TODAY).rows
    assert fact.values["effective_year"] == 2023


def test_an_age_over_89_in_an_observation_is_aggregated_to_90():
    obs = {
        "resourceType": "Observation", "id": "o3", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "30525-0"}]}, "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 97, "system": "http://unitsofmeasure.org", "code": "a"},
    }  # fmt: skip
    (row,) = fhir(obs).rows
    assert (row.values["value_num"], row.values["value_unit"]) == (90, "a")
    native = {**NATIVE, "data": {"code": {"system": "http://loinc.org", "code": "21612-7"}, "value": 93, "unit": "a"}}
    (fact,) = map_record(native, source_format="native", ids=IDS, fallback_id="object:n:1", today=TODAY).rows
    assert (fact.values["value_num"], fact.values["value_unit"]) == (90, "a")


def test_a_bundle_resolves_urn_uuid_references_between_its_entries():
    bundle = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient", "id": "aaaa", "gender": "male"}},
            {"fullUrl": "urn:uuid:bbbb", "resource": {
                "resourceType": "Encounter", "id": "bbbb", "status": "finished", "class": {"code": "AMB"},
                "subject": {"reference": "urn:uuid:aaaa"}}},
            {"resource": {"resourceType": "Condition", "subject": {"reference": "urn:uuid:aaaa"},
                          "encounter": {"reference": "urn:uuid:bbbb"},
                          "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}},
        ],
    }  # fmt: skip
    mapped = fhir(bundle, fallback="object:abc:0")
    patients, encounters, conditions = mapped.rows
    assert encounters.values["patient_id"] == patients.values["id"] == IDS.of("Patient", "aaaa")
    assert conditions.values["encounter_id"] == encounters.values["id"]
    assert conditions.values["id"] == IDS.of("Condition", "object:abc:0:/entry/2/resource")


@pytest.mark.parametrize(
    ("resource", "pointer"),
    [
        ({"resourceType": None}, "/resourceType"),
        ({"resourceType": "Condition", "subject": {"reference": "Patient?identifier=x|1"}}, "/subject"),
        ({"resourceType": "Condition", "subject": {"reference": "Group/g1"}}, "/subject"),
        ({"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p"},
          "performedDateTime": "yesterday"}, "/performedDateTime"),
        ({"resourceType": "Encounter", "status": "finished", "class": {"code": "A\nB"},
          "subject": {"reference": "Patient/p"}}, "/class/code"),
    ],
)  # fmt: skip
def test_unmappable_records_are_poison_naming_the_element_never_the_value(resource, pointer):
    with pytest.raises(PoisonError) as caught:
        fhir(resource)
    assert caught.value.error_class == "unmappable"
    assert pointer in str(caught.value)
    assert "yesterday" not in str(caught.value)


def test_a_type_not_modelled_is_raw_only_with_its_type_and_patient_never_poison():
    flag = {"resourceType": "Flag", "id": "f1", "status": "active", "subject": {"reference": "Patient/p1"},
            "identifier": [{"value": "SN-Sumiko254"}], "code": {"text": "free text"}}  # fmt: skip
    mapped = fhir(flag)
    assert mapped.raw_only and mapped.record_type == "Flag" and mapped.persons == []
    [row] = mapped.rows
    assert row.table == "raw_resources"
    assert row.values == {
        "id": IDS.of("Flag", "f1"),
        "resource_type": "Flag",
        "patient_id": IDS.of("Patient", "p1"),
    }
    assert mapped.placeholders == [("patients", IDS.of("Patient", "p1"))]
    assert mapped.entity_counts() == {}  # record.normalized.v1 lists modelled tables only
    basic = fhir({"resourceType": "Basic", "patient": {"reference": "Group/g"}, "subject": 7})
    assert basic.rows[0].values["patient_id"] is None and basic.rows[0].values["resource_type"] == "Basic"


def test_a_bundle_maps_its_modelled_entries_and_keeps_the_others_raw_only():
    bundle = {"resourceType": "Bundle", "type": "document", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": {"resourceType": "Provenance", "id": "v1", "target": [{"reference": "Patient/p1"}]}},
    ]}  # fmt: skip
    mapped = fhir(bundle)
    assert [r.table for r in mapped.rows] == ["patients", "raw_resources"] and not mapped.raw_only
    assert mapped.entity_counts() == {"patients": 1}
    response = {"resourceType": "Bundle", "type": "batch-response", "entry": [{"response": {"status": "201"}}]}
    assert fhir(response).rows == []  # an entry without a resource maps to nothing, and is not poison


NATIVE = {
    "schema_version": "v1",
    "record_type": "observation",
    "source": {"system": "ehr-a", "record_id": "obs-9"},
    "occurred_at": "2024-03-04T05:06:07Z",
    "subject": {"name": "Ada Lovelace", "birth_date": "1990-12-10", "sex": "female", "postal_code": "89301"},
    "data": {"code": {"system": "http://loinc.org", "code": "718-7"}, "value": 13.5, "unit": "g/dL",
             "encounter": "enc-1", "comment": "Ada feels fine"},
}  # fmt: skip


def test_a_native_v1_record_maps_after_upcast_and_links_to_the_subjects_patient():
    mapped = map_record(NATIVE, source_format="native", ids=IDS, fallback_id="object:n:1", today=TODAY)
    assert mapped.canonical_version == "v2"
    (link,) = mapped.persons
    assert (link.person.first_name, link.person.last_name, link.person.postal_code) == ("Ada", "Lovelace", "89301")
    assert link.demographics.zip3 == "000" and link.demographics.birth_year == 1990
    (row,) = mapped.rows
    assert row.values["patient_id"] == NATIVE_PATIENT
    assert row.values["encounter_id"] == IDS.of("Encounter", "native:ehr-a|enc-1")
    assert "Ada feels fine" not in all_strings(row.values)
    bind_subjects(mapped, [TOKENS], IDS, "object:n:1")
    subject, observation, patient = mapped.rows
    assert subject.table == "subjects" and subject.values["zip3"] == "000"
    assert patient.table == "patients" and not patient.upsert and patient.values["subject_id"] == subject.values["id"]
    assert observation.values["patient_id"] == patient.values["id"]


def test_blank_tokens_make_no_subject():
    mapped = map_record(NATIVE, source_format="native", ids=IDS, fallback_id="object:n:1", today=TODAY)
    bind_subjects(mapped, [TokenSet("k1", ("0" * 64,) * 5)], IDS, "object:n:1")
    assert [r.table for r in mapped.rows] == ["observations", "patients"]
    assert mapped.rows[1].values["subject_id"] is None


def test_a_native_record_without_a_code_is_unmappable():
    record = {**NATIVE, "data": {"value": 1}}
    with pytest.raises(PoisonError, match="/data/code"):
        map_record(record, source_format="native", ids=IDS, fallback_id="x", today=TODAY)
