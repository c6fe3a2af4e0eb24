"""The platform benchmark behind `hack/bench/platform` (see that script for usage).

Start of the local sample, measured from `kubectl apply` (the clock starts when kubectl returns):

- cold: a fresh namespace, nothing of the pipeline exists (images loaded, volumes provisioned now);
- warm: the same pipeline deleted and applied again in its namespace; `Retain` kept its volumes
  and Secrets, so Postgres skips initdb, topics and bucket exist and the Jobs find nothing to do.

Milestones: every Pod Ready (Jobs' Pods Succeeded), the pipeline's own `Ready` condition, and the
first record queryable through the ingress (a FHIR Patient POSTed until 202, then GraphQL until it
answers). Then throughput through the ingress on the last (warm) pipeline, and the same load on
`make dev` (its own state dir, the cluster pipeline deleted first), with the client code of
hack/bench/ingest: the ratio is the cost of the cluster path. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import yaml

from bench.ingest_bench import MAX_RATE, bulk, closed_loop, prepared, run_load
from exchange_devtools import kube_operator, kube_stack
from exchange_devtools.engines.base import REPO_ROOT, port_open
from exchange_devtools.fixtures.kube_node import KubeNode, devtools
from exchange_devtools.testdata import SYNTHEA_DIR

SAMPLE = REPO_ROOT / "manifests" / "samples" / "local.yaml"
PIPELINE = "local"
AUTHORIZATION = "Bearer dev"
PODS = 10
"""Pods of the local sample: 5 services, 3 engines, 2 Jobs."""
NOT_ROUTED = (404, 502, 503, 504)
"""The ingress controller's answers before the pipeline's route and endpoints exist."""
DEV_PORTS = (8080, 8081, 8082)


def local_pipeline(host: str) -> dict[str, Any]:
    """manifests/samples/local.yaml with its routes bound to `host` (other pipelines on the node
    route other hosts)."""
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["ingress"]["ingest"]["host"] = doc["spec"]["ingress"]["query"]["host"] = host
    return dict(doc)


def all_pods_ready(items: list[dict[str, Any]]) -> bool:
    """Every Pod of the pipeline Ready, a Job's Pod Succeeded; none of an earlier pipeline left."""
    pods = [i for i in items if i["kind"] == "Pod"]
    if len(pods) != PODS:
        return False
    for pod in pods:
        st = pod.get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
        if pod["metadata"].get("deletionTimestamp") or not (ready or st.get("phase") == "Succeeded"):
            return False
    return True


