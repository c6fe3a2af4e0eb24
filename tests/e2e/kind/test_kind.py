"""The real dev flow on kind: cluster, images, chart, a pipeline, and a record through the Ingress.

    make e2e        # or: pytest -m e2e tests/e2e/kind

Needs a Docker engine and kind; skipped (with that reason) where either is missing, which is the
case on the project's CI machines. Leaves the cluster running for inspection: `make kind-down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_devtools.testdata import SYNTHEA_DIR

REPO = Path(__file__).resolve().parents[3]
CACHE_BIN = Path(os.environ.get("EXCHANGE_CACHE", Path.home() / ".cache" / "exchange")) / "bin"
CONTEXT = "kind-exchange"
OPERATOR_NAMESPACE = "exchange-system"
PIPELINE = "minimal"
PATIENTS = SYNTHEA_DIR / "Patient.ndjson"


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cached = CACHE_BIN / name
    return str(cached) if cached.is_file() else None


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (_docker_answers() and _tool("kind")), reason="needs Docker and kind"),
]


def run(*args: str, timeout: int = 900, stdin: str | None = None) -> str:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def kubectl(*args: str, stdin: str | None = None, timeout: int = 900) -> str:
    return run(_tool("kubectl") or "kubectl", "--context", CONTEXT, *args, stdin=stdin, timeout=timeout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    env_kind = _tool("kind")
    assert env_kind
    os.environ.setdefault("KIND", env_kind)
    run("bash", str(REPO / "hack" / "kind-up"), timeout=1200)
    # Images: the same commands as `make images`, then loaded into the kind node.
    run("docker", "build", "--target", "services", "-t", "exchange:dev", str(REPO), timeout=1800)
    run("docker", "build", "--target", "operator", "-t", "exchange-operator:dev", str(REPO), timeout=1800)
    run(env_kind, "load", "docker-image", "--name", "exchange", "exchange:dev", "exchange-operator:dev", timeout=600)
    yield


@pytest.fixture(scope="module")
def pipeline(cluster: None, helm_bin: Path) -> Iterator[str]:
    run(
        str(helm_bin),
        "upgrade",
        "--install",
        "exchange-operator",
        str(REPO / "charts" / "exchange-operator"),
        "--kube-context",
        CONTEXT,
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        "image.tag=dev",
        "--wait",
        "--timeout",
        "5m",
    )
    kubectl("apply", "-f", str(REPO / "manifests" / "samples" / f"{PIPELINE}.yaml"))
    try:
        kubectl(
            "wait",
            f"exchangepipeline/{PIPELINE}",
            "--for=jsonpath={.status.phase}=Ready",
            "--timeout=900s",
            timeout=960,
        )
        yield PIPELINE
    finally:
        subprocess.run(
            [
                _tool("kubectl") or "kubectl",
                "--context",
                CONTEXT,
                "get",
                "xpl,deploy,sts,job,ingress,pods",
                "-o",
                "wide",
            ],
            check=False,
        )


def test_the_operator_rolled_out_with_its_restricted_pod(cluster: None, pipeline: str):
    deployment = json.loads(kubectl("-n", OPERATOR_NAMESPACE, "get", "deployment", "exchange-operator", "-o", "json"))
    assert deployment["status"].get("readyReplicas") == 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_pipeline_reports_ready_with_an_ingest_endpoint(pipeline: str):
    status = json.loads(kubectl("get", "xpl", pipeline, "-o", "json"))["status"]
    assert status["phase"] == "Ready"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["endpoints"]["ingest"]


def test_a_record_posted_through_the_ingress_is_accepted(pipeline: str):
    patient = PATIENTS.read_text().splitlines()[0] if PATIENTS.is_file() else json.dumps({"resourceType": "Patient"})
    request = urllib.request.Request(
        "http://localhost/v1/ingest",
        data=patient.encode(),
        method="POST",
        headers={"Authorization": "Bearer dev", "Content-Type": "application/fhir+json", "Idempotency-Key": "e2e-1"},
    )
    deadline = time.monotonic() + 120
    while True:  # the Ingress may take a few seconds to be programmed into nginx
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 202, response.read()[:500]
                body = json.loads(response.read())
                assert body["record_id"]
                return
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 502, 503) or time.monotonic() > deadline:
                pytest.fail(f"POST /v1/ingest -> {exc.code}: {exc.read()[:500]!r}")
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
        time.sleep(3)
