"""Managed engine flavors, without a cluster: Redpanda or Apache Kafka (KRaft), MinIO or s3proxy; each
reached by the services through the same client Service, none ever starting on another's volume."""

import base64
import itertools

import pytest

from exchange_operator.builders import Meta, build_children
from exchange_operator.builders.env import config_data
from exchange_operator.builders.kafka import build_kafka_statefulset, kafka_cluster_id
from exchange_operator.builders.network import build_network_policies
from exchange_operator.builders.s3 import build_s3_statefulset
from exchange_operator.builders.secrets import build_s3_secret
from exchange_operator.builders.services import build_services
from exchange_operator.spec import parse_spec
from exchange_operator.status import build_status

S3PROXY = "localhost/s3proxy:3.0.0"


def flavored(kafka=None, s3=None, **kafka_managed):
    """A spec with these flavors (s3proxy with the local image it needs); more managed Kafka fields as keywords."""
    engines = {}
    if kafka:
        engines["kafka"] = {"managed": {"flavor": kafka, **kafka_managed}}
    if s3:
        engines["s3"] = {"managed": {"flavor": s3, **({"image": S3PROXY} if s3 == "s3proxy" else {})}}
    return parse_spec({"engines": engines})


def container(sts):
    return sts["spec"]["template"]["spec"]["containers"][0]


def env_of(sts):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(sts).get("env", [])}


def test_the_default_flavors_are_redpanda_and_minio_on_their_pinned_images(spec, meta):
    kafka, s3 = build_kafka_statefulset(spec, meta), build_s3_statefulset(spec, meta)
    assert kafka["metadata"]["name"] == "demo-redpanda"
    assert container(kafka)["image"] == "redpandadata/redpanda:v24.2.18"
    assert container(kafka)["args"][:2] == ["redpanda", "start"]
    assert s3["metadata"]["name"] == "demo-minio"
    assert container(s3)["image"].startswith("minio/minio:RELEASE.")


