"""OpenTelemetry traces: one trace follows a record from the ingest request to its canonical rows.

`configure_tracing(service)` once per process (the CLI's `serve`, an app factory, a worker's
`run`); later calls do nothing. It reads only the standard variables:

- Tracing is on when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_ENDPOINT`, OTLP over HTTP/protobuf) and `OTEL_SDK_DISABLED` is not true.
  Off, nothing is installed: spans come from the API's no-op tracer, and `enabled()` lets a hot
  loop skip even that.
- `OTEL_SERVICE_NAME` names the service (default: the component, e.g. `ingest`);
  `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` sample (default: parent-based, always on;
  `parentbased_traceidratio` with `0.01` keeps 1 % of the traces, whole).

Installed: the maintained instrumentations of asyncpg, httpx and the aiohttp client (the ASGI
server span is added by `exchange.core.http`); our own spans sit at the boundaries the libraries
do not see: the outbox write, the relay's publish, the consume, the canonical write. Work done
for a batch of records (a group commit, a normalizer batch) has a span of its own: the child of
the record's span when it serves one, else a root with a link to each (`batch_span`).

No span carries PII: our spans carry ids and counts only, and every exported span passes
`exchange.core.tracing_sdk.redacted()` first (exception messages, status descriptions and URL queries dropped, PII-named
attributes masked, SSN- or date-shaped text replaced, long values cut), as the logs do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode, TraceFlags

TRACER_NAME = "exchange"
# Version 00's `traceparent` (the W3C propagator's pattern), parsed without its context objects.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# follows_parent: the sampler keeps a child only when its parent is sampled (the parent-based ones).
_state: dict[str, Any] = {"configured": False, "enabled": False, "provider": None, "follows_parent": True}


def enabled() -> bool:
    """Whether this process records spans (an exporter is configured)."""
    return bool(_state["enabled"])


def tracer() -> trace.Tracer:
    """The platform's tracer (the no-op one while tracing is off), made once per global provider:
    `get_tracer` builds a new one on every call, once per sent row in the outbox relays."""
    provider = trace.get_tracer_provider()
    if _tracer[0] is not provider:
        _tracer[:] = [provider, trace.get_tracer(TRACER_NAME, tracer_provider=provider)]
    made: trace.Tracer = _tracer[1]
    return made


_tracer: list[Any] = [None, None]
"""The global provider `tracer()` last saw, and its tracer."""


def exporter_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure_tracing(service: str, *, exporter: Any = None, instrument: bool = True) -> bool:
    """Install the SDK for this process when an exporter is configured (or `exporter` given, as a
    test's in-memory one); returns whether tracing is on. Idempotent: the first call wins."""
    if _state["configured"]:
        return enabled()
    _state["configured"] = True
    if exporter is None and not exporter_configured():
        return False
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    from exchange.core.tracing_sdk import RedactingProcessor, WorkOnly

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the component's name.
    resource = Resource.create({"service.name": service}).merge(OTELResourceDetector().detect())
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    # The sampler named by OTEL_TRACES_SAMPLER (the SDK reads it), less unparented client spans.
    from_env = TracerProvider(shutdown_on_exit=False).sampler
    provider = TracerProvider(resource=resource, sampler=WorkOnly(from_env))
    provider.add_span_processor(RedactingProcessor(BatchSpanProcessor(exporter)))
    trace.set_tracer_provider(provider)
    _state["enabled"], _state["provider"] = True, provider
    _state["follows_parent"] = isinstance(from_env, ParentBased)
    if instrument:
        _instrument_libraries()
    return True


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from exchange.core.tracing_sdk import asyncpg_instrumentor

    asyncpg_instrumentor().instrument()  # statements as SQL text with placeholders: no values
    HTTPXClientInstrumentor().instrument()  # the tokenizer call carries `traceparent`
    AioHttpClientInstrumentor().instrument()  # the raw zone's PUTs and GETs


def server_spans(app: Any, provider: Any = None) -> Any:
    """`app` inside the ASGI instrumentation's server span (W3C `traceparent` in) when the request
    is sampled, else under a non-recording span of its trace; probes and /metrics are not traced.
    The app names the span once routing is done (`name_server_span`). `provider`: a test's."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from exchange.core.tracing_sdk import SampledServerSpans

    provider = provider or _state["provider"]
    excluded = ("/healthz", "/readyz", "/metrics")
    traced = OpenTelemetryMiddleware(
        app,
        tracer_provider=provider,
        excluded_urls=",".join(excluded),
        default_span_details=lambda scope: (scope.get("method", "HTTP"), {}),
        exclude_spans=["receive", "send"],
    )
    return SampledServerSpans(app, traced, provider, frozenset(excluded))


def name_server_span(method: str, route: str) -> None:
    """Name the current server span `METHOD /route/template` (the template the request metrics
    use: `unmatched` for none), with `http.route`."""
    current = trace.get_current_span()
    if current.is_recording():
        current.update_name(f"{method} {route}")
        current.set_attribute("http.route", route)


def current_span() -> Span:
    """The current span (a non-recording one when unsampled, the invalid one when none)."""
    return trace.get_current_span()


def force_flush(timeout_millis: int = 5000) -> None:
    """Export what is buffered (a process about to exit, a test about to look)."""
    provider = _state["provider"]
    if provider is not None:
        provider.force_flush(timeout_millis)


# ---- W3C trace context as the outbox and Kafka headers carry it


def traceparent_of(span: Span | None = None) -> str | None:
    """The W3C `traceparent` of `span` (default: the current one); None when it is not valid."""
    ctx = (span or trace.get_current_span()).get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def span_context(traceparent: str | None) -> SpanContext | None:
    """The remote span context a `traceparent` names; None when it is absent or malformed."""
    match = _TRACEPARENT.match(traceparent) if traceparent else None
    if match is None:
        return None
    ctx = SpanContext(int(match[1], 16), int(match[2], 16), is_remote=True, trace_flags=TraceFlags(int(match[3], 16)))
    return ctx if ctx.is_valid else None


def unsampled(parent: SpanContext | None) -> bool:
    """Whether a child of `parent` would not be recorded (a valid, unsampled context under a
    parent-based sampler): unsampled work then creates no span at all."""
    return parent is not None and parent.is_valid and not parent.trace_flags.sampled and bool(_state["follows_parent"])


def parent_context(parent: SpanContext | None) -> otel_context.Context:
    """A context whose current span is `parent`: a new span started in it is its child; an empty
    context (a new root) when `parent` is None."""
    if parent is None:
        return otel_context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context())


@contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Span | None]:
    """A child of the current span while tracing is on, marked failed when the block raises
    (`failures_marked`); None while tracing is off or the current span is unsampled (nothing is
    created)."""
    if not enabled() or unsampled(trace.get_current_span().get_span_context()):
        yield None
        return
    with tracer().start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        with failures_marked(current):
            yield current


@contextmanager
def batch_span(
    name: str,
    parents: Sequence[SpanContext | None],
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span for work done at once for several records (`parents`: each one's span context).

    Serving one record it is that record's child; serving several it is a root linked to each of
    them, since no single one is its parent. It becomes the current span either way. When every
    record is unsampled nothing is created: the first one's context is current in the block (its
    statements are not traced, its calls carry the unsampled `traceparent`)."""
    if parents and all(unsampled(p) for p in parents):
        first = trace.NonRecordingSpan(parents[0])  # type: ignore[arg-type]  # not None: unsampled
        with trace.use_span(first, end_on_exit=False):
            yield first
        return
    unique = list({p.span_id: p for p in parents if p is not None}.values())
    parent = unique[0] if len(unique) == 1 else None
    links = [] if parent is not None else [Link(p) for p in unique]
    with tracer().start_as_current_span(
        name, context=parent_context(parent), kind=kind, links=links,
        attributes={"exchange.batch.size": len(parents), **(attributes or {})},
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        with failures_marked(span):
            yield span


@contextmanager
def failures_marked(*spans: Span) -> Iterator[None]:
    """Mark `spans` failed when the block raises: error status and `error.type` (the exception's
    class; never its message, which may quote the input)."""
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.set_status(StatusCode.ERROR)
            span.set_attribute("error.type", type(exc).__name__)
        raise


__all__ = [
    "SpanKind",
    "TraceFlags",
    "batch_span",
    "configure_tracing",
    "current_span",
    "enabled",
    "exporter_configured",
    "failures_marked",
    "force_flush",
    "name_server_span",
    "parent_context",
    "server_spans",
    "span",
    "span_context",
    "traceparent_of",
    "tracer",
    "unsampled",
]
