"""Health of a pipeline's children, read from the status the cluster reports: pure functions.

- `workloads`: ready/desired Pods per component (Deployments, StatefulSets; a Job is 1 when it
  succeeded).
- `not_ready`: workloads still starting or rolling out (`ingest (0/1)`, `query (1/1, rolling out)`):
  they will get there on their own, so the pipeline is Progressing.
- `problems`: what will not fix itself, each naming the child and the reason Kubernetes gives: a
  failed Job; a container that crash-loops (with its last exit reason, e.g. OOMKilled), cannot
  get its image (ImagePullBackOff, ErrImageNeverPull) or cannot be created; a service the record
  path needs scaled to zero. Any of them makes the pipeline Degraded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
RECORD_PATH = ("ingest", "relay", "tokenizer", "normalizer")
"""Services a record passes through from POST to canonical row: none of them may be scaled to zero."""
WAITING_PROBLEMS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Reasons of a waiting container that no amount of waiting cures (the kubelet's own words)."""
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
MAX_DETAIL = 160

Manifest = Mapping[str, Any]


@dataclass(frozen=True)
class Problem:
    """Something wrong with one child that keeps the pipeline from working."""

    component: str
    """The child's component (app.kubernetes.io/name): ingest, postgres, migrate, ..."""
    child: str
    """`kind/name` of the object that shows it, e.g. `pod/local-ingest-7d9f-x2x`."""
    reason: str
    """One CamelCase word: CrashLoopBackOff, ErrImageNeverPull, OOMKilled, JobFailed, ScaledToZero, ..."""
    detail: str = ""
    """What Kubernetes said about it, capped."""

    def __str__(self) -> str:
        text = f"{self.component} {self.child}: {self.reason}"
        return f"{text} ({self.detail})" if self.detail else text


def component_of(obj: Manifest) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/name", obj["metadata"]["name"]))


def _ready_desired(obj: Manifest) -> tuple[int, int]:
    st = obj.get("status") or {}
    if obj.get("kind") == "Job":
        return (1 if st.get("succeeded") else 0), 1
    return int(st.get("readyReplicas") or 0), int(obj["spec"].get("replicas", 1))


def _rolled_out(obj: Manifest) -> bool:
    """The workload's controller saw its latest spec, every Pod runs it and no old Pod is left."""
    st = obj.get("status") or {}
    _, desired = _ready_desired(obj)
    return (
        int(st.get("observedGeneration") or 0) >= int(obj["metadata"].get("generation") or 0)
        and int(st.get("updatedReplicas") or 0) >= desired
        and int(st.get("replicas") or 0) <= desired
    )


def workloads(children: Iterable[Manifest]) -> dict[str, dict[str, int]]:
    """`{component: {ready, desired}}` for Deployments, StatefulSets and Jobs (1 = succeeded)."""
    out: dict[str, dict[str, int]] = {}
    for obj in children:
        if obj.get("kind") in WORKLOAD_KINDS:
            ready, desired = _ready_desired(obj)
            out[component_of(obj)] = {"ready": ready, "desired": desired}
    return out


def not_ready(children: Iterable[Manifest], expected: Iterable[str] = ()) -> list[str]:
    """Workloads that are not ready yet, and expected components with no workload at all."""
    seen: set[str] = set()
    out: list[str] = []
    for obj in children:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        name = component_of(obj)
        seen.add(name)
        ready, desired = _ready_desired(obj)
        if ready < desired:
            out.append(f"{name} ({ready}/{desired})")
        elif obj["kind"] != "Job" and not _rolled_out(obj):
            out.append(f"{name} ({ready}/{desired}, rolling out)")
    out += [f"{name} (missing)" for name in sorted(set(expected) - seen)]
    return out


def _capped(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def job_problem(job: Manifest) -> Problem | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            detail = " ".join(p for p in (cond.get("reason", ""), cond.get("message", "")) if p)
            return Problem(component_of(job), f"job/{job['metadata']['name']}", "JobFailed", _capped(detail))
    return None


def _container_problem(status: Manifest) -> tuple[str, str] | None:
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    if waiting.get("reason") in WAITING_PROBLEMS:
        if waiting["reason"] == "CrashLoopBackOff" and last:
            return "CrashLoopBackOff", f"last exit {last.get('reason', 'unknown')}, code {last.get('exitCode', '?')}"
        return str(waiting["reason"]), _capped(str(waiting.get("message", "")))
    if (state.get("terminated") or {}).get("reason") == "OOMKilled":
        return "OOMKilled", "over its memory limit"
    return None


def pod_problems(pod: Manifest) -> list[Problem]:
    """Every container of a live Pod (init containers first) that is stuck for good."""
    md, st = pod["metadata"], pod.get("status") or {}
    if md.get("deletionTimestamp") or st.get("phase") == "Succeeded":
        return []
    out = []
    for container in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        found = _container_problem(container)
        if found:
            out.append(Problem(component_of(pod), f"pod/{md['name']}", *found))
    return out


def _job_of(pod: Manifest) -> str | None:
    pod_labels = pod["metadata"].get("labels") or {}
    return next((pod_labels[k] for k in JOB_NAME_LABELS if k in pod_labels), None)


def problems(children: Iterable[Manifest], pods: Iterable[Manifest] = (), *, suspended: bool = False) -> list[Problem]:
    """Every Problem of the pipeline, Jobs first. Pods of a Job that is no longer a child (a
    replaced migration) do not count."""
    children = list(children)
    out = [p for p in map(job_problem, (c for c in children if c.get("kind") == "Job")) if p]
    jobs = {c["metadata"]["name"] for c in children if c.get("kind") == "Job"}
    for pod in pods:
        job = _job_of(pod)
        if job is None or job in jobs:
            out += pod_problems(pod)
    if not suspended:
        for obj in children:
            if obj.get("kind") == "Deployment" and component_of(obj) in RECORD_PATH and _ready_desired(obj)[1] == 0:
                out.append(Problem(component_of(obj), f"deployment/{obj['metadata']['name']}", "ScaledToZero"))
    return out
