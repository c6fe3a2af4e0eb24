"""Monitoring wiring, without a cluster: every service's metrics port declared and annotated for
scraping, the managed engines' exporters (a postgres_exporter sidecar, Kafka's own port when the
spec names it) declared, annotated, selected and let through by their NetworkPolicy, a PodMonitor
only where the Prometheus Operator's CRDs exist, the OTLP endpoint from the spec, and the
operator's own reconcile metrics."""

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from exchange_operator import metrics
from exchange_operator.builders import build_children
from exchange_operator.builders.common import METRICS_PORT, POSTGRES_EXPORTER_PORT
from exchange_operator.builders.deployments import build_deployment
from exchange_operator.builders.env import config_data
from exchange_operator.builders.kafka import build_kafka_statefulset
from exchange_operator.builders.monitoring import build_pod_monitor
from exchange_operator.builders.network import build_network_policies
from exchange_operator.builders.postgres import build_postgres_statefulset
from exchange_operator.spec import COMPONENTS, parse_spec


def _pod(manifest):
    return manifest["spec"]["template"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_service_declares_its_metrics_port_and_is_annotated_for_scraping(spec, meta, component):
    pod = _pod(build_deployment(spec, meta, component))
    (container,) = pod["spec"]["containers"]
    assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in container["ports"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_SERVICE_NAME"] == component


def test_no_pod_monitor_without_the_prometheus_operator(spec, meta):
    assert "PodMonitor" not in {c["kind"] for c in build_children(spec, meta)}


def test_one_pod_monitor_selects_the_metrics_port_of_the_services_and_postgres(spec, meta):
    monitors = [c for c in build_children(spec, meta, prometheus_operator=True) if c["kind"] == "PodMonitor"]
    assert len(monitors) == 1
    (monitor,) = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == "demo-services"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "exchange-operator"
    selector = monitor["spec"]["selector"]
    assert selector["matchLabels"]["app.kubernetes.io/instance"] == "demo"
    assert selector["matchExpressions"][0]["values"] == [*COMPONENTS, "postgres"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["health"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "service": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "pipeline": ["__meta_kubernetes_pod_label_exchange_dev_pipeline"],
    }


def test_the_pod_monitor_selects_pods_that_carry_its_labels(spec, meta):
    monitor = build_pod_monitor(spec, meta)
    for component in COMPONENTS:
        labels = _pod(build_deployment(spec, meta, component))["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels["app.kubernetes.io/name"] in monitor["spec"]["selector"]["matchExpressions"][0]["values"]
        assert labels["exchange.dev/pipeline"] == "demo"


def _containers(statefulset):
    return {c["name"]: c for c in _pod(statefulset)["spec"]["containers"]}


def _engine_policy(spec, meta, engine):
    (policy,) = [p for p in build_network_policies(spec, meta) if p["metadata"]["name"] == f"demo-{engine}"]
    return policy["spec"]["ingress"]


def test_managed_postgres_has_a_postgres_exporter_sidecar_scraped_from_the_monitoring_namespace(spec, meta):
    statefulset = build_postgres_statefulset(spec, meta)
    exporter = _containers(statefulset)["postgres-exporter"]
    assert exporter["image"] == "prometheuscommunity/postgres-exporter:v0.17.1"
    assert {"name": "metrics", "containerPort": POSTGRES_EXPORTER_PORT, "protocol": "TCP"} in exporter["ports"]
    env = {e["name"]: e for e in exporter["env"]}
    assert env["DATA_SOURCE_URI"]["value"] == "127.0.0.1:5432/exchange?sslmode=disable"
    assert env["DATA_SOURCE_PASS"]["valueFrom"]["secretKeyRef"] == {
        "name": "demo-postgres-credentials",
        "key": "superuser-password",
    }
    assert "value" not in env["DATA_SOURCE_PASS"], "a password in the manifest"
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    assert _pod(statefulset)["metadata"]["annotations"]["prometheus.io/port"] == str(POSTGRES_EXPORTER_PORT)
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert {"from": [monitoring], "ports": [{"protocol": "TCP", "port": POSTGRES_EXPORTER_PORT}]} in (
        _engine_policy(spec, meta, "postgres")
    )


def test_the_postgres_exporter_may_be_turned_off_or_pointed_at_another_image(meta):
    off = parse_spec({"monitoring": {"postgresExporter": {"enabled": False}}})
    statefulset = build_postgres_statefulset(off, meta)
    assert set(_containers(statefulset)) == {"postgres"}
    assert "annotations" not in _pod(statefulset)["metadata"]
    assert len(_engine_policy(off, meta, "postgres")) == 1
    assert "postgres" not in build_pod_monitor(off, meta)["spec"]["selector"]["matchExpressions"][0]["values"]
    local = parse_spec({"monitoring": {"postgresExporter": {"image": "localhost/postgres-exporter:v0.17.1"}}})
    exporter = _containers(build_postgres_statefulset(local, meta))["postgres-exporter"]
    assert exporter["image"] == "localhost/postgres-exporter:v0.17.1"


def test_kafka_is_scraped_only_when_the_spec_names_the_port_its_image_serves_metrics_on(spec, meta):
    assert "metrics" not in {p["name"] for p in _containers(build_kafka_statefulset(spec, meta))["redpanda"]["ports"]}
    assert "kafka" not in build_pod_monitor(spec, meta)["spec"]["selector"]["matchExpressions"][0]["values"]
    jmx = parse_spec({"engines": {"kafka": {"managed": {"flavor": "apache-kafka", "image": "localhost/kafka:4.1.1",
                                                        "metricsPort": 9308}}}})  # fmt: skip
    statefulset = build_kafka_statefulset(jmx, meta)
    assert {"name": "metrics", "containerPort": 9308, "protocol": "TCP"} in _containers(statefulset)["kafka"]["ports"]
    assert _pod(statefulset)["metadata"]["annotations"]["prometheus.io/port"] == "9308"
    assert "kafka" in build_pod_monitor(jmx, meta)["spec"]["selector"]["matchExpressions"][0]["values"]
    assert [r["ports"][0]["port"] for r in _engine_policy(jmx, meta, "kafka")] == [9092, 9308]


def test_an_external_postgres_gets_no_exporter(meta):
    external = parse_spec({"engines": {"postgres": {"mode": "external", "secretRef": {"name": "pg"}}}})
    assert "postgres" not in build_pod_monitor(external, meta)["spec"]["selector"]["matchExpressions"][0]["values"]


def test_a_pipeline_may_turn_the_pod_monitor_off_and_set_its_interval(meta):
    off = parse_spec({"monitoring": {"podMonitor": False}})
    assert "PodMonitor" not in {c["kind"] for c in build_children(off, meta, prometheus_operator=True)}
    fast = parse_spec({"monitoring": {"scrapeInterval": "15s"}})
    assert build_pod_monitor(fast, meta)["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"
    with pytest.raises(ValidationError):
        parse_spec({"monitoring": {"scrapeInterval": "soon"}})


def test_the_otlp_endpoint_of_the_spec_reaches_every_service(spec, meta):
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in config_data(spec, meta)
    traced = parse_spec({"monitoring": {"otlpEndpoint": "http://otel-collector.monitoring:4318"}})
    assert config_data(traced, meta)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    with pytest.raises(ValidationError):
        parse_spec({"monitoring": {"otlpEndpoint": "otel-collector:4317"}})


def _sample(name, **labels):
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class KubeApiError(Exception):
    """Named like the client's error: counted under the reason ApiError."""


def test_reconciles_are_counted_by_result_and_errors_by_reason():
    trigger = "unit-test"
    with metrics.observed(trigger):
        pass
    with pytest.raises(KubeApiError), metrics.observed(trigger):
        raise KubeApiError("409 Conflict")
    with pytest.raises(ValueError), metrics.observed(trigger):
        raise ValueError("something else")
    assert _sample("exchange_operator_reconciles_total", trigger=trigger, result="ok") == 1
    assert _sample("exchange_operator_reconciles_total", trigger=trigger, result="error") == 2
    assert _sample("exchange_operator_reconcile_errors_total", trigger=trigger, reason="ApiError") == 1
    assert _sample("exchange_operator_reconcile_errors_total", trigger=trigger, reason="ValueError") == 1
    assert _sample("exchange_operator_reconcile_duration_seconds_count", trigger=trigger) == 3
    assert b"exchange_operator_reconcile_duration_seconds_bucket" in generate_latest(metrics.REGISTRY)
