"""Prometheus metrics shared by every HTTP service. Labels never carry PII or ids.

With several server processes (`WEB_CONCURRENCY` > 1) each keeps its own counters, and a scrape
reaches one of them at random. `use_multiprocess_dir` (called by `exchange serve` before the
workers start) turns on prometheus-client's multiprocess mode: every process writes its samples
to files in one directory, and `exposition` answers with all of them added up, whichever process
serves the scrape.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_dir() -> Path | None:
    """Set `PROMETHEUS_MULTIPROC_DIR` for this process and the workers it starts, before any of them
    creates a metric: the one given (its files from an earlier run removed, or its counters would
    carry on from them), else a new temporary directory, which is returned for the caller to
    remove when the server stops."""
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    path = Path(tempfile.mkdtemp(prefix="exchange-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(path)
    return path


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition of `registry`, or, in multiprocess mode, of every process's samples."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
    return bytes(generate_latest(registry))


class HttpMetrics:
    """Request count by route template and status, and a latency histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        # labels() costs ~3 µs a call (argument checks, a lock, a dict); a request looks its two
        # children up once. The label values are bounded: route templates ("unmatched" for any
        # other path), the methods the HTTP parser accepts, status codes.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        children = self._children.get((route, method, status))
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._children[(route, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)
