"""Services: one ClusterIP per service (port 80 -> http; a worker's names its metrics port, for
scraping) and, per managed engine, a headless Service of its workload (stable Pod DNS for the
StatefulSet, named after the flavor) and a client Service named after the engine (`<pipeline>-kafka`,
`<pipeline>-s3`, `<pipeline>-postgres`), which the services' settings point at whatever the flavor."""

from __future__ import annotations

from exchange_operator.builders.common import ENGINE_PORTS, Manifest, Meta, object_meta, probe_port, selector_labels
from exchange_operator.builders.engine import engine_selector, headless_name, workload_name
from exchange_operator.spec import COMPONENTS, ENGINES, ExchangePipelineSpec


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


def build_engine_services(spec: ExchangePipelineSpec, meta: Meta, engine: str) -> list[Manifest]:
    """Headless Service of the engine's workload + the engine's client Service."""
    port_name, port = ENGINE_PORTS[engine]
    ports = [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(meta, headless_name(meta, workload_name(spec, engine)), engine, "engine"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": engine_selector(spec, meta, engine),
            "ports": ports,
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(meta, meta.child(engine), engine, "engine"),
        "spec": {"type": "ClusterIP", "selector": selector_labels(meta, engine), "ports": ports},
    }
    return [headless, client]


def build_services(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    out = [build_component_service(spec, meta, c) for c in COMPONENTS]
    for engine in ENGINES:
        if getattr(spec.engines, engine).mode == "managed":
            out += build_engine_services(spec, meta, engine)
    return out
