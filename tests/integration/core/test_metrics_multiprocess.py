"""With several server processes (WEB_CONCURRENCY) `/metrics` shows every process's samples added
up, on the service's port (ENV=local) and on METRICS_PORT alike, whichever process answers the
scrape: prometheus-client's multiprocess mode, which `exchange serve` turns on by itself.

Served by `exchange serve tokenizer` (no engine needed) with two workers."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exchange_devtools.engines.base import EngineProcess, free_port
from exchange_devtools.fixtures.report import track

EXCHANGE = Path(sys.executable).with_name("exchange")
REQUESTS = 60


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(service URL, metrics-port URL, the multiprocess directory) of a two-process tokenizer."""
    workdir = tmp_path_factory.mktemp("multiprocess")
    secret = workdir / "secret"
    secret.write_text("multiprocess-test-secret-0123456789abcdef")
    samples = workdir / "prometheus-multiproc"
    (samples / "counter_1.db").parent.mkdir()
    (samples / "counter_1.db").write_bytes(b"stale file of an earlier run")  # must be cleared at start
    port, metrics_port = free_port(), free_port()
    server = track(
        EngineProcess(
            name="tokenizer-2-workers",
            argv=[str(EXCHANGE), "serve", "tokenizer"],
            workdir=workdir,
            ready=lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200,
            env={
                "ENV": "local",
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "METRICS_PORT": str(metrics_port),
                "WEB_CONCURRENCY": "2",
                "TOKENIZATION_SECRET_FILE": str(secret),
                "PROMETHEUS_MULTIPROC_DIR": str(samples),
            },
            timeout=60,
        )
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", samples
    finally:
        server.stop()


def _healthz_count(text: str) -> float:
    pattern = r'^http_requests_total\{[^}]*route="/healthz"[^}]*\} ([0-9.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, text, flags=re.M))


def _pids(samples: Path) -> set[str]:
    """The processes whose sample file holds a /healthz request (read as the collector reads it)."""
    from prometheus_client.mmap_dict import MmapedDict

    found = set()
    for path in samples.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"http_requests_total"' in key and '"/healthz"' in key and value > 0:
                found.add(path.name.removeprefix("counter_").removesuffix(".db"))
    return found


def test_every_scrape_shows_the_requests_of_every_worker(two_workers: tuple[str, str, Path]) -> None:
    url, metrics_url, samples = two_workers
    before = _healthz_count(httpx.get(f"{url}/metrics", timeout=5).text)
    pids = _pids(samples)
    deadline = time.monotonic() + 60
    sent = 0
    # New connections until both workers have served some (the kernel picks the process per connection).
    while sent < REQUESTS or (len(pids) < 2 and time.monotonic() < deadline):
        with httpx.Client(timeout=5) as client:  # one connection each
            assert client.get(f"{url}/healthz").status_code == 200
        sent += 1
        pids = _pids(samples)
    assert len(pids) >= 2, f"one worker served every connection: {pids}"
    for base in (url, metrics_url) * 4:
        text = httpx.get(f"{base}/metrics", timeout=5).text
        assert _healthz_count(text) == before + sent, base


def test_the_samples_of_an_earlier_run_are_cleared_at_start(two_workers: tuple[str, str, Path]) -> None:
    _, _, samples = two_workers
    assert not (samples / "counter_1.db").exists()
    assert list(samples.glob("counter_*.db")), "the workers write their samples there"
