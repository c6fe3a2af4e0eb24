"""The standalone relay (`python -m exchange.ingest.relay`, what `exchange serve relay` runs) answers
Kubernetes' probes on RELAY_METRICS_PORT: /healthz, /readyz naming Postgres and Kafka (what
publishing needs), /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from exchange_devtools.engines.base import free_port

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
