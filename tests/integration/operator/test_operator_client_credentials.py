"""The operator's client on the real kube-apiserver, credentials from a kubeconfig as kopf reads it:
a client certificate authenticates even with `insecure-skip-tls-verify` (it was never loaded then),
a bad token is a one-line 401, and a 401 re-reads the credentials once (a rotated token)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client

from exchange_devtools.engines.kube import KubeControlPlane
from exchange_operator.apply import KubeApiError, KubeClient

NAMESPACE = "default"


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.fixture
def config_map(kube_api_client: Any) -> Iterator[str]:
    name = f"creds-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api_client)
    core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": name}, "data": {"k": "v"}})
    yield name
    core.delete_namespaced_config_map(name, NAMESPACE)


async def test_a_client_certificate_authenticates_with_tls_verification_off(
    kube_apiserver: KubeControlPlane, config_map: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = kube_apiserver.pki
    user = {"client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)}
    path = write_kubeconfig(tmp_path / "kubeconfig", kube_apiserver.server, {"insecure-skip-tls-verify": True}, user)
    monkeypatch.setenv("KUBECONFIG", str(path))
    kube = KubeClient.from_environment(10.0)
    try:
        found = await kube.get("ConfigMap", NAMESPACE, config_map)
    finally:
        await kube.close()
    assert found is not None and found["data"] == {"k": "v"}


async def test_a_bad_token_is_a_one_line_401(
    kube_apiserver: KubeControlPlane, config_map: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = {"certificate-authority-data": b64(kube_apiserver.pki.ca_cert)}
    path = write_kubeconfig(tmp_path / "kubeconfig", kube_apiserver.server, cluster, {"token": "not-a-token"})
    monkeypatch.setenv("KUBECONFIG", str(path))
    kube = KubeClient.from_environment(10.0)
    try:
        with pytest.raises(KubeApiError) as caught:
            await kube.get("ConfigMap", NAMESPACE, config_map)
    finally:
        await kube.close()
    assert caught.value.status == 401
    assert str(caught.value).startswith("401 Unauthorized") and "\n" not in str(caught.value)


def service_account_token(api: Any, name: str) -> str:
    """A ServiceAccount allowed to read ConfigMaps here, and a token for it (TokenRequest)."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": name}})
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    rbac.create_namespaced_role(NAMESPACE, {"metadata": {"name": name}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        },
    )
    answer: Any = core.create_namespaced_service_account_token(name, NAMESPACE, {"spec": {}})
    return str(answer.status.token)


async def test_a_401_logs_in_again_once_and_goes_on_with_the_new_token(
    kube_apiserver: KubeControlPlane, kube_api_client: Any, config_map: str
) -> None:
    tokens = iter(["expired-token", service_account_token(kube_api_client, f"rotated-{uuid.uuid4().hex[:6]}")])
    logins: list[str] = []

    def login() -> kopf.ConnectionInfo:
        logins.append(token := next(tokens))
        return kopf.ConnectionInfo(server=kube_apiserver.server, ca_path=str(kube_apiserver.pki.ca_cert), token=token)

    kube = KubeClient(login, 10.0)
    try:
        found = await kube.get("ConfigMap", NAMESPACE, config_map)
    finally:
        await kube.close()
    assert found is not None and found["data"] == {"k": "v"}
    assert len(logins) == 2
