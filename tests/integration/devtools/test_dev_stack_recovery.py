"""`make dev` after a crash: the whole dev stack (`python -m exchange_devtools dev-up`, as the
Makefile runs it) in a temp state dir on ports of its own (EXCHANGE_DEV_PORT_BASE), then kill -9
of engines and services and `dev-up` again. What died comes back on its recorded port, what runs
is left alone (same pid), the pipeline works end to end, a port held by someone else is one line
and exit 1, and an engine on a new address restarts the services that held the old one."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from exchange_devtools.dev_stack import PORTS, SERVICES
from exchange_devtools.engines.base import REPO_ROOT, free_port, pid_alive, port_bindable, port_listener
from exchange_devtools.engines.kafka import kafka_metadata
from exchange_devtools.engines.s3 import s3_answers
from exchange_devtools.testdata import synthea

PATIENTS = synthea("Patient").read_text().splitlines()


def port_base() -> int:
    """A run of len(PORTS) ports below the kernel's ephemeral range (so no client socket of
    another test takes one), all free now."""
    for _ in range(100):
        base = random.randrange(20000, 32000 - len(PORTS))
        if all(port_bindable(port) and port_listener(port) is None for port in range(base, base + len(PORTS))):
            return base
    raise AssertionError("no run of free ports for the dev stack")


@dataclass
class Dev:
    state: Path
    env: dict[str, str]

    def up(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exchange_devtools", "dev-up"],
            cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "exchange_devtools", "dev-down"],
            cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip

    @property
    def ports(self) -> dict[str, int]:
        return dict(json.loads((self.state / "ports.json").read_text()))

    def pid(self, name: str) -> int:
        folder = "services" if name in SERVICES else name
        return int((self.state / folder / f"{name}.pid").read_text())

    def kill(self, *names: str) -> None:
        """kill -9 each process (not its group: what a crash or an impatient user does)."""
        pids = [self.pid(name) for name in names]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def ingest(self, patient: int) -> str:
        """POST one Patient (a different one each time: the same one again is no new canonical
        record); its record id."""
        response = httpx.post(
            f"http://127.0.0.1:{self.ports['ingest']}/v1/ingest", content=PATIENTS[patient], timeout=30,
            headers={"Authorization": "Bearer dev", "Content-Type": "application/fhir+json",
                     "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        return str(response.json()["record_id"])

    async def wait_canonical(self, record_id: str, timeout: float = 90) -> None:
        """Until the normalizer wrote the record to the canonical store."""
        admin_dsn = json.loads((self.state / "postgres" / "env.json").read_text())["DATABASE_URL"]
        conn = await asyncpg.connect(admin_dsn)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if await conn.fetchval("SELECT count(*) FROM canonical.records WHERE id = $1", uuid.UUID(record_id)):
                    return
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        raise AssertionError(f"record {record_id} not in canonical.records after {timeout:.0f}s")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    state = tmp_path_factory.mktemp("dev")
    stack = Dev(state, {**os.environ, "EXCHANGE_DEV_DIR": str(state), "EXCHANGE_DEV_PORT_BASE": str(port_base())})
    try:
        ok(stack.up())
        yield stack
    finally:
        stack.down()


def test_dev_up_on_a_healthy_stack_does_nothing_quickly_and_says_so(dev: Dev) -> None:
    pids = {name: dev.pid(name) for name in SERVICES}
    started = time.monotonic()
    out = ok(dev.up())
    assert time.monotonic() - started < 10
    assert "nothing to do" in out
    assert {name: dev.pid(name) for name in SERVICES} == pids


async def test_killed_s3_kafka_and_ingest_come_back_on_their_ports_and_records_flow(dev: Dev) -> None:
    ports, env_file = dev.ports, (dev.state / "env").read_text()
    kept = {name: dev.pid(name) for name in ("query", "tokenizer", "relay", "normalizer", "postgres")}
    dev.kill("s3", "kafka", "ingest")

    ok(dev.up())

    assert dev.ports == ports
    assert (dev.state / "env").read_text() == env_file  # every address the running services hold is valid
    assert {name: dev.pid(name) for name in kept} == kept  # what ran was left alone
    assert s3_answers("127.0.0.1", ports["s3"])
    assert kafka_metadata("127.0.0.1", ports["kafka"]).brokers[0][2] == ports["kafka"]
    # Ingest (new) writes to S3 (new) and its outbox; the relay (old) publishes to Kafka (new); the
    # normalizer (old) consumes and writes the canonical row.
    await dev.wait_canonical(dev.ingest(0))


def test_a_port_held_by_another_process_is_one_line_and_exit_1(dev: Dev) -> None:
    port = dev.ports["tokenizer"]
    dev.kill("tokenizer")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = dev.up()
    assert result.returncode == 1
    comm = Path("/proc/self/comm").read_text().strip()
    assert (
        result.stderr
        == f"error: port {port} (tokenizer) is held by pid {os.getpid()} ({comm}); stop it or run make down\n"
    )

    ok(dev.up())  # once it is free again
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


async def test_an_engine_on_a_new_address_restarts_every_service_that_held_the_old_one(dev: Dev) -> None:
    before = {name: dev.pid(name) for name in SERVICES}
    dev.kill("s3")
    ports = dev.ports | {"s3": free_port()}
    (dev.state / "ports.json").write_text(json.dumps(ports))

    out = ok(dev.up())

    assert f"S3_ENDPOINT_URL=http://127.0.0.1:{ports['s3']}" in (dev.state / "env").read_text()
    assert s3_answers("127.0.0.1", ports["s3"])
    assert all(dev.pid(name) != pid for name, pid in before.items()), out
    assert out.count("restarted: its settings changed") == len(SERVICES)
    await dev.wait_canonical(dev.ingest(1))
