"""Outbox relay: publishes `ingest.outbox` rows to Kafka `record.ingested.v1`, at least once.

Polling is snapshot-safe: rows are picked by a published flag (`published_at IS NULL`) with
`FOR UPDATE SKIP LOCKED`, never by a high-water mark, so a row whose transaction commits late is
simply picked by a later poll. Several relays may run; each row is locked by one at a time.
A batch is sent with the idempotent producer (key = record id; headers `event_id` = outbox id,
`correlation_id`, `traceparent`), and marked published in the same transaction only after every
broker ack. A crash between ack and commit republishes the batch: consumers de-duplicate by
event id. LISTEN/NOTIFY (`ingest_outbox`) only wakes the relay early; the poll interval is the
safety net. When Kafka is down the rows wait and the relay retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from exchange.core.db import create_pool
from exchange.core.kafka import make_producer
from exchange.core.logging import bind_correlation_id, configure_logging, get_logger
from exchange.ingest.metrics import IngestMetrics
from exchange.ingest.settings import IngestSettings

log = get_logger(__name__)
CHANNEL = "ingest_outbox"

_PICK = """
SELECT event_id, record_id, topic, payload::text AS payload, correlation_id, traceparent
  FROM ingest.outbox
 WHERE published_at IS NULL
 ORDER BY seq
 LIMIT $1
   FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE ingest.outbox SET published_at = now() WHERE event_id = ANY($1::uuid[])"


class OutboxRelay:
    """One relay loop over a pool; `run(stop)` until `stop` is set."""

    def __init__(self, settings: IngestSettings, pool: asyncpg.Pool, metrics: IngestMetrics) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.producer: AIOKafkaProducer | None = None
        self.wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = make_producer(self.settings, linger_ms=2, max_batch_size=256 * 1024)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self.producer = producer
        return self.producer

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        conn = await asyncpg.connect(self.settings.database_url.get_secret_value())
        await conn.add_listener(CHANNEL, lambda *_: self.wake.set())
        self._listener = conn

    async def publish_batch(self) -> int:
        """Publish up to one batch of unpublished rows; returns how many were published."""
        producer = await self._ensure_producer()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_PICK, self.settings.relay_batch_size)
            if not rows:
                return 0
            async with asyncio.timeout(self.settings.relay_publish_timeout):
                acks = [
                    await producer.send(
                        row["topic"],
                        value=row["payload"].encode(),
                        key=str(row["record_id"]).encode(),
                        headers=[
                            ("event_id", str(row["event_id"]).encode()),
                            ("correlation_id", row["correlation_id"].encode()),
                            ("traceparent", row["traceparent"].encode()),
                            ("content-type", b"application/json"),
                        ],
                    )
                    for row in rows
                ]
                await asyncio.gather(*acks)
            await conn.execute(_MARK, [row["event_id"] for row in rows])
        self.metrics.published.inc(len(rows))
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; errors back off (0.5 s doubling to RELAY_MAX_BACKOFF) and retry."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._ensure_listener()
                published = await self.publish_batch()
                backoff = 0.5
                if published >= self.settings.relay_batch_size:
                    continue  # more waiting: no sleep
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.publish_errors.inc()
                log.warning("relay_publish_failed", error_class=type(exc).__name__, retry_in=backoff)
                await self._drop_producer()
                await self._close_listener()
                await _sleep_or(stop, backoff)
                backoff = min(backoff * 2, self.settings.relay_max_backoff)
                continue
            self.wake.clear()
            await _sleep_or(stop, self.settings.relay_poll_seconds, self.wake)

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)

    async def close(self) -> None:
        await self._drop_producer()
        await self._close_listener()


async def _sleep_or(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def serve(settings: IngestSettings, stop: asyncio.Event | None = None) -> None:
    """Run a standalone relay (its own pool and, if configured, a /metrics port) until stopped."""
    from prometheus_client import CollectorRegistry, start_http_server

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    if settings.relay_metrics_port:
        start_http_server(settings.relay_metrics_port, addr=settings.host, registry=registry)
    pool = await _pool_with_retry(settings, stop)
    if pool is None:
        return
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


async def _pool_with_retry(settings: IngestSettings, stop: asyncio.Event) -> Any:
    delay = 1.0
    while not stop.is_set():
        try:
            return await create_pool(settings, min_size=1, max_size=2)
        except Exception as exc:
            log.warning("relay_db_unavailable", error_class=type(exc).__name__, retry_in=delay)
            await _sleep_or(stop, delay)
            delay = min(delay * 2, 30.0)
    return None


def run(settings: IngestSettings | None = None) -> None:
    """Entry point of `exchange serve relay`: configure logging, run until SIGTERM/SIGINT."""
    from exchange.core.settings import load

    settings = settings or load(IngestSettings)
    configure_logging("ingest-relay", settings.log_level, settings.log_json)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    run()
