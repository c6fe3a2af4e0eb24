"""The five service Deployments: ingest, relay, tokenizer, normalizer, query.

One image, one entrypoint per service (`exchange serve <component>`), probes on `/readyz` and
`/healthz` (the `http` port, or a worker's `metrics` port), every service's `metrics` port declared
and annotated for scraping (builders.monitoring), the `restricted` security context with
a read-only root filesystem, env from the pipeline ConfigMap plus the Secrets each service needs,
its own ServiceAccount and the normalizer → tokenizer workload identity (builders.identity).
`spec.suspend` scales all to zero.
"""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import (
    CONFIG_HASH_ANNOTATION,
    ENGINE_CLIENT_LABEL,
    HTTP_METRICS_PORT_ENV,
    METRICS_PORT,
    WORKER_PORT_ENV,
    Manifest,
    Meta,
    container_security_context,
    digest,
    labels,
    object_meta,
    pod_security_context,
    probe_port,
    pull_secrets,
    resources,
    selector_labels,
    service_image,
    tmp_volume,
)
from exchange_operator.builders.env import (
    TOKENIZATION_MOUNT,
    config_data,
    config_map_name,
    engine_env,
    tokenization_secret,
    uses_engines,
)
from exchange_operator.builders.identity import identity_env, identity_volumes, pod_identity
from exchange_operator.builders.monitoring import scrape_annotations
from exchange_operator.spec import COMPONENTS, ExchangePipelineSpec


def desired_replicas(spec: ExchangePipelineSpec, component: str) -> int:
    """Replicas after `suspend`."""
    return 0 if spec.suspend else int(getattr(spec.components, component).replicas)


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def pod_labels(meta: Meta, component: str) -> dict[str, str]:
    out = labels(meta, component, "service")
    if uses_engines(component):
        out[ENGINE_CLIENT_LABEL] = "true"
    return out


def build_deployment(spec: ExchangePipelineSpec, meta: Meta, component: str) -> Manifest:
    """The Deployment of one service."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    comp = getattr(spec.components, component)
    tmp, tmp_mount = tmp_volume()
    volumes: list[dict[str, Any]] = [tmp]
    mounts: list[dict[str, Any]] = [tmp_mount]
    secret_name, secret_key = tokenization_secret(spec, meta)
    if component == "tokenizer":
        volumes.append(
            {
                "name": "tokenization",
                "secret": {"secretName": secret_name, "items": [{"key": secret_key, "path": "secret"}]},
            }
        )
        mounts.append({"name": "tokenization", "mountPath": TOKENIZATION_MOUNT, "readOnly": True})
    identity, identity_mounts = identity_volumes(meta, component)
    volumes += identity
    mounts += identity_mounts
    env = [
        {"name": "SERVICE_NAME", "value": component},
        {"name": "OTEL_SERVICE_NAME", "value": component},
        *identity_env(meta, component),
    ]
    port_name, port = probe_port(component)
    ports = [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
    if component in WORKER_PORT_ENV:
        env.append({"name": WORKER_PORT_ENV[component], "value": str(port)})
    else:  # an HTTP service: metrics on a port of their own, which the Ingress never routes
        env.append({"name": HTTP_METRICS_PORT_ENV, "value": str(METRICS_PORT)})
        ports.append({"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"})
    # A changed ConfigMap or tokenization reference rolls the Pods (env is read at start).
    config_hash = digest([config_data(spec, meta), secret_name, secret_key])
    container = {
        "name": component,
        "image": service_image(spec, component),
        "imagePullPolicy": spec.image.pull_policy,
        "command": ["exchange", "serve", component],
        "ports": ports,
        "envFrom": [{"configMapRef": {"name": config_map_name(meta)}}],
        "env": [*env, *engine_env(spec, meta, component)],
        "readinessProbe": _probe("/readyz", port_name, period=5, failures=3),
        "livenessProbe": _probe("/healthz", port_name, period=10, failures=6),
        "startupProbe": _probe("/healthz", port_name, period=2, failures=60),
        "resources": resources(comp.resources),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(meta, meta.child(component), component, "service"),
        "spec": {
            "replicas": desired_replicas(spec, component),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(meta, component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels(meta, component),
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash, **scrape_annotations()},
                },
                "spec": {
                    **pod_identity(meta, component),
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "imagePullSecrets": pull_secrets(spec),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def build_deployments(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    return [build_deployment(spec, meta, c) for c in COMPONENTS]
