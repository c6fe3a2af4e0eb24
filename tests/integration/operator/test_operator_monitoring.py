"""Monitoring on a real API server: without the Prometheus Operator's CRDs a pipeline gets no
PodMonitor (and reconciles fine); once the CRD is served the operator creates one per pipeline,
owned by it, and prunes it when the spec turns it off. The operator counts its reconciles on
EXCHANGE_OPERATOR_METRICS_PORT."""

from __future__ import annotations

import re

import httpx
from kubernetes import client

from exchange_devtools.fixtures.operator_process import wait_for

POD_MONITORS = ("monitoring.coreos.com", "v1", "podmonitors")
POD_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "PodMonitor", "plural": "podmonitors", "singular": "podmonitor",
                  "listKind": "PodMonitorList"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip


def _pod_monitors(api_client, namespace: str) -> list[dict]:
    api = client.CustomObjectsApi(api_client)
    try:
        found = api.list_namespaced_custom_object(*POD_MONITORS[:2], namespace, POD_MONITORS[2])
    except client.ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return list(found["items"])


def _install_pod_monitor_crd(api_client) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(POD_MONITOR_CRD)
    except client.ApiException as exc:
        if exc.status != 409:
            raise

    def served() -> bool:
        try:
            client.CustomObjectsApi(api_client).list_cluster_custom_object(*POD_MONITORS)
        except client.ApiException:
            return False
        return True

    wait_for("the PodMonitor CRD served", served, timeout=30)


def test_a_pod_monitor_follows_the_prometheus_operator_crds_and_the_spec(pipelines, kube_api_client, namespace):
    # Reconciled without the CRD (another test may have installed it already: then with it).
    cr = pipelines.create("watched", {})
    pipelines.wait_phase("watched", "Progressing")
    _install_pod_monitor_crd(kube_api_client)

    def monitors() -> list[dict]:
        return [m for m in _pod_monitors(kube_api_client, namespace) if m["metadata"]["name"] == "watched-services"]

    (monitor,) = wait_for("the PodMonitor of watched, at the latest on the next resync", monitors, timeout=30)
    (ref,) = monitor["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("ExchangePipeline", cr["metadata"]["uid"], True)
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [namespace]}

    pipelines.patch("watched", {"monitoring": {"podMonitor": False}})
    wait_for("the PodMonitor pruned", lambda: not monitors(), timeout=30)


def test_the_operator_counts_its_reconciles(operator_process, pipelines):
    pipelines.create("counted", {})
    pipelines.wait_phase("counted", "Progressing")
    url = f"http://127.0.0.1:{operator_process.env['EXCHANGE_OPERATOR_METRICS_PORT']}/metrics"

    def reconciled() -> float:
        text = httpx.get(url, timeout=5).text
        found = re.search(
            r'^exchange_operator_reconciles_total\{result="ok",trigger="change"\} ([0-9.e+]+)$', text, re.M
        )
        return float(found.group(1)) if found else 0.0

    assert wait_for("a counted reconcile", reconciled, timeout=30) >= 1
    text = httpx.get(url, timeout=5).text
    assert 'exchange_operator_reconcile_duration_seconds_count{trigger="change"}' in text
