"""Events in and out: `record.ingested.v1` parsing, `record.normalized.v1` building, DLQ headers.

Consumed events are validated against their JSON Schema in `contracts/events/`; produced ones are
checked by the tests (`check_normalized`). Ids derived here are deterministic (UUIDv5 in the
project namespace), so the same input always yields the same event.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from exchange.core.contracts import error_pointers, event_check, event_validator, load_document
from exchange.core.errors import PoisonError, cap
from exchange.normalizer.model import Outcome

NAMESPACE = uuid.UUID("5b0d7f8e-7c1a-4c55-9a43-6f1f2b8e0c11")
INGESTED = "record.ingested.v1"
NORMALIZED = "record.normalized.v1"

# DLQ headers (the original event's own headers are kept alongside).
H_TOPIC = "dlq.original.topic"
H_PARTITION = "dlq.original.partition"
H_OFFSET = "dlq.original.offset"
H_ERROR_CLASS = "dlq.error.class"
H_ERROR_MESSAGE = "dlq.error.message"
H_ATTEMPTS = "dlq.attempts"
H_FAILED_AT = "dlq.failed.at"
DLQ_HEADERS = frozenset({H_TOPIC, H_PARTITION, H_OFFSET, H_ERROR_CLASS, H_ERROR_MESSAGE, H_FAILED_AT})


def derived_id(*parts: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "\x1f".join(parts))


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """A validated record.ingested.v1 (no PII: the record itself stays in the raw object)."""

    event_id: uuid.UUID
    record_id: uuid.UUID
    tenant: str
    source_format: str
    record_type: str
    schema_version: str
    bucket: str
    key: str
    sha256: str
    content_type: str
    line: int | None
    received_at: datetime
    correlation_id: str | None


def parse_ingested(value: bytes | None) -> IngestedEvent:
    """Decode and validate an event; PoisonError("schema-invalid") naming pointers, never values."""
    try:
        document: Any = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raise PoisonError("schema-invalid", "event is not JSON") from None
    validator = event_validator(INGESTED)
    if not event_check(INGESTED).is_valid(document) and not validator.is_valid(document):
        pointers = ", ".join(f"{e['pointer']} ({e['reason']})" for e in error_pointers(validator, document, 5))
        raise PoisonError("schema-invalid", f"event violates {INGESTED} at {pointers}")
    obj = document["object"]
    return IngestedEvent(
        event_id=uuid.UUID(document["event_id"]),
        record_id=uuid.UUID(document["record_id"]),
        tenant=document["tenant"],
        source_format=document["source_format"],
        record_type=document["record_type"],
        schema_version=document["schema_version"],
        bucket=obj["bucket"],
        key=obj["key"],
        sha256=obj["sha256"],
        content_type=obj["content_type"],
        line=document.get("line"),
        received_at=datetime.fromisoformat(document["received_at"]),
        correlation_id=document.get("correlation_id"),
    )


@functools.cache
def v1_entities() -> frozenset[str]:
    """The kinds record.normalized.v1 counts. Its `entities` admits no other property, so the
    tables of migration 0008 on are left out of it until a v2 of the event (ADR 0015)."""
    return frozenset(load_document(f"events/{NORMALIZED}.json")["properties"]["entities"]["properties"])


def normalized_event(outcome: Outcome, record_id: uuid.UUID) -> dict[str, Any]:
    """The record.normalized.v1 payload of a written outcome (see `check_normalized`)."""
    mapped = outcome.mapped
    subjects = sorted({str(r.values["id"]) for r in mapped.rows if r.table == "subjects"})
    payload: dict[str, Any] = {
        "event_id": str(derived_id(NORMALIZED, str(outcome.event_id))),
        "event_type": NORMALIZED,
        "source_event_id": str(outcome.event_id),
        "record_id": str(record_id),
        "tenant": outcome.tenant,
        "source_format": outcome.record["source_format"],
        "record_type": outcome.record["record_type"],
        "schema_version": outcome.record["schema_version"],
        "canonical_version": mapped.canonical_version,
        "entities": {k: n for k, n in mapped.entity_counts().items() if k in v1_entities()},
        "subject_ids": subjects,
        "normalized_at": datetime.now(UTC).isoformat(),
        "correlation_id": outcome.correlation_id,
    }
    return payload


def check_normalized(payload: dict[str, Any]) -> None:
    """Raise ValueError when a built record.normalized.v1 is off contract (a bug of ours).

    Not run per event in the worker (it cost a third of the CPU); every test that publishes
    checks every event against the schema.
    """
    validator = event_validator(NORMALIZED)
    if not validator.is_valid(payload):
        raise ValueError(f"record.normalized.v1 off contract: {error_pointers(validator, payload, 5)}")


def dlq_headers(
    original: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    error_class: str,
    message: str,
) -> list[tuple[str, bytes]]:
    """The original headers (minus earlier DLQ ones) plus where it came from and why it failed."""
    kept = [(k, v) for k, v in (original or ()) if k not in DLQ_HEADERS and k != H_ATTEMPTS]
    attempts = 1 + sum(int(v.decode()) for k, v in (original or ()) if k == H_ATTEMPTS and v and v.isdigit())
    return [
        *kept,
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_ERROR_CLASS, error_class.encode()),
        (H_ERROR_MESSAGE, cap(message).encode()),
        (H_ATTEMPTS, str(attempts).encode()),
        (H_FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]


def replay_headers(dlq: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> list[tuple[str, bytes]]:
    """Headers for re-publishing a DLQ message to its original topic: original ones + the attempt count."""
    return [(k, v) for k, v in (dlq or ()) if k not in DLQ_HEADERS]
