"""Ingresses for ingest and query (class, host, path, TLS), and the URLs they publish."""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import Manifest, Meta, object_meta
from exchange_operator.spec import ExchangePipelineSpec, IngressRoute

EXPOSED = ("ingest", "query")
URL_SUFFIX = {"ingest": "", "query": "/graphql"}


def _route(spec: ExchangePipelineSpec, component: str) -> IngressRoute | None:
    if not spec.ingress.enabled:
        return None
    route: IngressRoute | None = getattr(spec.ingress, component)
    return route


def build_ingress(spec: ExchangePipelineSpec, meta: Meta, component: str) -> Manifest | None:
    """The Ingress of ingest or query; None when not exposed."""
    route = _route(spec, component)
    if route is None:
        return None
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": route.path,
                    "pathType": "Prefix",
                    "backend": {"service": {"name": meta.child(component), "port": {"name": "http"}}},
                }
            ]
        }
    }
    if route.host:
        rule["host"] = route.host
    body: dict[str, Any] = {"rules": [rule]}
    if spec.ingress.class_name:
        body["ingressClassName"] = spec.ingress.class_name
    if spec.ingress.tls:
        body["tls"] = [{"hosts": list(spec.ingress.tls.hosts), "secretName": spec.ingress.tls.secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": object_meta(meta, meta.child(component), component, "service", spec.ingress.annotations),
        "spec": body,
    }


def build_ingresses(spec: ExchangePipelineSpec, meta: Meta) -> list[Manifest]:
    built = (build_ingress(spec, meta, c) for c in EXPOSED)
    return [m for m in built if m is not None]


def endpoint_url(spec: ExchangePipelineSpec, meta: Meta, component: str) -> str:
    """Public URL through the Ingress when exposed, else the in-cluster Service URL.

    The Ingress passes paths through unchanged (the route's path only selects what goes to the
    service), so the URL is the host plus the service's own path, whatever the route's prefix."""
    route = _route(spec, component)
    if route is None:
        return f"http://{meta.service_host(component)}{URL_SUFFIX[component]}"
    scheme = "https" if spec.ingress.tls else "http"
    return f"{scheme}://{route.host or 'localhost'}{URL_SUFFIX[component]}"
