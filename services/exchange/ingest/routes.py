"""The ingest endpoints: POST /v1/ingest (one record) and POST /v1/ingest/bulk (NDJSON).

Order of checks: auth (401/403) → Idempotency-Key (400) → media type and content coding (415) →
size as sent, then decoded (413; a gzip body that is not whole gzip is 400) → claim the key
(replay, or 409 reused / in flight) → parse + validate (400/422, stored for replay) → S3 PUT (503 releases the
key) → one Postgres transaction → 202 (stored for replay).

A `Content-Encoding: gzip` body is inflated before anything else looks at it: the key's
fingerprint, the raw object and its SHA-256 are those of the decoded body, so a retry that is
compressed differently (or not at all) is the same request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from exchange.core import tracing
from exchange.core.auth import Principal, require_scope
from exchange.core.db import DB_ERRORS
from exchange.core.errors import PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from exchange.core.http import (
    PROBLEM_JSON,
    DirectRoute,
    compressed,
    content_coding,
    decoded_body,
    problem_response,
    read_body_limited,
)
from exchange.core.kafka import traceparent as new_traceparent
from exchange.core.logging import current_correlation_id, get_logger, new_correlation_id
from exchange.ingest.idempotency import HEADER, Claim, IdempotencyStore, StoredResponse, fingerprint, request_key
from exchange.ingest.metrics import IngestMetrics
from exchange.ingest.settings import IngestSettings
from exchange.ingest.store import NewRecord, RawObject, RecordStore, build_event, bulk_event_factory, uuid7_strings
from exchange.ingest.validation import (
    FHIR_VERSION,
    Classified,
    DuplicateKey,
    Entry,
    RecordInvalid,
    classify,
    classify_fhir,
    classify_native,
    parse_json,
    unpacked_entries,
)

log = get_logger(__name__)
writer = require_scope("ingest:write")

SINGLE_TYPES = {"application/json": "native", "application/fhir+json": "fhir"}
BULK_TYPES = {"application/x-ndjson": "native", "application/fhir+ndjson": "fhir"}
_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class IngestContext:
    """What the handlers need, built once by the app's lifespan."""

    settings: IngestSettings
    keys: IdempotencyStore
    store: RecordStore
    metrics: IngestMetrics


