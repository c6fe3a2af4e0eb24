"""Faults survived on the local node, the bounded version of `hack/chaos` that CI runs.

One pipeline (manifests/samples/local.yaml, its Ingress bound to a host of its own) in a `chaos-*`
namespace; a partner sends real Synthea records through the ingress, one a request, each with its
own Idempotency-Key, retrying every 5xx and connection error with the same key; while it does, one
fault per row. Every row must show 0 records lost (every 202 is served by GraphQL through the
ingress), 0 duplicated (no logical record registered, stored, announced or mapped twice), every
5xx retryable and retried to its 202, and the pipeline whole again (`exchange_devtools.chaos`).

CI runs one fault per pod (killed or deleted: the two that found bugs, Kafka and S3 deleted, among
them), the normalizer scaled 1 → 3 → 1 and the operator restarted mid-reconcile, 40 records each.
`hack/chaos` runs all sixteen rows (every pod both deleted and killed) with 100 records each and
prints the table with recovery times; the README's Faults section shows a full run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exchange_devtools import chaos, kube_operator
from exchange_devtools.fixtures.kube_node import KubeNode

CI_FAULTS = [
    "ingest-kill",
    "relay-delete",
    "normalizer-kill",
    "tokenizer-delete",
    "postgres-kill",
    "kafka-delete",
    "s3-delete",
    "normalizer-scale",
    "operator-restart",
]
CI_LOAD = chaos.Load(records=40, rate=10.0)

pytestmark = [pytest.mark.usefixtures("node_images"), pytest.mark.timeout(900)]


@pytest.fixture
def chaos_namespace(request: pytest.FixtureRequest, kube_node: KubeNode) -> Iterator[str]:
    """A `chaos-*` namespace for the run, its pods, events and logs in the report when it fails."""
    kube_operator.install()
    with chaos.chaos_namespace(kube_node) as namespace:
        yield namespace
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            request.node.add_report_section("call", f"namespace {namespace}", kube_node.dump(namespace))


async def test_no_fault_loses_or_duplicates_a_record(kube_node: KubeNode, chaos_namespace: str) -> None:
    rows = await chaos.run_faults(kube_node, chaos_namespace, CI_FAULTS, CI_LOAD)
    print(chaos.table(rows))
    assert [r.fault for r in rows] == [chaos.FAULTS[f].name for f in CI_FAULTS]
    assert [(r.fault, r.accepted - r.normalized, r.duplicates) for r in rows] == [(r.fault, 0, 0) for r in rows]
    assert [(r.fault, r.sent) for r in rows] == [(r.fault, r.accepted) for r in rows]  # nothing refused for good
    assert {r.fault: r.problems for r in rows if r.problems} == {}, chaos.table(rows)
