"""Status: phases, conditions with stable transition times, counts, endpoints; drift detection."""

import asyncio

import pytest

from exchange_operator.handlers import StatusSeen, drifted, owner_name
from exchange_operator.reconcile import Serializer
from exchange_operator.refresh import left_to_reconcile, unchanged, wanted_workloads
from exchange_operator.settings import OperatorSettings
from exchange_operator.spec import PHASE_MEANINGS, Phase, parse_spec
from exchange_operator.status import build_status, problem_status


def deployment(name, desired, ready, *, generation=1, observed=1, updated=None):
    """A Deployment as the API server reports it (updated defaults to every Pod)."""
    return {
        "kind": "Deployment",
        "metadata": {"name": f"demo-{name}", "labels": {"app.kubernetes.io/name": name}, "generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": desired,
            "updatedReplicas": desired if updated is None else updated,
            "readyReplicas": ready,
        },
    }


def job(name, succeeded=0, failed=False):
    status = {"succeeded": succeeded}
    if failed:
        status["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    return {
        "kind": "Job",
        "metadata": {"name": f"demo-{name}-x", "labels": {"app.kubernetes.io/name": name}},
        "status": status,
    }


def pod(component, *, waiting=None, message="", last=None):
    state = {"waiting": {"reason": waiting, "message": message}} if waiting else {"running": {}}
    container = {"name": component, "ready": not waiting, "state": state, "restartCount": 3 if last else 0}
    if last:
        container["lastState"] = {"terminated": {"reason": last, "exitCode": 137 if last == "OOMKilled" else 1}}
    return {
        "metadata": {"name": f"demo-{component}-abc12", "labels": {"app.kubernetes.io/name": component}},
        "status": {"phase": "Running" if not waiting else "Pending", "containerStatuses": [container]},
    }


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_children_not_ready_mean_progressing(spec, meta):
    status = build_status(spec, meta, 3, [deployment("ingest", 2, 1), job("migrate")], None, "T0")
    assert status["phase"] == Phase.PROGRESSING
    assert status["observedGeneration"] == 3
    assert status["components"]["ingest"] == {"ready": 1, "desired": 2}
    c = conditions(status)
    assert c["Ready"]["status"] == "False" and c["Progressing"]["status"] == "True"
    assert c["Degraded"]["status"] == "False"
    assert "ingest (1/2)" in status["message"]


def test_everything_ready_means_ready(spec, meta):
    status = build_status(spec, meta, 1, [deployment("ingest", 2, 2), job("migrate", succeeded=1)], None, "T0")
    assert status["phase"] == Phase.READY
    assert conditions(status)["Ready"]["reason"] == "AllReady"
    assert status["endpoints"]["ingest"] == "http://demo-ingest.health.svc"


def test_a_failed_job_degrades_naming_the_job_and_its_reason(spec, meta):
    status = build_status(spec, meta, 1, [job("migrate", failed=True)], None, "T0")
    assert status["phase"] == Phase.DEGRADED
    assert conditions(status)["Degraded"]["reason"] == "JobFailed"
    assert status["message"].startswith("migrate job/demo-migrate-x: JobFailed (BackoffLimitExceeded")


def test_a_crash_looping_pod_degrades_a_pipeline_whose_workloads_looked_fine(spec, meta):
    children = [deployment("ingest", 1, 1), deployment("normalizer", 1, 0)]
    status = build_status(
        spec,
        meta,
        1,
        children,
        None,
        "T0",
        pods=[pod("ingest"), pod("normalizer", waiting="CrashLoopBackOff", last="OOMKilled")],
    )
    assert status["phase"] == Phase.DEGRADED
    degraded = conditions(status)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "CrashLoopBackOff")
    assert status["message"] == "normalizer pod/demo-normalizer-abc12: CrashLoopBackOff (last exit OOMKilled, code 137)"
    assert conditions(status)["Progressing"]["status"] == "False"


def test_an_image_that_cannot_be_pulled_degrades_with_the_kubelets_words(spec, meta):
    missing = 'Container image "localhost/none:missing" is not present with pull policy of Never'
    status = build_status(
        spec,
        meta,
        1,
        [deployment("ingest", 1, 0)],
        None,
        "T0",
        pods=[pod("ingest", waiting="ErrImageNeverPull", message=missing)],
    )
    assert conditions(status)["Degraded"]["reason"] == "ErrImageNeverPull"
    assert "ErrImageNeverPull" in status["message"] and "localhost/none:missing" in status["message"]
    assert conditions(status)["Ready"]["status"] == "False"


def test_a_pod_still_creating_its_container_is_progress_not_a_problem(spec, meta):
    status = build_status(
        spec, meta, 1, [deployment("ingest", 1, 0)], None, "T0", pods=[pod("ingest", waiting="ContainerCreating")]
    )
    assert status["phase"] == Phase.PROGRESSING


def test_a_rollout_in_progress_is_not_ready_although_the_old_pods_are(spec, meta):
    rolling = deployment("ingest", 2, 2, generation=2, observed=2, updated=1)
    unseen = deployment("query", 1, 1, generation=3, observed=2)
    status = build_status(spec, meta, 1, [rolling, unseen], None, "T0")
    assert status["phase"] == Phase.PROGRESSING
    assert status["message"] == "waiting for ingest (2/2, rolling out), query (1/1, rolling out)"


def test_an_expected_workload_that_does_not_exist_keeps_the_pipeline_progressing(spec, meta):
    status = build_status(spec, meta, 1, [deployment("ingest", 1, 1)], None, "T0", expected=["ingest", "relay"])
    assert status["phase"] == Phase.PROGRESSING
    assert status["message"] == "waiting for relay (missing)"


