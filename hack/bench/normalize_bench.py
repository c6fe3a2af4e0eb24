"""The normalizer benchmark (run through `hack/bench/normalize`; see there)."""

from __future__ import annotations

# ruff: noqa: ASYNC110  (a benchmark polls the broker on purpose)
import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from exchange.core.storage import content_key
from exchange_devtools.engines.base import free_port
from exchange_devtools.engines.jaeger import jaeger_server
from exchange_devtools.engines.kafka import kafka_server
from exchange_devtools.engines.postgres import postgres_server
from exchange_devtools.engines.s3 import s3_server
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = ROOT / ".venv" / "bin" / "exchange"

TOKENIZER_ENV: dict[str, str] = {}  # the tokenizer's port and secret, set once a port is chosen
TOPIC, GROUP, BUCKET, TENANT = "record.ingested.v1", "normalizer", "exchange-raw", "bench"
GIVEN = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman"]


def synthea() -> list[dict[str, Any]]:
    out = []
    for path in sorted(SYNTHEA.glob("*.ndjson")):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return out


class Generator:
    """Records with fresh ids: FHIR from Synthea (references rewritten) and native v1 people."""

    def __init__(self, native_share: float) -> None:
        self.fhir = synthea()
        self.native_share = native_share
        self.i = 0
        self.rng = random.Random(7)

    def fhir_line(self) -> bytes:
        resource = dict(self.fhir[self.i % len(self.fhir)])
        self.i += 1
        salt = f"-{self.i}"
        resource["id"] = str(resource.get("id", "x"))[:40] + salt
        for field in ("subject", "patient", "encounter"):
            if isinstance(resource.get(field), dict) and "reference" in resource[field]:
                resource[field] = {"reference": resource[field]["reference"][:60] + f"-{self.i // 50}"}
        return orjson.dumps(resource)

    def native_line(self) -> bytes:
        r = self.rng
        return orjson.dumps({
            "schema_version": "v1", "record_type": "observation",
            "source": {"system": "bench", "record_id": uuid.uuid4().hex},
            "occurred_at": "2024-03-04T05:06:07Z",
            "subject": {"name": f"{r.choice(GIVEN)} {r.choice(FAMILY)}{r.randint(1, 999)}",
                        "birth_date": f"{r.randint(1940, 2010)}-0{r.randint(1, 9)}-1{r.randint(0, 9)}",
                        "sex": r.choice(["female", "male"]), "postal_code": f"{r.randint(10000, 99999)}",
                        "ssn": f"{r.randint(100, 665)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}"},
            "data": {"code": {"system": "http://loinc.org", "code": "718-7"}, "value": 13.5, "unit": "g/dL"},
        })  # fmt: skip

    def object(self, lines: int) -> tuple[bytes, str, list[tuple[int, str, str, str]]]:
        """(body, content type, [(line, source_format, record_type, schema_version)])."""
        native = self.rng.random() < self.native_share
        body_lines = [self.native_line() if native else self.fhir_line() for _ in range(lines)]
        meta = []
        for n, line in enumerate(body_lines, start=1):
            doc = orjson.loads(line)
            meta.append(
                (n, "native", doc["record_type"], "v1") if native else (n, "fhir", doc["resourceType"], "fhir-r4")
            )
        return b"\n".join(body_lines) + b"\n", ("application/x-ndjson" if native else "application/fhir+ndjson"), meta


Events = list[tuple[bytes, bytes, str]]  # (value, key, event id)


async def put_object(s3: Any, gen: Generator, lines: int) -> Events:
    """Play ingest's first half: the raw object in S3; returns its events, not yet published."""
    body, content_type, meta = gen.object(lines)
    key, digest = content_key(f"raw/{TENANT}", body)
    await s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)
    now = datetime.now(UTC).isoformat()
    events = []
    for line, source_format, record_type, version in meta:
        event_id, record_id = str(uuid.uuid4()), str(uuid.uuid4())
        event = {
            "event_id": event_id, "event_type": TOPIC, "record_id": record_id, "tenant": TENANT,
            "source_format": source_format, "record_type": record_type, "schema_version": version,
            "object": {"bucket": BUCKET, "key": key, "sha256": digest, "size": len(body), "content_type": content_type},
            "line": line, "received_at": now, "correlation_id": uuid.uuid4().hex,
        }  # fmt: skip
        events.append((orjson.dumps(event), record_id.encode(), event_id))
    return events


async def put_objects(s3: Any, gen: Generator, objects: int, lines: int) -> list[Events]:
    gate = asyncio.Semaphore(32)

    async def one() -> Events:
        async with gate:
            return await put_object(s3, gen, lines)

    return list(await asyncio.gather(*(one() for _ in range(objects))))


