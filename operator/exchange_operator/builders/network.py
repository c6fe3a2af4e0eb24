"""NetworkPolicies: only the normalizer reaches the tokenizer; only the services (and the Jobs)
that use an engine reach the managed engines. Ingest and query stay reachable (the Ingress)."""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import (
    ENGINE_CLIENT_LABEL,
    HTTP_PORT,
    PIPELINE_LABEL,
    Manifest,
    Meta,
    object_meta,
    selector_labels,
)
from exchange_operator.builders.services import ENGINE_PORTS
from exchange_operator.builders.statefulsets import ENGINE_COMPONENTS
from exchange_operator.spec import ExchangePipelineSpec


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


def build_engine_policy(meta: Meta, component: str) -> Manifest:
    """An engine accepts only this pipeline's engine clients (and its own Pods: Redpanda peers)."""
    _, port = ENGINE_PORTS[component]
    clients = {"podSelector": {"matchLabels": {PIPELINE_LABEL: meta.name, ENGINE_CLIENT_LABEL: "true"}}}
    peers = {"podSelector": {"matchLabels": selector_labels(meta, component)}}
    rule = {"from": [clients, peers], "ports": [{"protocol": "TCP", "port": port}]}
    return _policy(meta, meta.child(component), component, selector_labels(meta, component), [rule])


def build_network_policies(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    out = [build_tokenizer_policy(meta)]
    for engine, component in ENGINE_COMPONENTS.items():
        if getattr(spec.engines, engine).mode == "managed":
            out.append(build_engine_policy(meta, component))
    return out
