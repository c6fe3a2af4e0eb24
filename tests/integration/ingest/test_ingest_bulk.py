"""POST /v1/ingest/bulk: the whole Synthea set as FHIR NDJSON, native NDJSON, per-line results."""

from __future__ import annotations

import hashlib

import orjson

from exchange.core.contracts import event_validator


async def test_the_synthea_set_is_one_object_and_one_record_and_event_per_line(
    client, auth, synthea, db, events, contract_validator
):
    lines = [line for name in sorted(synthea) for line in synthea[name]]
    body = b"\n".join(lines) + b"\n"
    resp = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/fhir+ndjson"))
    assert resp.status_code == 202, resp.text[:500]
    data = resp.json()
    contract_validator("BulkAccepted", data)
    assert data["accepted"] == len(lines) and data["rejected"] == 0
    assert data["object"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert [r["line"] for r in data["results"]] == list(range(1, len(lines) + 1))
    ids = {r["record_id"] for r in data["results"]}
    assert len(ids) == len(lines)

    rows = await db.fetchval("SELECT count(*) FROM ingest.outbox WHERE record_id = ANY($1::uuid[])", list(ids))
    audits = await db.fetchval("SELECT count(*) FROM ingest.audit WHERE record_id = ANY($1::uuid[])", list(ids))
    assert rows == audits == len(lines)

    found = await events.wait_for(ids, timeout=120)
    validator = event_validator("record.ingested.v1")
    by_line = {}
    for rid, evs in found.items():
        validator.validate(evs[0].value)
        by_line[evs[0].value["line"]] = rid
        assert evs[0].value["object"]["content_type"] == "application/fhir+ndjson"
    assert sorted(by_line) == list(range(1, len(lines) + 1))


async def test_invalid_lines_are_rejected_with_pointers_and_valid_ones_accepted(client, auth, samples, synthea):
    bad_schema = orjson.dumps({"schema_version": "v1", "record_type": "patient", "subject": {"name": "X"}})
    body = b"\n".join(
        [orjson.dumps(samples.native_v1()), b"{not json", b"", bad_schema, orjson.dumps(samples.native_v2())]
    )
    resp = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/x-ndjson"))
    assert resp.status_code == 202, resp.text
    data = resp.json()
    assert (data["accepted"], data["rejected"]) == (2, 2)
    results = {r["line"]: r for r in data["results"]}
    assert sorted(results) == [1, 2, 4, 5]  # blank line 3 is skipped, numbering counts it
    assert results[2] == {"line": 2, "status": "rejected", "errors": [{"pointer": "", "reason": "json"}]}
    pointers = {e["pointer"] for e in results[4]["errors"]}
    assert {"/subject/birth_date", "/data"} <= pointers
    assert results[1]["status"] == results[5]["status"] == "accepted"


async def test_a_bulk_body_with_no_valid_line_is_422_with_results_and_stores_nothing(client, auth, db):
    body = b'{"resourceType": "Nope"}\n{"resourceType": "Encounter"}\n'
    resp = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/fhir+ndjson"))
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert [r["status"] for r in problem["results"]] == ["rejected", "rejected"]
    assert problem["results"][0]["errors"] == [{"pointer": "/resourceType", "reason": "enum"}]


async def test_an_empty_bulk_body_is_400(client, auth):
    resp = await client.post("/v1/ingest/bulk", content=b"\n\n", headers=auth("application/x-ndjson"))
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"


def patient_of_size(size: int) -> bytes:
    """A valid FHIR Patient line of exactly `size` bytes (its family name pads it)."""
    empty = orjson.dumps({"resourceType": "Patient", "name": [{"family": ""}]})
    return orjson.dumps({"resourceType": "Patient", "name": [{"family": "a" * (size - len(empty))}]})


async def test_a_line_over_the_single_record_limit_is_rejected_too_large_and_never_becomes_an_event(
    client, auth, db, ingest_settings, contract_validator
):
    limit = ingest_settings.ingest_max_body_bytes
    body = b"\n".join([patient_of_size(limit), patient_of_size(limit + 1), patient_of_size(200)])
    resp = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/fhir+ndjson"))
    assert resp.status_code == 202, resp.text[:300]
    data = resp.json()
    contract_validator("BulkAccepted", data)
    results = {r["line"]: r for r in data["results"]}
    assert results[2] == {"line": 2, "status": "rejected", "errors": [{"pointer": "", "reason": "too-large"}]}
    assert results[1]["status"] == results[3]["status"] == "accepted"  # exactly the limit is fine
    assert (data["accepted"], data["rejected"]) == (2, 1)
    ids = [results[1]["record_id"], results[3]["record_id"]]
    assert await db.fetchval("SELECT count(*) FROM ingest.outbox WHERE record_id = ANY($1::uuid[])", ids) == 2


async def test_a_bulk_body_whose_only_line_is_too_large_is_422_with_its_result(client, auth, ingest_settings):
    body = patient_of_size(ingest_settings.ingest_max_body_bytes + 1)
    resp = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/fhir+ndjson"))
    assert resp.status_code == 422
    assert resp.json()["results"] == [
        {"line": 1, "status": "rejected", "errors": [{"pointer": "", "reason": "too-large"}]}
    ]
