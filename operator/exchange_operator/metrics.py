"""The operator's own Prometheus metrics: reconciles by trigger and result, errors by reason,
durations. Served on EXCHANGE_OPERATOR_METRICS_PORT (`/metrics`); labels name triggers and
error reasons, never a pipeline's content."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter(
    "exchange_operator_reconciles_total",
    "Pipeline reconciles by trigger (change, resync, drift, delete) and result (ok, error).",
    ["trigger", "result"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "exchange_operator_reconcile_errors_total",
    "Failed reconciles by reason (InvalidSpec, DependencyMissing, ApiError, or the exception class).",
    ["trigger", "reason"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "exchange_operator_reconcile_duration_seconds",
    "Time of one reconcile, by trigger.",
    ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
REASONS = {"InvalidSpec": "InvalidSpec", "MissingDependency": "DependencyMissing", "KubeApiError": "ApiError"}


@contextlib.contextmanager
def observed(trigger: str) -> Iterator[None]:
    """Count and time the reconcile in the block; an exception is counted by reason and re-raised."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        reason = REASONS.get(type(exc).__name__, type(exc).__name__)
        RECONCILES.labels(trigger, "error").inc()
        ERRORS.labels(trigger, reason).inc()
        raise
    else:
        RECONCILES.labels(trigger, "ok").inc()
    finally:
        DURATION.labels(trigger).observe(time.perf_counter() - started)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve `/metrics` from a daemon thread."""
    start_http_server(port, addr=host, registry=REGISTRY)
