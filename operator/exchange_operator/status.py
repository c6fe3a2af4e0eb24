"""Status of a pipeline: phase, conditions, ready/desired per workload, endpoints.

Pure functions over the children the API server returned (the SSA responses carry `status`),
so computing status costs no extra request. Condition `lastTransitionTime` only moves when the
condition's status changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from exchange_operator.builders.common import Meta
from exchange_operator.builders.ingress import endpoint_url
from exchange_operator.spec import ExchangePipelineSpec, Phase

Manifest = dict[str, Any]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _component_of(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/name", obj["metadata"]["name"]))


def _job_failed(job: Mapping[str, Any]) -> bool:
    conditions = job.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions)


def workloads(children: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """`{component: {ready, desired}}` for Deployments, StatefulSets and Jobs (1 = succeeded)."""
    out: dict[str, dict[str, int]] = {}
    for obj in children:
        kind = obj.get("kind")
        if kind not in WORKLOAD_KINDS:
            continue
        st = obj.get("status") or {}
        if kind == "Job":
            ready, desired = (1 if st.get("succeeded") else 0), 1
        else:
            ready, desired = int(st.get("readyReplicas") or 0), int(obj["spec"].get("replicas", 1))
        out[_component_of(obj)] = {"ready": ready, "desired": desired}
    return out


def failed_jobs(children: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(_component_of(o) for o in children if o.get("kind") == "Job" and _job_failed(o))


def _condition(
    type_: str, ok: bool, reason: str, message: str, previous: Mapping[str, Any], now: str, generation: int | None
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(type_)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    cond = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _previous_conditions(previous_status: Mapping[str, Any] | None) -> dict[str, Any]:
    return {c["type"]: c for c in (previous_status or {}).get("conditions", []) if "type" in c}


def build_status(
    spec: ExchangePipelineSpec,
    meta: Meta,
    generation: int | None,
    children: Iterable[Mapping[str, Any]],
    previous_status: Mapping[str, Any] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """The whole status after a successful apply."""
    now = now or now_rfc3339()
    children = list(children)
    counts = workloads(children)
    failed = failed_jobs(children)
    waiting = [f"{name} ({c['ready']}/{c['desired']})" for name, c in counts.items() if c["ready"] < c["desired"]]
    prev = _previous_conditions(previous_status)
    if failed:
        phase, message = Phase.DEGRADED, f"Job failed: {', '.join(failed)}"
    elif spec.suspend:
        phase, message = Phase.SUSPENDED, "spec.suspend is true: services scaled to zero"
    elif waiting:
        phase, message = Phase.PROGRESSING, f"waiting for {', '.join(waiting)}"
    else:
        phase, message = Phase.READY, "every component is ready"
    ready = phase == Phase.READY
    conditions = [
        _condition("Ready", ready, "AllReady" if ready else "NotReady", message, prev, now, generation),
        _condition(
            "Progressing",
            bool(waiting) and not failed,
            "Reconciling" if waiting else "Complete",
            message if waiting else "children applied",
            prev,
            now,
            generation,
        ),
        _condition(
            "Degraded",
            bool(failed),
            "JobFailed" if failed else "AsExpected",
            message if failed else "",
            prev,
            now,
            generation,
        ),
    ]
    return {
        "observedGeneration": generation,
        "phase": phase.value,
        "message": message,
        "conditions": conditions,
        "components": counts,
        "endpoints": {"ingest": endpoint_url(spec, meta, "ingest"), "query": endpoint_url(spec, meta, "query")},
    }


def problem_status(
    phase: Phase,
    reason: str,
    message: str,
    generation: int | None,
    previous_status: Mapping[str, Any] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """Status when the spec is invalid (Failed) or a dependency is missing (Degraded)."""
    now = now or now_rfc3339()
    prev = _previous_conditions(previous_status)
    return {
        "observedGeneration": generation,
        "phase": phase.value,
        "message": message,
        "conditions": [
            _condition("Ready", False, reason, message, prev, now, generation),
            _condition("Progressing", False, reason, message, prev, now, generation),
            _condition("Degraded", True, reason, message, prev, now, generation),
        ],
    }
