"""Idempotency-Key: required, tenant-scoped, replay (errors too), 409 `idempotency-key-reused` on
another body, 409 `idempotency-key-in-flight` with Retry-After in flight (ADR 0011), expiry, and
100 concurrent requests with one key making exactly one record."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import orjson
from asgi_lifespan import LifespanManager

from exchange.ingest.app import create_app
from exchange.ingest.idempotency import IdempotencyStore, fingerprint
from exchange.ingest.settings import IngestSettings


async def test_a_missing_or_malformed_key_is_400(client, auth, samples):
    body = orjson.dumps(samples.native_v1())
    headers = auth()
    del headers["Idempotency-Key"]
    assert (await client.post("/v1/ingest", content=body, headers=headers)).status_code == 400
    for bad in ["x" * 256, "", "   ", "caf\u00e9".encode()]:
        resp = await client.post("/v1/ingest", content=body, headers=auth(key="k") | {"Idempotency-Key": bad})
        assert resp.status_code == 400, bad
        assert resp.headers["content-type"] == "application/problem+json"


async def test_two_idempotency_key_headers_are_400_and_claim_neither(client, auth, samples, db):
    headers = [(k, v) for k, v in auth().items() if k != "Idempotency-Key"]
    headers += [("Idempotency-Key", "twice-a"), ("Idempotency-Key", "twice-b")]
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert "sent once" in resp.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM ingest.idempotency_keys WHERE key LIKE 'twice-%'") == 0


async def test_a_255_character_key_and_a_structured_field_string_are_accepted(client, auth, samples):
    body = orjson.dumps(samples.native_v1())
    assert (await client.post("/v1/ingest", content=body, headers=auth(key="k" * 255))).status_code == 202
    quoted = f'"{uuid.uuid4()}"'
    assert (await client.post("/v1/ingest", content=body, headers=auth(key=quoted))).status_code == 202


async def test_the_same_key_and_body_replays_the_stored_response(client, auth, samples, db):
    body = orjson.dumps(samples.native_v1())
    headers = auth()
    first = await client.post("/v1/ingest", content=body, headers=headers)
    second = await client.post("/v1/ingest", content=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.content == first.content
    count = await db.fetchval(
        "SELECT count(*) FROM ingest.outbox WHERE record_id = $1::uuid", first.json()["record_id"]
    )
    assert count == 1


async def test_a_stored_error_is_replayed_too(client, auth):
    headers = auth()
    body = orjson.dumps({"schema_version": "v1", "record_type": "patient"})
    first = await client.post("/v1/ingest", content=body, headers=headers)
    second = await client.post("/v1/ingest", content=body, headers=headers)
    assert first.status_code == second.status_code == 422
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    invalid = auth()
    a = await client.post("/v1/ingest", content=b"{nope", headers=invalid)
    b = await client.post("/v1/ingest", content=b"{nope", headers=invalid)
    assert a.status_code == b.status_code == 400 and b.headers["idempotent-replayed"] == "true"


async def test_the_same_key_with_a_different_body_is_409_reused_without_retry_after(client, auth, samples):
    headers = auth()
    assert (
        await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    ).status_code == 202
    resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "idempotency-key-reused"
    assert "retry-after" not in resp.headers  # retrying cannot help: the client needs a new key
    assert "idempotent-replayed" not in resp.headers
    bulk = await client.post(
        "/v1/ingest/bulk",
        content=orjson.dumps(samples.native_v1()),
        headers=auth("application/x-ndjson", key=headers["Idempotency-Key"]),
    )
    assert bulk.status_code == 409  # another endpoint is another request
    assert bulk.json()["code"] == "idempotency-key-reused" and "retry-after" not in bulk.headers


async def test_a_key_whose_first_request_was_refused_as_invalid_is_reused_by_a_valid_body(client, auth, samples):
    # The stored 422 belongs to the first body; a corrected body under the same key is another
    # request: 409 reused, never the first body's 422 replayed.
    headers = auth()
    bad = await client.post("/v1/ingest", content=b'{"schema_version": "v1"}', headers=headers)
    assert bad.status_code == 422 and "code" not in bad.json()
    good = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert good.status_code == 409 and good.json()["code"] == "idempotency-key-reused"


async def test_the_same_key_while_the_first_is_in_flight_is_409_with_retry_after(client, auth, samples, db):
    body = orjson.dumps(samples.native_v1())
    headers = auth()
    store = IdempotencyStore(db, ttl_seconds=60, lock_seconds=60)
    claim = await store.claim("acme", headers["Idempotency-Key"], fingerprint("/v1/ingest", "application/json", body))
    resp = await client.post("/v1/ingest", content=body, headers=headers)
    assert resp.status_code == 409
    assert resp.headers["retry-after"].isdigit()
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "idempotency-key-in-flight"
    await store.release(claim)
    assert (await client.post("/v1/ingest", content=body, headers=headers)).status_code == 202


async def test_keys_are_scoped_by_tenant(client, auth, samples, jwks_server):
    body = orjson.dumps(samples.native_v1())
    key = uuid.uuid4().hex
    a = await client.post("/v1/ingest", content=body, headers=auth(key=key))
    other = jwks_server.token(tenant="globex", sub="client-globex")
    b = await client.post("/v1/ingest", content=body, headers=auth(key=key) | {"Authorization": f"Bearer {other}"})
    assert a.status_code == b.status_code == 202
    assert "idempotent-replayed" not in b.headers
    assert a.json()["record_id"] != b.json()["record_id"]


async def test_an_expired_key_starts_afresh(client, auth, samples, db):
    headers = auth()
    first = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    await db.execute(
        "UPDATE ingest.idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE tenant = 'acme' AND key = $1",
        headers["Idempotency-Key"],
    )
    second = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    assert first.status_code == second.status_code == 202
    assert "idempotent-replayed" not in second.headers
    assert first.json()["record_id"] != second.json()["record_id"]


async def test_the_ttl_is_configurable(client, auth, samples, db):
    headers = auth()
    await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)
    ttl = await db.fetchval(
        "SELECT extract(epoch FROM expires_at - created_at) FROM ingest.idempotency_keys WHERE key = $1",
        headers["Idempotency-Key"],
    )
    assert abs(float(ttl) - 86_400) < 5


async def test_100_concurrent_requests_with_one_key_make_exactly_one_record(client, auth, samples, db):
    body = orjson.dumps(samples.native_v1())
    headers = auth()
    responses = await asyncio.gather(*(client.post("/v1/ingest", content=body, headers=headers) for _ in range(100)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, statuses
    fresh = [r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers]
    assert len(fresh) == 1
    record_ids = {r.json()["record_id"] for r in responses if r.status_code == 202}
    assert len(record_ids) == 1
    rows = await db.fetchval(
        "SELECT count(*) FROM ingest.outbox o JOIN ingest.audit a USING (record_id) WHERE o.record_id = $1::uuid",
        record_ids.pop(),
    )
    assert rows == 1
    in_flight = [r for r in responses if r.status_code == 409]
    assert all(r.headers.get("retry-after") and r.json()["code"] == "idempotency-key-in-flight" for r in in_flight)


async def _key_state(db, key):
    return await db.fetchval("SELECT state FROM ingest.idempotency_keys WHERE tenant = 'acme' AND key = $1", key)


async def test_expired_keys_are_purged_and_live_or_locked_ones_kept(client, auth, samples, db, ingest_app):
    keys = []
    for _ in range(4):
        headers = auth()
        assert (await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=headers)).is_success
        keys.append(headers["Idempotency-Key"])
    expired, expired_too, locked, live = keys
    await db.execute(
        "UPDATE ingest.idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE tenant = 'acme' AND key = ANY($1::text[])",
        [expired, expired_too, locked],
    )
    # an expired row whose request still holds its lock is left to that request
    await db.execute(
        "UPDATE ingest.idempotency_keys SET state = 'in_flight', locked_until = now() + interval '1 minute'"
        " WHERE tenant = 'acme' AND key = $1",
        locked,
    )
    store: IdempotencyStore = ingest_app.state.ingest.keys
    assert await store.purge_expired(batch=1) >= 2  # batch=1: the loop goes on until none is left
    assert await _key_state(db, expired) is None
    assert await _key_state(db, expired_too) is None
    assert await _key_state(db, locked) == "in_flight"
    assert await _key_state(db, live) == "completed"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM ingest.idempotency_keys"
            " WHERE expires_at <= now() AND (state = 'completed' OR locked_until <= now())"
        )
        == 0
    )
    # a purged key is simply new again
    again = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth(key=expired))
    assert again.status_code == 202 and "idempotent-replayed" not in again.headers


async def test_the_ingest_process_purges_on_its_own_and_counts_it(ingest_env, db):
    """Expired keys and audit rows past their retention (ADR 0013), with the tables' gauges."""
    key = f"purge-{uuid.uuid4()}"
    await db.execute(
        "INSERT INTO ingest.idempotency_keys (tenant, key, fingerprint, owner, state, locked_until, expires_at)"
        " VALUES ('acme', $1, '\\x00', $2, 'completed', now() - interval '1 hour', now() - interval '1 second')",
        key,
        uuid.uuid4(),
    )
    old_action, kept_action = f"old-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    # Ids grow with `at` in production, and the prune walks ids from the oldest: backdated rows
    # get ids below every row the session's other tests wrote.
    low = await db.fetchval("SELECT coalesce(min(id), 0) FROM ingest.audit")
    for offset, (action, age) in enumerate(((old_action, "400 days"), (kept_action, "300 days"))):
        await db.execute(
            "INSERT INTO ingest.audit (id, at, tenant, actor, action, record_id, correlation_id)"
            f" OVERRIDING SYSTEM VALUE VALUES ($2, now() - interval '{age}', 'acme', 'a', $1, gen_random_uuid(), 'c')",
            action,
            low - 2 + offset,
        )
    env = {**ingest_env, "INGEST_IDEMPOTENCY_PURGE_SECONDS": "0.2", "DB_POOL_MAX": "2",
           "INGEST_AUDIT_RETENTION_SECONDS": str(365 * 86_400)}  # fmt: skip
    app = create_app(IngestSettings(**env))
    audit = "SELECT count(*) FROM ingest.audit WHERE action = $1"
    async with LifespanManager(app, startup_timeout=30):
        registry = app.state.registry

        def counted() -> bool:
            purged = registry.get_sample_value("ingest_idempotency_keys_purged_total") or 0
            deleted = registry.get_sample_value("exchange_retention_deleted_rows_total", {"table": "ingest.audit"})
            return purged >= 1 and (deleted or 0) >= 1

        for _ in range(300):  # a loaded machine: up to 30 s for a 0.2 s purge period
            if await _key_state(db, key) is None and await db.fetchval(audit, old_action) == 0 and counted():
                break
            await asyncio.sleep(0.1)
        assert await _key_state(db, key) is None
        assert await db.fetchval(audit, old_action) == 0 and await db.fetchval(audit, kept_action) == 1
        assert counted()
        for table in ("ingest.audit", "ingest.idempotency_keys"):
            assert registry.get_sample_value("exchange_table_rows", {"table": table}) is not None
        oldest = registry.get_sample_value("exchange_table_oldest_row_age_seconds", {"table": "ingest.audit"})
        assert oldest is not None and 0 < oldest <= 365 * 86_400


