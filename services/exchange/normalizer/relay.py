"""Outbox relay of `record.normalized.v1`: publishes `normalizer.outbox` rows, at least once.

Rows are picked by `published_at IS NULL` with `FOR UPDATE SKIP LOCKED` (never a high-water mark,
so a row committing late is simply picked by a later poll), sent with the idempotent producer
(key = record id; headers `event_id`, `correlation_id`, `traceparent`), and marked published in
the same transaction after every broker ack. A crash in between republishes: consumers
de-duplicate by event id. The worker wakes the relay after each committed batch.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from exchange.core.logging import get_logger

log = get_logger(__name__)

_PICK = """
SELECT event_id, record_id, topic, payload, correlation_id, traceparent
  FROM normalizer.outbox
 WHERE published_at IS NULL
 ORDER BY seq
 LIMIT $1
   FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE normalizer.outbox SET published_at = now() WHERE event_id = ANY($1::uuid[])"


class OutboxRelay:
    """Publishes until `stop` is set; a failure backs off (0.5 s doubling to 30 s) and retries."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, batch: int = 500, poll: float = 0.5) -> None:
        self.pool = pool
        self.producer = producer
        self.batch = batch
        self.poll = poll
        self.wake = asyncio.Event()
        self.published = 0

    async def publish_batch(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_PICK, self.batch)
            if not rows:
                return 0
            async with asyncio.timeout(15):
                futures = [
                    await self.producer.send(
                        row["topic"],
                        value=orjson.dumps(row["payload"]),
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
                await asyncio.gather(*futures)
            await conn.execute(_MARK, [row["event_id"] for row in rows])
        self.published += len(rows)
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                if await self.publish_batch() >= self.batch:
                    continue
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("normalized_relay_failed", error_class=type(exc).__name__, retry_in=backoff)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self.wake.clear()
            await _wait(stop, self.poll, self.wake)


async def _wait(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
