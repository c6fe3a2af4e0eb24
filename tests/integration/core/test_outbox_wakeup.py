"""The relay's wake-ups against real Postgres and Kafka. Its poll interval is far longer than any
wait here, so only NOTIFY (or its own picking while busy) gets rows out in time: an idle relay
is woken by the commit of a row; while commits keep coming it does not listen, so it is not
woken by each of them, yet publishes them all; once they stop it listens again and the next row
goes out at once."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from exchange.core.kafka import make_producer
from exchange.core.migrations import outbox_pending_queue_v1
from exchange.core.outbox import Outbox, OutboxRelay
from exchange.core.settings import KafkaSettings
from exchange_devtools.engines.kafka import KafkaServer
from exchange_devtools.engines.postgres import PostgresServer

_DDL = """
DROP SCHEMA IF EXISTS wake_probe CASCADE;
CREATE SCHEMA wake_probe;
CREATE TABLE wake_probe.outbox (
    event_id uuid PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, record_id uuid NOT NULL,
    topic text NOT NULL, payload text NOT NULL, correlation_id text NOT NULL, traceparent text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz
);
CREATE FUNCTION wake_probe.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wake_probe', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON wake_probe.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION wake_probe.outbox_notify();
"""
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


async def _published_within(consumer: AIOKafkaConsumer, count: int, seconds: float) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(seconds):
        while len(got) < count:
            message = await consumer.getone()
            got.append(orjson.loads(message.value)["n"])
    return got


async def test_an_idle_relay_listens_and_a_busy_one_picks_without_hearing_every_commit(
    postgres: PostgresServer, kafka: KafkaServer
) -> None:
    topic = f"wake.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:  # before the consumer starts: it would not see a topic made later until a metadata refresh
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    db = await asyncpg.connect(postgres.dsn)
    await db.execute(_DDL + outbox_pending_queue_v1("wake_probe")[0])
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=2)
    outbox = Outbox("wake_probe.outbox", channel="wake_probe", poll_seconds=60, linger_seconds=0.05)
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers)
    relay = OutboxRelay(outbox, pool, producer_factory=lambda: make_producer(settings), listen_dsn=postgres.dsn)
    relay.wake = wake = _CountingEvent()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(1)  # idle: it has found nothing and listens
        await db.execute(_INSERT, topic, [0])
        assert await _published_within(consumer, 1, 10) == [0]  # woken long before the 60 s poll

        before, numbers = wake.sets, list(range(1, 201))
        started = time.monotonic()
        for n in numbers:  # 200 commits over ~2 s, each a NOTIFY
            await db.execute(_INSERT, topic, [n])
            await asyncio.sleep(0.01)
        got = await _published_within(consumer, len(numbers), 15)
        assert sorted(got) == numbers
        assert time.monotonic() - started < 15
        assert wake.sets - before < 20, "the relay heard the commits while it was picking rows anyway"

        await asyncio.sleep(1)  # quiet again: a pick finds nothing, it listens again
        await db.execute(_INSERT, topic, [999])
        assert await _published_within(consumer, 1, 10) == [999]
        assert await db.fetchval("SELECT count(*) FROM wake_probe.outbox_pending") == 0
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await relay.close()
        await consumer.stop()
        await pool.close()
        await db.execute("DROP SCHEMA IF EXISTS wake_probe CASCADE")
        await db.close()
