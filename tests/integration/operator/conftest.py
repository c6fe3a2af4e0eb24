"""The operator as a real process (`python -m exchange_operator`) against the session's
kube-apiserver, with the generated CRD installed. Its log is attached to failing tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from exchange_devtools.engines.base import free_port
from exchange_devtools.fixtures.operator_process import OperatorProcess, install_crd, wait_for
from exchange_operator.spec import GROUP, PLURAL, VERSION

RESYNC_SECONDS = "2"
_OPERATORS: list[OperatorProcess] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _OPERATORS:
        report.sections.append(("operator log", _OPERATORS[0].tail(120)))


@pytest.fixture(scope="session")
def operator_process(kubeconfig, kube_api_client, tmp_path_factory) -> Iterator[OperatorProcess]:
    install_crd(kube_api_client)
    env = {
        "EXCHANGE_OPERATOR_RESYNC_SECONDS": RESYNC_SECONDS,
        "EXCHANGE_OPERATOR_DEPENDENCY_RETRY_SECONDS": "1",
        "EXCHANGE_OPERATOR_METRICS_PORT": str(free_port()),
    }
    proc = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log", env).start()
    _OPERATORS.append(proc)
    try:
        yield proc
    finally:
        proc.stop()
        _OPERATORS.remove(proc)


@pytest.fixture
def namespace(kube_api_client) -> str:
    name = f"xpl-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube_api_client).create_namespace({"metadata": {"name": name}})
    return name  # namespaces are not deleted: no namespace controller runs here


class Pipelines:
    """CRUD on ExchangePipelines plus waits on their status."""

    def __init__(self, api_client, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExchangePipeline",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def wait_status(self, name: str, predicate, what: str, timeout: float = 30.0) -> dict[str, Any]:
        def probe():
            obj = self.get(name)
            return obj if obj and predicate(obj.get("status") or {}, obj) else None

        return wait_for(f"{name}: {what}", probe, timeout)

    def wait_phase(self, name: str, *phases: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_status(
            name,
            lambda st, obj: st.get("phase") in phases and st.get("observedGeneration") == obj["metadata"]["generation"],
            f"phase in {phases}",
            timeout,
        )


@pytest.fixture
def pipelines(operator_process, kube_api_client, namespace) -> Pipelines:
    return Pipelines(kube_api_client, namespace)
