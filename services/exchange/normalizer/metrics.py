"""Prometheus metrics of the normalizer. Labels carry classes and outcomes, never ids or values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exchange.core.retention import TableMetrics


class NormalizerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("normalizer_events_total", "Consumed events by outcome.", ["outcome"], registry=registry)
        self.dlq = Counter(
            "normalizer_dlq_total", "Events sent to the dead-letter topic, by error class.", ["error_class"],
            registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "normalizer_transient_retries_total", "Batch retries after a transient failure, by dependency.",
            ["dependency"], registry=registry,
        )  # fmt: skip
        self.paused = Gauge("normalizer_paused", "1 while partitions are paused for a backoff.", registry=registry)
        self.lag = Gauge(
            "normalizer_consumer_lag", "Messages behind the log end, per assigned partition.", ["topic", "partition"],
            registry=registry,
        )  # fmt: skip
        self.tokenizer_seconds = Histogram(
            "normalizer_tokenizer_request_seconds", "Time of one tokenizer call as the normalizer sees it, by outcome.",
            ["outcome"], registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "normalizer_batch_seconds", "Time to normalize and commit one batch.", registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )  # fmt: skip
        self.published = Counter(
            "normalizer_outbox_published_total", "record.normalized.v1 events published.", registry=registry
        )
        self.publish_errors = Counter(
            "normalizer_outbox_publish_errors_total", "Failed outbox relay publish attempts (batches).",
            registry=registry,
        )  # fmt: skip
        self.pruned = Counter(
            "normalizer_outbox_pruned_total", "Published outbox rows deleted after the retention.", registry=registry
        )
        self.tables = TableMetrics(registry)  # inbox and outbox size and oldest row (ADR 0013)
