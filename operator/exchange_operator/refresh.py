"""Status that follows the children: re-read a pipeline's workloads and Pods and rewrite its
status when it changed, without applying anything.

The handlers call `refresh_status` for every event of an owned Deployment, StatefulSet, Job or
Pod (coalesced per pipeline), so `kubectl get xpl` turns Ready when the last Pod does, and
Degraded when a Pod starts crash-looping, instead of at the next resync. While the reconcile
reports a problem of its own (invalid spec, missing Secret) the status is left to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from exchange_operator.apply import KubeClient
from exchange_operator.builders import build_children
from exchange_operator.builders.common import Meta, instance_selector
from exchange_operator.health import WORKLOAD_KINDS, component_of
from exchange_operator.spec import KIND, ExchangePipelineSpec, parse_spec
from exchange_operator.status import build_status

Manifest = dict[str, Any]
RECONCILE_REASONS = frozenset({"InvalidSpec", "DependencyMissing"})
"""Ready-condition reasons only a reconcile sets and clears (see handlers.reconcile_pipeline)."""


def wanted_workloads(spec: ExchangePipelineSpec, meta: Meta) -> dict[tuple[str, str], str]:
    """`{(kind, name): component}` of the Deployments, StatefulSets and Jobs the spec produces."""
    return {
        (c["kind"], c["metadata"]["name"]): component_of(c)
        for c in build_children(spec, meta)
        if c["kind"] in WORKLOAD_KINDS
    }


def left_to_reconcile(status: Mapping[str, Any]) -> bool:
    """The status reports a problem only a reconcile can clear."""
    return any(
        c.get("type") == "Ready" and c.get("reason") in RECONCILE_REASONS for c in status.get("conditions") or []
    )


def unchanged(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return all(old.get(key) == value for key, value in new.items())


async def observe(client: KubeClient, meta: Meta) -> tuple[list[Manifest], list[Manifest]]:
    """The pipeline's workloads and Pods, as the API server has them now."""
    selector = instance_selector(meta)
    kinds = (*WORKLOAD_KINDS, "Pod")
    listed = await asyncio.gather(*(client.list(kind, meta.namespace, selector) for kind in kinds))
    workloads = [{**obj, "kind": kind} for kind, objs in zip(kinds[:-1], listed[:-1], strict=True) for obj in objs]
    return workloads, listed[-1]


async def refresh_status(client: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    """Recompute the pipeline's status from its children; the new status when it was written."""
    body = await client.get(KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    previous = body.get("status") or {}
    if left_to_reconcile(previous):
        return None
    try:
        spec = parse_spec(body.get("spec"))
    except ValidationError:
        return None
    meta = Meta(name=name, namespace=namespace)
    wanted = wanted_workloads(spec, meta)
    workloads, pods = await observe(client, meta)
    current = [w for w in workloads if (w["kind"], w["metadata"]["name"]) in wanted]
    status = build_status(
        spec, meta, previous.get("observedGeneration"), current, previous, pods=pods, expected=wanted.values()
    )
    if unchanged(status, previous):
        return None
    await client.patch_status(namespace, name, status)
    return status
