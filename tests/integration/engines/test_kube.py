"""The local Kubernetes control plane (etcd + kube-apiserver, no controllers) through the
`kubernetes` Python client: CRDs, custom objects, Deployments, RBAC and the built version."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from exchange_devtools.engines.base import REPO_ROOT
from exchange_devtools.engines.kube import KubeControlPlane
from exchange_devtools.fixtures.kube_node import eventually

GROUP = "engines.test.exchange.dev"
PLURAL = "widgets"


def manifest(body: dict[str, Any]) -> Any:
    """The client takes plain dict manifests; its stubs only name the model classes."""
    return body


def api_status(call: Callable[[], Any]) -> int:
    """HTTP status of an API call that is expected to fail."""
    with pytest.raises(ApiException) as excinfo:
        call()
    return int(excinfo.value.status)


@pytest.fixture
def namespace(kube_api_client: ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api_client)
    core.create_namespace(manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    yield name
    # Without the namespace controller it stays Terminating; harmless for a throwaway etcd.
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def widget_crd(kube_api_client: ApiClient) -> Iterator[str]:
    """A namespaced CRD with a structural schema and a status subresource, Established."""
    ext = client.ApiextensionsV1Api(kube_api_client)
    name = f"{PLURAL}.{GROUP}"
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "color": {"type": "string", "enum": ["red", "blue"]},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(manifest(crd))

    def established() -> bool:
        status = ext.read_custom_resource_definition(name).status
        conditions = (status.conditions if status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    eventually(established, timeout=30, what=f"CRD {name} Established")
    yield name
    ext.delete_custom_resource_definition(name)


def test_admin_is_system_masters_and_anonymous_is_forbidden(
    kube_apiserver: KubeControlPlane, kube_api_client: ApiClient
) -> None:
    assert kube_apiserver.server.startswith("https://127.0.0.1:")
    who: Any = client.AuthenticationV1Api(kube_api_client).create_self_subject_review(
        manifest({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    )
    assert "system:masters" in (who.status.user_info.groups or [])

    # Without a client certificate the request is anonymous, and RBAC lets it read nothing.
    anonymous = ssl.create_default_context(cafile=str(kube_apiserver.pki.ca_cert))
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{kube_apiserver.server}/api/v1/namespaces", context=anonymous, timeout=10)
    assert excinfo.value.code == 403
    with urllib.request.urlopen(f"{kube_apiserver.server}/readyz", context=anonymous, timeout=10) as resp:
        assert resp.status == 200


def test_crd_custom_object_lifecycle(kube_api_client: ApiClient, widget_crd: str, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube_api_client)

    def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    created = objects.create_namespaced_custom_object(
        GROUP, "v1", namespace, PLURAL, widget("w1", {"size": 2, "color": "red"})
    )
    assert isinstance(created, dict)
    assert created["metadata"]["uid"]
    assert created["metadata"]["generation"] == 1

    # The structural schema is enforced by the API server.
    assert (
        api_status(
            lambda: objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, widget("bad", {"size": 0}))
        )
        == 422
    )
    assert (
        api_status(
            lambda: objects.create_namespaced_custom_object(
                GROUP, "v1", namespace, PLURAL, widget("bad", {"color": "green"})
            )
        )
        == 422
    )

    got = objects.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w1")
    assert isinstance(got, dict)
    assert got["spec"] == {"size": 2, "color": "red"}

    patched = objects.patch_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w1", {"spec": {"size": 5}})
    assert isinstance(patched, dict)
    assert patched["spec"] == {"size": 5, "color": "red"}  # merge patch keeps color
    assert patched["metadata"]["generation"] == 2

    # status is a subresource: it does not bump the generation
    with_status = objects.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, PLURAL, "w1", {"status": {"phase": "Ready"}}
    )
    assert isinstance(with_status, dict)
    assert with_status["status"] == {"phase": "Ready"}
    assert with_status["metadata"]["generation"] == 2

    listed = objects.list_namespaced_custom_object(GROUP, "v1", namespace, PLURAL)
    assert isinstance(listed, dict)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]

    objects.delete_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w1")
    assert api_status(lambda: objects.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w1")) == 404


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0"}]},
            },
        },
    }


def test_deployment_lifecycle_and_owner_references(kube_api_client: ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api_client)
    core = client.CoreV1Api(kube_api_client)

    created: Any = apps.create_namespaced_deployment(namespace, manifest(deployment("web")))
    assert created.metadata.uid
    assert created.spec.replicas == 1

    # An invalid object is rejected by validation (selector must match the template labels).
    broken = deployment("broken")
    broken["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert api_status(lambda: apps.create_namespaced_deployment(namespace, manifest(broken))) == 422

    got: Any = apps.read_namespaced_deployment("web", namespace)
    assert got.spec.template.spec.containers[0].image == "registry.invalid/app:1.0"

    patched: Any = apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"tier": "front"}}, "spec": {"replicas": 3}}
    )
    assert patched.spec.replicas == 3
    assert patched.metadata.labels == {"app.kubernetes.io/name": "web", "tier": "front"}
    assert patched.metadata.generation == 2

    # Owner references are stored as given; no garbage collector runs here to act on them.
    owned: Any = core.create_namespaced_config_map(
        namespace,
        manifest(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "web-config",
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "web",
                            "uid": created.metadata.uid,
                            "controller": True,
                        }
                    ],
                },
                "data": {"k": "v"},
            }
        ),
    )
    (ref,) = owned.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("Deployment", "web", created.metadata.uid, True)

    apps.delete_namespaced_deployment("web", namespace)
    assert api_status(lambda: apps.read_namespaced_deployment("web", namespace)) == 404
    assert core.read_namespaced_config_map("web-config", namespace).data == {"k": "v"}


def test_rbac_is_enforced_for_service_account_tokens(
    kube_api_client: ApiClient, kube_apiserver: KubeControlPlane, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    rbac = client.RbacAuthorizationV1Api(kube_api_client)
    core.create_namespaced_service_account(
        namespace, manifest({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}})
    )
    request: Any = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        manifest(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
        ),
    )
    token = request.status.token
    assert token

    cfg = client.Configuration(host=kube_apiserver.server)
    cfg.ssl_ca_cert = str(kube_apiserver.pki.ca_cert)
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    with ApiClient(cfg) as sa_client:
        as_reader = client.CoreV1Api(sa_client)
        who: Any = client.AuthenticationV1Api(sa_client).create_self_subject_review(
            manifest({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        )
        assert who.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
        assert api_status(lambda: as_reader.list_namespaced_config_map(namespace)) == 403

        role: dict[str, Any] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        }
        binding: dict[str, Any] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "cm-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        }
        rbac.create_namespaced_role(namespace, manifest(role))
        rbac.create_namespaced_role_binding(namespace, manifest(binding))

        def allowed() -> bool:
            try:
                as_reader.list_namespaced_config_map(namespace)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return False
            return True

        eventually(allowed, timeout=15, what="the RoleBinding to take effect")
        assert api_status(lambda: as_reader.list_namespaced_secret(namespace)) == 403


def test_kubectl_and_server_report_v1_34(kubectl_bin: Path, kubeconfig: Path) -> None:
    out = subprocess.run(
        [str(kubectl_bin), "version", "-o", "json", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    versions = json.loads(out)
    pinned = re.search(r'^KUBE_VERSION="(.+)"$', (REPO_ROOT / "hack/install/kube.sh").read_text(), re.M)
    assert pinned
    assert pinned.group(1).startswith("v1.34.")
    assert versions["clientVersion"]["gitVersion"] == pinned.group(1)
    assert versions["serverVersion"]["gitVersion"] == versions["clientVersion"]["gitVersion"]
    assert (versions["serverVersion"]["major"], versions["serverVersion"]["minor"]) == ("1", "34")
