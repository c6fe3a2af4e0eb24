"""Apache Kafka 4.x as a local process: one node, broker + controller (KRaft), free ports.

The jars come from Maven Central (`hack/install/kafka.sh` copies them to
`$EXCHANGE_CACHE/kafka-<version>/libs`); the broker runs as `java -cp 'libs/*' kafka.Kafka
server.properties` after `kafka.tools.StorageTool format` has formatted its log dir once.
Readiness is a real Kafka protocol answer: a Metadata request that lists this broker.
Restarting keeps the ports, the cluster id and the data (topics, committed offsets). With
`metrics_port` the Prometheus JMX exporter agent serves the broker's metrics there (`make dev`).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_devtools.engines.base import (
    CACHE_DIR,
    REPO_ROOT,
    EngineError,
    EngineProcess,
    free_port,
    java_binary,
    port_bindable,
    run,
)

KAFKA_VERSION = "4.1.1"  # keep equal to hack/install/kafka.sh and hack/engines/kafka/pom.xml
JMX_EXPORTER_VERSION = "1.0.1"  # keep equal to hack/install/kafka.sh
INSTALLER = "kafka.sh"
KAFKA_HOME = CACHE_DIR / f"kafka-{KAFKA_VERSION}"
JMX_EXPORTER_HOME = CACHE_DIR / f"jmx-exporter-{JMX_EXPORTER_VERSION}"
JMX_EXPORTER_CONFIG = REPO_ROOT / "hack" / "engines" / "kafka" / "jmx-exporter.yaml"
NODE_ID = 1
JVM_OPTS = (
    "-Xms64m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def kafka_home() -> Path:
    """The installed Kafka (libs/ + config/), or a one-line EngineError naming the installer."""
    jar = KAFKA_HOME / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar"
    if not jar.exists():
        raise EngineError(f"{jar} is missing; run `bash hack/install/{INSTALLER}` (or `make engines`)")
    return KAFKA_HOME


def new_cluster_id() -> str:
    """A Kafka Uuid string (url-safe base64 of 16 random bytes), not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class BrokerMetadata:
    cluster_id: str | None
    controller_id: int
    brokers: tuple[tuple[int, str, int], ...]


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> BrokerMetadata:
    """Send a Kafka Metadata request (v4, no topics) and decode the brokers from the answer.

    Raw protocol on purpose: the readiness probe must not depend on a client library, and a
    Metadata answer listing a broker means the node is registered, unfenced and serving.
    """
    api_key, api_version, correlation_id = 3, 4, 0x45584348
    client_id = b"exchange-probe"
    body = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i?", 0, False)  # topics: empty array (none); allow_auto_topic_creation
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
    reader = _Reader(payload)
    if reader.int32() != correlation_id:
        raise EngineError("kafka: metadata answer with a foreign correlation id")
    reader.int32()  # throttle_time_ms
    brokers = []
    for _ in range(reader.int32()):
        node_id, broker_host, broker_port = reader.int32(), reader.string(), reader.int32()
        reader.string()  # rack
        brokers.append((node_id, broker_host or "", broker_port))
    cluster_id = reader.string()
    controller_id = reader.int32()
    return BrokerMetadata(cluster_id=cluster_id, controller_id=controller_id, brokers=tuple(brokers))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EngineError("kafka: connection closed mid-answer")
        chunks += chunk
    return bytes(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int32(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return int(value)

    def string(self) -> str | None:
        (length,) = struct.unpack_from(">h", self.data, self.pos)
        self.pos += 2
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return value


@dataclass
class KafkaServer:
    """A local single-node Kafka; `engine` is the JVM running kafka.Kafka."""

    engine: EngineProcess
    port: int
    controller_port: int
    workdir: Path
    cluster_id: str
    host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Where the JMX exporter agent serves `/metrics`; None: no agent."""

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}

    @property
    def running(self) -> bool:
        return self.engine.proc is not None and self.engine.proc.poll() is None

    def metadata(self) -> BrokerMetadata:
        return kafka_metadata(self.host, self.port)

    def start(self) -> KafkaServer:
        self.engine.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after `timeout` seconds."""
        self.engine.stop(timeout=timeout)

    def kill(self) -> None:
        self.engine.kill()

    def restart(self) -> KafkaServer:
        """Stop and start on the same ports, with the same cluster id and data."""
        self.stop()
        return self.start()


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                props[key.strip()] = value.strip()
    return props


def _previous_port(value: str | None) -> int | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        port = int(value.rsplit(":", 1)[-1])
        return port if port_bindable(port) else None
    return None


def kafka_server(
    workdir: Path,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    name: str = "kafka",
    heap: str = "512m",
    partitions: int = 1,
    extra_properties: dict[str, str] | None = None,
    timeout: float = 120.0,
    detach: bool = False,
    metrics_port: int | None = None,
) -> KafkaServer:
    """Write server.properties, format the log dir the first time; the server is not started.

    `port=None` picks a free port, or the one this workdir used last time when still free.
    """
    home = kafka_home()
    java = java_binary(INSTALLER)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "server.properties"
    previous = _read_properties(config)
    data_dir = workdir / "data"
    formatted = (data_dir / "meta.properties").exists()
    if port is None and formatted:
        port = _previous_port(previous.get("advertised.listeners"))
    if controller_port is None and formatted:
        controller_port = _previous_port(previous.get("controller.quorum.voters"))
    port = port or free_port()
    controller_port = controller_port or free_port()
    while controller_port == port:
        controller_port = free_port()

    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(partitions),
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "default.replication.factor": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Small: one node on a laptop or a 2-core CI runner.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "2",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "log.cleaner.threads": "1",
        "log.retention.check.interval.ms": "300000",
    }
    props |= extra_properties or {}
    config.write_text(
        "# Written by exchange_devtools.engines.kafka; rewritten on every start.\n"
        + "".join(f"{key}={value}\n" for key, value in props.items())
    )

    classpath = str(home / "libs" / "*")
    log4j = home / "config" / "log4j2.properties"
    jvm = [
        java,
        f"-Xmx{heap}",
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={workdir / 'logs'}",
        "-cp",
        classpath,
    ]

    cluster_id_file = workdir / "cluster.id"
    if formatted and cluster_id_file.exists():
        cluster_id = cluster_id_file.read_text().strip()
    elif formatted:
        cluster_id = _read_properties(data_dir / "meta.properties").get("cluster.id", "")
    else:
        cluster_id = new_cluster_id()
        run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), "--ignore-formatted"],
            what=f"kafka: format {data_dir}",
            timeout=120,
            cwd=str(workdir),
        )
        cluster_id_file.write_text(cluster_id + "\n")

    def ready() -> bool:
        meta = kafka_metadata("127.0.0.1", port, timeout=1.0)
        return any(node_id == NODE_ID for node_id, _, _ in meta.brokers)

    agent: list[str] = []
    if metrics_port:
        jar = JMX_EXPORTER_HOME / f"jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
        if not jar.exists():
            raise EngineError(f"{jar} is missing; run `bash hack/install/{INSTALLER}` (or `make engines`)")
        agent = [f"-javaagent:{jar}=127.0.0.1:{metrics_port}:{JMX_EXPORTER_CONFIG}"]
    engine = EngineProcess(
        name=name,
        argv=[*jvm[:1], *agent, *jvm[1:], "kafka.Kafka", str(config)],
        workdir=workdir,
        ready=ready,
        timeout=timeout,
        detach=detach,
    )
    return KafkaServer(
        engine=engine, port=port, controller_port=controller_port, workdir=workdir, cluster_id=cluster_id,
        metrics_port=metrics_port,
    )  # fmt: skip


def start_kafka(workdir: Path, **kwargs: Any) -> KafkaServer:
    """Format (first time) and start; returns once the broker answers a Metadata request."""
    return kafka_server(workdir, **kwargs).start()
