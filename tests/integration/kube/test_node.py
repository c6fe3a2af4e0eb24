"""The local node runs real pods: the services image, DNS, volumes, the ingress, logs and exec,
and the API from inside a pod. Each test works in its own namespace (`kube_namespace`)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from exchange_devtools.fixtures.kube_node import KubeNode, devtools, eventually

SERVICES_IMAGE = "localhost/exchange:dev"
BUSYBOX_IMAGE = "localhost/busybox:1.35.0"

pytestmark = pytest.mark.usefixtures("node_images")


def _restricted() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def tokenizer(replicas: int = 1) -> list[dict[str, Any]]:
    """The services image serving the tokenizer, with the security context the operator uses."""
    labels = {"app": "tokenizer"}
    container = {
        "name": "tokenizer",
        "image": SERVICES_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "tokenizer"],
        "env": [
            {"name": "ENV", "value": "local"},
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": "8080"},
            {"name": "TOKENIZATION_SECRET", "value": "node-test-secret-not-a-real-one-0123456789"},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
        "securityContext": _restricted(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "tokenizer", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [{"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "tokenizer"},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    ]


def busybox_pod(name: str, command: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", "-c", command],
                    **spec.pop("container", {}),
                }
            ],
            **spec,
        },
    }


def wait_rollout(node: KubeNode, ns: str, name: str, timeout: int = 120) -> None:
    node.kubectl("-n", ns, "rollout", "status", f"deployment/{name}", f"--timeout={timeout}s", timeout=timeout + 10)


def pod_succeeded(node: KubeNode, ns: str, name: str, timeout: float = 90) -> str:
    """Wait for a run-once pod to succeed; its log."""

    def phase() -> str | None:
        value = node.kubectl("-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
        assert value != "Failed", f"pod {name} failed: {node.kubectl('-n', ns, 'logs', name, check=False)}"
        return value if value == "Succeeded" else None

    eventually(phase, timeout=timeout, what=f"pod {name} to succeed")
    return node.kubectl("-n", ns, "logs", name)


def test_a_deployment_of_the_services_image_becomes_ready(kube_node: KubeNode, kube_namespace: str) -> None:
    kube_node.apply(kube_namespace, *tokenizer(replicas=2))
    wait_rollout(kube_node, kube_namespace, "tokenizer")
    ready = kube_node.kubectl(
        "-n", kube_namespace, "get", "deploy", "tokenizer", "-o", "jsonpath={.status.readyReplicas}"
    )
    assert ready == "2"
    images = kube_node.kubectl(
        "-n", kube_namespace, "get", "pods", "-o", "jsonpath={.items[*].status.containerStatuses[*].image}"
    )
    assert set(images.split()) == {SERVICES_IMAGE}


def test_a_pod_resolves_and_reaches_a_service_by_its_dns_name(kube_node: KubeNode, kube_namespace: str) -> None:
    kube_node.apply(kube_namespace, *tokenizer())
    wait_rollout(kube_node, kube_namespace, "tokenizer")
    cluster_ip = kube_node.wait_for_service(kube_namespace, "tokenizer")
    fqdn = f"tokenizer.{kube_namespace}.svc.cluster.local"
    kube_node.apply(
        kube_namespace,
        busybox_pod(
            "client", f"nslookup {fqdn} && wget -qO- http://tokenizer/readyz && wget -qO- http://{fqdn}/healthz"
        ),
    )
    log = pod_succeeded(kube_node, kube_namespace, "client")
    assert cluster_ip in log  # nslookup answered with the Service's address
    assert '"status":"ready"' in log.replace(" ", "")


def test_a_claim_of_the_default_storage_class_binds_and_keeps_its_data_across_pods(
    kube_node: KubeNode, kube_namespace: str
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    kube_node.apply(
        kube_namespace, claim, busybox_pod("writer", "echo kept-$HOSTNAME > /data/proof", container=mount, **volume)
    )
    pod_succeeded(kube_node, kube_namespace, "writer")
    phase = kube_node.kubectl("-n", kube_namespace, "get", "pvc", "data", "-o", "jsonpath={.status.phase}")
    assert phase == "Bound"
    kube_node.kubectl("-n", kube_namespace, "delete", "pod", "writer", "--wait=true")
    kube_node.apply(kube_namespace, busybox_pod("reader", "cat /data/proof", container=mount, **volume))
    assert pod_succeeded(kube_node, kube_namespace, "reader").strip() == "kept-writer"


def test_an_ingress_routes_a_request_from_the_host_to_a_pod(kube_node: KubeNode, kube_namespace: str) -> None:
    kube_node.apply(kube_namespace, *tokenizer())
    host = f"{kube_namespace}.exchange.test"
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "tokenizer"},
        "spec": {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "tokenizer", "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    kube_node.apply(kube_namespace, ingress)
    wait_rollout(kube_node, kube_namespace, "tokenizer")

    def get() -> dict[str, Any] | None:
        request = urllib.request.Request(f"{kube_node.ingress_url}/readyz", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    assert eventually(get, what="the ingress to route to the tokenizer")["status"] == "ready"
    # The class is the default one, so the Ingress needed no ingressClassName.
    assert kube_node.kubectl("get", "ingressclass", "skipper", "-o", "jsonpath={.spec.controller}") == (
        "zalando.org/skipper"
    )


def test_kubectl_logs_and_exec_reach_the_container(kube_node: KubeNode, kube_namespace: str) -> None:
    kube_node.apply(
        kube_namespace, busybox_pod("chatty", "echo hello-from-the-pod; exec sleep 300", restartPolicy="Always")
    )
    kube_node.kubectl("-n", kube_namespace, "wait", "pod/chatty", "--for=condition=Ready", "--timeout=60s")
    log = eventually(lambda: kube_node.kubectl("-n", kube_namespace, "logs", "chatty"), what="the pod's log")
    assert "hello-from-the-pod" in log
    out = kube_node.kubectl("-n", kube_namespace, "exec", "chatty", "--", "sh", "-c", "echo $((6 * 7)) && hostname")
    assert out.split() == ["42", "chatty"]


def test_a_pod_calls_the_api_with_its_service_account_token(kube_node: KubeNode, kube_namespace: str) -> None:
    """`kubernetes.default` reaches the API server; the token is signed and RBAC applies to it."""
    kube_node.kubectl(
        "-n",
        kube_namespace,
        "create",
        "rolebinding",
        "view",
        "--clusterrole=view",
        f"--serviceaccount={kube_namespace}:default",
    )
    script = (
        "import json, ssl, urllib.request\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "ctx = ssl.create_default_context(cafile=d + 'ca.crt')\n"
        "ns = open(d + 'namespace').read()\n"
        "req = urllib.request.Request(f'https://kubernetes.default.svc/api/v1/namespaces/{ns}/pods',\n"
        "    headers={'Authorization': 'Bearer ' + open(d + 'token').read()})\n"
        "pods = json.load(urllib.request.urlopen(req, context=ctx))['items']\n"
        "print(json.dumps([p['metadata']['name'] for p in pods]))\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api-client"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [
                {
                    "name": "main",
                    "image": SERVICES_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", script],
                    "securityContext": _restricted(),
                }
            ],
        },
    }
    kube_node.apply(kube_namespace, pod)
    assert json.loads(pod_succeeded(kube_node, kube_namespace, "api-client")) == ["api-client"]


def test_kube_up_again_reuses_the_running_node(kube_node: KubeNode) -> None:
    started = time.monotonic()
    out = devtools("kube-up", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "already running" in out.stdout
    assert time.monotonic() - started < 30
    assert kube_node.kubectl("get", "node", "-o", "jsonpath={.items[*].metadata.name}") == "exchange-node"


def test_a_service_without_endpoints_refuses_connections_at_once(kube_node: KubeNode, kube_namespace: str) -> None:
    """As on any cluster: no endpoint means a refused connection, never a packet leaving the node."""
    nobody = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nobody"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]},
    }
    kube_node.apply(kube_namespace, nobody)
    kube_node.wait_for_service_rules(kube_namespace, "nobody")
    kube_node.apply(kube_namespace, busybox_pod("client", "wget -qO- http://nobody/ 2>&1; echo exit=$?"))
    log = pod_succeeded(kube_node, kube_namespace, "client")
    assert "Connection refused" in log and "exit=1" in log
