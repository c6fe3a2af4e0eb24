"""Fixtures of the ingest integration suite: the real engines, the app in-process, a relay
subprocess, a JWKS issuer, captured structlog output and a Kafka event collector."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager

from exchange.core.kafka import header_map
from exchange.core.logging import configure_logging
from exchange.ingest.app import create_app
from exchange.ingest.migrations import upgrade
from exchange.ingest.settings import IngestSettings
from exchange_devtools.engines.base import free_port
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA

REPO = Path(__file__).resolve().parents[3]
TOPIC = "record.ingested.v1"
BUCKET = "exchange-raw-test"


class LogCapture(logging.Handler):
    """Keeps every rendered log line (the JSON the service would print)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="session")
def captured_logs() -> LogCapture:
    configure_logging("ingest", "DEBUG", json=True)
    root = logging.getLogger()
    capture = LogCapture()
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    return capture


@pytest.fixture(scope="session")
def ingest_env(postgres: Any, s3: Any, kafka: Any, jwks_server: Any) -> dict[str, str]:
    """Environment of an ingest process pointed at the session's engines (ENV=test)."""
    upgrade(postgres.dsn)
    asyncio.run(_create_bucket(s3))
    return {
        **postgres.env(),
        **s3.env(),
        **kafka.env(),
        **jwks_server.env(),
        "ENV": "test",
        "S3_BUCKET_RAW": BUCKET,
        "S3_TIMEOUT": "2",
        "INGEST_TOPIC": TOPIC,
        "RELAY_POLL_SECONDS": "0.2",
        "RELAY_PUBLISH_TIMEOUT": "5",
        "RELAY_MAX_BACKOFF": "1",
        "INGEST_IDEMPOTENCY_PURGE_SECONDS": "0",  # off, so tests that expire keys see them; one test turns it on
        "LOG_JSON": "true",
    }


async def _create_bucket(s3: Any) -> None:
    async with get_session().create_client("s3", **s3.client_kwargs()) as client:
        with contextlib.suppress(client.exceptions.ClientError):
            await client.create_bucket(Bucket=BUCKET)


def make_settings(env: dict[str, str], **overrides: Any) -> IngestSettings:
    return IngestSettings(**{**env, **overrides})


@pytest.fixture(scope="session")
def ingest_settings(ingest_env: dict[str, str]) -> IngestSettings:
    return make_settings(ingest_env)


@pytest.fixture(scope="session")
async def ingest_app(ingest_settings: IngestSettings, captured_logs: LogCapture) -> AsyncIterator[Any]:
    app = create_app(ingest_settings)
    async with LifespanManager(app, startup_timeout=30):
        yield app


