"""The ingest benchmark behind `hack/bench/ingest` (see that script for usage)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiobotocore.session import get_session

from exchange_devtools.calibrate import (
    filesystem_of,
    jit_cpu_seconds,
    machine_speed,
    process_cpu_seconds,
    wait_for_quiet_io,
)
from exchange_devtools.engines.base import free_port
from exchange_devtools.engines.jaeger import jaeger_server
from exchange_devtools.engines.kafka import kafka_server
from exchange_devtools.engines.postgres import postgres_server
from exchange_devtools.engines.s3 import s3_server
from exchange_devtools.fixtures.jwks import serve_jwks
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA

ROOT = Path(__file__).resolve().parents[2]

BUCKET = "exchange-raw"


def record() -> bytes:
    return orjson.dumps(
        {
            "schema_version": "v1",
            "record_type": "observation",
            "source": {"system": "urn:bench", "record_id": uuid.uuid4().hex},
            "subject": {"name": "Bench Person", "birth_date": "1970-01-01", "sex": "other"},
            "data": {"code": "8302-2", "value": 170, "unit": "cm", "nonce": uuid.uuid4().hex},
        }
    )


def raw_request(path: str, body: bytes, headers: dict[str, str], host: str) -> bytes:
    """A POST of `body` to `path` as HTTP/1.1 bytes, head and body in one piece."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    return (head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


def _component(cmdline: str) -> str:
    for needle, name in (("s3proxy", "s3proxy"), ("kafka", "kafka"), ("postgres", "postgres"),
                         ("uvicorn", "ingest"), ("multiprocessing", "ingest"), ("ingest.relay", "relay")):  # fmt: skip
        if needle in cmdline:
            return name
    return "other"


