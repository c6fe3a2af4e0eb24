"""The managed Kafka-protocol broker, one builder per flavor: Redpanda, or Apache Kafka in KRaft mode.

Both are one node that advertises the client Service `<pipeline>-kafka` on 9092, through which the
services also bootstrap: its address never changes, whereas a re-created Pod's DNS name keeps
answering with the old Pod's address for up to 30 s (CoreDNS's cache), and clients stalled that
long after the broker was back. Topics come from the bootstrap Job.
"""

from __future__ import annotations

import base64
import hashlib
import itertools

from exchange_operator.builders.common import KAFKA_PORT, Manifest, Meta
from exchange_operator.builders.engine import EnginePod, engine_statefulset, tcp_probes
from exchange_operator.spec import ExchangePipelineSpec

CONTROLLER_PORT = 9093
KAFKA_UID = 1000
REDPANDA_UID = 101
KAFKA_DATA = "/var/lib/kafka/data"
KAFKA_CONFIG = "/opt/kafka/config"


def redpanda_pod(advertised_host: str) -> EnginePod:
    container = {
        "args": [
            "redpanda",
            "start",
            "--mode=dev-container",
            "--smp=1",
            "--default-log-level=warn",
            f"--kafka-addr=internal://0.0.0.0:{KAFKA_PORT}",
            f"--advertise-kafka-addr=internal://{advertised_host}:{KAFKA_PORT}",
        ],
        "ports": [{"name": "kafka", "containerPort": KAFKA_PORT}, {"name": "admin", "containerPort": 9644}],
        "readinessProbe": {"httpGet": {"path": "/v1/status/ready", "port": "admin"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "kafka"}, "periodSeconds": 15, "failureThreshold": 6},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/redpanda"}],
    }
    return EnginePod(container, "/var/lib/redpanda/data", REDPANDA_UID, [{"name": "config", "emptyDir": {}}])


def kafka_cluster_id(meta: Meta) -> str:
    """The KRaft cluster id of a pipeline's broker: 16 bytes derived from its namespace and name, as
    Kafka writes a Uuid (22 characters of unpadded base64url), never starting with `-` (the storage
    tool would read it as an option). Stable, so a re-created pipeline finds its retained data."""
    for attempt in itertools.count():
        raw = hashlib.sha256(f"exchange-kafka/{meta.namespace}/{meta.name}/{attempt}".encode()).digest()[:16]
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not text.startswith("-"):
            return text
    raise AssertionError("unreachable")


def apache_kafka_env(meta: Meta, advertised_host: str) -> list[dict[str, str]]:
    """KAFKA_* variables (server.properties keys, as the apache/kafka image reads them) of one
    combined broker + controller node; the controller listens on loopback only."""
    settings = {
        "CLUSTER_ID": kafka_cluster_id(meta),
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://localhost:{CONTROLLER_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{advertised_host}:{KAFKA_PORT}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@localhost:{CONTROLLER_PORT}",
        "KAFKA_LOG_DIRS": KAFKA_DATA,
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",  # the bootstrap Job creates them, partitions as asked
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
        "KAFKA_MIN_INSYNC_REPLICAS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        # The JVM, not a property: the heap follows the container's memory limit (the official
        # image's scripts would otherwise ask for 1 GiB whatever the limit).
        "KAFKA_HEAP_OPTS": "-XX:MaxRAMPercentage=50.0",
        "LOG_DIR": "/tmp/kafka-logs",  # noqa: S108 - the Pod-private /tmp emptyDir, not the read-only root
    }
    return [{"name": name, "value": value} for name, value in settings.items()]


def apache_kafka_pod(meta: Meta, advertised_host: str) -> EnginePod:
    container = {
        "env": apache_kafka_env(meta, advertised_host),
        "ports": [{"name": "kafka", "containerPort": KAFKA_PORT}],
        **tcp_probes("kafka"),
        "volumeMounts": [{"name": "config", "mountPath": KAFKA_CONFIG}],
    }
    # Images that render server.properties into /opt/kafka/config (the official one) need it
    # writable under a read-only root: it becomes an emptyDir seeded with the image's own files.
    seed = {
        "name": "seed-config",
        "command": ["sh", "-c", f"cp -R {KAFKA_CONFIG}/. /seed/"],
        "volumeMounts": [{"name": "config", "mountPath": "/seed"}],
    }
    return EnginePod(container, KAFKA_DATA, KAFKA_UID, [{"name": "config", "emptyDir": {}}], [seed])


def build_kafka_statefulset(spec: ExchangePipelineSpec, meta: Meta) -> Manifest | None:
    """The broker of the configured flavor; None when Kafka is external."""
    kafka = spec.engines.kafka
    if kafka.mode != "managed":
        return None
    host = meta.service_host("kafka")  # one node: the client Service is its address (see above)
    pod = apache_kafka_pod(meta, host) if kafka.managed.kind == "apache-kafka" else redpanda_pod(host)
    managed = kafka.managed
    if managed.metrics_port:
        pod.container["ports"] = [
            *pod.container["ports"],
            {"name": "metrics", "containerPort": managed.metrics_port, "protocol": "TCP"},
        ]
        pod.metrics_port = managed.metrics_port
    return engine_statefulset(
        spec, meta, "kafka", managed.image_or_default(), managed.resources_or_default(), managed.storage, pod
    )
