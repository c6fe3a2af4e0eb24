"""Faults survived on the local node: one pipeline under a bounded load of real records while its
pods are deleted and killed, the normalizer is scaled and the operator restarts mid-reconcile.

`hack/chaos` prints the fault table; `tests/integration/kube/test_chaos.py` asserts it for a subset.
Both call `run_faults`. One run works in a namespace of its own (`chaos-*`, deleted after) on ONE
pipeline, `manifests/samples/local.yaml` with its Ingress bound to a host of its own.

The load is a partner (`exchange_devtools.partner`): Synthea FHIR records, one a request, each with
its own Idempotency-Key, at a fixed rate through the ingress; every 5xx, connection error or timeout
(and a 409 `idempotency-key-in-flight` after its Retry-After) is retried with the same key and
backoff. Per fault the load starts, the fault is injected after a third of the records were sent,
and the load goes on until the minimum count is sent and the pipeline has recovered. Then, for the
fault's records, what must hold:

- lost = 0: every record that got a 202 is normalized, i.e. `record(id)` answers over GraphQL
  through the ingress (and `canonical.records` holds its id);
- duplicates = 0: no logical record (the SHA-256 of its body) is registered twice by ingest,
  stored twice in `canonical.records`, announced twice on `record.normalized.v1` (the normalizer's
  outbox), or owns two rows of one canonical table;
- every 5xx the partner saw was retryable (the services' own: 502/503/504; the ingress's own
  answer when a backend died mid-request is 500) and its record ended in a 202 under the same
  key; no record was refused for good;
- the pipeline is whole again (every Deployment and StatefulSet Ready), plus the fault's own check.

Recovery seconds: from the injection until the first record first sent after the fault took effect
(the pod is gone, the process is dead, the scale is back to 1, the old operator is gone) is
normalized, by the normalizer's own clock (`normalizedAt`, the node is this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exchange_devtools.engines.base import REPO_ROOT, EngineError
from exchange_devtools.engines.kube_node import CRICTL_BIN
from exchange_devtools.fixtures.kube_node import KubeNode
from exchange_devtools.partner import Delivery, Partner, Records

SAMPLE = REPO_ROOT / "manifests" / "samples" / "local.yaml"
PIPELINE = "local"
OPERATOR_NAMESPACE = "exchange-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=exchange-operator"
CANONICAL_TABLES = (
    "patients", "encounters", "conditions", "observations", "immunizations", "allergy_intolerances", "procedures",
)  # fmt: skip
RETRYABLE_5XX = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Load:
    """How much each fault row sends."""

    records: int = 100
    """Records sent at least per fault (more while the pipeline has not recovered)."""
    rate: float = 10.0
    """Records a second, each its own request."""
    max_seconds: float = 240.0
    """Longest a row's load runs waiting for recovery."""
    settle_seconds: float = 240.0
    """Longest wait, after the load, for every accepted record to be normalized."""


