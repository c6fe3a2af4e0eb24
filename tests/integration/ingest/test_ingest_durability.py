"""Durability against real engine failures: a relay SIGKILLed mid-stream loses no event, a row
committed late is still published, Kafka down does not stop ingest (which stays ready while the
relay is not), S3 down is 503 with nothing in Postgres, Postgres down is 503; /readyz says which
dependency is missing."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from prometheus_client import generate_latest

from exchange.core.contracts import event_validator

from .conftest import readyz_until


async def _backlog(db, ids):
    return await db.fetchval(
        "SELECT count(*) FROM ingest.outbox_pending JOIN ingest.outbox USING (event_id)"
        " WHERE record_id = ANY($1::uuid[])",
        list(ids),
    )


async def _until_accepted(client, auth, samples, timeout=30.0):
    """After an engine restart: retry (new key each time) until the service accepts again."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth())
        if resp.status_code == 202 or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(0.3)


async def test_a_relay_killed_mid_stream_and_restarted_loses_no_event(client, auth, samples, relay, events, db):
    body = b"\n".join(orjson.dumps(samples.native_v1()) for _ in range(3000))
    resp = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/x-ndjson"))
    assert resp.status_code == 202
    ids = {r["record_id"] for r in resp.json()["results"]}
    await asyncio.sleep(0.05)
    relay.kill()
    more = [
        await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth()) for _ in range(20)
    ]
    ids |= {r.json()["record_id"] for r in more}
    assert await _backlog(db, ids) > 0, "the relay was killed after it had published everything"
    relay.start()
    found = await events.wait_for(ids, timeout=90)
    assert set(found) == ids
    assert await _backlog(db, ids) == 0


async def test_a_row_committed_late_is_still_published(client, auth, samples, events, db):
    """A transaction that took its sequence number early but commits after later rows were
    published: a high-water-mark relay would skip it forever."""
    late_record, late_event = uuid.uuid4(), uuid.uuid4()
    payload = {
        "event_id": str(late_event), "event_type": "record.ingested.v1", "record_id": str(late_record),
        "tenant": "acme", "source_format": "native", "record_type": "patient", "schema_version": "v1",
        "object": {"bucket": "b", "key": "k", "sha256": "0" * 64, "size": 1, "content_type": "application/json"},
        "line": None, "received_at": "2026-01-01T00:00:00+00:00", "correlation_id": "late",
    }  # fmt: skip
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(
            "INSERT INTO ingest.outbox (event_id, record_id, tenant, topic, payload, correlation_id, traceparent) "
            "VALUES ($1, $2, 'acme', 'record.ingested.v1', $3, 'late', $4)",
            late_event, late_record, orjson.dumps(payload).decode(), "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        )  # fmt: skip
        resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth())
        await events.wait_for({resp.json()["record_id"]})
        await tx.commit()
    found = await events.wait_for({str(late_record)})
    assert found[str(late_record)][0].headers["event_id"] == str(late_event)


async def test_ingest_keeps_accepting_and_stays_ready_while_kafka_is_down_and_events_flow_when_it_returns(
    client, auth, samples, kafka, events, db, probed_relay
):
    relay_url, _ = probed_relay
    assert readyz_until(relay_url, 200).status_code == 200
    kafka.stop()
    try:
        responses = [
            await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth())
            for _ in range(10)
        ]
        assert {r.status_code for r in responses} == {202}
        ids = {r.json()["record_id"] for r in responses}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text  # the outbox holds the events: stay in the Service
        assert ready.json()["checks"] == {"postgres": "ok", "s3": "ok"}
        relay_ready = await asyncio.to_thread(readyz_until, relay_url, 503)
        assert relay_ready.status_code == 503  # the relay cannot do its job without Kafka
        assert relay_ready.json()["checks"]["kafka"] != "ok"
        assert relay_ready.json()["checks"]["postgres"] == "ok"
        await asyncio.sleep(1)
        assert await _backlog(db, ids) == len(ids)
    finally:
        kafka.start()
    assert (await asyncio.to_thread(readyz_until, relay_url, 200, 60)).status_code == 200
    found = await events.wait_for(ids, timeout=120)
    for evs in found.values():
        event_validator("record.ingested.v1").validate(evs[0].value)


