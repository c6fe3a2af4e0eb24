"""`exchange replay` by tenant, record type and upload time, a dry run that publishes nothing, and
the refusal of a window older than the inbox remembers (ADR 0013); the worker keeps its inbox
bounded and reports the size and oldest row of its tables."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from exchange_devtools.engines.base import free_port

from .conftest import EXCHANGE, Stack, synthea_lines, wait_for

BETA = "beta"


def replay(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**stack.env, **env, "PATH": os.environ.get("PATH", "")}
    return subprocess.run([str(EXCHANGE), "replay", "-q", *args], capture_output=True, text=True, timeout=120,
                          env=environ, check=False)  # fmt: skip


async def published(stack: Stack) -> list[dict]:
    """Every event on the source topic, from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(stack.topic, p) for p in range(3)]  # as the stack fixture creates it
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        events: list[dict] = []
        async with asyncio.timeout(30):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    events += [orjson.loads(r.value) for r in records]
        return events
    finally:
        await consumer.stop()


async def test_replay_filters_by_tenant_type_and_time_and_a_dry_run_publishes_nothing(stack: Stack) -> None:
    await stack.ingest_ndjson(synthea_lines("Patient", 3))
    await stack.ingest_ndjson(synthea_lines("Encounter", 2))
    beta = b"\n".join(synthea_lines("Patient")[3:5]) + b"\n"
    await stack.put_raw(beta, "application/fhir+ndjson", tenant=BETA)

    everything = replay(stack, "--dry-run")
    assert everything.returncode == 0, everything.stderr
    assert "would replay 7 event(s) from 3 raw object(s)" in everything.stdout
    acme_patients = replay(stack, "--dry-run", "--tenant", "acme", "--type", "Patient")
    assert "would replay 3 event(s) from 2 raw object(s)" in acme_patients.stdout, acme_patients.stdout
    assert await published(stack) == []  # dry runs publish nothing

    encounters = replay(stack, "--tenant", "acme", "--type", "Encounter")
    assert encounters.returncode == 0, encounters.stderr
    assert "replayed 2 event(s)" in encounters.stdout
    events = await published(stack)
    assert sorted((e["tenant"], e["record_type"]) for e in events) == [("acme", "Encounter")] * 2

    patients = replay(stack, "--type", "Patient", "--type", "Condition")  # every tenant
    assert "replayed 5 event(s)" in patients.stdout, patients.stdout
    events = await published(stack)
    patient_tenants = sorted(e["tenant"] for e in events if e["record_type"] == "Patient")
    assert patient_tenants == ["acme"] * 3 + [BETA] * 2
    assert len({e["event_id"] for e in events}) == 7  # deterministic per object line, distinct per line

    before = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    earlier = replay(stack, "--until", before)  # the default --since is the start of the replay window
    assert earlier.returncode == 0 and "replayed 0 event(s) from 0 raw object(s)" in earlier.stdout
    assert len(await published(stack)) == 7


async def test_replay_refuses_a_window_older_than_the_inbox_remembers_in_one_line(stack: Stack) -> None:
    await stack.ingest_ndjson(synthea_lines("Patient", 1))
    too_old = replay(stack, "--since", "2001-01-01")
    assert too_old.returncode == 1 and too_old.stdout == ""
    assert too_old.stderr.count("\n") == 1 and too_old.stderr.startswith("error: --since 2001-01-01T00:00:00+00:00")
    assert "replay window (30 days, NORMALIZER_REPLAY_WINDOW_SECONDS" in too_old.stderr
    just_inside = (datetime.now(UTC) - timedelta(days=29)).isoformat()
    assert replay(stack, "--dry-run", "--since", just_inside).returncode == 0
    # an inbox that forgets sooner than the window is a settings error, before any work
    short = replay(stack, "--dry-run", NORMALIZER_INBOX_RETENTION_SECONDS=str(7 * 86_400))
    assert short.returncode == 1 and short.stderr.count("\n") == 1
    assert "NORMALIZER_INBOX_RETENTION_SECONDS must be longer than NORMALIZER_REPLAY_WINDOW_SECONDS" in short.stderr
    assert await published(stack) == []


async def test_the_worker_prunes_its_inbox_and_reports_its_tables(stack: Stack) -> None:
    for age, count in ((7200, 3), (10, 2)):
        await stack.fetch(
            "INSERT INTO normalizer.inbox (event_id, record_id, topic, processed_at)"
            " SELECT gen_random_uuid(), gen_random_uuid(), 't', now() - make_interval(secs => $1)"
            " FROM generate_series(1, $2)",
            float(age),
            count,
        )
    port = free_port()
    stack.start_worker(
        NORMALIZER_INBOX_RETENTION_SECONDS="3600", NORMALIZER_REPLAY_WINDOW_SECONDS="1800",
        NORMALIZER_PRUNE_SECONDS="0.2", NORMALIZER_METRICS_PORT=str(port), HOST="127.0.0.1",
    )  # fmt: skip

    async def pruned() -> bool:
        return await stack.count("normalizer.inbox") == 2

    await wait_for(pruned, timeout=60, what="the old inbox rows deleted")

    async def scraped() -> bool:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        return 'exchange_retention_deleted_rows_total{table="normalizer.inbox"} 3.0' in text and (
            'exchange_table_rows{table="normalizer.outbox"}' in text
        )

    await wait_for(scraped, timeout=30, what="the table gauges")
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    gauge = 'exchange_table_oldest_row_age_seconds{table="normalizer.inbox"}'
    ages = [line for line in text.splitlines() if line.startswith(gauge)]
    assert len(ages) == 1 and 0 < float(ages[0].split()[-1]) < 3600
