"""JSON logs carry the correlation id; the redaction processor masks PII-shaped data."""

from __future__ import annotations

import json
import logging

import pytest

from exchange.core.logging import bind_correlation_id, configure_logging, get_logger, valid_correlation_id

CANARY_NAME = "Zebulon Canaryfield"
CANARY_SSN = "987-65-4329"
CANARY_DOB = "1961-02-03"


@pytest.fixture
def logs(capsys):
    configure_logging("test-service", "DEBUG", json=True)

    def read() -> list[dict]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]

    yield read
    logging.getLogger().handlers.clear()


def test_log_lines_are_json_with_service_and_correlation_id(logs):
    with bind_correlation_id("req-123"):
        get_logger("t").info("something_happened", count=3)
    (line,) = [entry for entry in logs() if entry["event"] == "something_happened"]
    assert line["correlation_id"] == "req-123"
    assert line["service"] == "test-service"
    assert line["count"] == 3
    assert line["level"] == "info"


def test_pii_named_keys_and_pii_shaped_values_are_redacted(logs):
    get_logger("t").info(
        "oops",
        name=CANARY_NAME,
        ssn=CANARY_SSN,
        note=f"born {CANARY_DOB} ssn {CANARY_SSN}",
        nested={"patient": {"family": "Canaryfield"}},
    )
    entries = logs()
    assert any(e["event"] == "oops" for e in entries)
    text = json.dumps(entries)
    for canary in (CANARY_NAME, CANARY_SSN, CANARY_DOB, "Canaryfield"):
        assert canary not in text


def test_stdlib_loggers_go_through_the_same_pipeline(logs):
    with bind_correlation_id("abc"):
        logging.getLogger("uvicorn.error").warning("stdlib %s", CANARY_SSN)
    entries = logs()
    assert any(e.get("correlation_id") == "abc" for e in entries)
    assert CANARY_SSN not in json.dumps(entries)


@pytest.mark.parametrize("value", ["", "x" * 200, "a b", "id\nInjected: yes", "<script>"])
def test_unsafe_incoming_correlation_ids_are_replaced(value):
    assert valid_correlation_id(value) is None
    with bind_correlation_id(value) as cid:
        assert cid != value and len(cid) == 32


def test_tracebacks_carry_no_frame_locals(logs):
    def fail(ssn: str) -> None:
        raise ValueError("boom")

    try:
        fail("123-45-6789-canary")
    except ValueError:
        get_logger("t").exception("failed")
    entries = [e for e in logs() if e["event"] == "failed"]
    assert entries and "exception" in entries[0]
    assert "123-45-6789-canary" not in json.dumps(entries)
    assert all("locals" not in frame for exc in entries[0]["exception"] for frame in exc["frames"])
