"""The relay's `produce` against a real broker: outbox rows go out as one record batch per topic
partition through the idempotent producer, each on the partition Kafka's default partitioner
gives its key, in row order within a partition, with their headers and payload bytes intact."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from exchange.core.kafka import header_map, make_producer
from exchange.core.outbox import produce
from exchange.core.settings import KafkaSettings
from exchange_devtools.engines.kafka import KafkaServer

PARTITIONS = 4


def _row(topic: str, n: int) -> dict[str, object]:
    return {
        "topic": topic,
        "event_id": uuid.uuid4(),
        "record_id": uuid.uuid4(),
        "payload": f'{{"n": {n}, "pad": "{"x" * 300}"}}',
        "correlation_id": f"corr-{n}",
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
    }


async def test_rows_land_on_the_default_partition_in_order_with_headers(kafka: KafkaServer) -> None:
    topic, other = f"produce.{uuid.uuid4().hex[:8]}", f"produce.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (topic, other)])
    finally:
        await admin.close()
    rows = [_row(topic if n % 5 else other, n) for n in range(400)]
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers)
    # batches of ~4 KiB: ~11 rows each, so every partition's rows span several batches
    producer = make_producer(settings, max_batch_size=4096, linger_ms=2)
    await producer.start()
    try:
        await produce(producer, rows, str.encode)
        await produce(producer, [], str.encode)  # nothing to send is fine
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, other, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        got = [await asyncio.wait_for(consumer.getone(), 30) for _ in rows]
    finally:
        await consumer.stop()

    partitions = list(range(PARTITIONS))
    by_event = {str(row["event_id"]): row for row in rows}
    for message in got:
        headers = header_map(message.headers)
        row = by_event.pop(headers["event_id"])
        assert message.topic == row["topic"]
        assert message.key == str(row["record_id"]).encode()
        assert message.value == str(row["payload"]).encode()
        assert message.partition == DefaultPartitioner()(message.key, partitions, partitions)
        assert headers["correlation_id"] == row["correlation_id"]
        assert headers["traceparent"] == row["traceparent"]
        assert headers["content-type"] == "application/json"
    assert not by_event  # every row exactly once
    for t in (topic, other):
        for p in partitions:
            sent = [row["event_id"] for row in rows if row["topic"] == t and
                    DefaultPartitioner()(str(row["record_id"]).encode(), partitions, partitions) == p]  # fmt: skip
            received = [uuid.UUID(header_map(m.headers)["event_id"]) for m in got if m.topic == t and m.partition == p]
            assert received == sent, (t, p)
            assert len(sent) > 11  # more than one batch of this partition
