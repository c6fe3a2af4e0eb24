"""JSON structured logging (structlog) with a correlation id and a redaction processor.

`configure_logging()` once per process; `get_logger(__name__)` everywhere. The correlation id
lives in a context variable bound per request (HTTP middleware) and per message (consumers) via
`bind_correlation_id()`; the current span's `trace_id`/`span_id` are added when there is one
(`exchange.core.tracing`). The redaction processor is defence in depth: code must not log PII in the
first place, but keys that name PII are masked and long strings are cut wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import trace
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

CORRELATION_HEADER = "X-Correlation-ID"
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

# Keys whose values are never logged, whatever their nesting.
REDACTED_KEYS = frozenset(
    {
        "name",
        "given",
        "family",
        "first_name",
        "last_name",
        "firstname",
        "lastname",
        "birth_date",
        "birthdate",
        "dob",
        "ssn",
        "social_security_number",
        "address",
        "line",
        "street",
        "postal_code",
        "zip",
        "phone",
        "telecom",
        "email",
        "password",
        "secret",
        "token",
        "authorization",
        "body",
        "payload",
        "raw",
        "subject",
        "identifier",
        "text",
    }
)
_SSN_RE = re.compile(r"\b\d{3}-?\d{2}-?\d{4}\b")
_DATE_RE = re.compile(r"\b(19|20)\d{2}-\d{2}-\d{2}\b")
MAX_VALUE_CHARS = 512


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def valid_correlation_id(value: str | None) -> str | None:
    """Accept a caller's correlation id only when it is short and plain (no injection)."""
    return value if value and _CORRELATION_RE.match(value) else None


@contextmanager
def bind_correlation_id(correlation_id: str | None = None, **extra: Any) -> Iterator[str]:
    """Bind a correlation id (and extra safe fields) to every log line in this context."""
    cid = valid_correlation_id(correlation_id) or new_correlation_id()
    tokens = bind_contextvars(correlation_id=cid, **extra)
    try:
        yield cid
    finally:
        reset_contextvars(**tokens)


def current_correlation_id() -> str | None:
    value = get_contextvars().get("correlation_id")
    return str(value) if value else None


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 4:
        return "[depth]"
    if isinstance(value, MutableMapping):
        return {
            k: ("[redacted]" if str(k).lower() in REDACTED_KEYS else _scrub(v, depth + 1)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value[:50]]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def scrub_text(value: str) -> str:
    """`value` with SSN- and date-shaped text replaced, cut at MAX_VALUE_CHARS (logs and spans)."""
    value = _SSN_RE.sub("[redacted-ssn]", value)
    value = _DATE_RE.sub("[redacted-date]", value)
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current span's `trace_id` and `span_id` (W3C hex), when there is
    one (sampled or not), so a log line leads to its trace and back."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event_dict.setdefault("span_id", f"{ctx.span_id:016x}")
    return event_dict


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask PII-named keys, SSN/date-shaped strings, and cap long values."""
    for key in list(event_dict):
        if key in ("timestamp", "level", "logger"):
            continue
        if key.lower() in REDACTED_KEYS:
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (test capture, redirected stderr)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the stdlib root logger (uvicorn, aiokafka, kopf) to one JSON stream."""

    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        add_service,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks without frame locals: locals can hold request bodies and PII.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        if json
        else structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "aiokafka", "botocore", "aiobotocore", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