def says_ready(items: list[dict[str, Any]]) -> bool:
    for obj in items:
        if obj["kind"] == "ExchangePipeline":
            conditions = (obj.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return False


class FirstRecord:
    """One FHIR Patient POSTed through the ingress until 202 (same Idempotency-Key), then GraphQL
    asked for it until it answers."""

    def __init__(self, ingress_url: str, host: str) -> None:
        self.client = httpx.Client(
            base_url=ingress_url, timeout=5, headers={"Host": host, "Authorization": AUTHORIZATION}
        )
        patient = json.loads((SYNTHEA_DIR / "Patient.ndjson").read_bytes().splitlines()[0])
        # a body of its own: the same body sent again lands on the first one's canonical record
        patient["id"] = f"{patient['id']}-{uuid.uuid4().hex[:8]}"
        self.body = json.dumps(patient).encode()
        self.key = uuid.uuid4().hex
        self.record_id: str | None = None

    def queryable(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            if self.record_id is None:
                headers = {"Content-Type": "application/fhir+json", "Idempotency-Key": self.key}
                answer = self.client.post("/v1/ingest", content=self.body, headers=headers)
                if answer.status_code == 202:
                    self.record_id = answer.json()["record_id"]
                elif answer.status_code not in NOT_ROUTED:
                    sys.exit(f"ingest answered {answer.status_code}: {answer.text[:300]}")
                return False
            query = {"query": "query($id: ID!) { record(id: $id) { id } }", "variables": {"id": self.record_id}}
            answer = self.client.post("/graphql", json=query)
            if answer.status_code == 200:
                return bool((answer.json().get("data") or {}).get("record"))
        return False


@dataclass(frozen=True)
class Start:
    """Seconds from `kubectl apply` of the sample to each milestone."""

    pods: float
    status: float
    record: float
    slowest: str
    """The components ready last, e.g. `kafka 28 s, relay 27 s, ingest 25 s`."""


def start(node: KubeNode, namespace: str, host: str, timeout: float = 300) -> Start:
    """Apply the sample and time its milestones."""
    node.apply(namespace, local_pipeline(host))
    started = time.monotonic()
    first = FirstRecord(node.ingress_url, host)
    marks: dict[str, float] = {}
    while len(marks) < 3:
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            sys.exit(f"{namespace}: not started after {timeout:.0f} s: {marks}\n{node.dump(namespace)[-3000:]}")
        if "pods" not in marks or "status" not in marks:
            items = json.loads(node.kubectl("-n", namespace, "get", "pods,xpl", "-o", "json"))["items"]
            if "pods" not in marks and all_pods_ready(items):
                marks["pods"] = elapsed
            if "status" not in marks and says_ready(items):
                marks["status"] = elapsed
        if "record" not in marks and first.queryable():
            marks["record"] = time.monotonic() - started
        time.sleep(0.1)
    first.client.close()
    applied_at = time.time() - (time.monotonic() - started)
    return Start(marks["pods"], marks["status"], marks["record"], slowest(node, namespace, applied_at))


def slowest(node: KubeNode, namespace: str, applied_at: float, top: int = 3) -> str:
    """The components whose Pods were Ready (a Job's: finished) last, seconds after the apply."""
    ready: dict[str, float] = {}
    for pod in json.loads(node.kubectl("-n", namespace, "get", "pods", "-o", "json"))["items"]:
        st = pod.get("status") or {}
        stamps = [c["lastTransitionTime"] for c in st.get("conditions") or [] if c["type"] == "Ready"]
        finished = [
            c["state"]["terminated"]["finishedAt"]
            for c in st.get("containerStatuses") or []
            if "terminated" in (c.get("state") or {})
        ]
        stamp = (finished or stamps or [None])[0]
        if stamp:
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            ready[pod["metadata"]["labels"].get("app.kubernetes.io/name", "?")] = at - applied_at
    order = sorted(ready.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in order)


def delete_pipeline(node: KubeNode, namespace: str) -> None:
    """Delete the pipeline and wait until its Pods are gone (its volumes stay: Retain)."""
    node.kubectl("-n", namespace, "delete", f"xpl/{PIPELINE}", "--wait=true", "--timeout=300s", timeout=310)
    node.kubectl("-n", namespace, "wait", "pods", "--all", "--for=delete", "--timeout=300s", timeout=310)


def delete_namespace(node: KubeNode, namespace: str) -> None:
    node.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=600s", timeout=610)


def throughput(port: int, host: str, args: argparse.Namespace) -> dict[str, float]:
    """Single-record req/s with `clients` connections (after a warm-up) and bulk records/s, with
    hack/bench/ingest's client: raw HTTP/1.1 over keep-alive connections, requests built first."""
    run_load(
        closed_loop(port, args.clients, args.warmup, prepared(int(MAX_RATE * args.warmup), port, AUTHORIZATION, host))
    )
    single = run_load(
        closed_loop(port, args.clients, args.seconds, prepared(int(MAX_RATE * args.seconds), port, AUTHORIZATION, host))
    )
    bulked = asyncio.run(bulk(port, args.bulk_lines, args.bulk_rounds, AUTHORIZATION, host=host))
    return {**single, "bulk": bulked["records_per_s"]}


def make_dev_throughput(args: argparse.Namespace) -> dict[str, float]:
    """`make dev` in a state dir of its own (so no one's `.dev` is touched), measured, stopped."""
    busy = [p for p in DEV_PORTS if port_open(p)]
    if busy:
        sys.exit(f"ports {busy} are in use (a `make dev` running?): stop it, then run the benchmark again")
    with tempfile.TemporaryDirectory(prefix="bench-platform-dev-") as state:
        env = {**os.environ, "EXCHANGE_DEV_DIR": state}
        python = [sys.executable, "-m", "exchange_devtools"]
        up = subprocess.run([*python, "dev-up"], env=env, capture_output=True, text=True, check=False)
        try:
            if up.returncode != 0:
                sys.exit(f"make dev failed: {(up.stderr or up.stdout)[-1500:]}")
            return throughput(DEV_PORTS[0], f"127.0.0.1:{DEV_PORTS[0]}", args)
        finally:
            subprocess.run([*python, "dev-down"], env=env, capture_output=True, check=False)


def prepare() -> KubeNode:
    """The running node, `make images` (cached) and the operator from the chart."""
    state = kube_stack._read_state()
    if not kube_stack._healthy(state):
        sys.exit("the local node is not running: make kube-up")
    images = devtools("images")
    if images.returncode != 0:
        sys.exit(f"make images failed: {images.stderr[-1500:]}")
    kube_operator.install()
    return KubeNode(kube_stack.KUBECONFIG, str(state["ingress_url"]))


def other_pipelines(node: KubeNode, mine: str) -> int:
    found = node.kubectl("get", "xpl", "-A", "-o", "jsonpath={.items[*].metadata.namespace}").split()
    return len([ns for ns in found if ns != mine])


def row(label: str, runs: list[Start]) -> str:
    def cell(key: str) -> str:
        values = [float(getattr(r, key)) for r in runs]
        if len(values) == 1:
            return f"{values[0]:9.1f} s"
        return f"{statistics.median(values):6.1f} s ({min(values):.1f}-{max(values):.1f})"

    return f"  {label:<38} {cell('pods'):>22} {cell('status'):>22} {cell('record'):>22}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="cold and warm starts each (default 2)")
    parser.add_argument("--seconds", type=float, default=10, help="measured single-record window")
    parser.add_argument("--warmup", type=float, default=20, help="single-record load before measuring")
    parser.add_argument("--clients", type=int, default=32, help="concurrent single-record connections")
    parser.add_argument("--bulk-lines", type=int, default=5000)
    parser.add_argument("--bulk-rounds", type=int, default=4)
    parser.add_argument("--skip-dev", action="store_true", help="no `make dev` baseline")
    args = parser.parse_args()

    node = prepare()
    cold: list[Start] = []
    warm: list[Start] = []
    namespace = ""
    noise: set[int] = set()
    try:
        for round_ in range(args.rounds):
            if namespace:
                delete_namespace(node, namespace)
            namespace = f"e2e-bench-{uuid.uuid4().hex[:6]}"
            host = f"{namespace}.bench.test"
            node.kubectl("create", "namespace", namespace)
            noise.add(other_pipelines(node, namespace))
            cold.append(start(node, namespace, host))
            print(f"round {round_ + 1} cold: {cold[-1]}", flush=True)
            delete_pipeline(node, namespace)
            warm.append(start(node, namespace, host))
            print(f"round {round_ + 1} warm: {warm[-1]}", flush=True)
        noise.add(other_pipelines(node, namespace))
        cluster = throughput(int(node.ingress_url.rsplit(":", 1)[1]), host, args)
        print(f"through the ingress: {cluster}", flush=True)
    finally:
        if namespace:
            delete_namespace(node, namespace)
    dev = None if args.skip_dev else make_dev_throughput(args)
    if dev:
        print(f"make dev: {dev}", flush=True)

    print(
        f"\nplatform benchmark ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; other pipelines"
        f" on the node during the run: {'-'.join(str(n) for n in sorted({min(noise), max(noise)}))})"
    )
    milestones = ("every Pod Ready", "pipeline Ready", "first record queried")
    print(f"  {'start of the local sample, from kubectl apply':<38} " + " ".join(f"{m:>22}" for m in milestones))
    print(row(f"cold: fresh namespace ({args.rounds} rounds)", cold))
    print(row("warm: re-applied, volumes kept", warm))
    for label, runs in (("cold", cold), ("warm", warm)):
        print(f"    ready last, {label}: " + "; ".join(r.slowest for r in runs))
    load = f"ingest, {args.clients} clients, {args.seconds:.0f} s"
    print(f"\n  {load:<34} {'through the ingress':>20} {'make dev':>12} {'ratio':>8}")
    lines = (
        ("single req/s", "rps", "{:.0f}"),
        ("single p50 ms", "p50", "{:.1f}"),
        ("single p99 ms", "p99", "{:.1f}"),
        ("non-202 answers", "errors", "{:.0f}"),
        (f"bulk records/s ({args.bulk_lines} lines)", "bulk", "{:.0f}"),
    )
    for label, key, fmt in lines:
        there = fmt.format(cluster[key])
        here = fmt.format(dev[key]) if dev else "-"
        ratio = f"{cluster[key] / dev[key]:.2f}" if dev and dev[key] else "-"
        print(f"  {label:<34} {there:>20} {here:>12} {ratio:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
