"""exchange.core.tracing without a backend: spans go to an in-memory exporter through the same
redacting processor the services export through; the process's global provider is never set."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

from exchange.core import tracing
from exchange.core.logging import add_trace_ids
from exchange.core.tracing_sdk import RedactingProcessor, WorkOnly, _recorded

CANARIES = ("Zebulon", "Quuxcanary", "078-05-1120", "1961-07-04", "secret-query-value")
UNSAMPLED = "00-" + "1" * 32 + "-" + "2" * 16 + "-00"
SAMPLED = "00-" + "3" * 32 + "-" + "4" * 16 + "-01"


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """`tracing.tracer()` backed by a provider of this test alone (the default sampler: parent-based,
    always on), exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=WorkOnly(ParentBased(ALWAYS_ON)), shutdown_on_exit=False)
    provider.add_span_processor(RedactingProcessor(SimpleSpanProcessor(exporter)))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))
    monkeypatch.setitem(tracing._state, "enabled", True)
    monkeypatch.setitem(tracing._state, "provider", provider)
    monkeypatch.setitem(tracing._state, "follows_parent", True)
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


def test_the_tracer_is_made_once_per_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = TracerProvider(shutdown_on_exit=False), TracerProvider(shutdown_on_exit=False)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: first)
    made = tracing.tracer()
    assert tracing.tracer() is made
    span = made.start_span("s")
    assert span.instrumentation_scope.name == tracing.TRACER_NAME  # type: ignore[attr-defined]
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: second)
    assert tracing.tracer() is not made and tracing.tracer() is tracing.tracer()


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


def test_unsampled_work_creates_no_span(exported: InMemorySpanExporter) -> None:
    unsampled, sampled = tracing.span_context(UNSAMPLED), tracing.span_context(SAMPLED)
    assert unsampled is not None and sampled is not None and tracing.unsampled(unsampled)
    with trace.use_span(NonRecordingSpan(unsampled)):
        with tracing.span("work") as span:
            assert span is None
        with tracing.batch_span("batch", [unsampled, unsampled]) as batch:
            assert not batch.is_recording() and tracing.current_span().get_span_context() == unsampled
    with tracing.batch_span("mixed", [unsampled, sampled]) as mixed:
        assert mixed.is_recording()
    with trace.use_span(NonRecordingSpan(sampled)), tracing.span("work") as child:
        assert child is not None and child.is_recording()
    assert [s.name for s in exported.get_finished_spans()] == ["mixed", "work"]


def test_a_sampler_not_following_the_parent_records_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tracing._state, "follows_parent", False)
    assert not tracing.unsampled(tracing.span_context(UNSAMPLED))


def _serve(exported: InMemorySpanExporter, path: str, headers: list[tuple[bytes, bytes]]) -> trace.Span:
    """One request through `tracing.server_spans`; the span current in the app."""
    seen: list[trace.Span] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(trace.get_current_span())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "scheme": "http", "server": ("127.0.0.1", 8080), "http_version": "1.1"}  # fmt: skip
    asyncio.run(tracing.server_spans(app, tracing._state["provider"])(scope, receive, send))
    return seen[0]


def test_an_unsampled_request_runs_under_a_non_recording_span_of_its_trace(exported: InMemorySpanExporter) -> None:
    current = _serve(exported, "/v1/ingest", [(b"traceparent", UNSAMPLED.encode())])
    ctx, parent = current.get_span_context(), tracing.span_context(UNSAMPLED)
    assert parent is not None and not current.is_recording() and not ctx.trace_flags.sampled
    assert ctx.trace_id == parent.trace_id and ctx.span_id != parent.span_id
    assert not exported.get_finished_spans()


def test_a_sampled_request_has_its_server_span(exported: InMemorySpanExporter) -> None:
    current = _serve(exported, "/v1/ingest", [(b"traceparent", SAMPLED.encode())])
    parent = tracing.span_context(SAMPLED)
    assert parent is not None and current.get_span_context().trace_flags.sampled
    (server,) = exported.get_finished_spans()
    assert server.kind is SpanKind.SERVER and server.context.span_id == current.get_span_context().span_id
    assert server.parent is not None and server.parent.span_id == parent.span_id
    _serve(exported, "/v1/ingest", [])  # no parent: a root, sampled
    _serve(exported, "/healthz", [(b"traceparent", SAMPLED.encode())])  # not traced
    assert len(exported.get_finished_spans()) == 2 and exported.get_finished_spans()[1].parent is None


def test_statements_are_instrumented_only_inside_recorded_work(exported: InMemorySpanExporter) -> None:
    instrumented: list[str] = []

    async def run(self: Any, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        instrumented.append(args[0])
        return await func(*args, **kwargs)

    async def fetch(query: str) -> str:
        return query

    async def statements() -> list[str]:
        wrapper = _recorded(run)
        out = [await wrapper(None, fetch, None, ("outside",), {})]
        unsampled = tracing.span_context(UNSAMPLED)
        assert unsampled is not None
        with trace.use_span(NonRecordingSpan(unsampled)):
            out.append(await wrapper(None, fetch, None, ("unsampled",), {}))
        with tracing.span("work"):
            out.append(await wrapper(None, fetch, None, ("recorded",), {}))
        return out

    assert asyncio.run(statements()) == ["outside", "unsampled", "recorded"]
    assert instrumented == ["recorded"]


def test_a_relay_batch_of_unsampled_rows_has_no_span(exported: InMemorySpanExporter) -> None:
    from exchange.core.outbox import _publish_span

    with _publish_span("ingest.outbox", [{"traceparent": UNSAMPLED}] * 2, time.time_ns()):
        assert not tracing.current_span().is_recording()
    with _publish_span("ingest.outbox", [{"traceparent": UNSAMPLED}, {"traceparent": SAMPLED}], time.time_ns()):
        assert tracing.current_span().is_recording()
    (publish,) = exported.get_finished_spans()
    assert publish.name == "outbox publish" and len(publish.links) == 2
