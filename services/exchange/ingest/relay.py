"""Outbox relay: publishes `ingest.outbox` rows to Kafka `record.ingested.v1`, at least once.

The relay itself is `exchange.core.outbox.OutboxRelay` (snapshot-safe polling of the pending
queue `ingest.outbox_pending` with `FOR UPDATE SKIP LOCKED`, idempotent producer, its entries
taken for good only after every ack, backoff while Kafka is down); this module gives it the
ingest outbox, its NOTIFY channel (`ingest_outbox`, a wake-up only, sent only while a relay
listens: `ingest.outbox_listening`), its producer and metrics,
and runs it standalone (`exchange serve relay`), with `/healthz`, `/readyz` (Postgres and Kafka:
what publishing needs) and `/metrics` on `RELAY_METRICS_PORT` when it is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import asyncpg

from exchange.core import aio, outbox, startup
from exchange.core.db import create_pool, pool_readiness
from exchange.core.kafka import bootstrap_readiness, make_producer
from exchange.core.logging import bind_correlation_id, configure_logging, get_logger
from exchange.core.probes import ProbeServer, waiting_for
from exchange.core.retry import until_stopped
from exchange.core.tracing import configure_tracing
from exchange.ingest.metrics import IngestMetrics
from exchange.ingest.settings import RelaySettings

log = get_logger(__name__)
CHANNEL = "ingest_outbox"


class OutboxRelay(outbox.OutboxRelay):
    """The relay of `ingest.outbox`; `run(stop)` until `stop` is set, then `close()`."""

    def __init__(self, settings: RelaySettings, pool: asyncpg.Pool, metrics: IngestMetrics) -> None:
        table = outbox.Outbox(
            "ingest.outbox",
            channel=CHANNEL,
            notify_gate=True,  # migration 0006
            batch_size=settings.relay_batch_size,
            poll_seconds=settings.relay_poll_seconds,
            publish_timeout=settings.relay_publish_timeout,
            max_backoff=settings.relay_max_backoff,
            retention_seconds=settings.relay_outbox_retention_seconds or None,
            prune_seconds=settings.relay_prune_seconds,
        )
        super().__init__(
            table,
            pool,
            producer_factory=lambda: make_producer(settings, linger_ms=2, max_batch_size=256 * 1024),
            listen_dsn=settings.database_url.get_secret_value(),
            published=metrics.published,
            errors=metrics.publish_errors,
            pruned=metrics.pruned,
            tables=metrics.tables,
        )
        self.settings = settings
        self.metrics = metrics


async def serve(settings: RelaySettings, stop: asyncio.Event | None = None) -> None:
    """Run a standalone relay (its own pool and, if configured, its probe port) until stopped."""
    from prometheus_client import CollectorRegistry

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    probes = None
    if settings.relay_metrics_port:
        readiness = {
            "postgres": waiting_for("postgres"),
            "kafka": bootstrap_readiness(settings.kafka_bootstrap_servers),
        }
        probes = await ProbeServer("relay", settings.host, settings.relay_metrics_port, registry, readiness).start()
    try:
        pool = await _pool_with_retry(settings, stop)
        if pool is None:
            return
        if probes is not None:
            probes.readiness["postgres"] = pool_readiness(pool)
        relay = OutboxRelay(settings, pool, metrics)
        refresher = asyncio.create_task(metrics.refresh_forever(pool))
        with bind_correlation_id(None, component="relay"):
            log.info("relay_started", topic=settings.ingest_topic)
            try:
                await relay.run(stop)
            finally:
                refresher.cancel()
                await relay.close()
                await pool.close()
                log.info("relay_stopped")
    finally:
        if probes is not None:
            await probes.stop()


async def _pool_with_retry(settings: RelaySettings, stop: asyncio.Event) -> Any:
    """The pool, once Postgres answers (None when stopped first). The wait between tries stays
    short (startup's own backoff): the relay's Pod starts with Postgres, and a 30 s back-off kept
    a pipeline from Ready that long after its database was up."""

    def waiting(error: BaseException, delay: float) -> None:
        log.warning("relay_db_unavailable", error_class=type(error).__name__, retry_in=delay)

    return await until_stopped(
        lambda: create_pool(settings, generic_plans=True, min_size=1, max_size=2), stop,
        retry_on=(Exception,), on_retry=waiting, first=startup.FIRST_DELAY, maximum=startup.MAX_DELAY,
    )  # fmt: skip


def run(settings: RelaySettings | None = None) -> None:
    """Entry point of `exchange serve relay`: configure logging, run until SIGTERM/SIGINT."""
    from exchange.core.settings import load

    settings = settings or load(RelaySettings)
    configure_logging("ingest-relay", settings.log_level, settings.log_json)
    configure_tracing("relay")
    aio.run(serve(settings))


if __name__ == "__main__":
    run()