@dataclass
class Target:
    """One pipeline of the local node and the kubectl work the faults need."""

    node: KubeNode
    namespace: str
    host: str
    name: str = PIPELINE

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120.0, check: bool = True) -> str:
        return self.node.kubectl("-n", self.namespace, *args, input=input, timeout=timeout, check=check)

    def selector(self, component: str) -> str:
        return f"app.kubernetes.io/name={component},app.kubernetes.io/instance={self.name}"

    def pods(self, selector: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Pods matching `selector` that are not terminating."""
        out = self.node.kubectl("-n", namespace or self.namespace, "get", "pods", "-l", selector, "-o", "json")
        return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]

    def running_pod(self, selector: str, namespace: str | None = None) -> dict[str, Any]:
        """The one Running pod of `selector` (a fault targets exactly one)."""
        running = [p for p in self.pods(selector, namespace) if p["status"].get("phase") == "Running"]
        if len(running) != 1:
            raise ChaosError(f"expected one running pod for {selector}, found {len(running)}")
        return running[0]

    def delete_pod(self, selector: str, namespace: str | None = None) -> None:
        """Delete the pod (SIGTERM, its grace period) and return once it is gone."""
        pod = self.running_pod(selector, namespace)["metadata"]["name"]
        self.node.kubectl("-n", namespace or self.namespace, "delete", "pod", pod, "--wait=true", timeout=180)

    def kill_main(self, selector: str) -> None:
        """SIGKILL the main process of the pod's first container, from the host (a process cannot
        SIGKILL its own PID namespace's init from inside)."""
        pod = self.running_pod(selector)
        container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
        pid = container_pid(container_id)
        os.kill(pid, signal.SIGKILL)

    def patch(self, spec: dict[str, Any]) -> None:
        self.kubectl("patch", "xpl", self.name, "--type=merge", "-p", json.dumps({"spec": spec}))

    def workloads_ready(self) -> list[str]:
        """What is not Ready yet: Deployments and StatefulSets short of their replicas, terminating pods."""
        selector = f"exchange.dev/pipeline={self.name}"
        items = json.loads(self.kubectl("get", "deployments,statefulsets", "-l", selector, "-o", "json"))["items"]
        waiting = []
        for obj in items:
            want, status = obj["spec"].get("replicas", 1), obj.get("status", {})
            got = [status.get(k, 0) for k in ("readyReplicas", "updatedReplicas", "replicas")]
            if got != [want] * 3:
                waiting.append(f"{obj['kind']}/{obj['metadata']['name']} {got[0]}/{want}")
        pods = json.loads(self.kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]
        waiting += [f"pod/{p['metadata']['name']} terminating" for p in pods if p["metadata"].get("deletionTimestamp")]
        return waiting

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while waiting := self.workloads_ready():
            if time.monotonic() > deadline:
                raise ChaosError(f"pipeline not Ready after {timeout:.0f}s: {', '.join(waiting)}")
            time.sleep(1.0)

    def psql(self, sql: str) -> str:
        """Run `sql` as the superuser in the pipeline's database; tab-separated rows."""
        pod = self.running_pod(self.selector("postgres"))["metadata"]["name"]
        return self.kubectl(
            "exec", "-i", pod, "--", "psql", "-U", "postgres", "-d", "exchange", "-v", "ON_ERROR_STOP=1",
            "-qAt", "-F", "\t", "-f", "-", input=sql, timeout=60,
        )  # fmt: skip


class ChaosError(Exception):
    """A fault could not be injected, or the pipeline did not come back."""


def container_pid(container_id: str) -> int:
    """Host PID of a container's main process, through the node's CRI."""
    from exchange_devtools.kube_stack import PATHS

    out = subprocess.run(
        [str(CRICTL_BIN), "--runtime-endpoint", f"unix://{PATHS.containerd_socket}", "inspect", container_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        return int(json.loads(out.stdout)["info"]["pid"])
    except (ValueError, KeyError) as exc:
        raise ChaosError(f"no pid for container {container_id[:12]}") from exc


# ---- the faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One row of the table: what is done to the pipeline, and what must hold after it besides the
    common checks."""

    name: str
    how: str
    inject: Callable[[Target], None]
    """Does the fault and returns once it is in effect."""
    holds: Callable[[Target], list[str]] = lambda _: []
    """Problems left after the row (empty: the fault's own check passed)."""
    restore: Callable[[Target], None] = lambda _: None
    """Puts the spec back for the next row."""


def _delete(component: str) -> Fault:
    return Fault(
        f"{component} pod deleted",
        "kubectl delete pod (SIGTERM, grace period); in effect once it is gone",
        lambda t: t.delete_pod(t.selector(component)),
    )


def _kill(component: str) -> Fault:
    return Fault(
        f"{component} killed",
        "SIGKILL to the container's main process (host pid via crictl); the kubelet restarts it",
        lambda t: t.kill_main(t.selector(component)),
    )


def _scale_normalizer(t: Target) -> None:
    t.patch({"components": {"normalizer": {"replicas": 3}}})
    _until(lambda: len(_ready_pods(t, "normalizer")) == 3, 180, "3 normalizers Ready")
    t.patch({"components": {"normalizer": {"replicas": 1}}})
    _until(lambda: len(t.pods(t.selector("normalizer"))) == 1 and not _terminating(t, "normalizer"), 180, "1 left")


def _restart_operator(t: Target) -> None:
    """A spec change, and the operator's pod deleted while it reconciles it."""
    t.patch({"components": {"tokenizer": {"replicas": 2}}})
    t.delete_pod(OPERATOR_SELECTOR, OPERATOR_NAMESPACE)


def _operator_reconciled(t: Target) -> list[str]:
    """The new operator finished what the old one started: 2 tokenizers Ready, status current."""
    try:
        _until(lambda: len(_ready_pods(t, "tokenizer")) == 2, 180, "2 tokenizers Ready")
        _until(lambda: _observed(t), 180, "status.observedGeneration to reach the generation")
    except ChaosError as exc:
        return [str(exc)]
    return []


def _observed(t: Target) -> bool:
    xpl = json.loads(t.kubectl("get", "xpl", t.name, "-o", "json"))
    return bool(xpl.get("status", {}).get("observedGeneration") == xpl["metadata"]["generation"])


def _ready_pods(t: Target, component: str) -> list[dict[str, Any]]:
    return [
        p
        for p in t.pods(t.selector(component))
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def _terminating(t: Target, component: str) -> bool:
    out = t.kubectl("get", "pods", "-l", t.selector(component), "-o", "json")
    return any(p["metadata"].get("deletionTimestamp") for p in json.loads(out)["items"])


def _until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


COMPONENTS = ("ingest", "relay", "normalizer", "tokenizer", "postgres", "kafka", "s3")
FAULTS: dict[str, Fault] = {
    **{k: f for c in COMPONENTS for k, f in ((f"{c}-delete", _delete(c)), (f"{c}-kill", _kill(c)))},
    "normalizer-scale": Fault(
        "normalizer scaled 1 → 3 → 1",
        "spec.components.normalizer.replicas 3, all Ready, then 1; in effect once 1 is left",
        _scale_normalizer,
    ),
    "operator-restart": Fault(
        "operator restarted mid-reconcile",
        "spec.components.tokenizer.replicas 1 → 2, the operator's pod deleted at once",
        _restart_operator,
        holds=_operator_reconciled,
        restore=lambda t: t.patch({"components": {"tokenizer": {"replicas": 1}}}),
    ),
}
"""Every fault `hack/chaos` knows, in the order it runs them."""


# ---- one row -------------------------------------------------------------------------------------


@dataclass
class Row:
    """What one fault did to the records sent through it."""

    fault: str
    how: str
    sent: int = 0
    accepted: int = 0
    normalized: int = 0
    duplicates: int = 0
    five_xx: int = 0
    recovery: float | None = None
    accepting: float | None = None
    """Seconds from the injection until a record sent after the fault took effect got its 202."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def run_row(target: Target, partner: Partner, records: Records, fault: Fault, load: Load) -> Row:
    """Load, inject `fault` a third of the way in, load on until recovered, settle, check."""
    await asyncio.to_thread(target.wait_ready)  # the previous row's restore may still be rolling
    row = Row(fault.name, fault.how)
    deliveries: list[Delivery] = []
    effect: list[float] = []  # when the fault was in effect
    injected = 0.0

    def recovered() -> bool:
        return bool(effect) and any(d.normalized_at for d in deliveries if d.first_sent >= effect[0])

    async def inject() -> None:
        nonlocal injected
        await asyncio.sleep(load.records / 3 / load.rate)
        injected = time.time()
        await asyncio.to_thread(fault.inject, target)
        effect.append(time.time())

    injecting = asyncio.create_task(inject())
    watching = asyncio.create_task(partner.watch(deliveries))
    try:
        await partner.stream(
            records, deliveries, rate=load.rate, until=lambda: len(deliveries) >= load.records and recovered(),
            max_seconds=load.max_seconds,
        )  # fmt: skip
        await injecting
        await partner.settle(deliveries, load.settle_seconds)
    finally:
        injecting.cancel()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await injecting
    await asyncio.to_thread(target.wait_ready)
    row.problems += await asyncio.to_thread(fault.holds, target)
    await asyncio.to_thread(fault.restore, target)
    _account(row, deliveries, effect[0] if effect else None, injected)
    row.duplicates = await asyncio.to_thread(duplicates, target, deliveries, row)
    return row


def _account(row: Row, deliveries: list[Delivery], effect: float | None, injected: float) -> None:
    accepted = [d for d in deliveries if d.record_id]
    row.sent, row.accepted = len(deliveries), len(accepted)
    row.normalized = sum(1 for d in accepted if d.normalized_at)
    row.five_xx = sum(1 for d in deliveries for s in d.outcomes if s.startswith("5"))
    later = [d for d in deliveries if effect and d.first_sent >= effect]
    if accepted_at := [d.accepted_at for d in later if d.accepted_at]:
        row.accepting = min(accepted_at) - injected
    if normalized_at := [d.normalized_at for d in later if d.normalized_at]:
        row.recovery = min(normalized_at) - injected
    else:
        row.problems.append("did not recover: no record sent after the fault was normalized")
    if lost := [d.record_id for d in accepted if not d.normalized_at]:
        row.problems.append(f"{len(lost)} accepted records not normalized (lost): {', '.join(map(str, lost[:3]))}")
    if refused := [d for d in deliveries if not d.record_id]:
        example = ",".join(refused[0].outcomes[-8:])
        row.problems.append(f"{len(refused)} records never accepted (one's last answers: {example})")
    if odd := sum(1 for d in deliveries for s in d.outcomes if s == "409-without-retry-after"):
        row.problems.append(f"{odd} answers 409 without Retry-After (the contract's in-flight 409 carries one)")
    if reused := sum(1 for d in deliveries for s in d.outcomes if s == "409-key-reused"):
        row.problems.append(f"{reused} answers 409 idempotency-key-reused (a retry's body changed)")
    # The services' own 5xx must say "retry" (502/503/504); the ingress's (`-ingress`: the backend
    # gone or unreachable) are retried like any gateway error.
    own = {s for d in deliveries for s in d.outcomes if s.startswith("5") and s.isdigit()}
    bad = sorted(own - {"502", "503", "504"})
    if bad:
        row.problems.append(f"non-retryable 5xx from the services seen: {', '.join(bad)}")
    unretried = [d for d in deliveries if any(s.startswith("5") for s in d.outcomes) and not d.record_id]
    if unretried:
        row.problems.append(f"{len(unretried)} records saw a 5xx and never got their 202")


_DUPLICATES = """
CREATE TEMP TABLE sent_sha (sha text PRIMARY KEY) ON COMMIT PRESERVE ROWS;
INSERT INTO sent_sha SELECT unnest(string_to_array('{shas}', ','));
WITH rec AS (SELECT id, tenant, object_sha256, line FROM canonical.records
             WHERE object_sha256 IN (SELECT sha FROM sent_sha))
SELECT 'ingest', count(*) - count(DISTINCT (payload::jsonb #>> '{{object,sha256}}', payload::jsonb ->> 'line'))
  FROM ingest.outbox WHERE payload::jsonb #>> '{{object,sha256}}' IN (SELECT sha FROM sent_sha)
UNION ALL SELECT 'canonical.records', count(*) - count(DISTINCT (tenant, object_sha256, line)) FROM rec
UNION ALL SELECT 'record.normalized.v1', count(*) - count(DISTINCT record_id)
  FROM normalizer.outbox WHERE record_id IN (SELECT id FROM rec)
{tables};
"""


def duplicates(target: Target, deliveries: list[Delivery], row: Row) -> int:
    """Logical records (body SHA-256) registered, stored, announced or mapped more than once."""
    tables = "".join(
        f"\nUNION ALL SELECT 'canonical.{t}', count(*) - count(DISTINCT record_id) FROM canonical.{t}"
        " WHERE record_id IN (SELECT id FROM rec)"
        for t in CANONICAL_TABLES
    )
    sql = _DUPLICATES.format(shas=",".join(sorted({d.sha256 for d in deliveries})), tables=tables)
    total = 0
    for line in target.psql(sql).splitlines():
        where, count = line.split("\t")
        if int(count):
            row.problems.append(f"{count} duplicates in {where}")
            total += int(count)
    return total


# ---- a run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def chaos_namespace(node: KubeNode, *, keep: bool = False, reuse: str | None = None) -> Iterator[str]:
    """A fresh namespace `chaos-<hex>`, deleted after (not waited for) unless `keep`; or `reuse`,
    an existing one, left as it is."""
    if reuse:
        yield reuse
        return
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", name)
    node.kubectl("label", "namespace", name, "exchange.dev/test=true")
    try:
        yield name
    finally:
        if not keep:
            node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def ensure_operator(node: KubeNode) -> None:
    """The in-cluster operator is Available, installed from the chart when it is not."""
    out = node.kubectl(
        "-n", OPERATOR_NAMESPACE, "get", "deploy", "exchange-operator", "-o", "jsonpath={.status.availableReplicas}",
        check=False,
    )  # fmt: skip
    if out.strip() in ("", "0"):
        from exchange_devtools import kube_operator

        kube_operator.install()


def deploy(node: KubeNode, namespace: str, timeout: float = 600.0) -> Target:
    """The local sample in `namespace`, its routes bound to a host of their own (so another
    pipeline's Ingress on the node never answers), Ready."""
    doc = yaml.safe_load(SAMPLE.read_text())
    host = f"{namespace}.chaos.test"
    for route in ("ingest", "query"):
        doc["spec"]["ingress"][route]["host"] = host
    target = Target(node, namespace, host, doc["metadata"]["name"])
    node.apply(namespace, doc)
    target.kubectl(
        "wait", f"xpl/{target.name}", "--for=jsonpath={.status.phase}=Ready", f"--timeout={timeout:.0f}s",
        timeout=timeout + 10,
    )  # fmt: skip
    target.wait_ready(timeout)
    return target


async def run_faults(
    node: KubeNode,
    namespace: str,
    faults: list[str],
    load: Load,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Row]:
    """Deploy the pipeline in `namespace`, prove one record goes through, then one row per fault."""
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ChaosError(f"unknown faults: {', '.join(unknown)} (known: {', '.join(FAULTS)})")
    await asyncio.to_thread(ensure_operator, node)
    reused = bool(node.kubectl("-n", namespace, "get", "xpl", "-o", "name", check=False).strip())
    started = time.monotonic()
    target = await asyncio.to_thread(deploy, node, namespace)
    progress(f"pipeline {namespace}/{target.name} Ready in {time.monotonic() - started:.0f}s")
    run = uuid.uuid4().hex[:6]
    records = Records.synthea(run=f"{namespace}-{run}", salt=run if reused else "")
    async with Partner(node.ingress_url, target.host) as partner:
        await _first_record(partner, records)
        rows = []
        for name in faults:
            row = await run_row(target, partner, records, FAULTS[name], load)
            progress(format_row(row))
            rows.append(row)
    return rows


async def _first_record(partner: Partner, records: Records) -> None:
    deliveries: list[Delivery] = []
    await partner.stream(records, deliveries, rate=1.0, until=lambda: True, max_seconds=60)
    await partner.settle(deliveries, 120)
    if not all(d.normalized_at for d in deliveries):
        raise ChaosError("the first record was not normalized within 120s: the pipeline does not work at all")


# ---- the table -----------------------------------------------------------------------------------

COLUMNS = ("fault", "how injected", "sent", "accepted", "normalized", "duplicates", "5xx retried", "recovery s")


def cells(row: Row) -> tuple[str, ...]:
    recovery = f"{row.recovery:.1f}" if row.recovery is not None else "-"
    numbers = (row.sent, row.accepted, row.normalized, row.duplicates, row.five_xx)
    return (row.fault, row.how, *(str(n) for n in numbers), recovery)


def format_row(row: Row) -> str:
    accepting = f" (accepting again after {row.accepting:.1f}s)" if row.accepting is not None else ""
    text = " | ".join(cells(row)) + accepting
    return text + "".join(f"\n    ✗ {p}" for p in row.problems)


def table(rows: list[Row]) -> str:
    """The fault table in Markdown, problems listed under it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    lines += [f"- {r.fault}: {p}" for r in rows for p in r.problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/chaos", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated fault ids (default: all)")
    parser.add_argument("--records", type=int, default=Load.records, help="records sent at least per fault")
    parser.add_argument("--rate", type=float, default=Load.rate, help="records a second")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument("--keep", action="store_true", help="leave the namespace (and its pipeline) after the run")
    parser.add_argument("--namespace", help="run in this namespace's pipeline (applied if missing), kept after")
    args = parser.parse_args(argv)
    if args.list:
        for key, fault in FAULTS.items():
            print(f"{key:18} {fault.name}: {fault.how}")
        return 0
    from exchange_devtools import kube_stack

    state = kube_stack._read_state()
    if not kube_stack._healthy(state):
        raise SystemExit("the local node is not running: make kube-up images first")
    node = KubeNode(kube_stack.KUBECONFIG, str(state["ingress_url"]))
    load = Load(records=args.records, rate=args.rate)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    with chaos_namespace(node, keep=args.keep, reuse=args.namespace) as namespace:
        try:
            rows = asyncio.run(run_faults(node, namespace, faults, load, progress=lambda s: print(s, flush=True)))
        except (ChaosError, EngineError, AssertionError) as exc:
            print(node.dump(namespace), file=sys.stderr)
            raise SystemExit(f"chaos: {exc}") from None
        print(table(rows))
        if not all(r.ok for r in rows):
            dump = Path(REPO_ROOT / ".dev" / f"{namespace}.log")
            dump.write_text(node.dump(namespace))
            print(f"namespace dump: {dump}", file=sys.stderr)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
