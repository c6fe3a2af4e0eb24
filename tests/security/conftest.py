"""The hostile-input suite's platform: ingest and the tokenizer served by `exchange serve`, as the
operator runs them (ENV=production, real JWTs from a local JWKS issuer, real Postgres and S3),
with short head and body timeouts so a stalled request is answered within the suite's patience.

Each service logs to a file; `logs()` reads every line both wrote, for the no-PII checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from exchange.ingest.migrations import upgrade
from exchange_devtools.engines.base import free_port

REPO = Path(__file__).resolve().parents[2]
BUCKET = "security-raw"
TIMEOUTS = {"HTTP_HEADER_TIMEOUT": "2", "HTTP_BODY_TIMEOUT": "2"}
SAFETY = 30.0
"""Seconds a client waits before the suite calls it a hang: well past every server timeout."""
CANARIES = ("Zebulon", "Canaryfield", "987-65-4329", "1961-02-03", "02139-canary")
"""PII-shaped values the payloads carry; none may come back in an answer or reach a log."""


@dataclass
class Served:
    name: str
    url: str
    port: int
    log: Path


def _serve(name: str, env: dict[str, str], log_dir: Path) -> tuple[Served, subprocess.Popen[bytes]]:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    full = {**os.environ, **env, **TIMEOUTS, "PORT": str(port), "HOST": "127.0.0.1", "LOG_JSON": "true",
            "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO / "hack")])}  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "exchange.cli.main", "serve", name], env=full,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return Served(name, f"http://127.0.0.1:{port}", port, log_path), proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{name} did not become ready: {log_path.read_text()[-3000:]}")


async def _create_bucket(s3: Any) -> None:
    async with get_session().create_client("s3", **s3.client_kwargs()) as client:
        with contextlib.suppress(Exception):
            await client.create_bucket(Bucket=BUCKET)


@pytest.fixture(scope="session")
def platform(
    postgres: Any, s3: Any, jwks_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    """{"ingest": ..., "tokenizer": ...} served in production mode."""
    upgrade(postgres.dsn)
    asyncio.run(_create_bucket(s3))
    log_dir = tmp_path_factory.mktemp("security")
    secret = log_dir / "tokenization.secret"
    secret.write_text("security-suite-tokenization-secret-4f1b9c2e7d")
    common = {**jwks_server.env(), "ENV": "production"}
    procs = []
    served = {}
    try:
        for name, env in (
            ("ingest", {**common, **postgres.env(), **s3.env(), "S3_BUCKET_RAW": BUCKET, "S3_TIMEOUT": "2",
                        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "INGEST_MIGRATE_ON_START": "false",
                        "INGEST_CREATE_BUCKET_ON_START": "false"}),
            ("tokenizer", {**common, "TOKENIZATION_SECRET_FILE": str(secret)}),
        ):  # fmt: skip
            service, proc = _serve(name, env, log_dir)
            served[name], procs = service, [*procs, proc]
        yield served
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def logs(platform: dict[str, Served]) -> Any:
    def read() -> str:
        return "\n".join(service.log.read_text(errors="replace") for service in platform.values())

    return read
