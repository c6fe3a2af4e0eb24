"""Operator commands behind `exchange dlq replay`, `exchange replay` and `exchange verify`.

- `dlq_replay`: re-publish dead-lettered events to their original topic (after a fix), with the
  original headers and the attempt count; the DLQ offsets are committed once they are re-sent.
- `replay`: re-emit `record.ingested.v1` from the raw objects in S3 (by upload time; one tenant or
  all, optionally only some record types; a dry run counts), with deterministic event and record
  ids derived from the object key and line, so replaying twice is a no-op (inbox) and a replay
  lands on the records the original events created. A window older than the replay window, which
  the inbox outlives (ADR 0013), is refused.
- `verify`: raw objects without canonical records, and canonical records whose raw object is gone;
  it also counts the resources kept raw-only (types the canonical schema does not model) by type,
  which are accounted for: each has its canonical record.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import TopicPartition

from exchange.core import fhir_r4
from exchange.core.contracts import event_validator
from exchange.core.db import create_pool
from exchange.core.errors import ExchangeError
from exchange.core.kafka import header_map, make_consumer, make_producer, traceparent
from exchange.core.storage import s3_client
from exchange.normalizer.events import H_ERROR_CLASS, H_TOPIC, INGESTED, derived_id, replay_headers
from exchange.normalizer.retention import check_replay_window, replay_window_start
from exchange.normalizer.settings import NormalizerSettings

NDJSON = frozenset({"application/x-ndjson", "application/fhir+ndjson"})
FHIR = frozenset({"application/fhir+json", "application/fhir+ndjson"})


@dataclass
class DlqReplayResult:
    replayed: int = 0
    by_error_class: Counter[str] = field(default_factory=Counter)


async def dlq_replay(
    settings: NormalizerSettings, *, dry_run: bool = False, limit: int | None = None
) -> DlqReplayResult:
    """Re-publish the DLQ (up to its end when the command starts) to each message's original topic."""
    result = DlqReplayResult()
    consumer = make_consumer(settings, group_id=f"{settings.normalizer_group}-dlq-replay")
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        partitions = [
            TopicPartition(settings.normalizer_dlq_topic, p)
            for p in sorted(await producer.partitions_for(settings.normalizer_dlq_topic))
        ]
        if not partitions:
            return result
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while pending and (limit is None or result.replayed < limit):
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            offsets: dict[TopicPartition, int] = {}
            sends = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp] or (limit is not None and result.replayed >= limit):
                        break
                    headers = header_map(record.headers)
                    result.by_error_class[headers.get(H_ERROR_CLASS, "unknown")] += 1
                    result.replayed += 1
                    offsets[tp] = record.offset + 1
                    if not dry_run:
                        target = headers.get(H_TOPIC) or settings.normalizer_topic
                        sends.append(
                            await producer.send(
                                target, value=record.value, key=record.key, headers=replay_headers(record.headers)
                            )
                        )
            await asyncio.gather(*sends)
            if offsets and not dry_run:
                await consumer.commit(offsets)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp] or (tp in offsets and offsets[tp] >= ends[tp]):
                    pending.discard(tp)
    finally:
        await producer.stop()
        await consumer.stop()
    return result


@dataclass
class ReplayResult:
    since: datetime
    until: datetime
    objects: int = 0
    events: int = 0
    skipped_lines: int = 0


