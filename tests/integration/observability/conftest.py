"""The platform as `make dev` runs it, scraped by a real Prometheus evaluating the shipped rules at
a fast clock: Postgres and S3 of the session (Postgres through postgres_exporter), a Kafka of this
module's own (tests stop it; its JMX exporter agent is scraped too), tokenizer, ingest, relay and
normalizer as `exchange serve` processes (ENV=local), and on request the operator as a process
reconciling pipelines on the session's API server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from exchange_devtools.engines.base import EngineError, EngineProcess, free_port
from exchange_devtools.engines.kafka import KafkaServer, kafka_server
from exchange_devtools.engines.postgres_exporter import PostgresExporter
from exchange_devtools.engines.prometheus import PrometheusServer
from exchange_devtools.fixtures.report import track
from exchange_devtools.testdata import SYNTHEA_DIR

EXCHANGE = Path(sys.executable).with_name("exchange")
PIPELINE = "obs"


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


@dataclass
class Platform:
    """The running services, their engines and the Prometheus that scrapes them."""

    prometheus: PrometheusServer
    kafka: KafkaServer
    services: dict[str, EngineProcess]
    ports: dict[str, int]
    patient: bytes
    accepted: list[str] = field(default_factory=list)

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    def ingest(self, count: int, every: float = 0.0) -> None:
        """POST `count` single records (a Synthea Patient, `Bearer dev`), `every` seconds apart."""
        with httpx.Client(base_url=self.ingest_url, timeout=30) as client:
            for _ in range(count):
                response = client.post(
                    "/v1/ingest", content=self.patient,
                    headers={"Authorization": "Bearer dev", "Content-Type": "application/fhir+json",
                             "Idempotency-Key": uuid.uuid4().hex},
                )  # fmt: skip
                assert response.status_code == 202, response.text
                self.accepted.append(response.json()["record_id"])
                time.sleep(every)

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when it has no series."""
        result = self.prometheus.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alert_state(self, name: str) -> str | None:
        """`pending`, `firing`, or None: the state of the first alert `name` of this pipeline."""
        for alert in self.prometheus.alerts():
            if alert["labels"].get("alertname") == name and alert["labels"].get("pipeline") == PIPELINE:
                return str(alert["state"])
        return None

    def restart(self, name: str) -> None:
        """Start a stopped service again on the same ports."""
        self.services[name].start()