@pytest.fixture(scope="session")
async def client(ingest_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ingest_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test", timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def token(jwks_server: Any) -> str:
    return str(jwks_server.token())


@pytest.fixture
def auth(token: str) -> Any:
    """Headers for a request: bearer token, a fresh Idempotency-Key (or the given one), media type."""

    def build(content_type: str = "application/json", key: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key or uuid.uuid4().hex,
            "Content-Type": content_type,
            **extra,
        }

    return build


@pytest.fixture(scope="session")
async def db(postgres: Any, ingest_app: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def synthea() -> dict[str, list[bytes]]:
    return {p.stem: [ln for ln in p.read_bytes().splitlines() if ln.strip()] for p in SYNTHEA.glob("*.ndjson")}


def native_v1(**subject: Any) -> dict[str, Any]:
    return {
        "schema_version": "v1",
        "record_type": "patient",
        "source": {"system": "urn:test", "record_id": uuid.uuid4().hex},
        "subject": {"name": "Alex Example", "birth_date": "1980-02-03", "sex": "female", **subject},
        "data": {"code": "12345"},
    }


def native_v2(**subject: Any) -> dict[str, Any]:
    return {
        "schema_version": "v2",
        "record_type": "encounter",
        "subject": {"given_names": ["Alex"], "family_name": "Example", "birth_date": "1980-02-03", **subject},
        "data": {"class": "AMB"},
    }


# ------------------------------------------------------------------ relay subprocess


@dataclass
class RelayProcess:
    """`python -m exchange.ingest.relay` as a real process (SIGKILL-able)."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        env = {**os.environ, **self.env, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO / "hack")])}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exchange.ingest.relay"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def relay(ingest_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = RelayProcess(ingest_env, tmp_path_factory.mktemp("relay") / "relay.log").start()
    yield process
    process.stop()


def wait_until_alive(url: str, relay: RelayProcess, timeout: float = 30.0) -> None:
    """Until the relay's probe port answers /healthz (AssertionError with its log otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert relay.proc is not None and relay.proc.poll() is None, relay.log()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"the relay never answered /healthz:\n{relay.log()[-2000:]}")


def readyz_until(url: str, status: int, timeout: float = 30.0) -> httpx.Response:
    """GET /readyz until it answers `status` or `timeout` passes; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/readyz", timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture
def probed_relay(ingest_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, RelayProcess]]:
    """A second standalone relay with its probe port (RELAY_METRICS_PORT): (base URL, process)."""
    port = free_port()
    relay = RelayProcess({**ingest_env, "RELAY_METRICS_PORT": str(port)}, tmp_path / "relay.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_alive(url, relay)
        yield url, relay
    finally:
        relay.stop()


@pytest.fixture(scope="session")
def served(ingest_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`uvicorn --factory exchange.ingest.app:create_app`, as `exchange serve ingest` would run it."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("uvicorn") / "ingest.log"
    env = {**os.environ, **ingest_env, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO / "hack")])}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "exchange.ingest.app:create_app", "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"uvicorn did not start: {log_path.read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


# ------------------------------------------------------------------ Kafka collector


@dataclass
class Event:
    key: str
    value: dict[str, Any]
    headers: dict[str, str]
    raw: bytes


@dataclass
class EventCollector:
    """Reads `record.ingested.v1` from the beginning in the background; tests wait for ids."""

    bootstrap: str
    events: list[Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                TOPIC, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
            )
            try:
                await consumer.start()
                seen: set[tuple[int, int]] = set()
                async for msg in consumer:
                    if (msg.partition, msg.offset) in seen:
                        continue
                    seen.add((msg.partition, msg.offset))
                    self.events.append(
                        Event(
                            key=(msg.key or b"").decode(),
                            value=orjson.loads(msg.value or b"{}"),
                            headers=header_map(msg.headers),
                            raw=msg.value or b"",
                        )
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # broker restarts in durability tests: reconnect
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def wait_for(self, record_ids: set[str], timeout: float = 60.0) -> dict[str, list[Event]]:
        """Events by record id once every id has arrived (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, list[Event]] = {}
            for ev in list(self.events):
                rid = ev.value.get("record_id")
                if rid in record_ids:
                    found.setdefault(rid, []).append(ev)
            if len(found) == len(record_ids):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(record_ids) - len(found)} of {len(record_ids)} events never arrived")
            await asyncio.sleep(0.2)


@pytest.fixture(scope="session")
async def events(kafka: Any, relay: RelayProcess) -> AsyncIterator[EventCollector]:
    collector = EventCollector(kafka.bootstrap_servers)
    collector.task = asyncio.create_task(collector._run())
    yield collector
    collector.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector.task


@pytest.fixture(scope="session")
def samples() -> Any:
    """Record builders: `samples.native_v1(**subject)`, `samples.native_v2(**subject)`."""
    from types import SimpleNamespace

    return SimpleNamespace(native_v1=native_v1, native_v2=native_v2)


@pytest.fixture(scope="session")
def contract_validator() -> Any:
    """Validate a response body against a contract component: `check("IngestAccepted", body)`."""
    from exchange.ingest.validation import schema_validator

    def check(component: str, body: Any) -> None:
        errors = list(schema_validator(component).iter_errors(body))
        assert not errors, [(list(e.absolute_path), e.validator) for e in errors]

    return check


@pytest.fixture(scope="session")
def synthea_dir() -> Path:
    return SYNTHEA