def cpu_by_component() -> dict[str, float]:
    """CPU seconds (user + system, own + reaped children) of this process's descendants, by
    component: a load-independent measure on a shared machine, unlike req/s."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    stats: dict[int, tuple[float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent[int(entry.name)] = int(fields[1])
            stats[int(entry.name)] = (sum(int(f) for f in fields[11:15]) / tick, cmd)
    mine, frontier = set(), {os.getpid()}
    while frontier:
        mine |= frontier
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - mine
    out: dict[str, float] = {}
    for pid in mine - {os.getpid()}:
        seconds, cmd = stats.get(pid, (0.0, ""))
        name = _component(cmd)
        out[name] = out.get(name, 0.0) + seconds
    out["load generator"] = time.process_time()
    return out


def headers(authorization: str, content_type: str = "application/json") -> dict[str, str]:
    return {"Authorization": authorization, "Content-Type": content_type, "Idempotency-Key": uuid.uuid4().hex}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


MAX_RATE = 3000  # requests prepared per second of a closed-loop run: above any rate reached here


def prepared(count: int, port: int, authorization: str, host: str | None = None) -> list[bytes]:
    """`count` single-record requests as raw HTTP/1.1 bytes, each with its own body and
    Idempotency-Key, built before the measured window: the load generator's CPU in the window is
    then its sending and reading alone. `host` is the Host header (an ingress routes by it)."""
    host = host or f"127.0.0.1:{port}"
    return [raw_request("/v1/ingest", record(), headers(authorization), host) for _ in range(count)]


def _dechunk(buffer: bytes, start: int) -> tuple[bytes, bytes] | None:
    """A chunked body starting at `start` and what follows it, or None while it is incomplete."""
    parts: list[bytes] = []
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(buffer[at:line_end].split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return None if trailer_end < 0 else (b"".join(parts), buffer[trailer_end + 4 :])
        if len(buffer) < line_end + 2 + size + 2:
            return None
        parts.append(buffer[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2


class RawClient(asyncio.Protocol):
    """One keep-alive connection sending raw requests, one at a time: the answer's status and its
    Content-Length body, parsed from the buffer at once (no per-line stream reads). The load
    generator must not eat the CPU it measures."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        _, client = await asyncio.get_running_loop().create_connection(cls, "127.0.0.1", port)
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        if b"\r\ntransfer-encoding: chunked" in head:  # an ingress may re-frame a large answer
            parsed = _dechunk(self.buffer, end + 4)
            if parsed is None:
                return
            body, self.buffer = parsed
        else:
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else end])
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        if self.transport.is_closing():  # the server dropped it while idle (keep-alive timeout)
            raise ConnectionError("the server closed an idle connection")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def run_load(coro: Any) -> Any:
    """The load generator's loop: uvloop, as the services run on (cheaper than asyncio's own)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def closed_loop(port: int, clients: int, seconds: float, requests: list[bytes]) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    pending = iter(requests)
    conns = [await RawClient.connect(port) for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    async def worker(conn: RawClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            raw = next(pending, None)
            if raw is None:
                raise SystemExit(f"ran out of prepared requests ({len(requests)}): raise MAX_RATE")
            started = time.perf_counter()
            status, _ = await conn.send(raw)
            latencies.append(time.perf_counter() - started)
            errors += status != 202

    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return {"rps": len(latencies) / elapsed, "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99),
            "errors": errors, "count": len(latencies)}  # fmt: skip


async def open_loop(port: int, rate: float, seconds: float, requests: list[bytes], pool: int = 256) -> dict[str, float]:
    """Requests scheduled at a fixed rate; latency counted from the scheduled time (no
    coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    idle: asyncio.Queue[RawClient] = asyncio.Queue()
    for _ in range(pool):
        idle.put_nowait(await RawClient.connect(port))

    async def one(scheduled: float, raw: bytes) -> None:
        nonlocal errors
        conn = await idle.get()
        try:
            status, _ = await conn.send(raw)
            errors += status != 202
        finally:
            idle.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    start = time.perf_counter()
    total = min(int(rate * seconds), len(requests))
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, requests[i])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        conn = idle.get_nowait()
        assert conn.transport is not None
        conn.transport.close()
    return {"rps": total / elapsed, "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "errors": errors}


async def bulk(
    port: int, lines: int, rounds: int, authorization: str, clients: int = 1, host: str = "127.0.0.1"
) -> dict[str, float]:
    """`rounds` NDJSON bodies of `lines` lines each, sent by `clients` concurrent connections
    (`host` is the Host header)."""
    source = [ln for p in sorted(SYNTHEA.glob("*.ndjson")) for ln in p.read_bytes().splitlines() if ln.strip()]
    # a distinct window of the source per round makes every body (and so its object) distinct
    bodies = [b"\n".join(source[(r * lines + i) % len(source)] for i in range(lines)) + b"\n" for r in range(rounds)]
    total = 0

    async def worker(mine: list[bytes]) -> None:
        nonlocal total
        conn = await RawClient.connect(port)
        for body in mine:
            raw = raw_request("/v1/ingest/bulk", body, headers(authorization, "application/fhir+ndjson"), host)
            status, payload = await conn.send(raw)
            assert status == 202, payload[:300]
            total += orjson.loads(payload)["accepted"]
        assert conn.transport is not None
        conn.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(bodies[i::clients]) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {"records_per_s": total / elapsed, "requests": rounds, "lines": lines, "records": total, "seconds": elapsed}


async def pg_floor(dsn: str, clients: int, seconds: float) -> float:
    """The ingest statements alone, through ingest's own code: claim the key, then the commit
    (completion + outbox + audit), both group-committed as in the service, `clients` at a time."""
    from exchange.core.db import create_pool
    from exchange.core.settings import DatabaseSettings
    from exchange.ingest.idempotency import Claim, IdempotencyStore
    from exchange.ingest.store import NewRecord, RecordStore

    settings = DatabaseSettings(DATABASE_URL=dsn, DB_POOL_MIN=1, DB_POOL_MAX=20)  # as the bench's server
    pool = await create_pool(settings, generic_plans=True)  # as the service
    keys = IdempotencyStore(pool, 86400, 60)
    store = RecordStore(pool, None, BUCKET, "raw", "bench.floor")  # type: ignore[arg-type]  # commit only
    payload = record()
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            claim = await keys.claim("bench", uuid.uuid4().hex, b"0" * 32)
            assert isinstance(claim, Claim)
            await store.commit(
                claim,
                [NewRecord(uuid.uuid4(), uuid.uuid4(), payload)],
                status=202, response=b"{}", actor="bench", correlation_id="cid",
                traceparent="00-" + "0" * 32 + "-" + "0" * 16 + "-01",
            )  # fmt: skip
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await pool.execute("DELETE FROM ingest.outbox WHERE topic = 'bench.floor'")
    await pool.close()
    return count / elapsed


def _putter(s3: Any) -> Any:
    from exchange.core.settings import S3Settings
    from exchange.ingest.s3put import S3Putter

    return S3Putter(S3Settings.model_validate({**s3.env(), "S3_BUCKET_RAW": BUCKET}))


async def _put_load(putter: Any, clients: int, until: Any, prefix: str = "floor") -> int:
    """Record-sized PUTs from `clients` workers until `until()`, under `prefix` as ingest lays keys
    out (`exchange.core.storage.content_key`); returns how many."""
    from exchange.core.storage import content_key

    size = len(record())
    count = 0

    async def worker() -> None:
        nonlocal count
        while not until():
            body = os.urandom(size)
            key, digest = content_key(prefix, body)
            await putter.put(BUCKET, key, body, digest, {"content-type": "application/json"})
            count += 1

    await asyncio.gather(*(worker() for _ in range(clients)))
    return count


async def s3_floor(s3: Any, clients: int, seconds: float) -> float:
    """Raw PUTs of a record-sized body with the client ingest uses (exchange.ingest.s3put)."""
    putter = _putter(s3)
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    try:
        count = await _put_load(putter, clients, lambda: time.perf_counter() >= deadline)
    finally:
        await putter.close()
    return count / (time.perf_counter() - started)


async def warm_s3(s3: Any, *, window: float = 5.0, quiet: float = 0.02, least: float = 20, most: float = 240) -> str:
    """Raw PUTs until s3proxy's JIT compilers go quiet (under `quiet` of its CPU for a `window`).

    Measured alone on this machine, s3proxy needed ~60 s and ~150k PUTs before C2 was done:
    CPU per PUT fell from ~1.2 ms (plus ~0.4 ms in the compiler threads) to ~0.3 ms. The
    single-record warm-up reaches only a fifth of that, so without this the benchmark measured
    s3proxy mid-compilation (0.8-1.8 ms a PUT)."""
    putter, pid = _putter(s3), s3.engine.pid
    started, puts = time.monotonic(), 0
    try:
        while True:
            cpu, jit = process_cpu_seconds(pid), jit_cpu_seconds(pid)
            end = time.monotonic() + window
            puts += await _put_load(putter, 16, lambda end=end: time.monotonic() >= end, prefix="warm-up")
            share = (jit_cpu_seconds(pid) - jit) / max(process_cpu_seconds(pid) - cpu, 1e-9)
            elapsed = time.monotonic() - started
            if (share < quiet and elapsed >= least) or elapsed >= most:
                break
    finally:
        await putter.close()
    return f"s3proxy warmed with {puts} PUTs in {elapsed:.0f} s (JIT {share:.1%} of its CPU at the end)"


async def s3_floor_aiobotocore(s3: Any, clients: int, seconds: float) -> float:
    """The same PUTs through aiobotocore (what ingest used before s3put), for comparison."""
    size = len(record())
    count = 0
    deadline = time.perf_counter() + seconds
    async with get_session().create_client("s3", **s3.client_kwargs()) as client:

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                body = os.urandom(size)
                await client.put_object(Bucket=BUCKET, Key=f"floor/{uuid.uuid4().hex}", Body=body)
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return count / (time.perf_counter() - started)


async def ensure_bucket(s3: Any) -> None:
    async with get_session().create_client("s3", **s3.client_kwargs()) as client:
        with contextlib.suppress(Exception):
            await client.create_bucket(Bucket=BUCKET)


def wait_http(port: int, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit("ingest server did not become ready")


def cpu_per(before: dict[str, float], after: dict[str, float], count: float) -> dict[str, float]:
    """CPU microseconds per unit of work, by component, between two `cpu_by_component` readings."""
    return {k: (after[k] - before.get(k, 0.0)) / count * 1e6 for k in after}


def bulk_part(args: argparse.Namespace, port: int, dsn: str, authorization: str) -> str:
    """Bulk records/s, then CPU per record by component until the relay has published them all."""
    cpu_before = cpu_by_component()
    result = asyncio.run(bulk(port, args.bulk_lines, args.bulk_rounds, authorization, args.bulk_clients))
    drained = asyncio.run(wait_published(dsn))
    per = cpu_per(cpu_before, cpu_by_component(), result["records"])
    # the 202s alone flatter a relay that falls behind: it does its work after they are counted
    end_to_end = result["records"] / (result["seconds"] + drained)
    line = (
        f"  bulk, {args.bulk_lines} lines/request, {args.bulk_clients} client(s): "
        f"{result['records_per_s']:8.0f} records/s   (target >= 20000); all published after {drained:.1f} s more"
        f" ({end_to_end:.0f} records/s until published)\n"
        "  CPU per bulk record, until published (us): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
    )
    print(line, flush=True)
    return line


async def wait_published(dsn: str, limit: float = 120) -> float:
    """Seconds until the outbox holds no unpublished row (at most `limit`)."""
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval("SELECT count(*) FROM ingest.outbox_pending"):
            if time.perf_counter() - started > limit:
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return time.perf_counter() - started


TRACING_MODES: dict[str, dict[str, str]] = {
    "off": {},
    "1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


def tracing_part(
    args: argparse.Namespace, port: int, authorization: str, modes: list[dict[str, str]],
    running: list[subprocess.Popen[bytes]], start_server: Any,
) -> None:  # fmt: skip
    """Single-record req/s and server CPU per request with each tracing mode (exported to a local
    Jaeger), the server and relay restarted per mode; printed as ratios against the first."""
    names = [m.strip() for m in args.tracing.split(",")]
    rows: list[tuple[str, float, float]] = []
    for index, (name, mode) in enumerate(zip(names, modes, strict=True)):
        if index:
            for proc in running:
                proc.terminate()
                proc.wait(timeout=15)
            running = start_server(mode)
            run_load(closed_loop(port, args.clients, 5, prepared(int(MAX_RATE * 5), port, authorization)))
        requests = prepared(int(MAX_RATE * args.seconds), port, authorization)
        before = cpu_by_component()
        result = run_load(closed_loop(port, args.clients, args.seconds, requests))
        rows.append(
            (
                name,
                result["rps"],
                sum(
                    v
                    for k, v in cpu_per(before, cpu_by_component(), result["count"]).items()
                    if k in ("ingest", "relay")
                ),
            )
        )
    base_rps, base_cpu = rows[0][1], rows[0][2]
    print(f"  tracing cost, single record, {args.clients} clients ({rows[0][0]} = 1.00):")
    for name, rps, cpu in rows:
        print(f"    {name:>5}: {rps:8.0f} req/s ({rps / base_rps:4.2f})   ingest+relay CPU {cpu:5.0f} us/request"
              f" ({cpu / base_cpu:4.2f})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--warmup", type=float, default=45,
        help="seconds of load before measuring (s3proxy's C2 JIT still took 16%% of the CPU at 25 s)",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--bulk-lines", type=int, default=5000)
    parser.add_argument("--bulk-rounds", type=int, default=8)
    parser.add_argument("--bulk-clients", type=int, default=1, help="concurrent bulk connections")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes: 1 as `make dev` (1 with --profile)"
    )
    parser.add_argument(
        "--fsync", action=argparse.BooleanOptionalAction, default=True,
        help="durable Postgres, as production runs it (default); --no-fsync for quick A/B runs",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="run the server under pyinstrument")
    parser.add_argument(
        "--data-dir",
        help="where the run's directory (the engines' data) goes; default the system temp dir (see README)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's directory (engines' data, logs); deleted otherwise"
    )
    parser.add_argument(
        "--only", choices=["single", "bulk"], help="run only the single-record or only the bulk part (and its floor)"
    )
    parser.add_argument(
        "--auth", choices=["dev", "jwt"], default="dev",
        help="`Bearer dev` (as `make dev`) or an RS256 JWT verified against a local JWKS (as in production)",
    )  # fmt: skip
    parser.add_argument(
        "--tracing", metavar="MODES",
        help="compare tracing modes (off, 1%%, 100%%; e.g. off,1%%,100%%) on single records: OTLP to a local Jaeger",
    )  # fmt: skip
    parser.add_argument(
        "--jwt-cache-seconds", type=int, help="the server's JWT_CACHE_SECONDS with --auth jwt (0: verify every request)"
    )
    args = parser.parse_args()

    quiet = wait_for_quiet_io()  # an earlier run's deletes still being written out skew s3proxy
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=args.data_dir))
    os.chmod(work, 0o755)
    with contextlib.ExitStack() as stack:
        return _run(args, work, quiet, stack)


def _run(args: argparse.Namespace, work: Path, quiet: str, stack: contextlib.ExitStack) -> int:
    """The run itself: engines, server and relay, load, figures; everything stopped at the end."""
    engines: list[Any] = []
    procs: list[subprocess.Popen[bytes]] = []
    auth_env: dict[str, str] = {}
    authorization = auth_mode = "Bearer dev"
    if args.auth == "jwt":  # one token for the whole run, as a partner reuses its token until it expires
        issuer = stack.enter_context(serve_jwks())
        auth_env = issuer.env()
        if args.jwt_cache_seconds is not None:
            auth_env["JWT_CACHE_SECONDS"] = str(args.jwt_cache_seconds)
        authorization = f"Bearer {issuer.token(tenant='bench', exp=int(time.time()) + 4 * 3600)}"
        auth_mode = f"RS256 JWT, JWT_CACHE_SECONDS {auth_env.get('JWT_CACHE_SECONDS', 'default')}"
    try:
        pg = postgres_server(work / "pg", durable=args.fsync).start()
        s3 = s3_server(work / "s3", long_running=True).start()
        kafka = kafka_server(work / "kafka").start()
        engines += [pg, s3, kafka]
        asyncio.run(ensure_bucket(s3))
        from exchange.ingest.migrations import upgrade

        upgrade(pg.dsn)
        port = free_port()
        env = {
            **os.environ, **pg.env(), **s3.env(), **kafka.env(), "ENV": "local", "S3_BUCKET_RAW": BUCKET,
            "LOG_LEVEL": "WARNING", "DB_POOL_MAX": "20", "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'hack'}",
            **auth_env,
        }  # fmt: skip
        server = [sys.executable]
        if args.profile:
            server += ["-m", "pyinstrument", "-r", "text", "-o", str(work / "profile.txt")]
        server += ["-m", "uvicorn", "--factory", "exchange.ingest.app:create_app", "--port", str(port),
                   "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
        if args.workers > 1 and not args.profile:
            server += ["--workers", str(args.workers)]
        tracing = [TRACING_MODES[m.strip()] for m in args.tracing.split(",")] if args.tracing else []
        jaeger = jaeger_server(work / "jaeger").start() if tracing else None
        if jaeger is not None:
            engines.append(jaeger)

        def start_server(mode: dict[str, str]) -> list[subprocess.Popen[bytes]]:
            """The server and the relay, with the tracing variables of `mode` (none: off)."""
            traced = {**env, **(jaeger.env() if mode and jaeger else {}), **mode}
            started = [
                subprocess.Popen(server, env=traced, stdout=open(work / "server.log", "ab"), stderr=subprocess.STDOUT),
                subprocess.Popen([sys.executable, "-m", "exchange.ingest.relay"], env=traced,
                                 stdout=open(work / "relay.log", "ab"), stderr=subprocess.STDOUT),
            ]  # fmt: skip
            procs.extend(started)
            wait_http(port)
            return started

        running = start_server(tracing[0] if tracing else {})
        speed = machine_speed()  # timed before the load, with the engines idle
        warmed = asyncio.run(warm_s3(s3))
        warm_up = prepared(int(MAX_RATE * args.warmup), port, authorization)
        run_load(closed_loop(port, args.clients, args.warmup, warm_up))  # JIT (s3proxy runs C2), pools, caches
        del warm_up
        workers = 1 if args.profile else args.workers
        fsync = "on" if args.fsync else "off"

        def header() -> str:  # the load average when the figures are printed
            return (f"\ningest benchmark ({os.cpu_count()} cores, {workers} uvicorn worker(s), "
                    f"Postgres fsync {fsync}, load average {os.getloadavg()[0]:.1f})\n  auth {auth_mode}\n"
                    f"  {speed}; {quiet}\n"
                    f"  engines' data on {filesystem_of(str(work))}; {warmed}")  # fmt: skip

        if tracing:
            print(header())
            tracing_part(args, port, authorization, tracing, running, start_server)
            return 0
        if args.only == "bulk":
            bulk_part(args, port, pg.dsn, authorization)
            print(header())
            return 0
        closed_requests = prepared(int(MAX_RATE * args.seconds), port, authorization)
        open_requests = prepared(int(args.rate * args.seconds), port, authorization)
        jvms = {"s3proxy": s3.engine.pid, "kafka": kafka.engine.pid}
        jit_before = {name: jit_cpu_seconds(pid) for name, pid in jvms.items()}
        cpu_before = cpu_by_component()
        single = run_load(closed_loop(port, args.clients, args.seconds, closed_requests))
        cpu_after = cpu_by_component()
        requests = single["count"]
        cpu_per_req = cpu_per(cpu_before, cpu_after, requests)
        jit_per_req = cpu_per(jit_before, {name: jit_cpu_seconds(pid) for name, pid in jvms.items()}, requests)
        fixed = run_load(open_loop(port, args.rate, args.seconds, open_requests))
        bulk_lines = None if args.only else bulk_part(args, port, pg.dsn, authorization)
        pg_tps = asyncio.run(pg_floor(pg.dsn, args.clients, args.seconds / 2))
        s3_ps = asyncio.run(s3_floor(s3, args.clients, args.seconds / 2))
        s3_boto = asyncio.run(s3_floor_aiobotocore(s3, args.clients, args.seconds / 2))

        print(header())
        print(
            f"  single, {args.clients} clients : {single['rps']:8.0f} req/s   p50 {single['p50']:6.1f} ms"
            f"   p99 {single['p99']:6.1f} ms   non-202 {single['errors']:.0f}   (target >= 1500 req/s)"
        )
        print(
            f"  single, offered {args.rate:.0f}/s  : {fixed['rps']:8.0f} req/s   p50 {fixed['p50']:6.1f} ms"
            f"   p99 {fixed['p99']:6.1f} ms   non-202 {fixed['errors']:.0f}   (target p99 <= 50 ms)"
        )
        if bulk_lines:
            print(bulk_lines)
        print(
            f"  floor: Postgres statements alone {pg_tps:8.0f} tx/s; raw S3 PUTs {s3_ps:8.0f} PUT/s"
            f" (through aiobotocore: {s3_boto:.0f} PUT/s)"
        )
        server_side = sum(v for k, v in cpu_per_req.items() if k != "load generator")
        print(
            "  CPU per single request (us): "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu_per_req.items(), key=lambda kv: -kv[1]))
            + f"; server side {server_side:.0f} us -> CPU-bound ceiling on {os.cpu_count()} idle cores"
            f" (load generator excluded) {(os.cpu_count() or 1) * 1e6 / server_side:.0f} req/s;"
            # a compiler thread that exits takes its CPU time with it: at least this much
            " of it JIT compilers: " + ", ".join(f"{k} {max(v, 0):.0f}" for k, v in jit_per_req.items())
        )
        print(
            f"  ratios: single / Postgres floor = {single['rps'] / pg_tps:.2f};"
            f" single / S3 floor = {single['rps'] / s3_ps:.2f}"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        for engine in reversed(engines):
            with contextlib.suppress(Exception):
                engine.stop()
        if args.profile and (work / "profile.txt").exists():
            print(f"\nprofile: {work / 'profile.txt'} (the run's directory is kept)")
        elif args.keep:
            print(f"\nkept: {work}")
        else:  # the engines' data (~1 GB of objects, tables and logs) is not worth keeping; a run
            # started within minutes of this delete pays s3proxy up to 1.5x (see engines/s3.py)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
