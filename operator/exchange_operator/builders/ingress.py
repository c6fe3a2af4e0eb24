"""Ingresses for ingest and query (class, host, paths, TLS), and the URLs they publish.

An Ingress routes only the API paths of its service that lie under the route's path: never
`/metrics`, `/docs`, `/openapi.json` or the probes, even for a route of `/`."""

from __future__ import annotations

from typing import Any

from exchange_operator.builders.common import Manifest, Meta, object_meta
from exchange_operator.spec import ExchangePipelineSpec, IngressRoute

EXPOSED = ("ingest", "query")
URL_SUFFIX = {"ingest": "", "query": "/graphql"}
API_PATHS = {"ingest": ("/v1/ingest",), "query": ("/graphql",)}
"""The paths each service serves its API under (Prefix: `/v1/ingest` covers `/v1/ingest/bulk`)."""


def _covers(prefix: str, path: str) -> bool:
    """Whether Prefix `prefix` matches `path`, element by element as an Ingress matches."""
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def routed_paths(route_path: str, component: str) -> list[str]:
    """The paths an Ingress with route `route_path` sends to `component`: its API paths under the
    route (`/` and `/v1` give `/v1/ingest`), or the route itself when it lies within an API path
    (`/v1/ingest/bulk`); none when the route holds no API path."""
    api = API_PATHS[component]
    under = [path for path in api if _covers(route_path, path)]
    if under:
        return under
    return [route_path.rstrip("/")] if any(_covers(path, route_path) for path in api) else []


def _route(spec: ExchangePipelineSpec, component: str) -> IngressRoute | None:
    if not spec.ingress.enabled:
        return None
    route: IngressRoute | None = getattr(spec.ingress, component)
    return route


def build_ingress(spec: ExchangePipelineSpec, meta: Meta, component: str) -> Manifest | None:
    """The Ingress of ingest or query; None when not exposed (or its route holds no API path)."""
    route = _route(spec, component)
    paths = routed_paths(route.path, component) if route is not None else []
    if route is None or not paths:
        return None
    backend = {"service": {"name": meta.child(component), "port": {"name": "http"}}}
    rule: dict[str, Any] = {
        "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend} for path in paths]}
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