async def test_concurrent_requests_share_claim_and_commit_statements_with_per_request_outcomes(
    client, auth, samples, db, ingest_app
):
    """Group commit: 60 concurrent requests (fresh keys, a replay, a reused key with another body)
    take fewer statements than requests, and each still gets its own outcome and rows."""
    ctx = ingest_app.state.ingest
    done_body = orjson.dumps(samples.native_v1())
    done_headers = auth()
    first = await client.post("/v1/ingest", content=done_body, headers=done_headers)
    assert first.status_code == 202
    claims_before, commits_before = ctx.keys.claims.batches, ctx.store.commits.batches
    fresh = [(orjson.dumps(samples.native_v1()), auth()) for _ in range(58)]
    requests = [
        *fresh,
        (done_body, done_headers),  # replay
        (orjson.dumps(samples.native_v1()), done_headers),  # same key, another body
    ]
    responses = await asyncio.gather(*(client.post("/v1/ingest", content=b, headers=h) for b, h in requests))
    assert [r.status_code for r in responses[:58]] == [202] * 58
    assert responses[58].status_code == 202 and responses[58].headers["idempotent-replayed"] == "true"
    assert responses[58].json()["record_id"] == first.json()["record_id"]
    assert responses[59].status_code == 409 and responses[59].json()["code"] == "idempotency-key-reused"
    assert ctx.keys.claims.batches - claims_before < 60
    assert ctx.store.commits.batches - commits_before < 58
    ids = [r.json()["record_id"] for r in responses[:58]]
    assert len(set(ids)) == 58
    rows = await db.fetch(
        "SELECT o.record_id, o.correlation_id = a.correlation_id AS same_cid, k.state, k.response IS NOT NULL AS kept"
        "  FROM ingest.outbox o JOIN ingest.audit a USING (record_id)"
        "  JOIN ingest.idempotency_keys k ON k.key = ANY($2::text[])"
        "   AND convert_from(k.response, 'UTF8')::jsonb->>'record_id' = o.record_id::text"
        " WHERE o.record_id = ANY($1::uuid[])",
        ids,
        [h["Idempotency-Key"] for _, h in fresh],
    )
    assert len(rows) == 58
    assert all(r["same_cid"] and r["state"] == "completed" and r["kept"] for r in rows)
