"""Poison → DLQ (headers, metric), `exchange dlq replay` after a fix; `exchange replay` twice →
identical canonical state; `exchange verify` both ways."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from exchange.core.kafka import header_map
from exchange_devtools.engines.base import free_port

from .conftest import Stack, caught_up, cli, synthea_lines, wait_for

CANARY_NATIVE = {
    "schema_version": "v2",
    "record_type": "observation",
    "subject": {"given_names": ["Quentin"], "family_name": "Poisoncanary", "birth_date": "1970-01-01"},
    "data": {"value": 1, "note": "Quentin Poisoncanary"},  # no code: unmappable
}


async def dlq_messages(stack: Stack, expected: int) -> list:
    consumer = AIOKafkaConsumer(stack.dlq, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list = []
    try:
        async with asyncio.timeout(60):
            while len(got) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_poison_goes_to_the_dlq_and_dlq_replay_after_a_fix_normalizes_it(stack: Stack) -> None:
    good = await stack.ingest_ndjson(synthea_lines("Patient", 2))
    # 1. checksum mismatch: the raw object is corrupted after ingest (fixed later by restoring it)
    patient_line = synthea_lines("Patient")[2]
    key, digest = await stack.put_raw(patient_line, "application/fhir+json")
    corrupt = stack.event(key, digest, len(patient_line), "application/fhir+json", "Patient")
    async with stack.s3() as s3:
        await s3.put_object(Bucket=stack.bucket, Key=key, Body=patient_line + b" ")
    # 2. schema-invalid event, 3. not JSON at all, 4. an unmappable native record
    invalid = {**stack.event(key, digest, 1, "application/fhir+json", "Patient"), "tenant": ""}
    garbage = stack.event(key, digest, 1, "application/fhir+json", "Patient")
    native = await stack.ingest_ndjson([orjson.dumps(CANARY_NATIVE)], content_type="application/x-ndjson")
    poison = [corrupt, invalid, garbage, *native]
    raw_values = [orjson.dumps(e) for e in good] + [orjson.dumps(corrupt), orjson.dumps(invalid), b"{not json",
                                                     orjson.dumps(native[0])]  # fmt: skip
    await stack.publish(good + poison, raw=raw_values)
    metrics_port = free_port()
    stack.start_worker(NORMALIZER_METRICS_PORT=str(metrics_port), HOST="127.0.0.1")

    async def settled() -> bool:
        return await stack.count("normalizer.inbox") == len(good) and await caught_up(stack)

    await wait_for(settled, timeout=60, what="good events normalized, poison committed")
    messages = await dlq_messages(stack, len(poison))
    by_class = {}
    for m in messages:
        headers = header_map(m.headers)
        assert headers["dlq.original.topic"] == stack.topic
        assert headers["dlq.original.partition"].isdigit() and headers["dlq.original.offset"].isdigit()
        assert headers["dlq.attempts"] == "1"
        assert "event_id" in headers and "traceparent" in headers  # the original headers are kept
        assert "Poisoncanary" not in headers["dlq.error.message"] and "Quentin" not in headers["dlq.error.message"]
        by_class[headers["dlq.error.class"]] = by_class.get(headers["dlq.error.class"], 0) + 1
    assert by_class == {"checksum-mismatch": 1, "schema-invalid": 2, "unmappable": 1}
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert 'normalizer_dlq_total{error_class="checksum-mismatch"} 1.0' in text
    assert 'normalizer_dlq_total{error_class="schema-invalid"} 2.0' in text
    assert "Poisoncanary" not in stack.log_text()

    # the fix: the raw object is restored; then `exchange dlq replay`
    async with stack.s3() as s3:
        await s3.put_object(Bucket=stack.bucket, Key=key, Body=patient_line, ContentType="application/fhir+json")
    dry = await asyncio.to_thread(cli, stack, "dlq", "replay", "--dry-run")
    assert dry.exit_code == 0 and "would replay 4" in dry.output
    result = await asyncio.to_thread(cli, stack, "dlq", "replay")
    assert result.exit_code == 0, result.output
    assert "replayed 4" in result.output

    async def fixed() -> bool:
        return await stack.count("normalizer.inbox") == len(good) + 1

    await wait_for(fixed, timeout=60, what="the repaired record normalized")
    again = await dlq_messages(stack, len(poison) + 3)  # the still-broken ones are back, attempt 2
    retried = [header_map(m.headers) for m in again[len(poison) :]]
    assert sorted(h["dlq.error.class"] for h in retried) == ["schema-invalid", "schema-invalid", "unmappable"]
    assert {h["dlq.attempts"] for h in retried} == {"2"}
    assert len(await stack.fetch("SELECT * FROM canonical.patients WHERE record_id IS NOT NULL")) == 3
    nothing = await asyncio.to_thread(cli, stack, "dlq", "replay", "--dry-run")
    assert "would replay 3" in nothing.output  # only the new dead letters remain


async def test_replaying_the_raw_zone_twice_leaves_the_canonical_state_identical(stack: Stack) -> None:
    events = []
    for resource_type in ("Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance"):
        events += await stack.ingest_ndjson(synthea_lines(resource_type, 120))
    native = {"schema_version": "v1", "record_type": "patient", "subject": {"name": "Ada Lovelace",
              "birth_date": "1990-12-10", "sex": "female", "postal_code": "02139"}, "data": {}}  # fmt: skip
    events += await stack.ingest_ndjson([orjson.dumps(native)], content_type="application/x-ndjson")
    await stack.publish(events)
    stack.start_worker()

    async def done(n: int) -> bool:
        return await stack.count("normalizer.inbox") == n and await caught_up(stack)

    await wait_for(lambda: done(len(events)), timeout=90, what="the first pass")
    before = await stack.canonical_state()
    assert before["records"] and before["subjects"]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    first = await asyncio.to_thread(cli, stack, "replay", "--tenant", "acme", "--since", since, "--until", until, "-q")
    assert first.exit_code == 0, first.output
    assert f"replayed {len(events)} event(s)" in first.output
    await wait_for(lambda: done(2 * len(events)), timeout=90, what="the first replay")
    after_first = await stack.canonical_state()

    second = await asyncio.to_thread(cli, stack, "replay", "--tenant", "acme", "--since", since, "--until", until, "-q")
    assert second.exit_code == 0, second.output
    await wait_for(lambda: caught_up(stack), timeout=90, what="the second replay")
    assert await stack.count("normalizer.inbox") == 2 * len(events)  # same event ids: all duplicates
    after_second = await stack.canonical_state()
    assert before == after_first == after_second

    # nothing replayed outside the window (an hour before the uploads; older than the replay window is refused)
    empty = await asyncio.to_thread(
        cli, stack, "replay", "--tenant", "acme", "--since", (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "--until", since, "-q",
    )  # fmt: skip
    assert "replayed 0 event(s) from 0 raw object(s)" in empty.output

    # verify: all good, then an unnormalized raw object and a vanished one are reported (exit 1)
    ok = await asyncio.to_thread(cli, stack, "verify")
    assert ok.exit_code == 0, ok.output
    orphan_key, _ = await stack.put_raw(b'{"resourceType": "Patient"}', "application/fhir+json")
    gone_key = (await stack.fetch("SELECT object_key FROM canonical.records ORDER BY id LIMIT 1"))[0]["object_key"]
    async with stack.s3() as s3:
        await s3.delete_object(Bucket=stack.bucket, Key=gone_key)
    bad = await asyncio.to_thread(cli, stack, "verify", "--tenant", "acme")
    assert bad.exit_code == 1
    assert orphan_key in bad.output and gone_key in bad.output
    assert "raw objects without canonical records: 1" in bad.output