def test_a_service_on_the_record_path_scaled_to_zero_degrades(spec, meta):
    status = build_status(spec, meta, 1, [deployment("normalizer", 0, 0), deployment("query", 0, 0)], None, "T0")
    assert status["phase"] == Phase.DEGRADED
    assert status["message"] == "normalizer deployment/demo-normalizer: ScaledToZero"


def test_suspended_pipelines_say_so(meta):
    status = build_status(parse_spec({"suspend": True}), meta, 1, [deployment("ingest", 0, 0)], None, "T0")
    assert status["phase"] == Phase.SUSPENDED


def test_transition_time_moves_only_when_the_condition_status_changes(spec, meta):
    first = build_status(spec, meta, 1, [deployment("ingest", 1, 0)], None, "T0")
    same = build_status(spec, meta, 1, [deployment("ingest", 1, 0)], first, "T1")
    assert conditions(same)["Ready"]["lastTransitionTime"] == "T0"
    ready = build_status(spec, meta, 1, [deployment("ingest", 1, 1)], same, "T2")
    assert conditions(ready)["Ready"]["lastTransitionTime"] == "T2"


def test_an_invalid_spec_is_failed_with_its_reason():
    status = problem_status(Phase.FAILED, "InvalidSpec", "spec.auth: bad", 4, None, "T0")
    assert status["phase"] == "Failed"
    assert conditions(status)["Ready"] == {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": "spec.auth: bad",
        "lastTransitionTime": "T0",
        "observedGeneration": 4,
    }


def test_deletion_of_a_child_is_drift():
    assert drifted("DELETED", {}, "exchange-operator")
    assert not drifted("ADDED", {}, "exchange-operator")


def test_an_edit_by_another_manager_is_drift_but_status_updates_are_not():
    ours = {"manager": "exchange-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
    status = {"manager": "kube-controller-manager", "subresource": "status", "fieldsV1": {"f:status": {}}}
    annot = {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:metadata": {}}}
    edit = {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    assert not drifted("MODIFIED", {"metadata": {"managedFields": [ours, status, annot]}}, "exchange-operator")
    assert drifted("MODIFIED", {"metadata": {"managedFields": [ours, edit]}}, "exchange-operator")


def test_the_owner_is_the_controlling_pipeline():
    refs = [
        {"apiVersion": "v1", "kind": "Other", "name": "x", "controller": False},
        {"apiVersion": "exchange.dev/v1alpha1", "kind": "ExchangePipeline", "name": "demo", "controller": True},
    ]
    assert owner_name({"metadata": {"ownerReferences": refs}}) == "demo"
    assert owner_name({"metadata": {}}) is None


async def test_a_burst_of_requests_costs_one_extra_run():
    serializer, runs = Serializer(), []

    async def work():
        runs.append(1)
        await asyncio.sleep(0.01)

    await asyncio.gather(*(serializer.run("k", work) for _ in range(10)))
    assert len(runs) == 2  # the first, then one covering the nine that queued behind it


def test_settings_come_from_the_environment():
    s = OperatorSettings.from_env(
        {
            "EXCHANGE_OPERATOR_RESYNC_SECONDS": "5",
            "EXCHANGE_OPERATOR_NAMESPACES": "a, b",
            "EXCHANGE_OPERATOR_STANDALONE": "false",
        }
    )
    assert s.resync_seconds == 5.0
    assert s.namespaces == ("a", "b")
    assert s.standalone is False
    assert OperatorSettings.from_env({}) == OperatorSettings()


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_is_documented_in_the_crd(phase):
    from exchange_operator.crd import build_crd

    text = str(build_crd())
    assert PHASE_MEANINGS[phase]
    assert f"{phase.value}: {PHASE_MEANINGS[phase]}" in text


def test_the_status_refresh_reads_the_workloads_the_spec_wants(spec, meta):
    wanted = wanted_workloads(spec, meta)
    assert wanted[("Deployment", "demo-normalizer")] == "normalizer"
    assert wanted[("StatefulSet", "demo-redpanda")] == "kafka"
    assert {c for (kind, _), c in wanted.items() if kind == "Job"} == {"migrate", "bootstrap"}
    assert not any(kind == "Service" for kind, _ in wanted)


def test_the_status_refresh_leaves_an_invalid_spec_or_missing_secret_to_the_reconcile():
    missing = problem_status(Phase.DEGRADED, "DependencyMissing", "Secret not found", 2, None, "T0")
    assert left_to_reconcile(missing)
    assert not left_to_reconcile({"conditions": [{"type": "Ready", "reason": "NotReady"}]})
    assert not left_to_reconcile({})


def test_a_refreshed_status_equal_to_the_current_one_is_not_written(spec, meta):
    first = build_status(spec, meta, 1, [deployment("ingest", 1, 0)], None, "T0")
    again = build_status(spec, meta, 1, [deployment("ingest", 1, 0)], first, "T1")
    assert unchanged(again, {**first, "extra": "kept"})
    ready = build_status(spec, meta, 1, [deployment("ingest", 1, 1)], first, "T1")
    assert not unchanged(ready, first)


def test_only_events_that_change_a_status_reach_the_status_refresh():
    seen = StatusSeen()
    pod = {"metadata": {"uid": "u1", "labels": {"a": "1"}}, "status": {"phase": "Pending"}}
    assert seen.changed(None, pod)  # first sight (the initial listing)
    assert not seen.changed("MODIFIED", {**pod, "metadata": {"uid": "u1", "labels": {"a": "2"}}})
    assert seen.changed("MODIFIED", {**pod, "status": {"phase": "Running"}})
    assert seen.changed("DELETED", pod)
    assert seen.changed("ADDED", pod)  # forgotten on deletion
