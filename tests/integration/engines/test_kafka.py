"""Kafka 4 (KRaft) as a real local process, through aiokafka: produce, consume, committed offsets."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from exchange_devtools.engines.kafka import KafkaServer


async def _produce(kafka: KafkaServer, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=f"k{i}".encode())
    finally:
        await producer.stop()


def _consumer(kafka: KafkaServer, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def test_produce_and_consume_with_an_auto_created_topic(kafka: KafkaServer) -> None:
    assert kafka.metadata().brokers == ((1, "127.0.0.1", kafka.port),)
    topic = f"smoke.{uuid.uuid4().hex[:8]}"
    sent = [f"event-{i}".encode() for i in range(5)]
    await _produce(kafka, topic, sent)
    consumer = _consumer(kafka, topic, f"g-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        got = [await asyncio.wait_for(consumer.getone(), 30) for _ in sent]
    finally:
        await consumer.stop()
    assert [m.value for m in got] == sent
    assert [m.key for m in got] == [f"k{i}".encode() for i in range(5)]


async def test_committed_offset_survives_a_consumer_restart(kafka: KafkaServer) -> None:
    topic, group = f"smoke.{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    sent = [f"m{i}".encode() for i in range(10)]
    await _produce(kafka, topic, sent)
    tp = TopicPartition(topic, 0)

    first = _consumer(kafka, topic, group)
    await first.start()
    try:
        head = [await asyncio.wait_for(first.getone(), 30) for _ in range(4)]
        await first.commit()
        assert await first.committed(tp) == head[-1].offset + 1
    finally:
        await first.stop()
    assert [m.value for m in head] == sent[:4]

    second = _consumer(kafka, topic, group)
    await second.start()
    try:
        rest = [await asyncio.wait_for(second.getone(), 30) for _ in range(6)]
    finally:
        await second.stop()
    assert [m.value for m in rest] == sent[4:]
    assert rest[0].offset == head[-1].offset + 1


async def test_messages_and_offsets_survive_a_broker_restart(kafka: KafkaServer) -> None:
    topic, group = f"smoke.{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await _produce(kafka, topic, [b"before-1", b"before-2"])
    consumer = _consumer(kafka, topic, group)
    await consumer.start()
    try:
        assert (await asyncio.wait_for(consumer.getone(), 30)).value == b"before-1"
        await consumer.commit()
    finally:
        await consumer.stop()

    port, cluster_id = kafka.port, kafka.cluster_id
    kafka.restart()
    assert kafka.port == port and kafka.metadata().cluster_id == cluster_id

    await _produce(kafka, topic, [b"after-1"])
    consumer = _consumer(kafka, topic, group)
    await consumer.start()
    try:
        got = [(await asyncio.wait_for(consumer.getone(), 30)).value for _ in range(2)]
    finally:
        await consumer.stop()
    assert got == [b"before-2", b"after-1"]
