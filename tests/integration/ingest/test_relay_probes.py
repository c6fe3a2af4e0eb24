"""The standalone relay (`python -m exchange.ingest.relay`, what `exchange serve relay` runs) answers
Kubernetes' probes on RELAY_METRICS_PORT: /healthz, /readyz naming Postgres and Kafka, /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exchange_devtools.engines.base import free_port

from .conftest import RelayProcess


def wait_until_alive(url: str, relay: RelayProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert relay.proc is not None and relay.proc.poll() is None, relay.log()
        time.sleep(0.2)
    raise AssertionError(f"the relay never answered /healthz:\n{relay.log()[-2000:]}")


def wait_for_readyz(url: str, status: int, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/readyz", timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture
def probed_relay(ingest_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, RelayProcess]]:
    port = free_port()
    relay = RelayProcess({**ingest_env, "RELAY_METRICS_PORT": str(port)}, tmp_path / "relay.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_alive(url, relay)
        yield url, relay
    finally:
        relay.stop()


def test_a_standalone_relay_is_ready_once_postgres_and_kafka_answer(probed_relay):
    url, relay = probed_relay
    ready = wait_for_readyz(url, 200)
    assert ready.status_code == 200, relay.log()[-2000:]
    assert ready.json()["checks"] == {"postgres": "ok", "kafka": "ok"}
    assert "ingest_relay_publish_errors_total" in httpx.get(f"{url}/metrics", timeout=5).text
