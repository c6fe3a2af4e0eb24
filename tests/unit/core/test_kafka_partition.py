"""Kafka's default partitioning, re-implemented for the relay's per-partition batches: it must give
every key the partition the Java client and aiokafka give it."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from exchange.core.kafka import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit values there)
JAVA_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_CASES.items())
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_for_every_tail_length() -> None:
    rng = random.Random(7)
    for length in range(0, 80):
        for _ in range(25):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), (length, data.hex())


@pytest.mark.parametrize("count", [1, 3, 6, 7, 50])
def test_partition_for_is_the_default_partitioner(count: int) -> None:
    rng = random.Random(count)
    partitions = list(range(count))
    for _ in range(500):
        key = str(rng.getrandbits(128)).encode()
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