async def send(producer: AIOKafkaProducer, events: Events) -> int:
    futures = [
        await producer.send(TOPIC, value, key=key, headers=[("event_id", event_id.encode())])
        for value, key, event_id in events
    ]
    await asyncio.gather(*futures)
    return len(events)


async def publish_object(s3: Any, producer: AIOKafkaProducer, gen: Generator, lines: int) -> int:
    return await send(producer, await put_object(s3, gen, lines))


async def lag(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    ends = await consumer.end_offsets(partitions)
    total = 0
    for tp in partitions:
        total += ends[tp] - (await consumer.committed(tp) or 0)
    return total


async def drain_backlog(
    client: Any, producer: AIOKafkaProducer, watcher: AIOKafkaConsumer, partitions: list[TopicPartition],
    gen: Generator, args: argparse.Namespace, procs: list[subprocess.Popen[bytes]], argv: list[str],
    env: dict[str, str], log: Any,
) -> tuple[float, int]:  # fmt: skip
    """The worker (the last of `procs`) stopped, a backlog published, a worker started with `env`
    and the backlog drained flat out: (records/s, backlog)."""
    worker = procs.pop()
    worker.terminate()
    worker.wait(30)
    pending = await put_objects(client, gen, args.backlog // args.lines_per_object, args.lines_per_object)
    backlog = await send(producer, [e for events in pending for e in events])
    procs.append(subprocess.Popen(argv, stdout=log, stderr=log, env=env))  # noqa: ASYNC220
    while (first := await lag(watcher, partitions)) >= backlog:
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    while await lag(watcher, partitions) > 0:
        await asyncio.sleep(0.05)
    return first / (time.monotonic() - t0), backlog


TRACING_MODES: dict[str, dict[str, str]] = {
    "off": {},
    "1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


async def tracing_part(
    args: argparse.Namespace, modes: list[dict[str, str]], procs: list[subprocess.Popen[bytes]], jaeger: Any,
    env: dict[str, str], logs: Any, drain: Any,
) -> None:  # fmt: skip
    """Capacity (a backlog drained flat out by `drain(env)`) with each tracing mode, tokenizer and
    worker restarted with its OTEL_* variables (spans to a local Jaeger); printed as ratios against
    the first."""
    names = [m.strip() for m in args.tracing.split(",")]
    rows = []
    for name, mode in zip(names, modes, strict=True):
        traced = {**env, **(jaeger.env() if mode else {}), **mode}
        tokenizer = procs.pop(0)  # restarted with the mode: its server spans cost too
        tokenizer.terminate()
        tokenizer.wait(30)
        procs.insert(0, subprocess.Popen(  # noqa: ASYNC220
            [str(EXCHANGE), "serve", "tokenizer"], stdout=logs[0], stderr=logs[0], env={**traced, **TOKENIZER_ENV},
        ))  # fmt: skip
        capacity, _ = await drain(traced)
        rows.append((name, capacity))
    print(f"tracing cost, normalizer capacity (a backlog of {args.backlog} drained flat out; {rows[0][0]} = 1.00):")
    for name, capacity in rows:
        print(f"  {name:>5}: {capacity:8.0f} records/s ({capacity / rows[0][1]:4.2f})")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--lines-per-object", type=int, default=100)
    parser.add_argument("--native-share", type=float, default=0.25)
    parser.add_argument("--backlog", type=int, default=20000, help="Records of the capacity baseline.")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="Run the worker under pyinstrument (text report).")
    parser.add_argument(
        "--tracing", metavar="MODES",
        help="Only the capacity baseline, once per tracing mode (off, 1%%, 100%%): OTLP to a local Jaeger.",
    )  # fmt: skip
    args = parser.parse_args()
    tracing = [TRACING_MODES[m.strip()] for m in args.tracing.split(",")] if args.tracing else []

    work = Path(tempfile.mkdtemp(prefix="bench-normalize-"))
    pg = postgres_server(work / "pg", durable=True).start()
    kafka = kafka_server(work / "kafka").start()
    s3 = s3_server(work / "s3", long_running=True).start()
    jaeger = jaeger_server(work / "jaeger").start() if tracing else None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, num_partitions=args.partitions, replication_factor=1)])
        await admin.close()
        session = get_session()
        tok_port = free_port()
        TOKENIZER_ENV.update(PORT=str(tok_port), TOKENIZATION_SECRET="bench-secret-0123456789abcdef")
        env = {
            **os.environ, "ENV": "local", "LOG_LEVEL": "WARNING", "DATABASE_URL": pg.dsn, **s3.env(),
            "S3_BUCKET_RAW": BUCKET, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "TOKENIZER_URL": f"http://127.0.0.1:{tok_port}", "NORMALIZER_METRICS_PORT": "0",
        }  # fmt: skip
        logs = (work / "tokenizer.log").open("wb"), (work / "normalizer.log").open("wb")
        procs.append(subprocess.Popen(  # noqa: ASYNC220
            [str(EXCHANGE), "serve", "tokenizer"], stdout=logs[0], stderr=logs[0],
            env={**env, **TOKENIZER_ENV},
        ))  # fmt: skip
        async with session.create_client("s3", **s3.client_kwargs()) as client:
            await client.create_bucket(Bucket=BUCKET)
            producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5,
                                        enable_idempotence=True)  # fmt: skip
            await producer.start()
            gen = Generator(args.native_share)
            argv = [str(EXCHANGE), "serve", "normalizer"]
            if args.profile:  # the fixed-rate phase (the capacity phase restarts the worker)
                report = work / "normalizer-profile.txt"
                argv = [str(ROOT / ".venv/bin/pyinstrument"), "-r", "text", "-o", str(report), *argv]
            procs.append(subprocess.Popen(argv, stdout=logs[1], stderr=logs[1], env=env))  # noqa: ASYNC220
            watcher = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=GROUP)
            await watcher.start()
            partitions = [TopicPartition(TOPIC, p) for p in range(args.partitions)]
            # warm-up: the worker has joined its group and normalized something
            await publish_object(client, producer, gen, 10)
            deadline = time.monotonic() + 60
            while await lag(watcher, partitions) > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)

            if tracing:
                await tracing_part(args, tracing, procs, jaeger, env, logs, lambda traced: drain_backlog(
                    client, producer, watcher, partitions, gen, args, procs, argv, traced, logs[1]))  # fmt: skip
                await watcher.stop()
                await producer.stop()
                return

            # 1. fixed rate
            print(f"fixed rate: {args.rate} records/s for {args.seconds} s, {args.lines_per_object} lines per object, "
                  f"{args.native_share:.0%} native objects, {args.partitions} partitions")  # fmt: skip
            print(f"{'t/s':>5} {'produced':>9} {'lag':>7}")
            interval = args.lines_per_object / args.rate
            # Raw objects are PUT before the clock starts (ingest's half, not the normalizer's);
            # the timed phase publishes their events at the rate.
            objects = await put_objects(client, gen, int(args.seconds / interval) + 1, args.lines_per_object)
            start = time.monotonic()
            produced, sent, samples, next_sample = 0, 0, [], start + 1
            while (now := time.monotonic()) - start < args.seconds:
                due = int((now - start) / interval) + 1
                if due > sent:
                    produced += await send(producer, [e for events in objects[sent:due] for e in events])
                    sent = due
                if now >= next_sample:
                    current = await lag(watcher, partitions)
                    samples.append((now - start, current))
                    print(f"{now - start:5.1f} {produced:9d} {current:7d}", flush=True)
                    next_sample += 1
                await asyncio.sleep(max(0.0, start + (due * interval) - time.monotonic()))
            offered = produced / (time.monotonic() - start)
            drain_start = time.monotonic()
            while await lag(watcher, partitions) > 0:
                await asyncio.sleep(0.1)
            drain = time.monotonic() - drain_start

            # 2. capacity baseline: the worker stopped, a backlog published, then drained flat out
            capacity, backlog = await drain_backlog(
                client, producer, watcher, partitions, gen, args, procs, argv, env, logs[1]
            )
            await watcher.stop()
            await producer.stop()
        conn = await asyncpg.connect(pg.dsn)
        records = await conn.fetchval("SELECT count(*) FROM canonical.records")
        subjects = await conn.fetchval("SELECT count(*) FROM canonical.subjects")
        await conn.close()
        steady = [lag_ for t, lag_ in samples if t >= min(5, args.seconds / 3)]
        slope = statistics.linear_regression(range(len(steady)), steady).slope if len(steady) > 1 else 0.0
        print()
        print(f"offered:          {offered:8.0f} records/s")
        print(f"lag (steady):     mean {statistics.mean(steady):.0f}, max {max(steady)}, "
              f"slope {slope:+.1f} records/s  ({'flat' if abs(slope) < 0.05 * args.rate else 'GROWING'})")  # fmt: skip
        print(f"drain after stop: {drain:6.2f} s")
        print(f"capacity:         {capacity:8.0f} records/s  (a backlog of {backlog} drained flat out after a restart)")
        print(f"offered/capacity: {offered / capacity:8.2f}")
        print(f"canonical:        {records} records, {subjects} subjects")
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        s3.stop()
        kafka.stop()
        pg.stop()
        if jaeger is not None:
            jaeger.stop()
        print(f"logs: {work}")


if __name__ == "__main__":
    asyncio.run(main())
