"""The Kafka client factories: how long a request may wait on a broker that went away.

A request written to a connection whose broker Pod was deleted gets no answer and no reset; the
client waits `request_timeout_ms`. With aiokafka's 40 s the normalizer consumed nothing for 40 s
after the Kafka Pod was re-created and back within 6 s (hack/chaos); the same consumer with 15 s
was back after 16 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from exchange.core.kafka import make_consumer, make_producer
from exchange.core.settings import KafkaSettings

SETTINGS = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")


@pytest.fixture
async def consumer() -> AsyncIterator[AIOKafkaConsumer]:
    consumer = make_consumer(SETTINGS, "topic", group_id="group")
    yield consumer
    await consumer.stop()


async def test_a_consumer_gives_up_a_request_to_a_vanished_broker_within_15_seconds(consumer: AIOKafkaConsumer) -> None:
    assert consumer._client._request_timeout_ms <= 15_000


async def test_a_consumers_requests_still_outlast_a_rebalance(consumer: AIOKafkaConsumer) -> None:
    """A JoinGroup may wait for the whole rebalance: the request timeout must be longer."""
    assert consumer._client._request_timeout_ms > consumer._rebalance_timeout_ms


async def test_a_producer_gives_up_a_request_to_a_vanished_broker_within_15_seconds() -> None:
    producer = make_producer(SETTINGS)
    try:
        assert producer.client._request_timeout_ms <= 15_000
    finally:
        await producer.stop()