async def list_raw(s3: Any, bucket: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item


def _tenant_of(key: str, raw_prefix: str) -> str:
    """`<raw_prefix>/<tenant>/sha256/…` → tenant (a tenant has no `/`: exchange.core.auth)."""
    return key[len(raw_prefix) + 1 :].split("/", 1)[0]


async def replay(
    settings: NormalizerSettings,
    tenant: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    record_types: frozenset[str] | None = None,
    dry_run: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_object: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Re-emit record.ingested.v1 for the raw objects uploaded in [since, until): of `tenant` (None:
    every tenant), only lines whose record type (FHIR `resourceType`, native `record_type`) is in
    `record_types` (None: all). `since` defaults to the start of the replay window, `until` to now.
    `dry_run` reads and counts, publishes nothing. Raises ReplayTooOld for a `since` before the
    replay window (the inbox would not recognise those events), ExchangeError for an empty range."""
    from exchange.normalizer.native import envelope_validator

    now = datetime.now(UTC)
    since = since or replay_window_start(settings, now)
    until = until or now
    if until <= since:
        raise ExchangeError("--until must be after --since")
    check_replay_window(settings, since, now)
    result = ReplayResult(since, until)
    run_id = uuid.uuid4().hex
    native_validator, event_check = envelope_validator(), event_validator(INGESTED)
    producer = None if dry_run else make_producer(settings)
    if producer is not None:
        await producer.start()
    try:
        async with s3_client(settings) as s3:
            prefix = f"{settings.raw_prefix}/{tenant}/" if tenant else f"{settings.raw_prefix}/"
            items = [
                i async for i in list_raw(s3, settings.s3_bucket_raw, prefix) if since <= i["LastModified"] < until
            ]
            items.sort(key=lambda i: (i["LastModified"], i["Key"]))
            if on_total:
                on_total(len(items))
            for item in items:
                owner = _tenant_of(item["Key"], settings.raw_prefix)
                response = await s3.get_object(Bucket=settings.s3_bucket_raw, Key=item["Key"])
                async with response["Body"] as body:
                    data: bytes = await body.read()
                content_type = (response.get("ContentType") or "application/json").split(";")[0].strip()
                digest = hashlib.sha256(data).hexdigest()
                lines: list[tuple[int | None, bytes]] = (
                    [(n, line) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
                    if content_type in NDJSON
                    else [(None, data)]
                )
                sends: list[Any] = []  # the broker acks of this object's events
                emitted = 0
                for line_no, raw in lines:
                    try:
                        document = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        result.skipped_lines += 1
                        continue
                    fhir = content_type in FHIR
                    if fhir_r4.errors(document, limit=1) if fhir else not native_validator.is_valid(document):
                        result.skipped_lines += 1  # ingest rejected this line: it never was a record
                        continue
                    record_type = document["resourceType"] if fhir else document["record_type"]
                    if record_types is not None and record_type not in record_types:
                        continue
                    slot = str(line_no or 0)
                    record_id = derived_id("replay-record", owner, item["Key"], slot)
                    event = {
                        "event_id": str(derived_id("replay-event", owner, item["Key"], slot)),
                        "event_type": INGESTED,
                        "record_id": str(record_id),
                        "tenant": owner,
                        "source_format": "fhir" if fhir else "native",
                        "record_type": record_type,
                        "schema_version": "fhir-r4" if fhir else document["schema_version"],
                        "object": {
                            "bucket": settings.s3_bucket_raw,
                            "key": item["Key"],
                            "sha256": digest,
                            "size": len(data),
                            "content_type": content_type,
                        },
                        "line": line_no,
                        "received_at": item["LastModified"].isoformat(),
                        "correlation_id": f"replay-{run_id}",
                    }
                    if not event_check.is_valid(event):
                        raise ExchangeError("replay built an event off contract (a bug)")
                    emitted += 1
                    if producer is None:
                        continue  # a dry run
                    sends.append(
                        await producer.send(
                            settings.normalizer_topic,
                            value=orjson.dumps(event),
                            key=str(record_id).encode(),
                            headers=[
                                ("event_id", event["event_id"].encode()),
                                ("correlation_id", event["correlation_id"].encode()),
                                ("traceparent", traceparent().encode()),
                                ("content-type", b"application/json"),
                            ],
                        )
                    )
                del data, lines
                await asyncio.gather(*sends)
                result.objects += 1
                result.events += emitted
                if on_object:
                    on_object(emitted)
    finally:
        if producer is not None:
            await producer.stop()
    return result


@dataclass
class VerifyReport:
    raw_objects: int = 0
    records: int = 0
    raw_without_records: list[str] = field(default_factory=list)
    records_without_raw: list[tuple[str, str]] = field(default_factory=list)
    raw_only: dict[str, int] = field(default_factory=dict)
    """Resources kept raw-only (not modelled), by FHIR resource type."""

    @property
    def ok(self) -> bool:
        return not self.raw_without_records and not self.records_without_raw


async def verify(settings: NormalizerSettings, tenant: str | None = None) -> VerifyReport:
    """Compare the raw zone with canonical.records (both ways)."""
    report = VerifyReport()
    prefix = f"{settings.raw_prefix}/{tenant}/" if tenant else f"{settings.raw_prefix}/"
    async with s3_client(settings) as s3:
        keys = {i["Key"] async for i in list_raw(s3, settings.s3_bucket_raw, prefix)}
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        rows = await pool.fetch(
            "SELECT id, object_key FROM canonical.records"
            " WHERE object_bucket = $1 AND ($2::text IS NULL OR tenant = $2)",
            settings.s3_bucket_raw,
            tenant,
        )
        raw_only = await pool.fetch(
            "SELECT resource_type, count(*) AS n FROM canonical.raw_resources"
            " WHERE ($1::text IS NULL OR tenant = $1) GROUP BY resource_type ORDER BY resource_type",
            tenant,
        )
    finally:
        await pool.close()
    normalized = {r["object_key"] for r in rows}
    report.raw_objects, report.records = len(keys), len(rows)
    report.raw_only = {r["resource_type"]: r["n"] for r in raw_only}
    report.raw_without_records = sorted(keys - normalized)
    report.records_without_raw = sorted((str(r["id"]), r["object_key"]) for r in rows if r["object_key"] not in keys)
    return report
