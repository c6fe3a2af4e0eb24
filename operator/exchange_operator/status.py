"""Status of a pipeline: phase, conditions, ready/desired per workload, endpoints.

Pure functions over the children and Pods the API server returned (see health.py for what makes a
child not ready or broken). Ready means the pipeline can accept and normalize a record now: every
Job succeeded and every workload is ready with its latest spec. Degraded means something will not
fix itself, and the message names the child and Kubernetes' reason. Condition
`lastTransitionTime` only moves when the condition's status changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from exchange_operator.builders.common import Meta
from exchange_operator.builders.ingress import endpoint_url
from exchange_operator.health import Problem, not_ready, problems, workloads
from exchange_operator.spec import ExchangePipelineSpec, Phase

Manifest = dict[str, Any]
MAX_MESSAGE = 600


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


def _capped(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def build_status(
    spec: ExchangePipelineSpec,
    meta: Meta,
    generation: int | None,
    children: Iterable[Mapping[str, Any]],
    previous_status: Mapping[str, Any] | None = None,
    now: str | None = None,
    *,
    pods: Iterable[Mapping[str, Any]] = (),
    expected: Iterable[str] = (),
) -> dict[str, Any]:
    """The whole status from the pipeline's children, their Pods, and the workload components the
    spec wants (`expected`: one missing from `children` keeps the pipeline Progressing)."""
    now = now or now_rfc3339()
    children = list(children)
    broken: list[Problem] = problems(children, pods, suspended=spec.suspend)
    waiting = not_ready(children, expected)
    prev = _previous_conditions(previous_status)
    if broken:
        phase, message = Phase.DEGRADED, _capped("; ".join(map(str, broken)))
    elif spec.suspend:
        phase, message = Phase.SUSPENDED, "spec.suspend is true: services scaled to zero"
    elif waiting:
        phase, message = Phase.PROGRESSING, _capped(f"waiting for {', '.join(waiting)}")
    else:
        phase, message = Phase.READY, "every Job completed and every workload is ready"
    ready = phase == Phase.READY
    progressing = bool(waiting) and not broken
    conditions = [
        _condition("Ready", ready, "AllReady" if ready else "NotReady", message, prev, now, generation),
        _condition(
            "Progressing",
            progressing,
            "Reconciling" if progressing else "Complete",
            message if progressing else "children applied",
            prev,
            now,
            generation,
        ),
        _condition(
            "Degraded",
            bool(broken),
            broken[0].reason if broken else "AsExpected",
            message if broken else "",
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
        "components": workloads(children),
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