def test_an_apache_kafka_broker_is_one_kraft_node_advertising_the_client_service(meta):
    sts = build_kafka_statefulset(flavored(kafka="apache-kafka"), meta)
    assert sts["metadata"]["name"] == "demo-kafka"
    assert container(sts)["image"] == "apache/kafka:4.1.1"
    env = env_of(sts)
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:9092,CONTROLLER://localhost:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://demo-kafka.health.svc:9092"
    assert sts["spec"]["serviceName"] == "demo-kafka-hl"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the bootstrap Job creates the topics
    for factor in ("OFFSETS_TOPIC_REPLICATION_FACTOR", "TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[f"KAFKA_{factor}"] == "1"
    assert env["CLUSTER_ID"] == kafka_cluster_id(meta)


def test_a_re_created_broker_pod_is_found_at_once_because_both_flavors_advertise_the_client_service(meta):
    """The Service's address never changes; a re-created Pod's DNS name answered with the old Pod's
    address for up to 30 s (CoreDNS's cache), and the relay and normalizer stalled that long."""
    redpanda = container(build_kafka_statefulset(flavored(kafka="redpanda"), meta))["args"]
    assert "--advertise-kafka-addr=internal://demo-kafka.health.svc:9092" in redpanda
    apache = env_of(build_kafka_statefulset(flavored(kafka="apache-kafka"), meta))
    assert apache["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://demo-kafka.health.svc:9092"


def test_the_kraft_cluster_id_is_a_kafka_uuid_stable_per_pipeline():
    ids = {kafka_cluster_id(Meta(f"p{i}", ns)) for i, ns in itertools.product(range(50), ("a", "b"))}
    assert len(ids) == 100
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert kafka_cluster_id(Meta("p1", "a")) == kafka_cluster_id(Meta("p1", "a"))


def test_an_apache_kafka_broker_is_a_jvm_sized_by_its_memory_limit_and_probed_on_its_port(meta):
    sts = build_kafka_statefulset(flavored(kafka="apache-kafka"), meta)
    c = container(sts)
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert env_of(sts)["KAFKA_HEAP_OPTS"] == "-XX:MaxRAMPercentage=50.0"
    assert c["ports"] == [{"name": "kafka", "containerPort": 9092}]
    assert c["readinessProbe"]["tcpSocket"] == {"port": "kafka"}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 120
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 1000
    assert {"name": "data", "mountPath": "/var/lib/kafka/data"} in c["volumeMounts"]
    set_resources = flavored(kafka="apache-kafka", resources={"limits": {"memory": "2Gi"}})
    assert container(build_kafka_statefulset(set_resources, meta))["resources"]["limits"] == {"memory": "2Gi"}


def test_an_apache_kafka_broker_gets_a_writable_config_dir_seeded_from_its_image(meta):
    sts = build_kafka_statefulset(flavored(kafka="apache-kafka"), meta)
    pod = sts["spec"]["template"]["spec"]
    (seed,) = pod["initContainers"]
    assert seed["image"] == container(sts)["image"]
    assert seed["volumeMounts"] == [{"name": "config", "mountPath": "/seed"}]
    assert {"name": "config", "mountPath": "/opt/kafka/config"} in container(sts)["volumeMounts"]
    assert {"name": "config", "emptyDir": {}} in pod["volumes"]


def test_an_image_set_in_the_spec_wins_over_the_flavors_default(meta):
    spec = flavored(kafka="apache-kafka", image="localhost/kafka:4.1.1")
    assert container(build_kafka_statefulset(spec, meta))["image"] == "localhost/kafka:4.1.1"


def test_an_s3proxy_server_serves_signed_path_style_s3_from_its_volume_with_the_generated_keys(meta):
    sts = build_s3_statefulset(flavored(s3="s3proxy"), meta)
    assert sts["metadata"]["name"] == "demo-s3proxy"
    c = container(sts)
    assert c["image"] == S3PROXY
    env = env_of(sts)
    assert env["S3PROXY_ENDPOINT"] == "http://0.0.0.0:9000"
    assert env["S3PROXY_AUTHORIZATION"] == "aws-v2-or-v4"
    assert env["S3PROXY_IDENTITY"] == {"secretKeyRef": {"name": "demo-s3-credentials", "key": "access-key-id"}}
    assert env["S3PROXY_CREDENTIAL"] == {"secretKeyRef": {"name": "demo-s3-credentials", "key": "secret-access-key"}}
    # nio2: the deprecated `filesystem` backend lists each directory of a key as an object
    assert (env["JCLOUDS_PROVIDER"], env["JCLOUDS_FILESYSTEM_BASEDIR"]) == ("filesystem-nio2", "/data")
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert c["ports"] == [{"name": "s3", "containerPort": 9000}]
    assert c["readinessProbe"]["tcpSocket"] == {"port": "s3"}
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000


def test_s3proxy_has_no_default_image():
    with pytest.raises(ValueError, match="flavor s3proxy requires image"):
        parse_spec({"engines": {"s3": {"managed": {"flavor": "s3proxy"}}}})


@pytest.mark.parametrize(
    ("kafka", "s3"), list(itertools.product(["redpanda", "apache-kafka"], ["minio", "s3proxy"])), ids=str
)
def test_the_services_reach_every_flavor_through_the_engines_client_service(meta, kafka, s3):
    spec = flavored(kafka=kafka, s3=s3)
    assert config_data(spec, meta)["KAFKA_BOOTSTRAP_SERVERS"] == "demo-kafka.health.svc:9092"
    secret = build_s3_secret(meta, {})
    assert base64.b64decode(secret["data"]["endpoint-url"]).decode() == "http://demo-s3.health.svc:9000"
    services = {s["metadata"]["name"]: s["spec"] for s in build_services(spec, meta)}
    policies = {p["metadata"]["name"]: p["spec"] for p in build_network_policies(spec, meta)}
    for engine, sts in (("kafka", build_kafka_statefulset(spec, meta)), ("s3", build_s3_statefulset(spec, meta))):
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        port_names = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
        client, headless = services[f"demo-{engine}"], services[sts["spec"]["serviceName"]]
        for service in (client, headless):
            assert service["selector"].items() <= pod_labels.items()
            (port,) = service["ports"]
            assert port_names[port["targetPort"]] == port["port"]
        assert headless["clusterIP"] == "None"
        assert sts["spec"]["selector"]["matchLabels"] == headless["selector"]
        policy = policies[f"demo-{engine}"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert [p["port"] for p in policy["ingress"][0]["ports"]] == [client["ports"][0]["port"]]


def test_switching_flavor_makes_a_new_statefulset_and_volume_and_keeps_the_client_service(meta):
    before, after = flavored(kafka="redpanda", s3="minio"), flavored(kafka="apache-kafka", s3="s3proxy")
    for build in (build_kafka_statefulset, build_s3_statefulset):
        old, new = build(before, meta), build(after, meta)
        assert old["metadata"]["name"] != new["metadata"]["name"]  # claims are named after the StatefulSet
        assert old["spec"]["selector"] != new["spec"]["selector"]  # neither adopts the other's Pods
    names = {(c["kind"], c["metadata"]["name"]) for c in build_children(after, meta)}
    assert {("Service", "demo-kafka"), ("Service", "demo-s3")} <= names
    assert ("StatefulSet", "demo-redpanda") not in names  # pruned; its volume is kept (Retain)


def test_the_status_names_engines_not_flavors(meta):
    spec = flavored(kafka="apache-kafka", s3="s3proxy")
    status = build_status(spec, meta, 1, build_children(spec, meta), None, "T0")
    assert {"postgres", "kafka", "s3"} <= set(status["components"])


def test_every_engine_container_runs_restricted_init_containers_too(meta):
    spec = flavored(kafka="apache-kafka", s3="s3proxy")
    for child in build_children(spec, meta):
        if child["kind"] != "StatefulSet":
            continue
        pod = child["spec"]["template"]["spec"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert pod["automountServiceAccountToken"] is False
        assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
