"""Synthea NDJSON → raw objects + record.ingested.v1 → the worker → canonical rows; no PII anywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from exchange.core.contracts import event_validator
from exchange.normalizer.context import TABLE_OF
from exchange_devtools.testdata import (
    FREE_TEXT,
    SOURCE_IDENTIFIER,
    synthea_dates_and_ids,
    synthea_identity,
    us_core_resources,
)

from .conftest import TENANT, Stack, synthea_lines, wait_for

TYPES = ("Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance", "Procedure")
TABLES = {"Encounter": "encounters", "Condition": "conditions", "Immunization": "immunizations",
          "AllergyIntolerance": "allergy_intolerances", "Procedure": "procedures"}  # fmt: skip
CANARY = {
    "schema_version": "v1",
    "record_type": "condition",
    "source": {"system": "canary-ehr", "record_id": "canary-1"},
    "subject": {"name": "Zebulon Quuxcanary", "birth_date": "1961-07-04", "sex": "male", "ssn": "078-05-1120",
                "postal_code": "94110"},
    "data": {"code": {"system": "http://snomed.info/sct", "code": "44054006"},
             "note": "Zebulon Quuxcanary lives at 1 Canary Street, phone 415-555-0199"},
}  # fmt: skip
CANARIES = ("Zebulon", "Quuxcanary", "1961-07-04", "078-05-1120", "078051120", "'94110'", "Canary Street", "555-0199",
            FREE_TEXT, SOURCE_IDENTIFIER, "2020-03-04", "Bedford", "555-0100")  # fmt: skip


def canonical_text(state: dict[str, list[tuple[Any, ...]]]) -> str:
    """Every value as `str()` shows it (a date as 2019-08-23, not as a repr of its parts)."""
    return "\n".join(" | ".join(str(v) for v in row) for rows in state.values() for row in rows)


async def read_topic(stack: Stack, topic: str, expected: int, timeout: float = 60) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    got: list = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_synthea_ndjson_is_normalized_end_to_end_without_pii(stack: Stack) -> None:
    events, counts = [], {}
    for resource_type in TYPES:
        lines = synthea_lines(resource_type)
        counts[resource_type] = len(lines)
        events += await stack.ingest_ndjson(lines)
    events += await stack.ingest_ndjson([orjson.dumps(CANARY)], content_type="application/x-ndjson")
    # the sample has no Observation file: one vital sign for its first patient, as a single resource
    patient_id = orjson.loads(synthea_lines("Patient")[0])["id"]
    observation = orjson.dumps({
        "resourceType": "Observation", "id": "obs-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
        "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": "2020-01-02T03:04:05Z",
        "valueQuantity": {"value": 170.2, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
    })  # fmt: skip
    key, digest = await stack.put_raw(observation, "application/fhir+json")
    events.append(stack.event(key, digest, len(observation), "application/fhir+json", "Observation"))
    # nor any of the US Core set beyond the first seven: one of each, hand-made, about that patient
    encounter_id = next(
        e["id"] for e in map(orjson.loads, synthea_lines("Encounter")) if patient_id in e["subject"]["reference"]
    )
    us_core = us_core_resources(patient_id, encounter_id)
    events += await stack.ingest_ndjson([orjson.dumps(r) for r in us_core])
    await stack.publish(events)
    stack.start_worker()

    async def all_done() -> bool:
        return await stack.count("normalizer.inbox") == len(events)

    await wait_for(all_done, timeout=120, what="every event in the inbox")

    # every line is one canonical record and one fact of its type
    assert await stack.count("canonical.records") == len(events)
    for resource_type, table in TABLES.items():
        canary = 1 if resource_type == "Condition" else 0  # the native canary is a condition
        assert await stack.count(f"canonical.{table}") == counts[resource_type] + canary, table
    # every reference resolves to a patient that arrived, linked to a subject
    orphans = await stack.fetch(
        "SELECT count(*) AS n FROM canonical.encounters e JOIN canonical.patients p ON p.id = e.patient_id"
        " WHERE p.record_id IS NULL OR p.subject_id IS NULL"
    )
    assert orphans[0]["n"] == 0
    patients = await stack.fetch("SELECT * FROM canonical.patients WHERE record_id IS NOT NULL")
    assert len(patients) == counts["Patient"]
    subjects = await stack.fetch("SELECT * FROM canonical.subjects")
    assert counts["Patient"] <= len(subjects) <= counts["Patient"] + 1
    assert all(s["zip3"] is None or len(s["zip3"]) == 3 for s in subjects)
    assert any(s["age_over_89"] and s["birth_year"] is None for s in subjects)  # a Synthea patient born 1927
    (obs,) = await stack.fetch(
        "SELECT o.code, o.value_num, o.value_unit, p.subject_id FROM canonical.observations o"
        " JOIN canonical.patients p ON p.id = o.patient_id"
    )
    assert (obs["code"], float(obs["value_num"]), obs["value_unit"]) == ("8302-2", 170.2, "cm")
    assert obs["subject_id"] is not None
    linked = await stack.fetch(
        "SELECT count(*) AS n FROM canonical.procedures f JOIN canonical.encounters e ON e.id = f.encounter_id"
        " WHERE e.record_id IS NOT NULL"
    )
    assert linked[0]["n"] == counts["Procedure"]
    # the US Core set is normalized, not raw-only, its references rewritten to canonical ids
    for resource in us_core:
        assert await stack.count(f"canonical.{TABLE_OF[resource['resourceType']]}") == 1, resource["resourceType"]
    assert await stack.count("canonical.raw_resources") == 0
    (claim,) = await stack.fetch(
        "SELECT c.total_value, e.claim_id = c.id AS linked, p.record_id IS NOT NULL AS arrived FROM canonical.claims c"
        " JOIN canonical.explanation_of_benefits e ON e.patient_id = c.patient_id"
        " JOIN canonical.patients p ON p.id = c.patient_id"
    )
    assert (float(claim["total_value"]), claim["linked"], claim["arrived"]) == (129.5, True, True)

    # record.normalized.v1: one per event, on contract
    normalized = await read_topic(stack, stack.out_topic, len(events))
    validator = event_validator("record.normalized.v1")
    for message in normalized:
        validator.validate(orjson.loads(message.value))
    assert {orjson.loads(m.value)["tenant"] for m in normalized} == {TENANT}

    # PII canaries: not in the canonical schema, not on the output topic, not in the worker's log
    state = canonical_text(await stack.canonical_state()) + repr(await stack.fetch("SELECT * FROM normalizer.outbox"))
    topic_text = b"\n".join(m.value + b"".join(v for _, v in m.headers) for m in normalized).decode()
    log_text = stack.log_text()
    assert "batch_normalized" in log_text
    for canary in (*CANARIES, *synthea_identity()):
        assert canary not in state, "PII in canonical tables"
        assert canary not in topic_text, "PII on record.normalized.v1"
        assert canary not in log_text, "PII in the worker log"
    # Safe Harbor (ADR 0014): no full date and no source id of the sample outside the raw zone
    dates_and_ids = synthea_dates_and_ids()
    assert len(dates_and_ids) > 1000
    for value in dates_and_ids:
        assert value not in state, "a full date or a source id in canonical tables"
        assert value not in topic_text and value not in log_text
