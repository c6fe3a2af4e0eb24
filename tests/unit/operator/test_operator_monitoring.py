"""Monitoring wiring, without a cluster: every service's metrics port declared and annotated for
scraping, a PodMonitor only where the Prometheus Operator's CRDs exist, the OTLP endpoint from the
spec, and the operator's own reconcile metrics."""

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from exchange_operator import metrics
from exchange_operator.builders import build_children
from exchange_operator.builders.common import METRICS_PORT
from exchange_operator.builders.deployments import build_deployment
from exchange_operator.builders.env import config_data
from exchange_operator.builders.monitoring import build_pod_monitor
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


def test_one_pod_monitor_selects_the_five_services_metrics_port(spec, meta):
    monitors = [c for c in build_children(spec, meta, prometheus_operator=True) if c["kind"] == "PodMonitor"]
    assert len(monitors) == 1
    (monitor,) = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == "demo-services"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "exchange-operator"
    selector = monitor["spec"]["selector"]
    assert selector["matchLabels"]["app.kubernetes.io/instance"] == "demo"
    assert selector["matchExpressions"][0]["values"] == list(COMPONENTS)
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
