"""Pure logic of ingest: key parsing, fingerprints, contract validation, events, migrations."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from exchange.core.contracts import event_validator
from exchange.core.errors import BadRequest
from exchange.ingest.idempotency import fingerprint, parse_key
from exchange.ingest.migrations import render_sql
from exchange.ingest.store import RawObject, build_event, uuid7_strings
from exchange.ingest.validation import RecordInvalid, classify, classify_fhir, classify_native, unpacked_entries
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA


@pytest.mark.parametrize("raw", ["a", "k" * 255, '"quoted-key"', "with space inside", "  padded  "])
def test_valid_idempotency_keys_are_accepted(raw):
    assert parse_key(raw)


@pytest.mark.parametrize("raw", [None, "", "   ", "k" * 256, "tab\there", "caf\u00e9", '""'])
def test_missing_or_malformed_idempotency_keys_are_400(raw):
    with pytest.raises(BadRequest):
        parse_key(raw)


def test_a_fingerprint_covers_path_media_type_and_body():
    base = fingerprint("/v1/ingest", "application/json", b"{}")
    assert base == fingerprint("/v1/ingest", "application/json", b"{}")
    assert base != fingerprint("/v1/ingest/bulk", "application/json", b"{}")
    assert base != fingerprint("/v1/ingest", "application/fhir+json", b"{}")
    assert base != fingerprint("/v1/ingest", "application/json", b"{ }")


def test_every_synthea_resource_is_valid_fhir():
    lines = [ln for p in SYNTHEA.glob("*.ndjson") for ln in p.read_bytes().splitlines() if ln.strip()]
    assert len(lines) > 4000
    kinds = {classify("fhir", ln).record_type for ln in lines}
    assert kinds == {"Patient", "Encounter", "Condition", "Immunization", "AllergyIntolerance", "Procedure"}


def test_native_v1_and_v2_are_told_apart():
    v1 = {
        "schema_version": "v1",
        "record_type": "patient",
        "subject": {"name": "A B", "birth_date": "1990-01-01"},
        "data": {},
    }
    v2 = {
        "schema_version": "v2",
        "record_type": "patient",
        "subject": {"given_names": ["A"], "family_name": "B", "birth_date": "1990-01-01"},
        "data": {},
    }
    assert classify_native(v1).schema_version == "v1"
    assert classify_native(v2).schema_version == "v2"
    with pytest.raises(RecordInvalid):
        classify_native({**v2, "schema_version": "v1"})  # a v2 subject is not a v1 subject


def test_errors_name_pointers_and_keywords_never_values():
    secret = "Sumiko254 Medhurst46"
    doc = {"schema_version": "v1", "record_type": secret, "subject": {"name": secret, "ssn": secret}, "data": {}}
    with pytest.raises(RecordInvalid) as info:
        classify_native(doc)
    errors = info.value.errors
    assert {e["pointer"] for e in errors} == {"/record_type", "/subject/ssn", "/subject/birth_date"}
    assert secret not in orjson.dumps(errors).decode()


def test_bundle_entries_are_checked_by_their_own_type():
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Encounter", "status": "done"}}]}  # fmt: skip
    with pytest.raises(RecordInvalid) as info:
        classify_fhir(bundle)
    assert info.value.errors == [
        {"pointer": "/entry/0/resource/class", "reason": "required"},
        {"pointer": "/entry/0/resource/status", "reason": "enum"},
    ]


def test_unknown_resource_types_are_refused_at_their_pointer():
    in_bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Nope"}}]}
    for doc, pointer in (
        ({"resourceType": "Medicament"}, "/resourceType"),
        (in_bundle, "/entry/0/resource/resourceType"),
    ):
        with pytest.raises(RecordInvalid) as info:
            classify_fhir(doc)
        assert info.value.errors == [{"pointer": pointer, "reason": "enum"}]


def test_every_fhir_r4_type_is_accepted_not_only_the_modelled_ones():
    device = {"resourceType": "Device", "status": "active", "type": {"coding": [{"code": "72506001"}]}}
    provenance = {"resourceType": "Provenance", "target": [{"reference": "Patient/1"}],
                  "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"reference": "Practitioner/2"}}]}  # fmt: skip
    nested = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Bundle",
              "type": "document"}}]}  # fmt: skip
    assert [classify_fhir(d).record_type for d in (device, provenance, nested)] == ["Device", "Provenance", "Bundle"]


def test_an_unmodelled_type_is_still_checked_for_structure():
    with pytest.raises(RecordInvalid) as info:
        classify_fhir({"resourceType": "Device", "status": "switched-on", "serialNumber": 12})
    assert info.value.errors == [
        {"pointer": "/serialNumber", "reason": "type"},
        {"pointer": "/status", "reason": "enum"},
    ]


def test_a_transaction_bundle_is_unpacked_into_its_entries():
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "1"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Claim", "status": "active"}, "request": {"method": "POST", "url": "Claim"}},
        {"request": {"method": "DELETE", "url": "Device/9"}},
    ]}  # fmt: skip
    entries = unpacked_entries(bundle)
    assert entries is not None
    assert [(e.position, e.kind and e.kind.record_type) for e in entries] == [(0, "Patient"), (1, None), (2, None)]
    assert orjson.loads(entries[0].data) == {"resourceType": "Patient", "id": "1"}
    assert {"pointer": "/entry/1/resource/patient", "reason": "required"} in entries[1].errors
    assert entries[2].errors == [{"pointer": "/entry/2/resource", "reason": "required"}]
    assert unpacked_entries({**bundle, "type": "document"}) is None
    assert unpacked_entries({"resourceType": "Patient"}) is None
    with pytest.raises(RecordInvalid) as info:  # the Bundle itself, outside its entries' resources
        unpacked_entries({**bundle, "timestamp": "yesterday"})
    assert info.value.errors == [{"pointer": "/timestamp", "reason": "pattern"}]


def test_invalid_json_is_a_value_error_without_the_input():
    with pytest.raises(ValueError, match="not valid JSON") as info:
        classify("native", b'{"ssn": "123-45-6789"')
    assert "123" not in str(info.value)


def test_built_events_match_the_event_contract():
    raw = RawObject("b", "raw/acme/sha256/aa/bb/" + "a" * 64, "a" * 64, 10, "application/x-ndjson")
    for line in (None, 7):
        event = build_event(
            event_id=uuid.uuid4(), record_id=uuid.uuid4(), tenant="acme", source_format="fhir", record_type="Patient",
            schema_version="fhir-r4", raw=raw, received_at=datetime.now(UTC), correlation_id="c", line=line,
        )  # fmt: skip
        event_validator("record.ingested.v1").validate(orjson.loads(event))


def test_migrations_render_the_schema_and_the_version_row():
    sql = render_sql(None)
    for needle in (
        "CREATE TABLE ingest.outbox",
        "CREATE TABLE ingest.audit",
        "ingest_alembic_version",
        "'0006'",
        "CREATE TABLE ingest.outbox_listening",
        "PERFORM pg_advisory_xact_lock_shared(2828, 'ingest.outbox'::regclass::oid::int)",
        "ALTER COLUMN payload TYPE text",
        "fillfactor = 70",
        "outbox_published_at ON ingest.outbox (published_at) WHERE published_at IS NOT NULL",
        "CREATE TABLE ingest.outbox_pending",
        "AFTER INSERT ON ingest.outbox REFERENCING NEW TABLE AS inserted",
        "ALTER TABLE ingest.outbox DROP COLUMN published_at",
    ):
        assert needle in sql
    assert "BEGIN;" not in sql and "COMMIT;" not in sql  # the caller owns the transaction


@pytest.mark.parametrize(("env", "retention"), [({}, 7 * 86_400.0), ({"RELAY_OUTBOX_RETENTION_SECONDS": "0"}, None),
                                                ({"RELAY_OUTBOX_RETENTION_SECONDS": "3600"}, 3600.0)])  # fmt: skip
def test_the_relay_keeps_published_outbox_rows_for_the_configured_retention(env, retention):
    from prometheus_client import CollectorRegistry

    from exchange.ingest.metrics import IngestMetrics
    from exchange.ingest.relay import OutboxRelay
    from exchange.ingest.settings import IngestSettings

    settings = IngestSettings(
        ENV="local", DATABASE_URL="postgresql://u:p@h/d", KAFKA_BOOTSTRAP_SERVERS="k:9092", S3_ACCESS_KEY_ID="ak",
        S3_SECRET_ACCESS_KEY="sk", RELAY_PRUNE_SECONDS="5", **env,
    )  # fmt: skip
    relay = OutboxRelay(settings, pool=None, metrics=IngestMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    assert relay.outbox.retention_seconds == retention and relay.outbox.prune_seconds == 5.0


def test_a_negative_outbox_retention_is_refused():
    from exchange.core.errors import ConfigError
    from exchange.core.settings import load
    from exchange.ingest.settings import IngestSettings

    env = {"ENV": "local", "DATABASE_URL": "postgresql://u:p@h/d", "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
           "S3_ACCESS_KEY_ID": "ak", "S3_SECRET_ACCESS_KEY": "sk", "RELAY_OUTBOX_RETENTION_SECONDS": "-1"}  # fmt: skip
    with pytest.raises(ConfigError, match="RELAY_OUTBOX_RETENTION_SECONDS"):
        load(IngestSettings, **env)


def test_record_and_event_ids_are_time_ordered_version_7_uuids():
    before = time.time_ns() // 1_000_000
    ids = uuid7_strings(20_000)
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(text) for text in ids]
    assert [str(u) for u in parsed] == ids  # canonical text
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert all(before <= u.int >> 80 <= after for u in parsed)  # unix_ts_ms, the first 48 bits
    assert len(set(ids)) == len(ids)
    # the 74 random bits are random: every value of the variant digit's two free bits occurs
    assert set(Counter(text[19] for text in ids)) == set("89ab")
    assert len({text[15:18] for text in ids}) > 4000  # rand_a (12 bits) spread over its 4,096 values
    time.sleep(0.002)
    later = uuid7_strings(1)[0]
    assert later > max(ids)  # a later millisecond sorts after, as text and in a uuid index
    assert uuid7_strings(0) == []
