"""The Jobs' commands wait for their engines: `exchange migrate` started before Postgres answers
and `exchange bootstrap` started before Kafka answers finish once the engine is up, instead of
failing into a Job's restart back-off (a pipeline's Job and its engines start together)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiobotocore.session import get_session

from exchange_devtools.late_port import LatePort

EXCHANGE = str(Path(sys.executable).with_name("exchange"))
ENGINE_LATE_BY = 1.5
"""Seconds the engine "starts" after the command; there is no condition to wait on."""


def start_late(args: list[str], env: dict[str, str], late: LatePort) -> subprocess.CompletedProcess[str]:
    """Run the CLI, open the engine's port while it runs, and return how it ended."""
    proc = subprocess.Popen([EXCHANGE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(ENGINE_LATE_BY)
    assert proc.poll() is None, f"{args[0]} gave up before its engine came up: {proc.communicate()}"
    late.open()
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


async def test_migrate_started_before_postgres_answers_migrates_once_it_does(postgres: Any):
    database = f"late_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    with LatePort(postgres.port) as late:
        dsn = f"postgresql://{postgres.user}:{postgres.password}@127.0.0.1:{late.port}/{database}"
        result = start_late(["migrate"], {**os.environ, "ENV": "local", "DATABASE_URL": dsn}, late)
    assert result.returncode == 0, result.stderr
    assert "migrated: exchange.ingest.migrations" in result.stdout
    conn = await asyncpg.connect(postgres.dsn_for(database))
    try:
        assert await conn.fetchval("SELECT to_regclass('ingest.outbox') IS NOT NULL")
    finally:
        await conn.close()


async def test_bootstrap_started_before_kafka_answers_creates_topics_and_bucket_once_it_does(kafka: Any, s3: Any):
    bucket = f"late-{uuid.uuid4().hex[:8]}"
    with LatePort(kafka.port) as late:
        env = {
            **os.environ, **s3.env(), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{late.port}",
            "S3_BUCKET_RAW": bucket, "ENV": "local",
        }  # fmt: skip
        result = start_late(["bootstrap"], env, late)
    assert result.returncode == 0, result.stderr
    assert "bucket ready" in result.stdout
    async with get_session().create_client("s3", **s3.client_kwargs()) as client:
        await client.head_bucket(Bucket=bucket)
