"""The standalone relay (`python -m exchange.ingest.relay`, what `exchange serve relay` runs) answers
Kubernetes' probes on RELAY_METRICS_PORT: /healthz, /readyz naming Postgres and Kafka (what
publishing needs), /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from exchange.core import startup
from exchange_devtools.engines.base import free_port
from exchange_devtools.late_port import LatePort

from .conftest import RelayProcess, readyz_until, wait_until_alive


def test_a_standalone_relay_is_ready_once_postgres_and_kafka_answer(probed_relay):
    url, relay = probed_relay
    ready = readyz_until(url, 200)
    assert ready.status_code == 200, relay.log()[-2000:]
    assert ready.json()["checks"] == {"postgres": "ok", "kafka": "ok"}
    assert "ingest_relay_publish_errors_total" in httpx.get(f"{url}/metrics", timeout=5).text


def test_a_relay_whose_brokers_do_not_answer_is_alive_but_not_ready(ingest_env, tmp_path: Path):
    port, closed = free_port(), free_port()
    env = {**ingest_env, "RELAY_METRICS_PORT": str(port), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}
    relay = RelayProcess(env, tmp_path / "relay.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_alive(url, relay)
        ready = readyz_until(url, 503)
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"].startswith("unavailable")
    finally:
        relay.stop()


def test_a_relay_started_long_before_postgres_is_ready_within_seconds_of_it(ingest_env, postgres, tmp_path: Path):
    """The relay's wait for Postgres backs off to at most startup's 5 s (it was 30 s: a relay
    that had waited 16 s kept a pipeline from Ready 15 s after its database was up)."""
    with LatePort(postgres.port) as late:
        port = free_port()
        dsn = postgres.dsn.replace(f":{postgres.port}/", f":{late.port}/")
        env = {**ingest_env, "RELAY_METRICS_PORT": str(port), "DATABASE_URL": dsn}
        relay = RelayProcess(env, tmp_path / "relay.log").start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_alive(url, relay)
            time.sleep(16)  # Postgres "starts" late: nothing to wait on until then
            assert readyz_until(url, 200, timeout=0).status_code == 503
            late.open()
            opened = time.monotonic()
            ready = readyz_until(url, 200, timeout=30)
            assert ready.status_code == 200, relay.log()[-2000:]
            assert time.monotonic() - opened < startup.MAX_DELAY + 2
        finally:
            relay.stop()
