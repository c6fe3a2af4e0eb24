"""exchange.core.tracing without a backend: spans go to an in-memory exporter through the same
redacting processor the services export through; the process's global provider is never set."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, StatusCode

from exchange.core import tracing
from exchange.core.logging import add_trace_ids
from exchange.core.tracing_sdk import RedactingProcessor, WorkOnly

CANARIES = ("Zebulon", "Quuxcanary", "078-05-1120", "1961-07-04", "secret-query-value")


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """`tracing.tracer()` backed by a provider of this test alone, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=WorkOnly(ALWAYS_ON), shutdown_on_exit=False)
    provider.add_span_processor(RedactingProcessor(SimpleSpanProcessor(exporter)))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))
    monkeypatch.setitem(tracing._state, "enabled", True)
    return exporter


def test_no_exporter_configured_means_tracing_off() -> None:
    assert not tracing.exporter_configured({})
    assert tracing.exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.exporter_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not tracing.exporter_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})


def test_traceparent_round_trips_and_refuses_garbage(exported: InMemorySpanExporter) -> None:
    with tracing.span("work") as span:
        assert span is not None
        value = tracing.traceparent_of(span)
    assert value is not None and value.startswith("00-") and len(value) == 55
    assert int(value[-2:], 16) & 1  # sampled
    ctx = tracing.span_context(value)
    assert ctx is not None and ctx.span_id == span.get_span_context().span_id and ctx.is_remote
    for bad in (None, "", "00-xyz", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"):
        assert tracing.span_context(bad) is None


def test_a_span_while_tracing_is_off_is_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tracing._state, "enabled", False)
    with tracing.span("work") as span:
        assert span is None


def test_a_batch_of_one_is_the_child_of_its_record(exported: InMemorySpanExporter) -> None:
    with tracing.span("record") as record:
        assert record is not None
    with tracing.batch_span("batch", [record.get_span_context()]):
        pass
    batch = next(s for s in exported.get_finished_spans() if s.name == "batch")
    assert batch.parent is not None and batch.parent.span_id == record.get_span_context().span_id
    assert batch.context.trace_id == record.get_span_context().trace_id and not batch.links


def test_a_batch_of_many_is_a_root_linked_to_each_record(exported: InMemorySpanExporter) -> None:
    records = []
    for _ in range(3):
        with tracing.span("record") as record:
            assert record is not None
            records.append(record.get_span_context())
    with tracing.batch_span("batch", [*records, records[0]]):  # a record twice: one link
        pass
    batch = next(s for s in exported.get_finished_spans() if s.name == "batch")
    assert batch.parent is None
    assert {link.context.span_id for link in batch.links} == {r.span_id for r in records}
    assert len(batch.links) == 3 and batch.attributes["exchange.batch.size"] == 4


def test_a_failed_span_names_the_error_class_only(exported: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), tracing.span("work"):
        raise ValueError("Zebulon Quuxcanary 078-05-1120")
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "ValueError"
    assert "Zebulon" not in span.to_json()


def test_exported_spans_carry_no_pii(exported: InMemorySpanExporter) -> None:
    """Whatever an instrumentation or a careless caller puts on a span, what is exported has no
    PII: messages, descriptions and queries are dropped, PII-named keys masked, SSN- and
    date-shaped text replaced."""
    with tracing.tracer().start_as_current_span("careless") as span:
        span.set_attributes({
            "url.full": "http://127.0.0.1:8080/v1/ingest?name=secret-query-value",
            "http.target": "/v1/ingest?q=secret-query-value",
            "url.query": "q=secret-query-value",
            "name": "Zebulon Quuxcanary",
            "db.statement": "SELECT $1 -- 078-05-1120 born 1961-07-04",
            "exchange.record_id": "0192f0c4-0000-7000-8000-000000000001",
        })  # fmt: skip
        span.add_event("note", {"text": "Zebulon"})
        span.record_exception(ValueError("Quuxcanary 078-05-1120"))
        span.set_status(StatusCode.ERROR, "Zebulon Quuxcanary")
    (out,) = exported.get_finished_spans()
    text = out.to_json()
    for canary in CANARIES:
        assert canary not in text
    assert out.attributes["exchange.record_id"] == "0192f0c4-0000-7000-8000-000000000001"
    assert out.attributes["url.full"] == "http://127.0.0.1:8080/v1/ingest"
    exception = next(e for e in out.events if e.name == "exception")
    assert exception.attributes["exception.type"] == "ValueError"
    assert out.status.status_code is StatusCode.ERROR and not out.status.description


def test_client_spans_outside_traced_work_are_not_recorded(exported: InMemorySpanExporter) -> None:
    tracer = tracing.tracer()
    with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as chore:
        assert not chore.is_recording()  # a poll, a probe: no trace of one span
    with tracer.start_as_current_span("work"), tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as query:
        assert query.is_recording()
    assert [s.name for s in exported.get_finished_spans()] == ["SELECT", "work"]


def test_log_lines_carry_the_current_trace_and_span(exported: InMemorySpanExporter) -> None:
    assert "trace_id" not in add_trace_ids(logging.getLogger(), "info", {"event": "outside"})
    with tracing.span("work") as span:
        assert span is not None
        line = add_trace_ids(logging.getLogger(), "info", {"event": "inside"})
    ctx = span.get_span_context()
    assert line["trace_id"] == f"{ctx.trace_id:032x}" and line["span_id"] == f"{ctx.span_id:016x}"
    assert json.dumps(line)
