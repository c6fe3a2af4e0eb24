"""Every FHIR R4 resource type is accepted (issue 22, point 1): unmodelled types one by one and in
bulk, Bundles of type transaction/batch/collection unpacked into one record per entry, and 422
with a JSON pointer for an unknown type or a structurally invalid resource of any type."""

from __future__ import annotations

from typing import Any

import orjson
from aiobotocore.session import get_session

from exchange.core.contracts import event_validator
from exchange_devtools.testdata import unmodelled_resources, us_core_resources

FHIR = "application/fhir+json"


async def test_resources_of_unmodelled_types_are_accepted_and_their_events_carry_the_type(
    client, auth, events, contract_validator
):
    ids = {}
    for resource in unmodelled_resources("p-single"):
        resp = await client.post("/v1/ingest", content=orjson.dumps(resource), headers=auth(FHIR))
        assert resp.status_code == 202, resp.text
        contract_validator("IngestAccepted", resp.json())
        assert resp.json()["record_type"] == resource["resourceType"]
        ids[resp.json()["record_id"]] = resource["resourceType"]
    found = await events.wait_for(set(ids))
    for rid, kind in ids.items():
        event_validator("record.ingested.v1").validate(found[rid][0].value)
        assert found[rid][0].value["record_type"] == kind and found[rid][0].value["source_format"] == "fhir"


async def test_bulk_ndjson_of_synthea_and_unmodelled_types_rejects_no_line(client, auth, synthea):
    lines = [synthea["Patient"][0], *(orjson.dumps(r) for r in unmodelled_resources("p-bulk")), synthea["Encounter"][0]]
    resp = await client.post("/v1/ingest/bulk", content=b"\n".join(lines), headers=auth("application/fhir+ndjson"))
    assert resp.status_code == 202, resp.text
    data = resp.json()
    assert data["rejected"] == 0 and data["accepted"] == len(lines)
    assert [r["record_type"] for r in data["results"]] == [
        "Patient", "MedicationAdministration", "Flag", "Basic", "Provenance", "Encounter"
    ]  # fmt: skip


def _bundle(kind: str, synthea: dict[str, list[bytes]], *extra: dict[str, Any]) -> dict[str, Any]:
    resources = [orjson.loads(synthea["Patient"][0]), orjson.loads(synthea["Encounter"][0])]
    resources += unmodelled_resources("p-bundle")[:2]
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": "x"}}
               for r in resources]  # fmt: skip
    return {"resourceType": "Bundle", "type": kind, "entry": [*entries, *extra]}


async def test_a_transaction_bundle_is_one_record_per_entry_stored_as_ndjson_lines(
    client, auth, synthea, s3, events, contract_validator
):
    bundle = _bundle("transaction", synthea)
    resp = await client.post("/v1/ingest", content=orjson.dumps(bundle), headers=auth(FHIR))
    assert resp.status_code == 202, resp.text
    data = resp.json()
    contract_validator("BundleAccepted", data)
    assert data["bundle_type"] == "transaction" and data["accepted"] == 4 and data["rejected"] == 0
    assert [(r["entry"], r["record_type"]) for r in data["results"]] == [
        (0, "Patient"), (1, "Encounter"), (2, "MedicationAdministration"), (3, "Flag")
    ]  # fmt: skip

    async with get_session().create_client("s3", **s3.client_kwargs()) as s3c:
        obj = await s3c.get_object(Bucket="exchange-raw-test", Key=data["object"]["key"])
        stored = (await obj["Body"].read()).splitlines()
        assert obj["ContentType"] == "application/fhir+ndjson"
    assert [orjson.loads(line) for line in stored] == [e["resource"] for e in bundle["entry"]]

    found = await events.wait_for({r["record_id"] for r in data["results"]})
    for result in data["results"]:
        event = found[result["record_id"]][0].value
        event_validator("record.ingested.v1").validate(event)
        assert event["line"] == result["entry"] + 1 and event["record_type"] == result["record_type"]
        assert event["object"]["content_type"] == "application/fhir+ndjson"


async def test_a_transaction_with_an_invalid_entry_is_refused_whole_with_pointers_into_the_bundle(
    client, auth, synthea, db
):
    before = await db.fetchval("SELECT count(*) FROM ingest.outbox")
    bad = {"resource": {"resourceType": "Device", "status": "switched-on"}, "request": {"method": "POST", "url": "D"}}
    resp = await client.post(
        "/v1/ingest", content=orjson.dumps(_bundle("transaction", synthea, bad)), headers=auth(FHIR)
    )
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["results"] == [
        {"entry": 4, "status": "rejected", "errors": [{"pointer": "/entry/4/resource/status", "reason": "enum"}]}
    ]
    assert await db.fetchval("SELECT count(*) FROM ingest.outbox") == before


async def test_a_batch_keeps_its_valid_entries_and_reports_the_others(client, auth, synthea, contract_validator):
    no_resource = {"request": {"method": "DELETE", "url": "Device/9"}}
    unknown = {"resource": {"resourceType": "Medicament"}}
    resp = await client.post(
        "/v1/ingest", content=orjson.dumps(_bundle("batch", synthea, no_resource, unknown)), headers=auth(FHIR)
    )
    assert resp.status_code == 202, resp.text
    data = resp.json()
    contract_validator("BundleAccepted", data)
    assert data["accepted"] == 4 and data["rejected"] == 2
    assert data["results"][4:] == [
        {"entry": 4, "status": "rejected", "errors": [{"pointer": "/entry/4/resource", "reason": "required"}]},
        {"entry": 5, "status": "rejected", "errors": [{"pointer": "/entry/5/resource/resourceType", "reason": "enum"}]},
    ]


async def test_a_document_bundle_stays_one_record(client, auth, synthea):
    bundle = {**_bundle("collection", synthea), "type": "document"}
    resp = await client.post("/v1/ingest", content=orjson.dumps(bundle), headers=auth(FHIR))
    assert resp.status_code == 202, resp.text
    assert resp.json()["record_type"] == "Bundle" and "record_id" in resp.json()


async def test_an_unknown_resource_type_is_422_at_its_pointer(client, auth):
    resp = await client.post("/v1/ingest", content=b'{"resourceType": "Medicament", "id": "x"}', headers=auth(FHIR))
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"pointer": "/resourceType", "reason": "enum"}]


async def test_a_structurally_invalid_resource_is_422_with_pointers_never_values(client, auth):
    secret = "Sumiko254-Medhurst46"
    (claim,) = (r for r in us_core_resources("p-bad", "e-bad") if r["resourceType"] == "Claim")
    claim = {**claim, "patient": secret, "priority": None, "nickname": secret}
    del claim["provider"]
    resp = await client.post("/v1/ingest", content=orjson.dumps(claim), headers=auth(FHIR))
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["errors"] == [
        {"pointer": "", "reason": "additionalProperties"},
        {"pointer": "/patient", "reason": "type"},
        {"pointer": "/priority", "reason": "type"},
        {"pointer": "/provider", "reason": "required"},
    ]
    assert secret not in resp.text
