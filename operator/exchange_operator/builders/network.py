"""NetworkPolicies: only the normalizer reaches the tokenizer; only the services (and the Jobs)
that use an engine reach the managed engines; only the monitoring namespace reaches the services'
and the engines' metrics ports. Ingest's and query's API port stays reachable by any client (the Ingress).

Policies add up: a Pod selected by any policy takes only what some policy allows (traffic from
its own node, the kubelet's probes, is always allowed), so the metrics policy, which selects
every service, comes with one that keeps the API port of ingest and query open."""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import (
    ENGINE_CLIENT_LABEL,
    ENGINE_PORTS,
    HTTP_PORT,
    METRICS_PORT,
    PART_OF,
    PIPELINE_LABEL,
    Manifest,
    Meta,
    object_meta,
    selector_labels,
)
from exchange_operator.builders.ingress import EXPOSED
from exchange_operator.builders.monitoring import engine_metrics_port
from exchange_operator.spec import COMPONENTS, ENGINES, ExchangePipelineSpec


def _policy(meta: Meta, name: str, component: str, pods: dict[str, str], ingress: list[Any]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(meta, name, component, "config"),
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def build_tokenizer_policy(meta: Meta) -> Manifest:
    """Tokenizer accepts only the normalizer of the same pipeline."""
    source = {"podSelector": {"matchLabels": selector_labels(meta, "normalizer")}}
    rule = {"from": [source], "ports": [{"protocol": "TCP", "port": HTTP_PORT}]}
    return _policy(meta, meta.child("tokenizer"), "tokenizer", selector_labels(meta, "tokenizer"), [rule])


def _components(meta: Meta, components: tuple[str, ...]) -> dict[str, Any]:
    """A podSelector of the Pods of these services of this pipeline."""
    return {
        "matchLabels": {"app.kubernetes.io/instance": meta.name, "app.kubernetes.io/part-of": PART_OF},
        "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": list(components)}],
    }


def build_metrics_policy(spec: ExchangePipelineSpec, meta: Meta) -> Manifest:
    """Every service's metrics port accepts only Pods of the monitoring namespace."""
    rule = {"from": [_from_monitoring(spec)], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}
    policy = _policy(meta, meta.child("metrics"), "metrics", {}, [rule])
    policy["spec"]["podSelector"] = _components(meta, COMPONENTS)
    return policy


def build_api_policy(meta: Meta) -> Manifest:
    """Ingest's and query's API port accepts any client (the Ingress controller, in-cluster callers)."""
    policy = _policy(meta, meta.child("api"), "api", {}, [{"ports": [{"protocol": "TCP", "port": HTTP_PORT}]}])
    policy["spec"]["podSelector"] = _components(meta, EXPOSED)
    return policy


def _from_monitoring(spec: ExchangePipelineSpec) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spec.monitoring.namespace}}}


def build_engine_policy(spec: ExchangePipelineSpec, meta: Meta, engine: str) -> Manifest:
    """An engine (any flavor) accepts only this pipeline's engine clients, and its own Pods (a
    broker talking to itself through its advertised address), on its client port; and the
    monitoring namespace on its metrics port, when it has one."""
    _, port = ENGINE_PORTS[engine]
    clients = {"podSelector": {"matchLabels": {PIPELINE_LABEL: meta.name, ENGINE_CLIENT_LABEL: "true"}}}
    peers = {"podSelector": {"matchLabels": selector_labels(meta, engine)}}
    rules = [{"from": [clients, peers], "ports": [{"protocol": "TCP", "port": port}]}]
    if metrics := engine_metrics_port(spec, engine):
        rules.append({"from": [_from_monitoring(spec)], "ports": [{"protocol": "TCP", "port": metrics}]})
    return _policy(meta, meta.child(engine), engine, selector_labels(meta, engine), rules)


def build_network_policies(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    out = [build_tokenizer_policy(meta), build_api_policy(meta), build_metrics_policy(spec, meta)]
    for engine in ENGINES:
        if getattr(spec.engines, engine).mode == "managed":
            out.append(build_engine_policy(spec, meta, engine))
    return out