def _exchange(env: dict[str, str], *args: str) -> None:
    out = subprocess.run([str(EXCHANGE), *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    if out.returncode != 0:
        raise EngineError(f"exchange {' '.join(args)}: {(out.stderr or out.stdout).strip()[-500:]}")


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def platform(
    postgres: Any, s3: Any, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("observability")
    kafka = kafka_server(workdir / "kafka", name="obs-kafka", partitions=3, metrics_port=free_port())
    track(kafka.engine)
    kafka.start()
    prometheus.targets("kafka", [f"127.0.0.1:{kafka.metrics_port}"], {"pipeline": PIPELINE})
    exporter = PostgresExporter(workdir / "postgres-exporter", postgres.dsn, name="obs-postgres-exporter")
    track(exporter.engine)
    exporter.start()
    prometheus.targets("postgres", [exporter.address], {"pipeline": PIPELINE})
    suffix = uuid.uuid4().hex[:8]
    asyncio.run(_create_database(postgres.dsn, f"obs_{suffix}"))
    secret = workdir / "tokenization.secret"
    secret.write_text("observability-test-secret-0123456789abcdef")
    ports = {name: free_port() for name in ("tokenizer", "ingest", "relay", "normalizer")}
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "ENV": "local",
        "LOG_JSON": "true",
        "HOST": "127.0.0.1",
        "DATABASE_URL": postgres.dsn_for(f"obs_{suffix}"),
        **s3.env(),
        "S3_BUCKET_RAW": f"obs-{suffix}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_PARTITIONS": "3",
        "STARTUP_WAIT_SECONDS": "30",
        "TOKENIZATION_SECRET_FILE": str(secret),
        "TOKENIZER_URL": f"http://127.0.0.1:{ports['tokenizer']}",
        "RELAY_POLL_SECONDS": "0.2",
        "RELAY_MAX_BACKOFF": "1",
        "RELAY_PUBLISH_TIMEOUT": "3",
        "NORMALIZER_BACKOFF_MAX": "1",
    }
    _exchange(env, "bootstrap")
    _exchange(env, "migrate")
    own: dict[str, dict[str, str]] = {
        "tokenizer": {"PORT": str(ports["tokenizer"])},
        "ingest": {"PORT": str(ports["ingest"]), "INGEST_RELAY_IN_PROCESS": "false"},
        "relay": {"RELAY_METRICS_PORT": str(ports["relay"])},
        "normalizer": {"NORMALIZER_METRICS_PORT": str(ports["normalizer"])},
    }
    services: dict[str, EngineProcess] = {}
    try:
        for name, extra in own.items():
            probe = f"http://127.0.0.1:{ports[name]}/healthz"
            services[name] = track(
                EngineProcess(
                    name=f"obs-{name}",
                    argv=[str(EXCHANGE), "serve", name],
                    workdir=workdir / "services",
                    ready=lambda probe=probe: _http_ok(probe),  # type: ignore[misc]
                    env={**env, **extra},
                    timeout=90,
                )
            ).start()
            prometheus.targets(name, [f"127.0.0.1:{ports[name]}"], {"pipeline": PIPELINE})
        patient = (SYNTHEA_DIR / "Patient.ndjson").read_bytes().splitlines()[0]
        yield Platform(prometheus, kafka, services, ports, patient)
    finally:
        for name, service in services.items():
            prometheus.targets(name, [])
            service.stop()
        prometheus.targets("kafka", [])
        kafka.stop()
        prometheus.targets("postgres", [])
        exporter.stop()


@pytest.fixture(scope="module")
def operator(
    kubeconfig: Path, kube_api_client: Any, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`python -m exchange_operator` watching a namespace of its own, scraped as `operator`: one
    pipeline it reconciles, one that waits for a Secret nobody created (a failing reconcile).
    Returns the namespace."""
    from kubernetes import client

    from exchange_devtools.fixtures.operator_process import OperatorProcess, install_crd
    from exchange_operator.spec import GROUP, PLURAL, VERSION

    install_crd(kube_api_client)
    namespace = f"obs-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube_api_client).create_namespace({"metadata": {"name": namespace}})
    port = free_port()
    env = {
        "EXCHANGE_OPERATOR_NAMESPACES": namespace,
        "EXCHANGE_OPERATOR_METRICS_PORT": str(port),
        "EXCHANGE_OPERATOR_RESYNC_SECONDS": "2",
        "EXCHANGE_OPERATOR_DEPENDENCY_RETRY_SECONDS": "1",
    }
    log = tmp_path_factory.mktemp("obs-operator") / "operator.log"
    process = OperatorProcess(kubeconfig, log, env).start()
    custom = client.CustomObjectsApi(kube_api_client)
    external_s3 = {"s3": {"mode": "external", "secretRef": {"name": "nobody-created-this"}}}
    for name, spec in (("obs", {}), ("obs-missing-secret", {"engines": external_s3})):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ExchangePipeline", "metadata": {"name": name}}
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {**body, "spec": spec})
    prometheus.targets("operator", [f"127.0.0.1:{port}"])
    try:
        yield namespace
    finally:
        prometheus.targets("operator", [])
        # Deleted while this operator runs, so its finalizer completes and no later, cluster-wide
        # operator of the session finds them.
        for name in ("obs", "obs-missing-secret"):
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        deadline = time.monotonic() + 60
        while custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
            if time.monotonic() > deadline:
                raise EngineError(f"pipelines in {namespace} were not finalized; operator log: {log}")
            time.sleep(0.5)
        process.stop()
