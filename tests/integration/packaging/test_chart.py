"""charts/exchange-operator against a real kube-apiserver: lint, render, dry-run apply, install, RBAC.

Validation is the API server's own: every rendered object is applied with a server-side dry run
and strict field validation (unknown or mistyped fields fail), in a namespace that warns on the
`restricted` Pod Security Standard. The samples are dry-run applied against the generated CRD, so
its schema and CEL rules judge them. No controllers run, so nothing here waits for a Pod.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "exchange-operator"
CRD = CHART / "crds" / "exchangepipelines.exchange.dev.yaml"
SAMPLES = REPO / "manifests" / "samples"
DASHBOARDS = CHART / "files" / "dashboards"
RULES = CHART / "files" / "prometheus" / "exchange-rules.yaml"
PROMETHEUS_OPERATOR = ("--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
                       "--api-versions", "monitoring.coreos.com/v1/PodMonitor")  # fmt: skip
NON_DEFAULT_VALUES = {
    "watch": {"namespaces": ["team-a", "team-*"]},
    "peering": {"enabled": True},
    "replicaCount": 2,
    "logLevel": "DEBUG",
    "extraEnv": [{"name": "EXAMPLE", "value": "1"}],
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"example.org/role": "operator"}},
    "podAnnotations": {"example.org/scrape": "false"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "priorityClassName": "system-cluster-critical",
}


class Tools:
    """kubectl and helm bound to the test control plane, with Helm's state in a temp dir."""

    def __init__(self, kubectl: Path, helm: Path, kubeconfig: Path, home: Path) -> None:
        self.kubectl_bin, self.helm_bin, self.kubeconfig = kubectl, helm, kubeconfig
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "HELM": str(helm),
        }

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, input=stdin, capture_output=True, text=True, env=self.env, timeout=120, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args[:3])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.kubectl_bin), *args, stdin=stdin, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.helm_bin), *args, check=check)

    def render(
        self, release: str, namespace: str, values: dict | None = None, tmp: Path | None = None, *args: str
    ) -> str:
        extra: list[str] = list(args)
        if values:
            assert tmp is not None
            path = tmp / f"{release}-values.yaml"
            path.write_text(yaml.safe_dump(values))
            extra += ["--values", str(path)]
        return self.helm("template", release, str(CHART), "--namespace", namespace, *extra).stdout

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        self.kubectl("apply", "--server-side", "--field-manager=packaging-test", "-f", "-", stdin=json.dumps(manifest))

    def dry_run(self, manifests: str, namespace: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=packaging-test",
            "--namespace",
            namespace,
            "-f",
            "-",
            stdin=manifests,
            check=check,
        )


@pytest.fixture(scope="module")
def tools(kubectl_bin: Path, helm_bin: Path, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    tools = Tools(kubectl_bin, helm_bin, kubeconfig, tmp_path_factory.mktemp("helm-home"))
    # The CRD must exist before a pipeline can be validated; applying it is idempotent, so other
    # suites on the same control plane are unaffected.
    tools.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=packaging-test", "-f", str(CRD))
    tools.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD))
    return tools


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_helm_lint_strict_passes_with_default_and_non_default_values(tools: Tools, tmp_path: Path):
    tools.helm("lint", "--strict", str(CHART))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT_VALUES))
    tools.helm("lint", "--strict", str(CHART), "--values", str(values))


@pytest.mark.parametrize("values", [None, NON_DEFAULT_VALUES], ids=["defaults", "non-defaults"])
def test_every_rendered_object_passes_a_strict_server_side_dry_run(tools: Tools, tmp_path: Path, values):
    namespace = "pkg-render-" + ("default" if values is None else "custom")
    # warn (not enforce): Pod Security is judged on the Deployment's pod template as a warning.
    tools.namespace(namespace, {"pod-security.kubernetes.io/warn": "restricted"})
    rendered = tools.render("render", namespace, values, tmp_path)
    kinds = sorted(doc["kind"] for doc in documents(rendered))
    dashboards = ["ConfigMap"] * len(list(DASHBOARDS.glob("*.json")))
    assert kinds == ["ClusterRole", "ClusterRoleBinding", *dashboards, "Deployment", "ServiceAccount"]
    result = tools.dry_run(rendered, namespace)
    assert result.stdout.count("(server dry run)") == len(kinds)
    assert "PodSecurity" not in result.stderr, result.stderr


