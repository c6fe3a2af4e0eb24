"""helm (built from its Go module): render and lint a small chart, and install it into the local
kube-apiserver."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from exchange_devtools.engines.base import REPO_ROOT

CHART_YAML = """\
apiVersion: v2
name: demo
description: A throwaway chart for the helm engine tests
type: application
version: 0.1.0
appVersion: "1.0.0"
"""

VALUES_YAML = """\
replicaCount: 1
image: registry.invalid/demo:1.0.0
greeting: hello
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  greeting: {{ .Values.greeting | quote }}
  chartVersion: {{ .Chart.Version | quote }}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  namespace: {{ .Release.Namespace }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      containers:
        - name: web
          image: {{ required "image is required" .Values.image | quote }}
"""


def make_chart(root: Path) -> Path:
    chart = root / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML)
    (chart / "values.yaml").write_text(VALUES_YAML)
    (chart / "templates" / "configmap.yaml").write_text(CONFIGMAP)
    (chart / "templates" / "deployment.yaml").write_text(DEPLOYMENT)
    return chart


def helm(helm_bin: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run helm with its config/cache/data dirs under `home` (never the user's)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run([str(helm_bin), *args], capture_output=True, text=True, timeout=120, env=env)


def docs_by_kind(rendered: str) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    return {d["kind"]: d for d in docs}


def test_helm_template_renders_values(helm_bin: Path, tmp_path: Path) -> None:
    chart = make_chart(tmp_path)
    out = helm(
        helm_bin,
        "template",
        "rel",
        str(chart),
        "--namespace",
        "demo-ns",
        "--set",
        "replicaCount=3",
        "--set",
        "greeting=bonjour",
        home=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    docs = docs_by_kind(out.stdout)
    assert set(docs) == {"ConfigMap", "Deployment"}
    cm, dep = docs["ConfigMap"], docs["Deployment"]
    assert cm["metadata"]["name"] == "rel-settings"
    assert cm["metadata"]["namespace"] == "demo-ns"
    assert cm["data"] == {"greeting": "bonjour", "chartVersion": "0.1.0"}
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/demo:1.0.0"


def test_helm_template_fails_on_missing_required_value(helm_bin: Path, tmp_path: Path) -> None:
    chart = make_chart(tmp_path)
    out = helm(helm_bin, "template", "rel", str(chart), "--set", "image=", home=tmp_path)
    assert out.returncode != 0
    assert "image is required" in out.stderr


def test_helm_lint(helm_bin: Path, tmp_path: Path) -> None:
    chart = make_chart(tmp_path)
    ok = helm(helm_bin, "lint", str(chart), home=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in ok.stdout

    (chart / "Chart.yaml").write_text(CHART_YAML.replace("version: 0.1.0\n", ""))
    broken = helm(helm_bin, "lint", str(chart), home=tmp_path)
    assert broken.returncode != 0
    assert "1 chart(s) failed" in broken.stdout + broken.stderr


def test_helm_version_is_pinned(helm_bin: Path, tmp_path: Path) -> None:
    out = helm(helm_bin, "version", "--short", home=tmp_path)
    assert out.returncode == 0, out.stderr
    pinned = re.search(r'^HELM_VERSION="(.+)"$', (REPO_ROOT / "hack/install/helm.sh").read_text(), re.M)
    assert pinned
    assert out.stdout.strip().split("+")[0] == pinned.group(1)


def test_helm_install_and_uninstall_against_the_api_server(
    helm_bin: Path, kubeconfig: Path, kube_api_client: ApiClient, tmp_path: Path
) -> None:
    chart = make_chart(tmp_path)
    ns = f"helm-{uuid.uuid4().hex[:8]}"
    kube = ("--kubeconfig", str(kubeconfig), "--namespace", ns)
    core = client.CoreV1Api(kube_api_client)
    apps = client.AppsV1Api(kube_api_client)

    # No controllers run, so nothing becomes ready: install without --wait.
    out = helm(helm_bin, "install", "rel", str(chart), *kube, "--create-namespace", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "STATUS: deployed" in out.stdout

    assert core.read_namespaced_config_map("rel-settings", ns).data == {
        "greeting": "hello",
        "chartVersion": "0.1.0",
    }
    assert apps.read_namespaced_deployment("rel-web", ns).spec.replicas == 1
    releases = core.list_namespaced_secret(ns, label_selector="owner=helm,name=rel").items
    assert [(s.metadata.labels or {}).get("status") if s.metadata else None for s in releases] == ["deployed"]

    out = helm(helm_bin, "upgrade", "rel", str(chart), *kube, "--set", "replicaCount=2", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert apps.read_namespaced_deployment("rel-web", ns).spec.replicas == 2

    out = helm(helm_bin, "uninstall", "rel", *kube, home=tmp_path)
    assert out.returncode == 0, out.stderr
    with pytest.raises(ApiException) as config_map_gone:
        core.read_namespaced_config_map("rel-settings", ns)
    assert config_map_gone.value.status == 404
    with pytest.raises(ApiException) as deployment_gone:
        apps.read_namespaced_deployment("rel-web", ns)
    assert deployment_gone.value.status == 404
    core.delete_namespace(ns)
