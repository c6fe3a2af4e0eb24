"""`make kube-operator`: install or upgrade the operator in-cluster from `charts/exchange-operator`,
with the operator image `make images` loaded into the local node.

The release is `exchange-operator` in namespace `exchange-system`. The pod template carries the
image's digest, so a rebuilt `localhost/exchange-operator:dev` rolls the Deployment although its
tag did not change. Waits until the operator is Ready.

Helm installs a chart's `crds/` on the first install only and never upgrades them, so the CRD is
applied first (server-side) on every run: a node kept across changes of the spec gets the new schema.
"""

from __future__ import annotations

import argparse
import subprocess

from exchange_devtools.engines.base import BIN_DIR, REPO_ROOT, EngineError, require_binary
from exchange_devtools.kube_stack import KUBECONFIG, PATHS, _healthy, _read_state

CHART = REPO_ROOT / "charts" / "exchange-operator"
RELEASE = "exchange-operator"
NAMESPACE = "exchange-system"
IMAGE_REPOSITORY = "localhost/exchange-operator"
IMAGE_TAG = "dev"
HELM_BIN = BIN_DIR / "helm"
KUBECTL_BIN = BIN_DIR / "kubectl"


def crd_apply_args() -> list[str]:
    """`kubectl apply` of the chart's CRDs, server-side (the CRD exceeds client-side apply's
    annotation limit), taking the fields over from an earlier Helm install."""
    return [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=exchange-devtools",
        "-f",
        str(CHART / "crds"),
    ]


def helm_args(digest: str, namespace: str = NAMESPACE) -> list[str]:
    """`helm upgrade --install` of the chart with the local image (pure: tests read it)."""
    return [
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        f"--namespace={namespace}",
        "--create-namespace",
        f"--set=image.repository={IMAGE_REPOSITORY}",
        f"--set=image.tag={IMAGE_TAG}",
        "--set=image.pullPolicy=IfNotPresent",
        f"--set-string=podAnnotations.exchange\\.dev/image-digest={digest}",
        "--wait",
        "--timeout=300s",
    ]


def install(namespace: str = NAMESPACE) -> str:
    """Install or upgrade the release; helm's output."""
    from exchange_devtools.images import containerd_images

    require_binary(HELM_BIN, "helm.sh")
    require_binary(KUBECTL_BIN, "kube.sh")
    if not _healthy(_read_state()):
        raise EngineError("the local node is not running: run `make kube-up` first")
    digest = containerd_images(PATHS.containerd_socket).get(f"{IMAGE_REPOSITORY}:{IMAGE_TAG}")
    if digest is None:
        raise EngineError(f"{IMAGE_REPOSITORY}:{IMAGE_TAG} is not loaded: run `make images` first")
    crds = subprocess.run(
        [str(KUBECTL_BIN), f"--kubeconfig={KUBECONFIG}", *crd_apply_args()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if crds.returncode != 0:
        raise EngineError(f"kubectl apply of the chart's CRDs: {(crds.stderr or crds.stdout).strip()[-400:]}")
    out = subprocess.run(
        [str(HELM_BIN), f"--kubeconfig={KUBECONFIG}", *helm_args(digest, namespace)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    if out.returncode != 0:
        raise EngineError(f"helm upgrade --install {RELEASE}: {(out.stderr or out.stdout).strip()[-400:]}")
    return out.stdout


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exchange_devtools kube-operator",
        description="Install or upgrade the operator on the local node from charts/exchange-operator.",
    )
    parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args(argv)
    install(args.namespace)
    print(
        f"operator running in namespace {args.namespace} (helm release {RELEASE}, image {IMAGE_REPOSITORY}:{IMAGE_TAG})"
    )
    return 0