class ContentError(Exception):
    """The request content is wrong (400/422); the response is stored for replay."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


@dataclass(frozen=True, slots=True)
class Intake:
    """One request, past auth, media type and size checks."""

    principal: Principal
    fmt: str
    body: bytes
    traceparent: str
    correlation_id: str


Work = Callable[[IngestContext, Claim, Intake], Awaitable[bytes]]


def _media_type(request: Request, allowed: dict[str, str]) -> tuple[str, str]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in allowed:
        raise UnsupportedMediaType(f"Content-Type must be one of {', '.join(allowed)}")
    return media, allowed[media]


def _traceparent(request: Request) -> str:
    match = _TRACEPARENT_RE.match(request.headers.get("traceparent", ""))
    return new_traceparent(match.group(1) if match else None)


async def _idempotent(
    request: Request,
    principal: Principal,
    allowed: dict[str, str],
    limit: int,
    work: Work,
    max_lines: int | None = None,
) -> Response:
    ctx: IngestContext = request.app.state.ingest
    key = request_key(request.headers.getlist(HEADER))
    media, fmt = _media_type(request, allowed)
    coding = content_coding(request)
    body = await decoded_body(coding, await read_body_limited(request, limit), limit)
    if max_lines is not None and body.count(b"\n") + (0 if body.endswith(b"\n") else 1) > max_lines:
        raise PayloadTooLarge(f"body exceeds {max_lines} lines")
    try:
        got = await ctx.keys.claim(principal.tenant, key, fingerprint(request.url.path, media, body))
    except DB_ERRORS as exc:
        raise ServiceUnavailable("database unavailable") from exc
    if isinstance(got, StoredResponse):
        return Response(got.body, got.status, {"Idempotent-Replayed": "true"}, media_type=got.media_type)
    intake = Intake(principal, fmt, body, _traceparent(request), current_correlation_id() or new_correlation_id())
    try:
        return Response(await work(ctx, got, intake), 202, media_type="application/json")
    except ContentError as exc:
        problem = problem_response(exc.status, exc.detail, extra=exc.extra, instance=request.url.path)
        try:
            await ctx.keys.complete(got, exc.status, bytes(problem.body), PROBLEM_JSON)
        except DB_ERRORS as db_exc:
            raise ServiceUnavailable("database unavailable") from db_exc
        return problem
    except BaseException as exc:
        await _release(ctx, got)
        if isinstance(exc, DB_ERRORS):
            raise ServiceUnavailable("database unavailable") from exc
        raise


async def _release(ctx: IngestContext, claim: Claim) -> None:
    try:
        await ctx.keys.release(claim)
    except DB_ERRORS as exc:  # the claim's lock expires on its own
        log.warning("idempotency_release_failed", error_class=type(exc).__name__)


def _envelope(doc_error: RecordInvalid | ValueError) -> ContentError:
    if isinstance(doc_error, RecordInvalid):
        return ContentError(422, "the record does not match the contract", errors=doc_error.errors)
    if isinstance(doc_error, DuplicateKey):
        return ContentError(400, "an object in the body repeats a key")
    return ContentError(400, "the body is not valid JSON")


async def _single(ctx: IngestContext, claim: Claim, req: Intake) -> bytes:
    principal, cid = req.principal, req.correlation_id
    try:
        doc = parse_json(req.body)
        entries = unpacked_entries(doc) if req.fmt == "fhir" else None
        if entries is not None:
            return await _bundle(ctx, claim, req, str(doc["type"]), entries)
        kind = classify_fhir(doc) if req.fmt == "fhir" else classify_native(doc)
    except (RecordInvalid, ValueError) as exc:
        raise _envelope(exc) from None
    raw = await ctx.store.put_raw(principal.tenant, req.body, _content_type(req.fmt, bulk=False))
    record_id, event_id = uuid7_strings(2)  # one urandom call for both ids
    received = datetime.now(UTC)
    event = build_event(
        event_id=event_id, record_id=record_id, tenant=principal.tenant, source_format=kind.source_format,
        record_type=kind.record_type, schema_version=kind.schema_version, raw=raw, received_at=received,
        correlation_id=cid,
    )  # fmt: skip
    response = orjson.dumps(
        {
            "record_id": record_id,
            "event_id": event_id,
            "status": "accepted",
            "record_type": kind.record_type,
            "schema_version": kind.schema_version,
            "object": raw.public(),
            "received_at": received.isoformat(),
        }
    )
    await _commit(ctx, claim, req, [NewRecord(record_id, event_id, event)], response)
    ctx.metrics.records.labels(kind.source_format).inc()
    return response


async def _bundle(ctx: IngestContext, claim: Claim, req: Intake, bundle_type: str, entries: list[Entry]) -> bytes:
    """A Bundle of type transaction, batch or collection: one record per entry. Its entries'
    resources are stored as one FHIR NDJSON object, entry i on line i + 1 (an entry without a
    valid resource leaves its line blank), so each record is read back like a bulk line. A
    transaction is all or nothing; a batch or collection keeps its valid entries."""
    ids = iter(uuid7_strings(2 * len(entries)))
    results: list[dict[str, Any]] = []
    for entry in entries:
        if entry.kind is None:
            results.append({"entry": entry.position, "status": "rejected", "errors": entry.errors})
        else:
            results.append({"entry": entry.position, "status": "accepted", "record_id": next(ids),
                            "record_type": entry.kind.record_type})  # fmt: skip
    accepted = [(e, r) for e, r in zip(entries, results, strict=True) if r["status"] == "accepted"]
    if not entries:
        raise ContentError(422, "the Bundle holds no entries", errors=[{"pointer": "/entry", "reason": "minItems"}])
    if bundle_type == "transaction" and len(accepted) < len(entries):
        rejected = [r for r in results if r["status"] == "rejected"]
        raise ContentError(422, "a transaction Bundle is accepted whole or not at all", results=rejected)
    if not accepted:
        raise ContentError(422, "no entry of the Bundle is a valid resource", results=results)
    body = b"\n".join(e.data for e in entries) + b"\n"
    raw = await ctx.store.put_raw(req.principal.tenant, body, _content_type("fhir", bulk=True))
    received = datetime.now(UTC)
    event = bulk_event_factory(
        tenant=req.principal.tenant, source_format="fhir", raw=raw, received_at=received,
        correlation_id=req.correlation_id,
    )  # fmt: skip
    records = []
    for entry, result in accepted:
        rid, event_id, rtype = result["record_id"], next(ids), result["record_type"]
        records.append(NewRecord(rid, event_id, event(event_id, rid, rtype, FHIR_VERSION, entry.position + 1)))
    return await _commit_batch(ctx, claim, req, "fhir", records, results, raw, received, bundle_type=bundle_type)


async def _bulk(ctx: IngestContext, claim: Claim, req: Intake) -> bytes:
    principal, fmt, cid = req.principal, req.fmt, req.correlation_id
    # A line is a record: it gets the single-record limit, which the normalizer and tokenizer
    # accept (a tokenizer call holds at most one refused record's people: see test_limits_agree).
    max_line = ctx.settings.ingest_max_body_bytes
    lines = req.body.split(b"\n")
    ids = iter(uuid7_strings(2 * len(lines)))  # record and event ids, drawn in one batch
    results: list[dict[str, Any]] = []
    accepted: list[tuple[int, str, Classified]] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if len(line) > max_line:
            results.append({"line": number, "status": "rejected", "errors": [{"pointer": "", "reason": "too-large"}]})
            continue
        try:
            kind = classify(fmt, line)
        except RecordInvalid as exc:
            results.append({"line": number, "status": "rejected", "errors": exc.errors})
            continue
        except ValueError as exc:
            reason = "duplicate-key" if isinstance(exc, DuplicateKey) else "json"
            results.append({"line": number, "status": "rejected", "errors": [{"pointer": "", "reason": reason}]})
            continue
        record_id = next(ids)
        accepted.append((number, record_id, kind))
        results.append({"line": number, "status": "accepted", "record_id": record_id, "record_type": kind.record_type})
    if not results:
        raise ContentError(400, "the body holds no records")
    if not accepted:
        raise ContentError(422, "no line of the body is a valid record", results=results)
    raw = await ctx.store.put_raw(principal.tenant, req.body, _content_type(fmt, bulk=True))
    received = datetime.now(UTC)
    event = bulk_event_factory(
        tenant=principal.tenant, source_format=accepted[0][2].source_format, raw=raw, received_at=received,
        correlation_id=cid,
    )  # fmt: skip
    records = []
    for number, record_id, kind in accepted:
        event_id = next(ids)
        records.append(
            NewRecord(record_id, event_id, event(event_id, record_id, kind.record_type, kind.schema_version, number))
        )
    return await _commit_batch(ctx, claim, req, fmt, records, results, raw, received)


def _content_type(fmt: str, *, bulk: bool) -> str:
    if bulk:
        return "application/fhir+ndjson" if fmt == "fhir" else "application/x-ndjson"
    return "application/fhir+json" if fmt == "fhir" else "application/json"


async def _commit_batch(
    ctx: IngestContext,
    claim: Claim,
    req: Intake,
    fmt: str,
    records: list[NewRecord],
    results: list[dict[str, Any]],
    raw: RawObject,
    received: datetime,
    **head: str,
) -> bytes:
    """The answer to a bulk body or a Bundle (counts and one result per line or entry), committed
    with its records."""
    response = orjson.dumps(
        {
            "status": "accepted",
            **head,
            "accepted": len(records),
            "rejected": len(results) - len(records),
            "object": raw.public(),
            "received_at": received.isoformat(),
            "results": results,
        }
    )
    await _commit(ctx, claim, req, records, response)
    ctx.metrics.records.labels(fmt).inc(len(records))
    return response


async def _commit(ctx: IngestContext, claim: Claim, req: Intake, records: list[NewRecord], response: bytes) -> None:
    # The outbox rows carry this span's context: the relay's publish of each is its child.
    ids = {"exchange.record_id": str(records[0].record_id)} if len(records) == 1 else {}  # "where is record X?"
    with tracing.span("outbox write", {"exchange.records": len(records), **ids}) as span:
        # Unsampled (no span), the rows carry the request's unsampled context: nothing downstream records.
        current = (span or tracing.current_span()) if tracing.enabled() else None
        await ctx.store.commit(
            claim,
            records,
            status=202,
            response=response,
            actor=req.principal.subject,
            correlation_id=req.correlation_id,
            traceparent=(tracing.traceparent_of(current) if current is not None else None) or req.traceparent,
            trace=current.get_span_context() if current is not None else None,
        )


async def ingest_record(request: Request) -> Response:
    """One record: native envelope (application/json) or FHIR R4 (application/fhir+json); a FHIR
    Bundle of type transaction, batch or collection is one record per entry."""
    principal = await writer(request)
    settings: IngestSettings = request.app.state.ingest.settings
    return await _idempotent(request, principal, SINGLE_TYPES, settings.ingest_max_body_bytes, _single)


async def ingest_bulk(request: Request) -> Response:
    """NDJSON: one raw object, one record and event per valid line, per-line results."""
    principal = await writer(request)
    settings: IngestSettings = request.app.state.ingest.settings
    answer = await _idempotent(
        request, principal, BULK_TYPES, settings.ingest_max_bulk_bytes, _bulk, settings.ingest_max_bulk_lines
    )
    return await compressed(request, answer)  # per-line results: ~0.5 MB for 5,000 lines


# The contract's two operations, served as direct routes: the hot path skips FastAPI's routing,
# dependency injection and exception middlewares (exchange.core.http). The OpenAPI served is
# the contract itself (app.py).
ROUTES = (DirectRoute("/v1/ingest", ingest_record), DirectRoute("/v1/ingest/bulk", ingest_bulk))
