"""Crashes and outages: SIGKILL mid-batch, the tokenizer and S3 down — nothing lost, nothing doubled,
nothing dead-lettered, and the worker resumes by itself."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from exchange_devtools.engines.base import free_port

from .conftest import Stack, caught_up, synthea_lines, wait_for

TYPES = ("Patient", "Encounter", "Condition", "Procedure")
EXPECTED = {"encounters": "Encounter", "conditions": "Condition", "procedures": "Procedure"}


async def test_sigkill_mid_batch_then_restart_loses_nothing_and_duplicates_nothing(stack: Stack) -> None:
    events, counts = [], {}
    for resource_type in TYPES:
        lines = synthea_lines(resource_type)
        counts[resource_type] = len(lines)
        events += await stack.ingest_ndjson(lines)
    await stack.publish(events)
    worker = stack.start_worker(NORMALIZER_BATCH="200")

    async def partly_done() -> bool:
        return await stack.count("normalizer.inbox") >= 600

    await wait_for(partly_done, timeout=60, what="a first part of the events")
    stack.kill_worker(worker)  # SIGKILL, in the middle of the next batches
    done_before = await stack.count("normalizer.inbox")
    assert 600 <= done_before < len(events), "the kill came too late to test anything"

    # a redelivery of already-processed events on top (at-least-once upstream)
    await stack.publish(events[:300])
    stack.start_worker(NORMALIZER_BATCH="200")

    async def all_done() -> bool:
        return await stack.count("normalizer.inbox") == len(events) and await caught_up(stack)

    await wait_for(all_done, timeout=120, what="every event after the restart")
    assert await stack.count("canonical.records") == len(events)
    for table, resource_type in EXPECTED.items():
        assert await stack.count(f"canonical.{table}") == counts[resource_type], table
    assert len(await stack.fetch("SELECT * FROM canonical.patients WHERE record_id IS NOT NULL")) == counts["Patient"]
    assert await stack.count("normalizer.outbox") == len(events)


def serve_tokenizer_on(port: int) -> uvicorn.Server:
    from exchange.tokenizer.app import create_app
    from exchange.tokenizer.settings import TokenizerSettings

    settings = TokenizerSettings(ENV="local", TOKENIZATION_SECRET="normalizer-test-secret-0123456789")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


async def dlq_count(stack: Stack) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(stack.dlq, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_a_tokenizer_outage_pauses_retries_and_resumes_without_dead_letters(stack: Stack) -> None:
    port = free_port()
    events = await stack.ingest_ndjson(synthea_lines("Patient"))
    events += await stack.ingest_ndjson(synthea_lines("Condition", 40))
    await stack.publish(events)
    stack.start_worker(TOKENIZER_URL=f"http://127.0.0.1:{port}")

    async def retrying() -> bool:
        return '"dependency": "tokenizer"' in stack.log_text()

    await wait_for(retrying, timeout=30, what="a transient tokenizer failure")
    await asyncio.sleep(2)
    assert await stack.count("normalizer.inbox") == 0
    assert await dlq_count(stack) == 0
    server = serve_tokenizer_on(port)
    try:

        async def all_done() -> bool:
            return await stack.count("normalizer.inbox") == len(events)

        await wait_for(all_done, timeout=60, what="recovery after the tokenizer came back")
    finally:
        server.should_exit = True
    assert await dlq_count(stack) == 0
    assert "normalizer_resumed" in stack.log_text()


async def test_an_s3_outage_pauses_retries_and_resumes_without_dead_letters(stack: Stack, s3) -> None:
    events = await stack.ingest_ndjson(synthea_lines("Encounter", 50))
    events += await stack.ingest_ndjson(synthea_lines("Patient", 3))
    s3.stop()
    try:
        await stack.publish(events)
        stack.start_worker()

        async def retrying() -> bool:
            return '"dependency": "s3"' in stack.log_text()

        await wait_for(retrying, timeout=60, what="a transient S3 failure")
        assert await stack.count("normalizer.inbox") == 0
    finally:
        s3.start()

    async def all_done() -> bool:
        return await stack.count("normalizer.inbox") == len(events)

    await wait_for(all_done, timeout=90, what="recovery after S3 came back")
    assert await dlq_count(stack) == 0


async def test_two_workers_share_the_partitions_and_one_dying_hands_over_without_loss(stack: Stack) -> None:
    events = []
    for resource_type in ("Patient", "Encounter", "Procedure"):
        events += await stack.ingest_ndjson(synthea_lines(resource_type))
    await stack.publish(events)
    first = stack.start_worker(NORMALIZER_BATCH="100")
    stack.start_worker(NORMALIZER_BATCH="100")

    async def partly_done() -> bool:
        return await stack.count("normalizer.inbox") >= 300

    await wait_for(partly_done, timeout=60, what="both workers started")
    stack.kill_worker(first)  # the group rebalances its partitions to the survivor

    async def all_done() -> bool:
        return await stack.count("normalizer.inbox") == len(events) and await caught_up(stack)

    await wait_for(all_done, timeout=120, what="the survivor finishing the work")
    assert await stack.count("canonical.records") == len(events)
    assert await stack.count("canonical.encounters") == len(synthea_lines("Encounter"))
    assert await stack.count("canonical.procedures") == len(synthea_lines("Procedure"))
    assert await stack.count("normalizer.outbox") == len(events)
