"""Fixtures for the normalizer against the real engines: a tokenizer, a fresh database, topics
and a bucket per test, raw objects + record.ingested.v1 events as ingest writes them, and the
worker as a subprocess (`exchange serve normalizer`) whose log is kept for PII canary checks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import uvicorn
from aiobotocore.session import get_session
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from exchange.core.storage import content_key
from exchange.normalizer.model import ENTITY_TABLES, FACT_TABLES
from exchange_devtools.engines.base import free_port
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA

REPO = Path(__file__).resolve().parents[3]
EXCHANGE = Path(sys.executable).with_name("exchange")
TENANT = "acme"

CANONICAL_TABLES = ("records", "subjects", "patients", *FACT_TABLES, *ENTITY_TABLES)


@pytest.fixture(scope="session")
def tokenizer_url() -> Iterator[str]:
    """The real tokenizer app (ENV=local: `Bearer dev`) served by uvicorn in a thread."""
    from exchange.tokenizer.app import create_app
    from exchange.tokenizer.settings import TokenizerSettings

    settings = TokenizerSettings(ENV="local", TOKENIZATION_SECRET="normalizer-test-secret-0123456789")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "tokenizer did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@dataclass
class Stack:
    """One test's slice of the engines, and helpers to drive it."""

    env: dict[str, str]
    dsn: str
    bucket: str
    topic: str
    dlq: str
    out_topic: str
    workdir: Path
    s3_kwargs: dict[str, str]
    bootstrap: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    # ---- raw zone and events, as ingest writes them
    async def put_raw(self, body: bytes, content_type: str, tenant: str = TENANT) -> tuple[str, str]:
        key, digest = content_key(f"raw/{tenant}", body)
        async with self.s3() as s3:
            await s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return key, digest

    def s3(self) -> Any:
        return get_session().create_client("s3", **self.s3_kwargs)

    def event(
        self, key: str, digest: str, size: int, content_type: str, record_type: str, *,
        line: int | None = None, source_format: str = "fhir", schema_version: str = "fhir-r4", tenant: str = TENANT,
    ) -> dict[str, Any]:  # fmt: skip
        return {
            "event_id": str(uuid.uuid4()),
            "event_type": "record.ingested.v1",
            "record_id": str(uuid.uuid4()),
            "tenant": tenant,
            "source_format": source_format,
            "record_type": record_type,
            "schema_version": schema_version,
            "object": {"bucket": self.bucket, "key": key, "sha256": digest, "size": size, "content_type": content_type},
            "line": line,
            "received_at": datetime.now(UTC).isoformat(),
            "correlation_id": uuid.uuid4().hex,
        }

    async def ingest_ndjson(
        self, lines: list[bytes], content_type: str = "application/fhir+ndjson"
    ) -> list[dict[str, Any]]:
        """Store NDJSON as one raw object and return one event per line (not yet published)."""
        body = b"\n".join(lines) + b"\n"
        key, digest = await self.put_raw(body, content_type)
        events = []
        for n, line in enumerate(lines, start=1):
            doc = orjson.loads(line)
            native = content_type == "application/x-ndjson"
            events.append(self.event(
                key, digest, len(body), content_type,
                doc["record_type"] if native else doc["resourceType"], line=n,
                source_format="native" if native else "fhir",
                schema_version=doc["schema_version"] if native else "fhir-r4",
            ))  # fmt: skip
        return events

    async def publish(
        self, events: list[dict[str, Any]], raw: list[bytes] | None = None, topic: str | None = None
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            futures = []
            for i, event in enumerate(events):
                value = raw[i] if raw else orjson.dumps(event)
                futures.append(await producer.send(
                    topic or self.topic, value=value, key=event["record_id"].encode(),
                    headers=[("event_id", event["event_id"].encode()), ("correlation_id", b"c"),
                             ("traceparent", b"00-" + b"0" * 31 + b"1-" + b"0" * 15 + b"1-01")],
                ))  # fmt: skip
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    # ---- the worker
    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"normalizer-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(EXCHANGE), "serve", "normalizer"], env={**self.env, **extra}, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_workers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    # ---- the database
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def count(self, table: str) -> int:
        rows = await self.fetch(f"SELECT count(*) AS n FROM {table}")
        return int(rows[0]["n"])

    async def canonical_state(self) -> dict[str, list[tuple[Any, ...]]]:
        state = {}
        for table in CANONICAL_TABLES:
            rows = await self.fetch(f"SELECT * FROM canonical.{table} ORDER BY id")
            state[table] = [tuple(r.values()) for r in rows]
        return state


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def stack(postgres, kafka, s3, tokenizer_url, tmp_path) -> AsyncIterator[Stack]:
    """A fresh database (migrated), bucket and topics; the worker's environment."""
    suffix = uuid.uuid4().hex[:10]
    database = f"norm_{suffix}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = postgres.dsn_for(database)
    from exchange.normalizer.migrations import upgrade

    await upgrade(dsn)
    bucket = f"raw-{suffix}"
    kwargs = s3.client_kwargs()
    async with get_session().create_client("s3", **kwargs) as client:
        await client.create_bucket(Bucket=bucket)
    topic, dlq, out = f"ingested.{suffix}", f"ingested.{suffix}.dlq", f"normalized.{suffix}"
    kadmin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await kadmin.start()
    try:
        await kadmin.create_topics([
            NewTopic(topic, num_partitions=3, replication_factor=1),
            NewTopic(dlq, num_partitions=1, replication_factor=1),
            NewTopic(out, num_partitions=1, replication_factor=1),
        ])  # fmt: skip
    finally:
        await kadmin.close()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "ENV": "local",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": dsn,
        **s3.env(),
        "S3_BUCKET_RAW": bucket,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "TOKENIZER_URL": tokenizer_url,
        "NORMALIZER_TOPIC": topic,
        "NORMALIZER_DLQ_TOPIC": dlq,
        "NORMALIZER_OUT_TOPIC": out,
        "NORMALIZER_GROUP": f"normalizer-{suffix}",
        "NORMALIZER_METRICS_PORT": "0",
        "NORMALIZER_BACKOFF_MAX": "1.0",
        "NORMALIZER_RELAY_POLL_SECONDS": "0.2",
        "EXCHANGE_CONTRACTS_DIR": str(REPO / "contracts"),
    }
    st = Stack(env, dsn, bucket, topic, dlq, out, tmp_path, kwargs, kafka.bootstrap_servers)
    try:
        yield st
    finally:
        st.stop_workers()


def synthea_lines(resource_type: str, limit: int | None = None) -> list[bytes]:
    lines = (SYNTHEA / f"{resource_type}.ndjson").read_bytes().splitlines()
    return [line for line in lines if line.strip()][:limit]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def caught_up(stack: Stack, topic: str | None = None) -> bool:
    """True when the worker's group has committed every offset of its topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = topic or stack.topic
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert partitions, f"no partitions for {topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=stack.env["NORMALIZER_GROUP"],
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


def cli(stack: Stack, *args: str) -> Any:
    """Run the normalizer's typer commands (as `exchange` registers them) with the stack's env."""
    import typer
    from typer.testing import CliRunner

    from exchange.cli.normalizer import dlq_app, replay_command, verify_command

    app = typer.Typer()
    app.add_typer(dlq_app, name="dlq")
    app.command("replay")(replay_command)
    app.command("verify")(verify_command)
    return CliRunner().invoke(app, list(args), env=stack.env, catch_exceptions=False)
