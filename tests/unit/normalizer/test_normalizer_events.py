"""record.ingested.v1 in, record.normalized.v1 out, DLQ headers: contracts and PII-free errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft202012Validator

from exchange.core.contracts import event_check, event_validator, load_document
from exchange.core.errors import PoisonError
from exchange.normalizer.events import (
    H_ATTEMPTS,
    INGESTED,
    check_normalized,
    dlq_headers,
    normalized_event,
    parse_ingested,
    replay_headers,
)
from exchange.normalizer.model import Mapped, Outcome, Row


def ingested(**overrides):
    event = {
        "event_id": str(uuid.uuid4()), "event_type": "record.ingested.v1", "record_id": str(uuid.uuid4()),
        "tenant": "acme", "source_format": "fhir", "record_type": "Patient", "schema_version": "fhir-r4",
        "object": {"bucket": "b", "key": "raw/acme/x", "sha256": "a" * 64, "size": 10,
                   "content_type": "application/fhir+ndjson"},
        "line": 3, "received_at": "2026-01-02T03:04:05+00:00", "correlation_id": "c-1",
    }  # fmt: skip
    event.update(overrides)
    return event


def test_a_valid_event_parses():
    event = parse_ingested(orjson.dumps(ingested()))
    assert (event.tenant, event.line, event.sha256) == ("acme", 3, "a" * 64)


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"",
        orjson.dumps(ingested(tenant="")),
        orjson.dumps(ingested(event_id="John Smith 078-05-1120")),
        orjson.dumps({**ingested(), "subject": {"name": "John Smith"}}),
    ],
)
def test_an_invalid_event_is_schema_invalid_poison_without_its_values(value):
    with pytest.raises(PoisonError) as caught:
        parse_ingested(value)
    assert caught.value.error_class == "schema-invalid"
    assert "John" not in str(caught.value) and "078-05" not in str(caught.value)


@pytest.mark.parametrize(
    "event",
    [
        ingested(),
        ingested(line=None),
        ingested(event_id=uuid.uuid4().hex),  # a UUID without its hyphens is off the format
        ingested(event_id="{" + str(uuid.uuid4()) + "}"),
        ingested(event_id=str(uuid.uuid4()).upper()),
        ingested(record_id="12345678-1234-1234-1234-1234-56789012"),  # the reference checker takes it
        ingested(record_id="12345678-1234-1234-1234-12345678901g"),
        ingested(received_at="not a time"),  # date-time is not checked by the reference validator
        ingested(line="3"),
        ingested(object={"bucket": "b"}),
        ingested(extra=1),
        {k: v for k, v in ingested().items() if k != "tenant"},
    ],
)
def test_the_fast_event_check_accepts_exactly_what_the_reference_validator_accepts(event):
    assert event_check(INGESTED).is_valid(event) == event_validator(INGESTED).is_valid(event)


def test_the_normalized_contract_is_valid_2020_12_and_carries_no_pii_fields():
    schema = load_document("events/record.normalized.v1.json")
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    names = set(schema["properties"]) | set(schema["properties"]["entities"]["properties"])
    assert not names & {"name", "birth_date", "ssn", "address", "phone", "postal_code", "subject"}


def test_a_normalized_event_is_on_contract_and_derived_deterministically():
    mapped = Mapped(record_type="Patient", canonical_version="fhir-r4")
    subject = uuid.uuid4()
    mapped.rows = [Row("subjects", {"id": subject}), Row("patients", {"id": uuid.uuid4()})]
    outcome = Outcome(
        event_id=uuid.uuid4(), record_id=uuid.uuid4(), tenant="acme", topic="t", partition=0, offset=1,
        record={"source_format": "fhir", "record_type": "Patient", "schema_version": "fhir-r4"},
        mapped=mapped, correlation_id="c", traceparent="tp",
    )  # fmt: skip
    record_id = uuid.uuid4()
    payload = normalized_event(outcome, record_id)
    check_normalized(payload)
    event_validator("record.normalized.v1").validate(payload)
    assert payload["entities"] == {"subjects": 1, "patients": 1}
    assert payload["subject_ids"] == [str(subject)]
    assert normalized_event(outcome, record_id)["event_id"] == payload["event_id"]


def test_the_tables_of_the_us_core_set_are_left_out_of_the_v1_entities_which_stay_on_contract():
    mapped = Mapped(record_type="Bundle", canonical_version="fhir-r4")
    mapped.rows = [Row("patients", {"id": uuid.uuid4()}), Row("claims", {"id": uuid.uuid4()}),
                   Row("organizations", {"id": uuid.uuid4()})]  # fmt: skip
    outcome = Outcome(
        event_id=uuid.uuid4(), record_id=uuid.uuid4(), tenant="acme", topic="t", partition=0, offset=1,
        record={"source_format": "fhir", "record_type": "Bundle", "schema_version": "fhir-r4"},
        mapped=mapped, correlation_id="c", traceparent="tp",
    )  # fmt: skip
    payload = normalized_event(outcome, uuid.uuid4())
    check_normalized(payload)
    assert payload["entities"] == {"patients": 1}
    assert mapped.entity_counts() == {"patients": 1, "claims": 1, "organizations": 1}


def test_dlq_headers_keep_the_original_ones_and_count_attempts():
    original = [("event_id", b"e1"), ("traceparent", b"tp")]
    first = dlq_headers(original, topic="t", partition=2, offset=41, error_class="unmappable", message="x" * 1000)
    got = dict(first)
    assert got["event_id"] == b"e1" and got["dlq.original.topic"] == b"t"
    assert got["dlq.original.partition"] == b"2" and got["dlq.original.offset"] == b"41"
    assert got[H_ATTEMPTS] == b"1" and len(got["dlq.error.message"]) <= 300 * 3
    again = dict(dlq_headers(replay_headers(first), topic="t", partition=0, offset=7, error_class="u", message="m"))
    assert again[H_ATTEMPTS] == b"2" and again["dlq.original.offset"] == b"7"
    assert "dlq.error.class" not in dict(replay_headers(first))
    assert datetime.fromisoformat(again["dlq.failed.at"].decode()).tzinfo == UTC
