"""What only a process that records spans loads (the SDK's classes): the sampler and the span
processor `exchange.core.tracing.configure_tracing` installs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.status import Status
from opentelemetry.util.types import Attributes

from exchange.core.logging import MAX_VALUE_CHARS, REDACTED_KEYS, scrub_text

# Attributes whose value is a URL or a query: the query is dropped (it can carry anything).
_URL_KEYS = frozenset({"http.url", "url.full", "http.target", "url.query"})


class WorkOnly(Sampler):
    """A sampler: `inner`'s decision, except that a client span with no parent (a database
    statement or HTTP call outside any traced work: a relay's empty poll, a readiness check, a
    metrics refresh) is not recorded, so such chores do not flood the backend with traces of one
    span; and a request's server span gets the decision `SampledServerSpans` made."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind is SpanKind.SERVER and (decided := _DECIDED.get()) is not None:
            return decided
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid and not links:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"WorkOnly{{{self.inner.get_description()}}}"


def redacted(span: ReadableSpan) -> ReadableSpan:
    """A copy of an ended span fit to export (see `exchange.core.tracing`): exception events keep
    only the exception's class, the status loses its description, URL attributes their query,
    PII-named attributes their value, and every string is scrubbed as log values are."""
    events = []
    for event in span.events:
        attributes = {k: v for k, v in (event.attributes or {}).items() if k in ("exception.type", "exception.escaped")}
        events.append(Event(event.name, _clean(attributes), event.timestamp))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean(span.attributes or {}),
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),  # a description may quote the input
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if key.lower() in REDACTED_KEYS:
            out[key] = "[redacted]"
        elif key in _URL_KEYS and isinstance(value, str):
            out[key] = "" if key == "url.query" else value.split("?", 1)[0]
        elif isinstance(value, str):
            out[key] = scrub_text(value)
        elif isinstance(value, list | tuple):
            out[key] = [scrub_text(v) if isinstance(v, str) else v for v in value[:MAX_VALUE_CHARS]]
        else:
            out[key] = value
    return out


class RedactingProcessor(SpanProcessor):
    """A span processor that hands `redacted()` copies of ended spans to `inner` (the exporter's
    batch processor)."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(redacted(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


# The server span's sampling decision, made before OpenTelemetry's ASGI middleware runs
# (`SampledServerSpans`): `WorkOnly` returns it for that request's SERVER span.
_DECIDED: ContextVar[SamplingResult | None] = ContextVar("exchange_server_sampling", default=None)


class SampledServerSpans:
    """ASGI middleware deciding each request's sampling first: a sampled request goes through
    OpenTelemetry's ASGI middleware (`traced`), which records the server span with that decision;
    an unsampled one goes straight to `app` under a non-recording span of the same trace (so its
    outbox rows and calls carry the unsampled `traceparent`), skipping the middleware's per-request
    attribute collection, header parsing and send wrapping (its cost at 1 % sampling)."""

    def __init__(self, app: Any, traced: Any, provider: Any, excluded: frozenset[str]) -> None:
        self.app, self.traced, self.excluded = app, traced, excluded
        self.ids, self.sampler = provider.id_generator, provider.sampler

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.excluded:
            await self.app(scope, receive, send)
            return
        from exchange.core.tracing import span_context

        ids, sampler = self.ids, self.sampler
        parent = None
        for key, value in scope.get("headers", ()):
            if key == b"traceparent":
                parent = span_context(value.decode("latin-1"))
                break
        context = (
            otel_context.Context() if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent))
        )
        trace_id = parent.trace_id if parent is not None else ids.generate_trace_id()
        decision = sampler.should_sample(context, trace_id, scope.get("method", "HTTP"), SpanKind.SERVER)
        if decision.decision.is_sampled():
            token = _DECIDED.set(decision)
            try:
                await self.traced(scope, receive, send)
            finally:
                _DECIDED.reset(token)
            return
        unsampled = trace.SpanContext(
            trace_id, ids.generate_span_id(), is_remote=False, trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
            trace_state=parent.trace_state if parent is not None else None,
        )  # fmt: skip
        attached = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(unsampled)))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(attached)


def _recorded(run: Any) -> Any:
    """An asyncpg instrumentation wrapper that calls the statement directly when its span would
    not be recorded: no current span (`WorkOnly` drops unparented client spans) or an unsampled
    one (the parent-based sampler drops its children), so unsampled work pays no span."""

    async def wrapper(self: Any, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        current = trace.get_current_span()
        if not current.is_recording() and not current.get_span_context().trace_flags.sampled:
            return await func(*args, **kwargs)
        return await run(self, func, instance, args, kwargs)

    return wrapper


def asyncpg_instrumentor() -> Any:
    """OpenTelemetry's asyncpg instrumentor, its statements traced only inside recorded work."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    class Instrumentor(AsyncPGInstrumentor):  # type: ignore[misc]
        _do_execute = _recorded(AsyncPGInstrumentor._do_execute)
        _do_cursor_execute = _recorded(AsyncPGInstrumentor._do_cursor_execute)
        _do_prepared_execute = _recorded(AsyncPGInstrumentor._do_prepared_execute)

    return Instrumentor()  # type: ignore[no-untyped-call]
