"""One pipeline reconcile, independent of kopf: validate, check dependencies, ensure generated
Secrets, apply every child, prune what the spec no longer wants, compute status. Plus the
deletion cleanup. handlers.py maps the exceptions raised here onto kopf's retry semantics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from exchange_operator.apply import KubeApiError, KubeClient, adopt_all, apply_all
from exchange_operator.builders import build_children
from exchange_operator.builders.common import Meta, instance_selector
from exchange_operator.builders.monitoring import POD_MONITOR
from exchange_operator.builders.secrets import build_generated_secrets, generated_secret_names
from exchange_operator.health import WORKLOAD_KINDS, component_of
from exchange_operator.settings import OperatorSettings
from exchange_operator.spec import MAX_NAME_LENGTH, ExchangePipelineSpec, parse_spec
from exchange_operator.status import build_status

Manifest = dict[str, Any]
T = TypeVar("T")
PRUNED_KINDS = (
    "Deployment",
    "StatefulSet",
    "Service",
    "ServiceAccount",
    "Ingress",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Job",
)
"""Kinds whose unwanted children are deleted; Secrets and PVCs never are (data and credentials)."""
MAX_MESSAGE = 400


class InvalidSpec(Exception):
    """The spec cannot be reconciled until a person changes it."""


class MissingDependency(Exception):
    """Something the spec references does not exist yet (a user's Secret)."""


def meta_of(body: Mapping[str, Any]) -> Meta:
    md = body["metadata"]
    return Meta(name=md["name"], namespace=md["namespace"])


def validate(body: Mapping[str, Any]) -> ExchangePipelineSpec:
    """Parse the spec with the CRD's own models; raises InvalidSpec with one readable line."""
    name = body["metadata"]["name"]
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSpec(f"metadata.name must be at most {MAX_NAME_LENGTH} characters")
    try:
        return parse_spec(body.get("spec"))
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in ("spec", *err["loc"]))
            parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
        raise InvalidSpec("; ".join(parts)[:MAX_MESSAGE]) from None


def referenced_secrets(spec: ExchangePipelineSpec) -> list[str]:
    """Secrets the user must provide: external engines and a referenced tokenization secret."""
    names = [e.secret_ref.name for e in (spec.engines.postgres, spec.engines.kafka, spec.engines.s3) if e.secret_ref]
    if spec.tokenization.secret_ref:
        names.append(spec.tokenization.secret_ref.name)
    return sorted(set(names))


async def check_dependencies(client: KubeClient, spec: ExchangePipelineSpec, meta: Meta) -> None:
    found = await asyncio.gather(*(client.get("Secret", meta.namespace, n) for n in referenced_secrets(spec)))
    missing = [n for n, obj in zip(referenced_secrets(spec), found, strict=True) if obj is None]
    if missing:
        raise MissingDependency(f"Secret not found in namespace {meta.namespace}: {', '.join(missing)}")


async def ensure_generated_secrets(
    client: KubeClient, spec: ExchangePipelineSpec, meta: Meta, owner: Mapping[str, Any], settings: OperatorSettings
) -> None:
    """Create missing generated Secrets; existing ones keep their material (see builders.secrets)."""
    names = generated_secret_names(spec, meta)
    current = await asyncio.gather(*(client.get("Secret", meta.namespace, n) for n in names))
    existing = {n: (obj or {}).get("data") for n, obj in zip(names, current, strict=True)}
    built = adopt_all(build_generated_secrets(spec, meta, existing), owner)
    for secret, obj in zip(built, current, strict=True):
        if obj is None:
            if await client.create(secret, settings.field_manager) is None:
                # Someone created it between our GET and POST: retry with its material.
                raise MissingDependency(f"Secret {secret['metadata']['name']} appeared concurrently; retrying")
        else:
            await client.apply(secret, settings.field_manager)


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


async def prune(
    client: KubeClient, meta: Meta, uid: str, desired: list[Manifest], kinds: tuple[str, ...] = PRUNED_KINDS
) -> list[str]:
    """Delete this pipeline's children of `kinds` that the spec no longer produces."""
    wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
    selector = instance_selector(meta)
    listed = await asyncio.gather(*(client.list(k, meta.namespace, selector) for k in kinds))
    doomed = [
        (kind, obj["metadata"]["name"])
        for kind, objs in zip(kinds, listed, strict=True)
        for obj in objs
        if (kind, obj["metadata"]["name"]) not in wanted and _controlled_by(obj, uid)
    ]
    await asyncio.gather(*(client.delete(kind, meta.namespace, name) for kind, name in doomed))
    return [f"{kind}/{name}" for kind, name in doomed]


