"""How Prometheus finds a pipeline's metrics: the standard `prometheus.io/*` annotations on every
service's Pods and on the managed engines' Pods that serve metrics (for a Prometheus that
discovers Pods by annotation), and, when the Prometheus Operator's CRDs exist in the cluster, one
PodMonitor selecting their `metrics` ports. An engine serves metrics when it has an exporter:
Postgres a postgres_exporter sidecar (on by default), Kafka when its image serves them
(engines.kafka.managed.metricsPort).

Both give each series `service` (the Pod's app.kubernetes.io/name: `postgres`, `kafka` for the
engines) and `pipeline` labels, which the shipped rules and dashboards select on
(charts/exchange-operator/files)."""

from __future__ import annotations

from exchange_operator.builders.common import (
    METRICS_PORT,
    PART_OF,
    PIPELINE_LABEL,
    POSTGRES_EXPORTER_PORT,
    Manifest,
    Meta,
    object_meta,
)
from exchange_operator.spec import COMPONENTS, ENGINES, ExchangePipelineSpec

MONITORING_API = "monitoring.coreos.com/v1"
POD_MONITOR = "PodMonitor"


def scrape_annotations(port: int = METRICS_PORT) -> dict[str, str]:
    """Pod annotations a Prometheus with annotation-based Pod discovery follows."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def engine_metrics_port(spec: ExchangePipelineSpec, engine: str) -> int | None:
    """The `metrics` port of a managed engine's Pod; None when it is external or serves no metrics."""
    if getattr(spec.engines, engine).mode != "managed":
        return None
    if engine == "postgres":
        return POSTGRES_EXPORTER_PORT if spec.monitoring.postgres_exporter.enabled else None
    if engine == "kafka":
        return spec.engines.kafka.managed.metrics_port
    return None


def scraped_components(spec: ExchangePipelineSpec) -> list[str]:
    """The services, and the managed engines with a `metrics` port."""
    return [*COMPONENTS, *(e for e in ENGINES if engine_metrics_port(spec, e))]


def _meta_label(label: str) -> str:
    """The discovery meta label Prometheus derives from a Pod label."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)


def build_pod_monitor(spec: ExchangePipelineSpec, meta: Meta) -> Manifest:
    """One PodMonitor for the `metrics` port of the five services and of the engines that serve metrics."""
    return {
        "apiVersion": MONITORING_API,
        "kind": POD_MONITOR,
        "metadata": object_meta(meta, meta.child("services"), "metrics", "config"),
        "spec": {
            "selector": {
                "matchLabels": {"app.kubernetes.io/instance": meta.name, "app.kubernetes.io/part-of": PART_OF},
                "matchExpressions": [
                    {"key": "app.kubernetes.io/name", "operator": "In", "values": scraped_components(spec)}
                ],
            },
            "namespaceSelector": {"matchNames": [meta.namespace]},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": spec.monitoring.scrape_interval,
                    "relabelings": [
                        {"sourceLabels": [_meta_label("app.kubernetes.io/name")], "targetLabel": "service"},
                        {"sourceLabels": [_meta_label(PIPELINE_LABEL)], "targetLabel": "pipeline"},
                    ],
                }
            ],
        },
    }


def build_monitoring(spec: ExchangePipelineSpec, meta: Meta, *, prometheus_operator: bool) -> list[Manifest]:
    """The PodMonitor when the Prometheus Operator's CRDs exist and the spec wants it; else nothing."""
    return [build_pod_monitor(spec, meta)] if prometheus_operator and spec.monitoring.pod_monitor else []
