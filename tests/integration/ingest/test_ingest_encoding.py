"""`Content-Encoding: gzip` on both ingest operations: the decoded body is what is validated,
fingerprinted, stored and hashed; other codings are 415, broken gzip is 400 and a body that
inflates past the limit or holds too many gzip members is 413, none of them claiming the Idempotency-Key."""

from __future__ import annotations

import gzip
import hashlib
import uuid

import orjson
from aiobotocore.session import get_session

from exchange.core.http import GZIP_MAX_MEMBERS


async def _stored(s3, key: str) -> bytes:
    async with get_session().create_client("s3", **s3.client_kwargs()) as s3c:
        obj = await s3c.get_object(Bucket="exchange-raw-test", Key=key)
        return bytes(await obj["Body"].read())


async def _claimed(db, key: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM ingest.idempotency_keys WHERE key = $1", key))


async def test_a_gzip_record_is_validated_stored_and_hashed_decoded(client, auth, samples, s3, contract_validator):
    body = orjson.dumps(samples.native_v1())
    resp = await client.post("/v1/ingest", content=gzip.compress(body), headers=auth(**{"Content-Encoding": "gzip"}))
    assert resp.status_code == 202, resp.text
    data = resp.json()
    contract_validator("IngestAccepted", data)
    assert data["object"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert data["object"]["size"] == len(body)
    assert await _stored(s3, data["object"]["key"]) == body


async def test_a_gzip_bulk_body_is_one_decoded_object_with_per_line_results(client, auth, synthea, s3, db):
    lines = synthea["Patient"] + synthea["Condition"][:200]
    body = b"\n".join(lines) + b"\n"
    headers = auth("application/fhir+ndjson", **{"Content-Encoding": "gzip"})
    resp = await client.post("/v1/ingest/bulk", content=gzip.compress(body), headers=headers)
    assert resp.status_code == 202, resp.text[:500]
    data = resp.json()
    assert data["accepted"] == len(lines) and data["rejected"] == 0
    assert data["object"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert await _stored(s3, data["object"]["key"]) == body
    ids = [r["record_id"] for r in data["results"]]
    assert await db.fetchval("SELECT count(*) FROM ingest.outbox WHERE record_id = ANY($1::uuid[])", ids) == len(lines)


async def test_a_retry_compressed_differently_is_the_same_request(client, auth, samples):
    body = orjson.dumps(samples.native_v1())
    key = uuid.uuid4().hex
    first = await client.post("/v1/ingest", content=body, headers=auth(key=key))
    compressed = gzip.compress(body, compresslevel=9)
    again = await client.post("/v1/ingest", content=compressed, headers=auth(key=key, **{"Content-Encoding": "gzip"}))
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["record_id"] == first.json()["record_id"]


async def test_another_coding_is_415_naming_the_accepted_ones_and_claims_nothing(client, auth, samples, db):
    body = orjson.dumps(samples.native_v1())
    key = uuid.uuid4().hex
    resp = await client.post("/v1/ingest", content=body, headers=auth(key=key, **{"Content-Encoding": "br"}))
    assert resp.status_code == 415
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["accept-encoding"] == "gzip, identity"
    assert await _claimed(db, key) == 0
    later = await client.post("/v1/ingest", content=body, headers=auth(key=key))
    assert later.status_code == 202 and "idempotent-replayed" not in later.headers


async def test_a_body_that_is_not_gzip_is_400_and_claims_nothing(client, auth, samples, db):
    body = orjson.dumps(samples.native_v1(name="Quetzalcoatl Canaryfield"))
    key = uuid.uuid4().hex
    for broken in (body, gzip.compress(body)[:-8]):
        resp = await client.post("/v1/ingest", content=broken, headers=auth(key=key, **{"Content-Encoding": "gzip"}))
        assert resp.status_code == 400
        assert resp.headers["content-type"] == "application/problem+json"
        assert "gzip" in resp.json()["detail"] and "Canaryfield" not in resp.text
    assert await _claimed(db, key) == 0


async def test_a_body_that_inflates_past_the_limit_is_413_and_claims_nothing(client, auth, db, ingest_settings):
    limit = ingest_settings.ingest_max_body_bytes
    bomb = gzip.compress(b'{"pad": "' + b"0" * limit + b'"}')
    assert len(bomb) < limit // 100
    key = uuid.uuid4().hex
    resp = await client.post("/v1/ingest", content=bomb, headers=auth(key=key, **{"Content-Encoding": "gzip"}))
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert await _claimed(db, key) == 0


async def test_a_gzip_body_of_more_members_than_the_limit_is_413_and_claims_nothing(client, auth, db, synthea):
    line = synthea["Patient"][0] + b"\n"
    members = gzip.compress(line) * (GZIP_MAX_MEMBERS + 1)  # one member per line: valid, just too many
    key = uuid.uuid4().hex
    headers = auth("application/fhir+ndjson", key=key, **{"Content-Encoding": "gzip"})
    resp = await client.post("/v1/ingest/bulk", content=members, headers=headers)
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert f"more than {GZIP_MAX_MEMBERS} gzip members" in resp.json()["detail"]
    assert await _claimed(db, key) == 0


async def test_a_large_bulk_answer_is_gzip_for_a_client_that_asks_and_plain_otherwise(client, auth, synthea):
    lines = synthea["Encounter"][:1000]
    body = b"\n".join(lines) + b"\n"
    key = uuid.uuid4().hex
    ndjson = "application/fhir+ndjson"
    gzip_ok = auth(ndjson, key=key, **{"Accept-Encoding": "gzip"})
    asks = await client.post("/v1/ingest/bulk", content=body, headers=gzip_ok)
    assert asks.status_code == 202, asks.text[:300]
    assert asks.headers["content-encoding"] == "gzip" and asks.headers["vary"] == "Accept-Encoding"
    assert int(asks.headers["content-length"]) < len(asks.content) // 5  # httpx inflated it
    results = asks.json()["results"]
    assert len(results) == len(lines)
    plain = auth(ndjson, key=key, **{"Accept-Encoding": "identity"})
    replay = await client.post("/v1/ingest/bulk", content=body, headers=plain)
    assert replay.headers["idempotent-replayed"] == "true" and "content-encoding" not in replay.headers
    assert replay.json()["results"] == results
