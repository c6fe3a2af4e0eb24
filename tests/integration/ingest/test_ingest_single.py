"""POST /v1/ingest: native envelopes v1/v2 and FHIR R4 resources from Synthea, end to end:
202 body per contract, raw object in S3 with its SHA-256, one outbox + audit row, one event."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session

from exchange.core.contracts import event_validator

FHIR_TYPES = ["Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance", "Procedure"]


async def test_a_native_v1_record_is_accepted_stored_registered_and_announced(
    client, auth, samples, db, s3, events, contract_validator
):
    body = orjson.dumps(samples.native_v1())
    resp = await client.post("/v1/ingest", content=body, headers=auth(**{"X-Correlation-ID": "corr-single-1"}))
    assert resp.status_code == 202, resp.text
    assert resp.headers["x-correlation-id"] == "corr-single-1"
    data = resp.json()
    contract_validator("IngestAccepted", data)
    assert data["record_type"] == "patient" and data["schema_version"] == "v1"
    assert data["object"]["sha256"] == hashlib.sha256(body).hexdigest()

    async with get_session().create_client("s3", **s3.client_kwargs()) as s3c:
        obj = await s3c.get_object(Bucket="exchange-raw-test", Key=data["object"]["key"])
        assert await obj["Body"].read() == body

    outbox = await db.fetch("SELECT * FROM ingest.outbox WHERE record_id = $1::uuid", data["record_id"])
    audit = await db.fetch("SELECT * FROM ingest.audit WHERE record_id = $1::uuid", data["record_id"])
    assert len(outbox) == 1 and len(audit) == 1
    assert str(outbox[0]["event_id"]) == data["event_id"]
    assert audit[0]["actor"] == "client-acme" and audit[0]["action"] == "record.ingested"
    assert audit[0]["correlation_id"] == "corr-single-1" and audit[0]["tenant"] == "acme"

    found = await events.wait_for({data["record_id"]})
    event = found[data["record_id"]][0]
    event_validator("record.ingested.v1").validate(event.value)
    assert event.key == data["record_id"]
    assert event.headers["event_id"] == data["event_id"] == event.value["event_id"]
    assert event.headers["correlation_id"] == "corr-single-1"
    assert event.headers["traceparent"].startswith("00-") and len(event.headers["traceparent"]) == 55
    assert event.value["line"] is None and event.value["object"]["sha256"] == data["object"]["sha256"]
    # published verbatim: the bytes ingest built and stored, not a re-rendering by Postgres
    assert event.raw == outbox[0]["payload"].encode() and event.raw.startswith(b'{"event_id":"')


async def test_a_native_v2_record_is_accepted(client, auth, samples):
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v2()), headers=auth())
    assert resp.status_code == 202, resp.text
    assert resp.json()["schema_version"] == "v2"


async def test_an_incoming_traceparent_keeps_its_trace_id(client, auth, samples, events):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = auth(traceparent=f"00-{trace_id}-00f067aa0ba902b7-01")
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    rid = resp.json()["record_id"]
    event = (await events.wait_for({rid}))[rid][0]
    assert event.headers["traceparent"].split("-")[1] == trace_id


@pytest.mark.parametrize("resource_type", FHIR_TYPES)
async def test_each_synthea_resource_type_is_accepted_as_fhir_json(client, auth, synthea, resource_type):
    resp = await client.post("/v1/ingest", content=synthea[resource_type][0], headers=auth("application/fhir+json"))
    assert resp.status_code == 202, resp.text
    assert resp.json()["record_type"] == resource_type and resp.json()["schema_version"] == "fhir-r4"


async def test_a_collection_bundle_of_synthea_resources_is_one_record_per_entry(client, auth, synthea):
    entries: list[dict[str, Any]] = [{"resource": orjson.loads(synthea[t][0])} for t in FHIR_TYPES]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    resp = await client.post("/v1/ingest", content=orjson.dumps(bundle), headers=auth("application/fhir+json"))
    assert resp.status_code == 202, resp.text
    assert [r["record_type"] for r in resp.json()["results"]] == FHIR_TYPES


async def test_an_observation_is_accepted(client, auth):
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/123"},
        "valueQuantity": {"value": 170, "unit": "cm"},
    }
    resp = await client.post("/v1/ingest", content=orjson.dumps(observation), headers=auth("application/fhir+json"))
    assert resp.status_code == 202, resp.text