async def reconcile(
    client: KubeClient, settings: OperatorSettings, body: Mapping[str, Any], *, prune_children: bool = True
) -> dict[str, Any]:
    """Bring every child to the desired state; returns the new status.

    Raises InvalidSpec, MissingDependency or KubeApiError.
    """
    spec = validate(body)
    meta = meta_of(body)
    await check_dependencies(client, spec, meta)
    await ensure_generated_secrets(client, spec, meta, body, settings)
    prometheus_operator = await client.serves(POD_MONITOR)
    children = adopt_all(build_children(spec, meta, prometheus_operator=prometheus_operator), body)
    applied = await apply_all(client, children, settings.field_manager, settings.apply_concurrency)
    if prune_children:
        kinds = PRUNED_KINDS + ((POD_MONITOR,) if prometheus_operator else ())
        await prune(client, meta, body["metadata"]["uid"], children, kinds)
    pods = await client.list("Pod", meta.namespace, instance_selector(meta))
    expected = [component_of(c) for c in children if c["kind"] in WORKLOAD_KINDS]
    generation = body["metadata"].get("generation")
    return build_status(spec, meta, generation, applied, body.get("status"), pods=pods, expected=expected)


class EnginesStillPresent(Exception):
    """Cleanup deleted the engines' StatefulSets and must run again for their claims."""


async def cleanup(client: KubeClient, body: Mapping[str, Any]) -> str:
    """On deletion: `Retain` orphans generated Secrets (they match the kept volumes); `Delete`
    deletes the engines' StatefulSets, then (the next call: `EnginesStillPresent`) their PVCs.
    Secrets and the rest go with the owner references."""
    meta = meta_of(body)
    try:
        spec = parse_spec(body.get("spec"))
    except ValidationError:
        return "spec invalid: nothing to clean up"
    if spec.volume_claim_deletion_policy == "Delete":
        # The engines' StatefulSets go first: while one exists its controller re-creates a claim
        # deleted under its Pod, and that claim outlives the pipeline (seen on the local node).
        engines = await client.list("StatefulSet", meta.namespace, instance_selector(meta))
        if engines:
            await asyncio.gather(
                *(client.delete("StatefulSet", meta.namespace, s["metadata"]["name"]) for s in engines)
            )
            raise EnginesStillPresent(f"{len(engines)} StatefulSet(s) deleted first; their claims next")
        pvcs = await client.list("PersistentVolumeClaim", meta.namespace, instance_selector(meta))
        await asyncio.gather(
            *(client.delete("PersistentVolumeClaim", meta.namespace, p["metadata"]["name"]) for p in pvcs)
        )
        return f"deleted {len(pvcs)} PersistentVolumeClaim(s)"
    kept = []
    for name in generated_secret_names(spec, meta):
        try:
            await client.patch("Secret", meta.namespace, name, {"metadata": {"ownerReferences": None}})
            kept.append(name)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
    return f"retained volumes and Secrets {', '.join(kept) or '(none)'}"


class Serializer:
    """One reconcile at a time per pipeline; requests that queue up behind a run are covered by
    the next single run (a burst of child events costs one reconcile, not one each)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._requested: dict[str, int] = {}
        self._completed: dict[str, int] = {}

    async def run(self, key: str, fn: Callable[[], Awaitable[T]], *, always: bool = False) -> T | None:
        """Run `fn` under the key's lock; None when a run started after this request did it already."""
        ticket = self._requested[key] = self._requested.get(key, 0) + 1
        async with self._locks.setdefault(key, asyncio.Lock()):
            if not always and self._completed.get(key, 0) >= ticket:
                return None
            upto = self._requested[key]
            result = await fn()
            self._completed[key] = max(self._completed.get(key, 0), upto)
            return result

    def forget(self, key: str) -> None:
        self._locks.pop(key, None)
        self._requested.pop(key, None)
        self._completed.pop(key, None)
