"""The whole platform on the local node: the operator installed from its Helm chart runs the local
sample pipeline; records go in and come out through the ingress; deleting the pipeline leaves only
what its volume-claim policy keeps. And a pipeline that cannot run says so in its status.

Each test gets its own namespace (`e2e-…`), and its Ingress routes a host of that namespace only
(`<namespace>.e2e.test`), so pipelines of other tests on the node never answer in its place.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exchange_devtools import kube_operator
from exchange_devtools.engines.base import REPO_ROOT
from exchange_devtools.fixtures.kube_node import KubeNode, eventually
from exchange_devtools.testdata import SYNTHEA_DIR
from exchange_operator.builders.common import ENGINE_CLIENT_LABEL, PIPELINE_LABEL, instance_selector
from exchange_operator.builders.common import Meta as PipelineMeta

NAMESPACE_PREFIX = "e2e"
SAMPLE = REPO_ROOT / "manifests" / "samples" / "local.yaml"
PIPELINE = "local"
COMPONENTS = ("ingest", "relay", "tokenizer", "normalizer", "query", "postgres", "kafka", "s3", "migrate", "bootstrap")
CHILD_KINDS = (
    "deployments,statefulsets,services,configmaps,secrets,jobs,ingresses,networkpolicies,"
    "poddisruptionbudgets,serviceaccounts,pods,persistentvolumeclaims"
)
ROUTING = (502, 503, 504)
"""Answers of the ingress controller itself while a route has no endpoint yet."""
STATUS_LAG_SECONDS = 10
"""How long after its last Pod turns ready the pipeline may take to say Ready (the resync is 60 s)."""

pytestmark = [pytest.mark.usefixtures("node_images"), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def operator(node_images: None) -> str:
    """The operator from charts/exchange-operator, in-cluster (what `make kube-operator` does)."""
    return kube_operator.install()


def local_pipeline(host: str, **spec: Any) -> dict[str, Any]:
    """manifests/samples/local.yaml with its two routes bound to `host`, and `spec` merged in."""
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["ingress"]["ingest"]["host"] = host
    doc["spec"]["ingress"]["query"]["host"] = host
    for key, value in spec.items():
        doc["spec"][key] = value if not isinstance(value, dict) else {**doc["spec"].get(key, {}), **value}
    return doc


@dataclass
class Platform:
    """One pipeline on the node, reached through the ingress controller with its own Host."""

    node: KubeNode
    namespace: str
    host: str

    def kubectl(self, *args: str, **kwargs: Any) -> str:
        return self.node.kubectl("-n", self.namespace, *args, **kwargs)

    def get(self, resource: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", resource, "-o", "json")))

    def post(self, path: str, body: bytes, content_type: str, key: str | None = None) -> httpx.Response:
        headers = {
            "Host": self.host,
            "Authorization": "Bearer dev",
            "Content-Type": content_type,
            "Idempotency-Key": key or uuid.uuid4().hex,
        }
        return httpx.post(f"{self.node.ingress_url}{path}", content=body, headers=headers, timeout=120)

    def ingest(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        """POST to ingest as a partner does: sent again with the same Idempotency-Key while the
        ingress has no route, or when the answer did not arrive whole (the replay is the same)."""
        key = uuid.uuid4().hex
        failures: list[str] = []

        def attempt() -> httpx.Response | None:
            try:
                response = self.post(path, body, content_type, key)
            except httpx.TransportError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return None
            return None if response.status_code in ROUTING else response

        response = eventually(attempt, timeout=30, what=f"an answer from {path}")
        assert len(failures) <= 1, f"{path}: answers broken in transit: {failures}"
        return response

    def graphql(self, query: str, **variables: Any) -> dict[str, Any] | None:
        """The answer's data; None while the ingress controller has no endpoint for the route yet
        (it polls the API server every few seconds: 502 `no endpoints` right after Ready)."""
        response = self.post(
            "/graphql", json.dumps({"query": query, "variables": variables}).encode(), "application/json"
        )
        if response.status_code in ROUTING:
            return None
        assert response.status_code == 200, response.text
        answer = response.json()
        assert not answer.get("errors"), answer
        return dict(answer["data"])

    def records_counted(self) -> int:
        """Canonical records of the `dev` tenant received in the last day, counted by query."""
        now = datetime.now(UTC)
        data = self.graphql(
            "query($since: DateTime!, $until: DateTime!) {"
            " recordCounts(bucket: DAY, since: $since, until: $until) { count } }",
            since=(now - timedelta(days=1)).isoformat(),
            until=(now + timedelta(days=1)).isoformat(),
        )
        return sum(bucket["count"] for bucket in data["recordCounts"]) if data else 0

    def children(self, selector: str) -> list[str]:
        """`kind/name` of every object left in the namespace that carries `selector`."""
        return self.kubectl("get", CHILD_KINDS, "-l", selector, "-o", "name").split()


@pytest.fixture
def platform(kube_node: KubeNode, kube_namespace: str, operator: str) -> Iterator[Platform]:
    yield Platform(kube_node, kube_namespace, f"{kube_namespace}.e2e.test")


def wait_until_ready(platform: Platform, timeout: int = 300) -> dict[str, Any]:
    platform.kubectl("wait", f"xpl/{PIPELINE}", "--for=condition=Ready", f"--timeout={timeout}s", timeout=timeout + 10)
    return platform.get(f"xpl/{PIPELINE}")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def verify_job(normalizer: dict[str, Any]) -> dict[str, Any]:
    """`exchange verify` as a Job with the normalizer's own settings (its ConfigMap, database role
    and S3 credentials, read from its Deployment), allowed to reach the engines like a service."""
    template = normalizer["spec"]["template"]["spec"]
    (container,) = template["containers"]
    env = [e for e in container["env"] if e["name"] != "TOKENIZER_TOKEN_FILE"]  # verify never calls it
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "verify"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {PIPELINE_LABEL: PIPELINE, ENGINE_CLIENT_LABEL: "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": template["securityContext"],
                    "containers": [
                        {
                            "name": "verify",
                            "image": container["image"],
                            "imagePullPolicy": container["imagePullPolicy"],
                            "command": ["exchange", "verify"],
                            "envFrom": container["envFrom"],
                            "env": env,
                            "securityContext": container["securityContext"],
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def run_verify(platform: Platform) -> str:
    """Run `exchange verify` in the namespace; its output, or AssertionError with it when it failed."""
    platform.node.apply(platform.namespace, verify_job(platform.get(f"deployment/{PIPELINE}-normalizer")))

    def finished() -> str | None:
        state = platform.kubectl("get", "job/verify", "-o", "jsonpath={.status.succeeded}/{.status.failed}")
        return None if state == "/" else state

    state = eventually(finished, timeout=120, what="the verify Job to finish")
    output = platform.kubectl("logs", "job/verify")
    assert state == "1/", f"exchange verify failed:\n{output}"
    return output


def scrape(platform: Platform, pod: str, port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Pod's /metrics through the API server's proxy: (name without `_total`, labels but datid) -> value
    (the parser adds `_total` to a counter named without it, as Postgres's are)."""
    path = f"/api/v1/namespaces/{platform.namespace}/pods/{pod}:{port}/proxy/metrics"
    text = platform.kubectl("get", "--raw", path)
    return {
        (sample.name.removesuffix("_total"), tuple(sorted((k, v) for k, v in sample.labels.items() if k != "datid"))): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def synthea_files() -> list[Path]:
    return sorted(SYNTHEA_DIR.glob("*.ndjson"))


def test_the_local_sample_runs_end_to_end_through_the_ingress_and_goes_away_with_its_pipeline(
    platform: Platform,
) -> None:
    # Applied in a fresh namespace, the sample becomes a pipeline whose status says Ready with its
    # counts once its Jobs completed and every workload is ready, and says it when the last Pod is.
    platform.node.apply(platform.namespace, local_pipeline(platform.host))
    pipeline = wait_until_ready(platform)
    assert pipeline["status"]["phase"] == "Ready"
    assert pipeline["status"]["components"] == {c: {"ready": 1, "desired": 1} for c in COMPONENTS}
    jobs = platform.get("jobs")["items"]
    assert sorted(j["metadata"]["labels"]["app.kubernetes.io/name"] for j in jobs) == ["bootstrap", "migrate"]
    assert all(j["status"].get("succeeded") == 1 for j in jobs)
    for kind in ("deployments", "statefulsets"):
        for workload in platform.get(kind)["items"]:
            name, st = workload["metadata"]["name"], workload["status"]
            assert st.get("readyReplicas") == workload["spec"]["replicas"] == 1, f"{kind}/{name} is not ready"
    restarted = [
        f"{pod['metadata']['name']}/{c['name']}: {c.get('lastState', {}).get('terminated', {}).get('reason')}"
        for pod in platform.get("pods")["items"]
        for c in pod["status"].get("containerStatuses", [])
        if c["restartCount"]
    ]
    assert restarted == [], "a cold start crashed containers (each should wait for its engines)"
    last_pod_ready = max(
        when(c["lastTransitionTime"])
        for pod in platform.get("pods")["items"]
        for c in pod["status"].get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    )
    said_ready = when(condition(pipeline, "Ready")["lastTransitionTime"])
    assert said_ready - last_pod_ready < timedelta(seconds=STATUS_LAG_SECONDS)

    # One FHIR Patient through the ingress is accepted, and GraphQL through the same ingress serves
    # the record within 30 seconds.
    patient = (SYNTHEA_DIR / "Patient.ndjson").read_bytes().splitlines()[0]
    accepted = platform.ingest("/v1/ingest", patient, "application/fhir+json")
    assert accepted.status_code == 202, accepted.text
    record_id = accepted.json()["record_id"]

    def found() -> dict[str, Any] | None:
        data = platform.graphql("query($id: ID!) { record(id: $id) { id recordType } }", id=record_id)
        return data["record"] if data else None

    record = eventually(found, timeout=30, what="the record to be queryable")
    assert record == {"id": record_id, "recordType": "Patient"}

    # The whole Synthea sample as bulk NDJSON, one request per file: every line accepted, every
    # line normalized, and `exchange verify` (a Job in the namespace) finds nothing missing.
    lines = 0
    for path in synthea_files():
        body = path.read_bytes()
        response = platform.ingest("/v1/ingest/bulk", body, "application/fhir+ndjson")
        assert response.status_code == 202, f"{path.name}: {response.text[:300]}"
        answer = response.json()
        file_lines = sum(1 for line in body.splitlines() if line.strip())
        assert answer["accepted"] == file_lines, f"{path.name}: {answer['accepted']} of {file_lines} accepted"
        lines += file_lines
    expected = 1 + lines
    eventually(lambda: platform.records_counted() >= expected, timeout=180, what=f"{expected} normalized records")
    assert platform.records_counted() == expected
    report = run_verify(platform)
    assert f"raw objects: {1 + len(synthea_files())}, canonical records: {expected}" in report
    assert "raw objects without canonical records: 0" in report
    assert "canonical records whose raw object is missing: 0" in report

    # The engines serve Prometheus metrics where the operator declared them (read through the API
    # server's Pod proxy): Postgres through its postgres_exporter sidecar, Kafka through the image's
    # JMX exporter agent, both counting the records just written.
    postgres = scrape(platform, f"{PIPELINE}-postgres-0", 9187)
    assert postgres[("pg_up", ())] == 1
    assert postgres[("pg_stat_database_xact_commit", (("datname", "exchange"),))] > 0
    kafka = scrape(platform, f"{PIPELINE}-kafka-0", 9308)
    assert kafka[("kafka_server_brokertopicmetrics_messagesin", (("topic", "record.ingested.v1"),))] >= expected
    annotations = platform.get(f"pod/{PIPELINE}-postgres-0")["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9187"

    # Deleting the pipeline: garbage collection takes every child; the sample's policy (Retain, the
    # default) keeps the engines' volume claims and the generated Secrets that open them, unowned.
    assert yaml.safe_load(SAMPLE.read_text())["spec"].get("volumeClaimDeletionPolicy", "Retain") == "Retain"
    platform.kubectl("delete", f"xpl/{PIPELINE}", "--wait=true", "--timeout=120s", timeout=130)
    selector = instance_selector(PipelineMeta(PIPELINE, platform.namespace))

    def only_kept() -> list[str] | None:
        left = platform.children(selector)
        kept = [o for o in left if o.startswith(("persistentvolumeclaim/", "secret/"))]
        return left if left == kept else None

    left = eventually(only_kept, timeout=120, what="garbage collection of the pipeline's children")
    assert sorted(o.split("/")[0] for o in left) == ["persistentvolumeclaim"] * 3 + ["secret"] * 4
    secrets = json.loads(platform.kubectl("get", "secrets", "-l", selector, "-o", "json"))["items"]
    assert [s["metadata"].get("ownerReferences") for s in secrets] == [None] * 4


def test_a_pipeline_whose_ingest_image_does_not_exist_is_degraded_naming_ingest_and_the_reason(
    platform: Platform,
) -> None:
    broken = local_pipeline(platform.host, image={"pullPolicy": "Never"}, volumeClaimDeletionPolicy="Delete")
    broken["spec"]["components"]["ingest"]["image"] = "localhost/none:missing"
    platform.node.apply(platform.namespace, broken)
    platform.kubectl(
        "wait", f"xpl/{PIPELINE}", "--for=jsonpath={.status.phase}=Degraded", "--timeout=180s", timeout=190
    )
    pipeline = platform.get(f"xpl/{PIPELINE}")
    degraded = condition(pipeline, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ErrImageNeverPull")
    assert pipeline["status"]["message"].startswith(f"ingest pod/{PIPELINE}-ingest-")
    assert "localhost/none:missing" in pipeline["status"]["message"]
    assert condition(pipeline, "Ready")["status"] == "False"

    # The Delete policy takes the engines' volume claims with the pipeline.
    eventually(lambda: len(platform.kubectl("get", "pvc", "-o", "name").split()) == 3, timeout=120, what="the 3 claims")
    platform.kubectl("delete", f"xpl/{PIPELINE}", "--wait=true", "--timeout=120s", timeout=130)
    eventually(
        lambda: platform.kubectl("get", "pvc,pods", "-o", "name") == "", timeout=120, what="claims and pods to go"
    )
