"""Limits and errors: 413, 415, 400, 422 with pointers (never values), problem+json everywhere,
X-Correlation-ID accepted or generated; no PII canary in logs, events, error bodies or rows."""

from __future__ import annotations

import uuid

import orjson
import pytest

CANARY_NAME = "Quetzalcoatl Canaryfield"
CANARY_SSN = "987-65-4329"
CANARY_BIRTH = "1911-11-11"
CANARIES = [CANARY_NAME, "Quetzalcoatl", "Canaryfield", CANARY_SSN, "987654329", CANARY_BIRTH]


async def test_a_body_over_the_limit_is_413(client, auth):
    big = b'{"schema_version": "v1", "pad": "' + b"x" * (1_048_576 + 10) + b'"}'
    resp = await client.post("/v1/ingest", content=big, headers=auth())
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"


async def test_a_streamed_body_over_the_limit_is_413(client, auth):
    async def chunks():
        for _ in range(20):
            yield b"x" * 65_536

    resp = await client.post("/v1/ingest", content=chunks(), headers=auth())
    assert resp.status_code == 413


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/ingest", "text/plain"),
        ("/v1/ingest", "application/x-ndjson"),
        ("/v1/ingest/bulk", "application/json"),
        ("/v1/ingest", ""),
    ],
)
async def test_a_wrong_content_type_is_415(client, auth, path, content_type):
    resp = await client.post(path, content=b"{}", headers=auth(content_type))
    assert resp.status_code == 415
    assert resp.headers["content-type"] == "application/problem+json"


async def test_a_body_that_is_not_json_is_400(client, auth):
    resp = await client.post("/v1/ingest", content=b"\xff\xfe{", headers=auth())
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"


async def test_a_repeated_key_is_400_naming_neither_key_nor_value(client, auth):
    twice = b'{"resourceType": "Bundle", "type": "collection", "resourceType": "Patient"}'
    resp = await client.post("/v1/ingest", content=twice, headers=auth("application/fhir+json"))
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["detail"] == "an object in the body repeats a key"
    bulk = await client.post(
        "/v1/ingest/bulk", content=b'{"resourceType": "Patient"}\n' + twice, headers=auth("application/fhir+ndjson")
    )
    assert bulk.status_code == 202
    assert bulk.json()["results"][1] == {
        "line": 2,
        "status": "rejected",
        "errors": [{"pointer": "", "reason": "duplicate-key"}],
    }


async def test_an_integer_element_beyond_32_bits_is_422_at_its_pointer(client, auth):
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "steps"}, "valueInteger": 2**40}
    resp = await client.post("/v1/ingest", content=orjson.dumps(observation), headers=auth("application/fhir+json"))
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"pointer": "/valueInteger", "reason": "maximum"}]


async def test_schema_violations_are_422_naming_pointers_never_values(client, auth, samples):
    record = samples.native_v1(ssn="not-an-" + CANARY_SSN, birth_date=CANARY_NAME)
    record["record_type"] = CANARY_NAME
    resp = await client.post("/v1/ingest", content=orjson.dumps(record), headers=auth())
    assert resp.status_code == 422
    problem = resp.json()
    assert {e["pointer"] for e in problem["errors"]} == {"/record_type", "/subject/ssn", "/subject/birth_date"}
    assert all(set(e) == {"pointer", "reason"} for e in problem["errors"])
    for canary in CANARIES:
        assert canary not in resp.text


async def test_an_unknown_schema_version_is_422_at_its_pointer(client, auth, samples):
    record = samples.native_v1()
    record["schema_version"] = "v9"
    resp = await client.post("/v1/ingest", content=orjson.dumps(record), headers=auth())
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"pointer": "/schema_version", "reason": "enum"}]


async def test_a_correlation_id_is_returned_or_generated(client, auth, samples):
    given = await client.post(
        "/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth(**{"X-Correlation-ID": "abc-123"})
    )
    assert given.headers["x-correlation-id"] == "abc-123"
    made = await client.post("/v1/ingest", content=b"{", headers=auth())
    assert len(made.headers["x-correlation-id"]) >= 16
    assert made.json()["correlation_id"] == made.headers["x-correlation-id"]
    evil = await client.post("/v1/ingest", content=b"{", headers=auth(**{"X-Correlation-ID": "a\tb" * 100}))
    assert evil.headers["x-correlation-id"] != "a\tb" * 100


async def test_unknown_routes_and_methods_are_problem_json(client, auth):
    assert (await client.get("/v1/ingest")).headers["content-type"] == "application/problem+json"
    assert (await client.post("/v1/nothing", headers=auth())).headers["content-type"] == "application/problem+json"


async def test_no_pii_canary_reaches_logs_events_errors_or_rows(
    client, auth, samples, synthea, captured_logs, events, relay, db
):
    native = samples.native_v1(name=CANARY_NAME, ssn=CANARY_SSN, birth_date=CANARY_BIRTH)
    patient = orjson.loads(synthea["Patient"][0])
    patient["name"] = [{"family": "Canaryfield", "given": ["Quetzalcoatl"]}]
    patient["birthDate"] = CANARY_BIRTH
    patient["identifier"] = [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": CANARY_SSN}]
    bad_patient = {**patient, "gender": CANARY_NAME}
    cid = uuid.uuid4().hex
    ok1 = await client.post("/v1/ingest", content=orjson.dumps(native), headers=auth(**{"X-Correlation-ID": cid}))
    ok2 = await client.post("/v1/ingest", content=orjson.dumps(patient), headers=auth("application/fhir+json"))
    bulk = b"\n".join([orjson.dumps(native), orjson.dumps(bad_patient), orjson.dumps(patient)])
    ok3 = await client.post("/v1/ingest/bulk", content=bulk, headers=auth("application/fhir+ndjson"))
    bad = await client.post("/v1/ingest", content=orjson.dumps(bad_patient), headers=auth("application/fhir+json"))
    assert (ok1.status_code, ok2.status_code, ok3.status_code, bad.status_code) == (202, 202, 202, 422)
    ids = {ok1.json()["record_id"], ok2.json()["record_id"]} | {
        r["record_id"] for r in ok3.json()["results"] if r["status"] == "accepted"
    }
    found = await events.wait_for(ids)
    haystacks = {
        "logs": captured_logs.text(),
        "relay log": relay.log(),
        "events": "\n".join(ev.raw.decode() + repr(ev.headers) for evs in found.values() for ev in evs),
        "error bodies": bad.text + ok3.text,
        "outbox+audit rows": repr(
            await db.fetch(
                "SELECT o.*, a.* FROM ingest.outbox o JOIN ingest.audit a USING (record_id)"
                " WHERE o.record_id = ANY($1::uuid[])",
                list(ids),
            )
        ),
    }
    assert captured_logs.lines, "structlog output was not captured"
    for where, text in haystacks.items():
        for canary in CANARIES:
            assert canary not in text, f"PII canary found in {where}"
