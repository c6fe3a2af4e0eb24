"""The relay's wake-ups against real Postgres and Kafka, on an outbox whose trigger notifies only
while a relay listens (`outbox_notify_gate_v1`). The relay's poll interval is far longer than any
wait here, so only NOTIFY (or its own picking while busy) gets rows out in time: an idle relay
is woken by the commit of a row; while commits keep coming it does not listen and they send no
NOTIFY, yet all are published; once they stop it listens again and the next row goes out at
once. A transaction that read the gate closed still has its row published at once when it
commits after the relay began to listen: the relay waits for it before its last pick."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from exchange.core.kafka import make_producer
from exchange.core.migrations import outbox_notify_gate_v1, outbox_pending_queue_v1
from exchange.core.outbox import Outbox, OutboxRelay
from exchange.core.settings import KafkaSettings
from exchange_devtools.engines.kafka import KafkaServer
from exchange_devtools.engines.postgres import PostgresServer
from exchange_devtools.outbox_probe import legacy_outbox_sql

_DDL = legacy_outbox_sql("wake_probe", channel="wake_probe")
_INSERT = """
INSERT INTO wake_probe.outbox (event_id, record_id, topic, payload, correlation_id, traceparent)
SELECT gen_random_uuid(), gen_random_uuid(), $1, '{"n": ' || n || '}', 'c', 'tp' FROM unnest($2::int[]) AS n
"""


class _CountingEvent(asyncio.Event):
    """The relay's `wake`, counting the wake-ups it was sent."""

    sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


@dataclass
class _Probe:
    db: asyncpg.Connection
    topic: str
    relay: OutboxRelay
    wake: _CountingEvent
    consumer: AIOKafkaConsumer

    async def published(self, count: int, seconds: float) -> list[int]:
        got: list[int] = []
        async with asyncio.timeout(seconds):
            while len(got) < count:
                got.append(orjson.loads((await self.consumer.getone()).value)["n"])
        return got

    async def queue_empties(self, seconds: float) -> bool:
        """Whether the pending queue is empty within `seconds`."""
        deadline = time.monotonic() + seconds
        while await self.db.fetchval("SELECT count(*) FROM wake_probe.outbox_pending"):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


@pytest.fixture
async def probe(postgres: PostgresServer, kafka: KafkaServer) -> AsyncIterator[_Probe]:
    topic = f"wake.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:  # before the consumer starts: it would not see a topic made later until a metadata refresh
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    db = await asyncpg.connect(postgres.dsn)
    await db.execute(
        _DDL + outbox_pending_queue_v1("wake_probe")[0] + outbox_notify_gate_v1("wake_probe", "wake_probe")[0]
    )
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=2)
    outbox = Outbox("wake_probe.outbox", channel="wake_probe", notify_gate=True, poll_seconds=60, linger_seconds=0.05)
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers)
    relay = OutboxRelay(outbox, pool, producer_factory=lambda: make_producer(settings), listen_dsn=postgres.dsn)
    relay.wake = wake = _CountingEvent()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield _Probe(db, topic, relay, wake, consumer)
    finally:
        await relay.close()
        await consumer.stop()
        await pool.close()
        await db.execute("DROP SCHEMA IF EXISTS wake_probe CASCADE")
        await db.close()


async def _running(relay: OutboxRelay) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(relay.run(stop))


async def test_an_idle_relay_listens_and_a_busy_one_picks_without_a_notify_per_commit(
    probe: _Probe, postgres: PostgresServer
) -> None:
    sent = 0

    def heard(*_: object) -> None:
        nonlocal sent
        sent += 1

    watcher = await asyncpg.connect(postgres.dsn)  # hears every NOTIFY the trigger sends
    await watcher.add_listener("wake_probe", heard)
    stop, running = await _running(probe.relay)
    try:
        await asyncio.sleep(1)  # idle: it has found nothing and listens
        await probe.db.execute(_INSERT, probe.topic, [0])
        assert await probe.published(1, 10) == [0]  # woken long before the 60 s poll

        wakes, notifies, numbers = probe.wake.sets, sent, list(range(1, 201))
        started = time.monotonic()
        for n in numbers:  # 200 commits over ~2 s
            await probe.db.execute(_INSERT, probe.topic, [n])
            await asyncio.sleep(0.01)
        assert sorted(await probe.published(len(numbers), 15)) == numbers
        assert time.monotonic() - started < 15
        assert probe.wake.sets - wakes < 20, "the relay was woken by the commits while it was picking rows anyway"
        assert sent - notifies < 20, "the commits sent a NOTIFY while no relay listened"

        await asyncio.sleep(1)  # quiet again: a pick finds nothing, it listens again
        await probe.db.execute(_INSERT, probe.topic, [999])
        assert await probe.published(1, 10) == [999]
        assert await probe.queue_empties(5)  # the relay's delete commits after the broker's ack
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await watcher.close()


async def test_a_row_whose_transaction_read_the_gate_closed_is_published_once_it_commits(
    probe: _Probe, postgres: PostgresServer
) -> None:
    await probe.db.execute("UPDATE wake_probe.outbox_listening SET listening = false")
    writer = probe.db.transaction()
    await writer.start()
    await probe.db.execute(_INSERT, probe.topic, [7])  # its trigger read the gate closed: no NOTIFY
    stop, running = await _running(probe.relay)  # finds nothing committed, starts to listen
    observer = await asyncpg.connect(postgres.dsn)
    try:
        async with asyncio.timeout(10):
            while not await observer.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ):
                await asyncio.sleep(0.05)  # the relay waits for the writer before its last pick
        assert await observer.fetchval("SELECT listening FROM wake_probe.outbox_listening")
        await writer.commit()
        assert await probe.published(1, 10) == [7]  # not left to the 60 s poll
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await observer.close()
