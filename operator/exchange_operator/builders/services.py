"""Services: one ClusterIP per service (port 80 -> http; a worker's names its metrics port, for
scraping) and, per managed engine, a headless Service (stable Pod DNS for the StatefulSet) and a
client Service."""

from __future__ import annotations

from exchange_operator.builders.common import Manifest, Meta, object_meta, probe_port, selector_labels
from exchange_operator.builders.env import KAFKA_PORT
from exchange_operator.builders.secrets import MINIO_PORT, POSTGRES_PORT
from exchange_operator.builders.statefulsets import ENGINE_COMPONENTS, headless_name
from exchange_operator.spec import COMPONENTS, ExchangePipelineSpec

ENGINE_PORTS = {"postgres": ("postgres", POSTGRES_PORT), "redpanda": ("kafka", KAFKA_PORT), "minio": ("s3", MINIO_PORT)}


def build_component_service(spec: ExchangePipelineSpec, meta: Meta, component: str) -> Manifest:
    port_name, port = probe_port(component)
    service_port = 80 if port_name == "http" else port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(meta, meta.child(component), component, "service"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(meta, component),
            "ports": [{"name": port_name, "port": service_port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }


def build_engine_services(meta: Meta, component: str) -> list[Manifest]:
    """Headless + client Service of one managed engine."""
    port_name, port = ENGINE_PORTS[component]
    ports = [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(meta, headless_name(meta, component), component, "engine"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(meta, component),
            "ports": ports,
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(meta, meta.child(component), component, "engine"),
        "spec": {"type": "ClusterIP", "selector": selector_labels(meta, component), "ports": ports},
    }
    return [headless, client]


def build_services(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    out = [build_component_service(spec, meta, c) for c in COMPONENTS]
    for engine, component in ENGINE_COMPONENTS.items():
        if getattr(spec.engines, engine).mode == "managed":
            out += build_engine_services(meta, component)
    return out
