"""Jobs: the schema migration (`exchange migrate`) and topic + bucket creation (`exchange bootstrap`).

A Job's Pod template is immutable, so its name carries a hash of the template: a new image or
new settings make a new Job (older ones are pruned by the handler), an unchanged spec re-applies
the same Job as a no-op. No TTL: a Job that vanished would be recreated by drift repair.
"""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import (
    ENGINE_CLIENT_LABEL,
    Manifest,
    Meta,
    container_security_context,
    digest,
    labels,
    object_meta,
    pod_security_context,
    pull_secrets,
    resources,
    tmp_volume,
)
from exchange_operator.builders.env import config_map_name, engine_env
from exchange_operator.spec import ExchangePipelineSpec, Resources

JOBS = ("migrate", "bootstrap")
JOB_RESOURCES = Resources()


def job_image(spec: ExchangePipelineSpec) -> str:
    return f"{spec.image.repository}:{spec.image.tag}"


def build_job(spec: ExchangePipelineSpec, meta: Meta, job: str) -> Manifest:
    """One Job; `job` is `migrate` or `bootstrap`."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}")
    tmp, tmp_mount = tmp_volume()
    container: dict[str, Any] = {
        "name": job,
        "image": job_image(spec),
        "imagePullPolicy": spec.image.pull_policy,
        "command": ["exchange", job],
        "envFrom": [{"configMapRef": {"name": config_map_name(meta)}}],
        "env": engine_env(spec, meta, job),
        "resources": resources(JOB_RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_mount],
    }
    pod_spec = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "imagePullSecrets": pull_secrets(spec),
        "containers": [container],
        "volumes": [tmp],
    }
    pod_labels = {**labels(meta, job, "job"), ENGINE_CLIENT_LABEL: "true"}
    name = meta.child(f"{job}-{digest([pod_spec, pod_labels], 8)}")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(meta, name, job, "job"),
        "spec": {
            "backoffLimit": 10,
            "activeDeadlineSeconds": 1800,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def build_jobs(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    return [build_job(spec, meta, j) for j in JOBS]