async def test_s3_down_is_503_and_nothing_is_written_to_postgres(client, auth, samples, s3, db):
    before = await db.fetchval("SELECT (SELECT count(*) FROM ingest.outbox) + (SELECT count(*) FROM ingest.audit)")
    headers = auth()
    body = orjson.dumps(samples.native_v1())
    s3.stop()
    try:
        resp = await client.post("/v1/ingest", content=body, headers=headers)
        assert resp.status_code == 503
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.headers["retry-after"].isdigit()
        bulk = await client.post("/v1/ingest/bulk", content=body, headers=auth("application/x-ndjson"))
        assert bulk.status_code == 503
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["s3"] != "ok"
    finally:
        s3.start()
    after = await db.fetchval("SELECT (SELECT count(*) FROM ingest.outbox) + (SELECT count(*) FROM ingest.audit)")
    assert after == before
    keys = await db.fetchval("SELECT count(*) FROM ingest.idempotency_keys WHERE key = $1", headers["Idempotency-Key"])
    assert keys == 0
    retry = await client.post("/v1/ingest", content=body, headers=headers)  # the same key works once S3 is back
    assert retry.status_code == 202, retry.text


async def test_postgres_down_is_503_and_service_recovers(client, auth, samples, postgres):
    postgres.stop()
    try:
        resp = await client.post("/v1/ingest", content=orjson.dumps(samples.native_v1()), headers=auth())
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["postgres"] != "ok"
    finally:
        postgres.start()
    assert (await _until_accepted(client, auth, samples)).status_code == 202


async def test_readyz_and_metrics(client, auth, samples, ingest_app):
    await _until_accepted(client, auth, samples)
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgres": "ok", "s3": "ok"}
    assert (await client.get("/healthz")).status_code == 200
    await ingest_app.state.ingest.metrics.refresh_outbox(ingest_app.state.ingest.store.pool)
    assert (await client.get("/metrics")).status_code == 404  # ENV=test: on METRICS_PORT only
    text = generate_latest(ingest_app.state.registry).decode()
    for name in (
        "ingest_outbox_backlog",
        "ingest_outbox_oldest_unpublished_age_seconds",
        "ingest_relay_publish_errors_total",
        'ingest_db_batch_requests_count{statement="claim"}',
        'ingest_db_batch_requests_count{statement="commit"}',
        'http_requests_total{method="POST",route="/v1/ingest",status="202"}',
        "http_request_duration_seconds_bucket",
    ):
        assert name in text, name


async def test_completing_a_claim_on_a_filled_page_stays_on_the_page(db):
    """Completion (state, status, response) changes no indexed column, and each page keeps room
    for it: a HOT update, no new index entries."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO ingest.idempotency_keys (tenant, key, fingerprint, owner, state, locked_until, expires_at)"
            " SELECT 'hot-probe', 'k' || g, '\\x00', gen_random_uuid(), 'in_flight', now(), now() + interval '1 day'"
            " FROM generate_series(1, 300) AS g"
        )
        first = await conn.fetchval(
            "SELECT key FROM ingest.idempotency_keys WHERE tenant = 'hot-probe' ORDER BY ctid LIMIT 1"
        )
        hot_before = await conn.fetchval(
            "SELECT pg_stat_get_xact_tuples_hot_updated('ingest.idempotency_keys'::regclass)"
        )
        await conn.execute(
            "UPDATE ingest.idempotency_keys SET state = 'completed', status_code = 202, response = $1,"
            " media_type = 'application/json' WHERE tenant = 'hot-probe' AND key = $2",
            b"x" * 400, first,
        )  # fmt: skip
        hot_after = await conn.fetchval(
            "SELECT pg_stat_get_xact_tuples_hot_updated('ingest.idempotency_keys'::regclass)"
        )
        await conn.execute("DELETE FROM ingest.idempotency_keys WHERE tenant = 'hot-probe'")
    assert hot_after == hot_before + 1
