"""PodDisruptionBudgets: at most one Pod of each service voluntarily evicted at a time.

`maxUnavailable: 1` (not `minAvailable`) so a single-replica service never blocks a node drain.
"""

from __future__ import annotations

from exchange_operator.builders.common import Manifest, Meta, object_meta, selector_labels
from exchange_operator.spec import COMPONENTS, ExchangePipelineSpec


def build_pdb(meta: Meta, component: str) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(meta, meta.child(component), component, "service"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(meta, component)}},
    }


def build_pdbs(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    return [build_pdb(meta, c) for c in COMPONENTS]