def test_the_dry_run_really_validates_a_broken_object_is_refused(tools: Tools):
    rendered = documents(tools.render("render", "pkg-render-default"))
    deployment = next(doc for doc in rendered if doc["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    result = tools.dry_run(yaml.safe_dump(deployment), "pkg-render-default", check=False)
    assert result.returncode != 0
    assert "livenessProbes" in result.stderr


def test_the_operator_pod_meets_the_restricted_profile_even_when_enforced(tools: Tools):
    tools.namespace("pkg-restricted", {"pod-security.kubernetes.io/enforce": "restricted"})
    deployment = next(doc for doc in documents(tools.render("r", "pkg-restricted")) if doc["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator-pod"}, "spec": template["spec"]}
    pod["spec"]["serviceAccountName"] = "default"
    result = tools.dry_run(yaml.safe_dump(pod), "pkg-restricted", check=False)
    assert "violate" not in result.stderr, result.stderr
    assert "forbidden" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_a_sample_pipeline_is_accepted_by_the_generated_crd(tools: Tools, sample: str):
    tools.namespace("pkg-samples")
    result = tools.dry_run((SAMPLES / sample).read_text(), "pkg-samples")
    assert "exchangepipeline.exchange.dev/" in result.stdout


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_what_the_operator_builds_from_a_sample_passes_a_strict_dry_run_and_the_restricted_profile(
    tools: Tools, sample: str
):
    from exchange_operator.builders import Meta, build_children
    from exchange_operator.builders.secrets import build_generated_secrets
    from exchange_operator.spec import parse_spec

    namespace = "pkg-children-" + sample.removesuffix(".yaml")
    tools.namespace(namespace, {"pod-security.kubernetes.io/warn": "restricted"})
    pipeline = yaml.safe_load((SAMPLES / sample).read_text())
    spec, meta = parse_spec(pipeline["spec"]), Meta(pipeline["metadata"]["name"], namespace)
    children = [*build_generated_secrets(spec, meta, {}), *build_children(spec, meta)]
    result = tools.dry_run(yaml.safe_dump_all(children), namespace)
    assert result.stdout.count("(server dry run)") == len(children)
    assert "PodSecurity" not in result.stderr and "violate" not in result.stderr, result.stderr


def test_a_broken_sample_is_refused_with_the_crd_rule_message(tools: Tools):
    tools.namespace("pkg-samples")
    pipeline = yaml.safe_load((SAMPLES / "production.yaml").read_text())
    del pipeline["spec"]["auth"]["issuer"]
    result = tools.dry_run(yaml.safe_dump(pipeline), "pkg-samples", check=False)
    assert result.returncode != 0
    assert "auth.mode=jwt requires" in result.stderr


RELEASE = "pkg-rbac"
RBAC_NAMESPACE = "pkg-rbac"
SERVICE_ACCOUNT = f"system:serviceaccount:{RBAC_NAMESPACE}:{RELEASE}-exchange-operator"


@pytest.fixture(scope="module")
def installed(tools: Tools) -> Iterator[Tools]:
    """The chart installed for real with `helm install` (no --wait: no controllers run Pods here)."""
    tools.helm("install", RELEASE, str(CHART), "--namespace", RBAC_NAMESPACE, "--create-namespace")
    try:
        yield tools
    finally:
        tools.helm("uninstall", RELEASE, "--namespace", RBAC_NAMESPACE, check=False)


def can_i(tools: Tools, verb: str, resource: str, namespace: str = "some-team") -> bool:
    """`resource` may name a subresource (`serviceaccounts/token`); kubectl would read the part after
    the slash as an object's name, so it goes in --subresource."""
    resource, _, subresource = resource.partition("/")
    sub = ["--subresource", subresource] if subresource else []
    result = tools.kubectl("auth", "can-i", verb, resource, *sub, "--as", SERVICE_ACCOUNT, "-n", namespace, check=False)
    return result.stdout.strip() == "yes"


def test_helm_install_creates_the_operator_objects(installed: Tools):
    names = installed.kubectl(
        "get",
        "deployment,serviceaccount",
        "-n",
        RBAC_NAMESPACE,
        "-o",
        "name",
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
    ).stdout.split()
    assert f"deployment.apps/{RELEASE}-exchange-operator" in names
    assert f"serviceaccount/{RELEASE}-exchange-operator" in names


NEEDED = [
    ("watch", "exchangepipelines.exchange.dev"),
    ("patch", "exchangepipelines.exchange.dev"),
    ("patch", "exchangepipelines.exchange.dev/status"),
    ("update", "exchangepipelines.exchange.dev/finalizers"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    *[
        (verb, kind)
        for verb in ("create", "patch", "watch", "delete")
        for kind in ("deployments.apps", "statefulsets.apps")
    ],
    ("patch", "services"),
    ("patch", "configmaps"),
    ("create", "secrets"),
    ("get", "secrets"),
    ("patch", "ingresses.networking.k8s.io"),
    ("patch", "networkpolicies.networking.k8s.io"),
    ("patch", "poddisruptionbudgets.policy"),
    ("create", "jobs.batch"),
    ("delete", "persistentvolumeclaims"),
    ("create", "events"),
    *[(verb, "serviceaccounts") for verb in ("create", "patch", "list", "delete")],  # one per service (ADR 0008)
]

FORBIDDEN = [
    ("list", "secrets"),  # read by name only: the operator holds no copy of the cluster's Secrets
    ("watch", "secrets"),
    ("delete", "secrets"),
    ("create", "exchangepipelines.exchange.dev"),
    ("delete", "exchangepipelines.exchange.dev"),
    ("create", "persistentvolumeclaims"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("get", "nodes"),
    ("delete", "namespaces"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "serviceaccounts/token"),  # the kubelet mints the services' tokens, never the operator
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "tokenreviews.authentication.k8s.io"),
    ("impersonate", "users"),
    ("*", "*"),
]


@pytest.mark.parametrize(("verb", "resource"), NEEDED, ids=lambda v: str(v))
def test_the_operator_may_do_what_it_needs(installed: Tools, verb: str, resource: str):
    assert can_i(installed, verb, resource)


@pytest.mark.parametrize(("verb", "resource"), FORBIDDEN, ids=lambda v: str(v))
def test_the_operator_may_not_do_more(installed: Tools, verb: str, resource: str):
    assert not can_i(installed, verb, resource)


POD_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "PodMonitor", "plural": "podmonitors", "singular": "podmonitor"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}
"""A stand-in for the Prometheus Operator's CRD (kubectl resolves a resource only when it is served)."""


@pytest.mark.parametrize("verb", ["get", "list", "create", "patch", "delete"])
def test_the_operator_may_manage_pod_monitors(installed: Tools, verb: str):
    installed.kubectl("apply", "--server-side", "--field-manager=packaging-test", "-f", "-",
                      stdin=json.dumps(POD_MONITOR_CRD))  # fmt: skip
    installed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com")
    assert can_i(installed, verb, "podmonitors.monitoring.coreos.com")


def test_the_plain_rbac_manifests_are_generated_from_the_chart(tools: Tools):
    result = tools.run("bash", str(REPO / "hack" / "gen-rbac"), "--check", check=False)
    assert result.returncode == 0, result.stderr


def test_the_operator_deployment_is_locked_down_and_probed(tools: Tools):
    deployment = next(doc for doc in documents(tools.render("r", "ns")) if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in container["ports"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9102"
    assert "args" not in container, "python -m exchange_operator takes its settings from the environment"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["EXCHANGE_OPERATOR_NAMESPACES"] == ""
    assert env["EXCHANGE_OPERATOR_STANDALONE"] == "true"
    assert env["EXCHANGE_OPERATOR_LIVENESS"] == "http://0.0.0.0:8080/healthz"
    assert env["EXCHANGE_OPERATOR_METRICS_PORT"] == "9102"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_dashboards_are_configmaps_grafana_loads(tools: Tools):
    maps = [doc for doc in documents(tools.render("r", "ns")) if doc["kind"] == "ConfigMap"]
    assert {name for m in maps for name in m["data"]} == {p.name for p in DASHBOARDS.glob("*.json")}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = config_map["data"].items()
        assert json.loads(text) == json.loads((DASHBOARDS / name).read_text())


def test_the_rules_and_the_operator_pod_monitor_come_only_with_the_prometheus_operator(tools: Tools):
    assert not {"PrometheusRule", "PodMonitor"} & {doc["kind"] for doc in documents(tools.render("r", "ns"))}
    rendered = documents(tools.render("r", "ns", None, None, *PROMETHEUS_OPERATOR))
    (rule,) = [doc for doc in rendered if doc["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    (monitor,) = [doc for doc in rendered if doc["kind"] == "PodMonitor"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    deployment = next(doc for doc in rendered if doc["kind"] == "Deployment")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    off = {"monitoring": {"prometheusRule": {"enabled": False}, "podMonitor": {"enabled": False}}}
    kinds = {doc["kind"] for doc in documents(tools.render("r", "ns", off, Path(tools.env["HELM_CACHE_HOME"]).parent,
                                                            *PROMETHEUS_OPERATOR))}  # fmt: skip
    assert not {"PrometheusRule", "PodMonitor"} & kinds
