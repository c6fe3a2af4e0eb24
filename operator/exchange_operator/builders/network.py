"""NetworkPolicies: only the normalizer reaches the tokenizer; only the services (and the Jobs)
that use an engine reach the managed engines. Ingest and query stay reachable (the Ingress)."""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import (
    ENGINE_CLIENT_LABEL,
    ENGINE_PORTS,
    HTTP_PORT,
    PIPELINE_LABEL,
    Manifest,
    Meta,
    object_meta,
    selector_labels,
)
from exchange_operator.spec import ENGINES, ExchangePipelineSpec


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


def build_engine_policy(meta: Meta, engine: str) -> Manifest:
    """An engine (any flavor) accepts only this pipeline's engine clients, and its own Pods (a
    broker talking to itself through its advertised address), on its client port only."""
    _, port = ENGINE_PORTS[engine]
    clients = {"podSelector": {"matchLabels": {PIPELINE_LABEL: meta.name, ENGINE_CLIENT_LABEL: "true"}}}
    peers = {"podSelector": {"matchLabels": selector_labels(meta, engine)}}
    rule = {"from": [clients, peers], "ports": [{"protocol": "TCP", "port": port}]}
    return _policy(meta, meta.child(engine), engine, selector_labels(meta, engine), [rule])


def build_network_policies(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    out = [build_tokenizer_policy(meta)]
    for engine in ENGINES:
        if getattr(spec.engines, engine).mode == "managed":
            out.append(build_engine_policy(meta, engine))
    return out
