"""`exchange serve normalizer` answers Kubernetes' probes on NORMALIZER_METRICS_PORT from the start:
alive while it waits for its engines, ready only when Postgres, Kafka, S3 and the tokenizer answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from exchange_devtools.engines.base import free_port

from .conftest import Stack


def probe(url: str, path: str, until: Callable[[httpx.Response], bool], timeout: float = 60.0) -> httpx.Response:
    """GET `path` until the answer satisfies `until` (or `timeout` passes); the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{url}{path}", timeout=5)
            if until(response) or time.monotonic() > deadline:
                return response
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def answered(status: int) -> Callable[[httpx.Response], bool]:
    return lambda response: response.status_code == status


def test_the_normalizer_is_ready_when_postgres_kafka_s3_and_the_tokenizer_answer(stack: Stack) -> None:
    port = free_port()
    stack.start_worker(NORMALIZER_METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    ready = probe(url, "/readyz", answered(200))
    assert ready.status_code == 200, stack.log_text()[-2000:]
    assert ready.json()["checks"] == {"postgres": "ok", "kafka": "ok", "s3": "ok", "tokenizer": "ok"}
    assert "normalizer_" in httpx.get(f"{url}/metrics", timeout=5).text


def test_a_normalizer_without_kafka_and_tokenizer_is_alive_but_not_ready(stack: Stack) -> None:
    port, kafka, tokenizer = free_port(), free_port(), free_port()
    stack.start_worker(
        NORMALIZER_METRICS_PORT=str(port),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
        TOKENIZER_URL=f"http://127.0.0.1:{tokenizer}",
    )
    url = f"http://127.0.0.1:{port}"
    assert probe(url, "/healthz", answered(200)).status_code == 200, stack.log_text()[-2000:]
    ready = probe(url, "/readyz", lambda r: r.status_code == 503 and r.json()["checks"]["s3"] == "ok")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["postgres"] == "ok" and checks["s3"] == "ok"  # reached before it waits for Kafka
    assert checks["kafka"].startswith("unavailable") and checks["tokenizer"].startswith("unavailable")
