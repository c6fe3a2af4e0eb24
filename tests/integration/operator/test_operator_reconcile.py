"""The operator against a real kube-apiserver: children, status, convergence, drift, validation,
deletion. No controllers run: readiness is simulated by patching the children's status."""

from __future__ import annotations

import base64
import time

import pytest
from kubernetes import client

from exchange_devtools.fixtures.operator_process import wait_for
from exchange_operator.builders import Meta
from exchange_operator.builders.common import instance_selector

KINDS = {
    "Deployment": lambda api, ns, sel: client.AppsV1Api(api).list_namespaced_deployment(ns, label_selector=sel),
    "StatefulSet": lambda api, ns, sel: client.AppsV1Api(api).list_namespaced_stateful_set(ns, label_selector=sel),
    "Service": lambda api, ns, sel: client.CoreV1Api(api).list_namespaced_service(ns, label_selector=sel),
    "ConfigMap": lambda api, ns, sel: client.CoreV1Api(api).list_namespaced_config_map(ns, label_selector=sel),
    "Secret": lambda api, ns, sel: client.CoreV1Api(api).list_namespaced_secret(ns, label_selector=sel),
    "NetworkPolicy": lambda api, ns, sel: client.NetworkingV1Api(api).list_namespaced_network_policy(
        ns, label_selector=sel
    ),
    "Ingress": lambda api, ns, sel: client.NetworkingV1Api(api).list_namespaced_ingress(ns, label_selector=sel),
    "PodDisruptionBudget": lambda api, ns, sel: client.PolicyV1Api(api).list_namespaced_pod_disruption_budget(
        ns, label_selector=sel
    ),
    "Job": lambda api, ns, sel: client.BatchV1Api(api).list_namespaced_job(ns, label_selector=sel),
}
EXPECTED_COUNTS = {
    "Deployment": 5,
    "StatefulSet": 3,
    "Service": 11,
    "ConfigMap": 2,
    "Secret": 4,
    "NetworkPolicy": 6,  # tokenizer, api, metrics, 3 engines
    "Ingress": 2,
    "PodDisruptionBudget": 5,
    "Job": 2,
}
WITH_INGRESS = {
    "ingress": {"enabled": True, "className": "nginx", "ingest": {"path": "/"}, "query": {"host": "q.local"}}
}


def children(api, namespace, name):
    sel = instance_selector(Meta(name, namespace))
    return {kind: list_fn(api, namespace, sel).items for kind, list_fn in KINDS.items()}


def conditions(status):
    return {c["type"]: c for c in status.get("conditions", [])}


def test_applying_a_pipeline_creates_every_child_owned_and_a_status_with_conditions(
    pipelines, kube_api_client, namespace
):
    cr = pipelines.create("demo", WITH_INGRESS)
    obj = pipelines.wait_phase("demo", "Progressing")
    found = children(kube_api_client, namespace, "demo")
    assert {k: len(v) for k, v in found.items()} == EXPECTED_COUNTS
    for kind, items in found.items():
        for item in items:
            (ref,) = item.metadata.owner_references
            assert (ref.kind, ref.name, ref.uid, ref.controller) == (
                "ExchangePipeline",
                "demo",
                cr["metadata"]["uid"],
                True,
            ), kind
    status = obj["status"]
    assert set(conditions(status)) == {"Ready", "Progressing", "Degraded"}
    assert conditions(status)["Progressing"]["status"] == "True"
    assert status["components"]["ingest"] == {"ready": 0, "desired": 1}
    assert status["components"]["relay"] == {"ready": 0, "desired": 1}
    assert status["endpoints"]["ingest"] == "http://localhost"
    assert status["endpoints"]["query"] == "http://q.local/graphql"
    assert "exchange.dev/finalizer" in obj["metadata"]["finalizers"]


def test_replicas_and_image_changes_converge_and_secrets_are_not_regenerated(pipelines, kube_api_client, namespace):
    pipelines.create("conv", {})
    pipelines.wait_phase("conv", "Progressing")
    core, apps = client.CoreV1Api(kube_api_client), client.AppsV1Api(kube_api_client)
    before = core.read_namespaced_secret("conv-postgres-credentials", namespace).data
    pipelines.patch("conv", {"components": {"ingest": {"replicas": 3}}, "image": {"tag": "9.9.9"}})
    pipelines.wait_phase("conv", "Progressing")
    ingest = apps.read_namespaced_deployment("conv-ingest", namespace)
    assert ingest.spec.replicas == 3
    assert ingest.spec.template.spec.containers[0].image == "exchange:9.9.9"
    jobs = children(kube_api_client, namespace, "conv")["Job"]
    assert len(jobs) == 2 and all(j.spec.template.spec.containers[0].image == "exchange:9.9.9" for j in jobs)
    assert core.read_namespaced_secret("conv-postgres-credentials", namespace).data == before
    pipelines.patch("conv", {"suspend": True})
    pipelines.wait_phase("conv", "Suspended")
    assert apps.read_namespaced_deployment("conv-ingest", namespace).spec.replicas == 0


def test_switching_an_engine_to_external_prunes_its_statefulset(pipelines, kube_api_client, namespace):
    core = client.CoreV1Api(kube_api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "ext-s3"}, "stringData": {"endpoint-url": "http://s3"}}
    )
    pipelines.create("prune", {})
    pipelines.wait_phase("prune", "Progressing")
    pipelines.patch("prune", {"engines": {"s3": {"mode": "external", "secretRef": {"name": "ext-s3"}}}})
    pipelines.wait_phase("prune", "Progressing")
    names = [s.metadata.name for s in children(kube_api_client, namespace, "prune")["StatefulSet"]]
    assert sorted(names) == ["prune-postgres", "prune-redpanda"]
    # credentials of the retained MinIO volume stay
    assert core.read_namespaced_secret("prune-s3-credentials", namespace)


def test_engine_flavors_become_their_own_statefulsets_behind_the_same_client_services(
    pipelines, kube_api_client, namespace
):
    engines = {
        "kafka": {"managed": {"flavor": "apache-kafka"}},
        "s3": {"managed": {"flavor": "s3proxy", "image": "localhost/s3proxy:3.0.0"}},
    }
    pipelines.create("flavors", {"engines": engines})
    obj = pipelines.wait_phase("flavors", "Progressing")
    found = children(kube_api_client, namespace, "flavors")
    assert sorted(s.metadata.name for s in found["StatefulSet"]) == [
        "flavors-kafka",
        "flavors-postgres",
        "flavors-s3proxy",
    ]
    services = {s.metadata.name for s in found["Service"]}
    assert {"flavors-kafka", "flavors-kafka-hl", "flavors-s3", "flavors-s3proxy-hl"} <= services
    assert {"kafka", "s3", "postgres"} <= set(obj["status"]["components"])
    apps = client.AppsV1Api(kube_api_client)
    kafka = apps.read_namespaced_stateful_set("flavors-kafka", namespace).spec.template.spec
    assert kafka.containers[0].image == "apache/kafka:4.1.1"
    assert kafka.init_containers[0].name == "seed-config"
    pipelines.patch("flavors", {"engines": {"kafka": {"managed": {"flavor": "redpanda"}}}})
    pipelines.wait_status(
        "flavors",
        lambda st, o: st.get("observedGeneration") == o["metadata"]["generation"],
        "the flavor switch to be reconciled",
    )
    names = sorted(s.metadata.name for s in children(kube_api_client, namespace, "flavors")["StatefulSet"])
    assert names == ["flavors-postgres", "flavors-redpanda", "flavors-s3proxy"]


def test_a_deleted_child_is_restored(pipelines, kube_api_client, namespace):
    pipelines.create("heal", {})
    pipelines.wait_phase("heal", "Progressing")
    apps, core = client.AppsV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    old_uid = apps.read_namespaced_deployment("heal-query", namespace).metadata.uid
    apps.delete_namespaced_deployment("heal-query", namespace)
    core.delete_namespaced_service("heal-tokenizer", namespace)

    def restored():
        dep = apps.read_namespaced_deployment("heal-query", namespace)
        core.read_namespaced_service("heal-tokenizer", namespace)
        return dep.metadata.uid != old_uid

    started = time.monotonic()
    wait_for("the deleted children to come back", restored, timeout=15)
    assert time.monotonic() - started < 1.5  # the child event, not the resync timer


def test_an_edited_child_is_restored(pipelines, kube_api_client, namespace):
    pipelines.create("edit", {"components": {"normalizer": {"replicas": 2}}})
    pipelines.wait_phase("edit", "Progressing")
    apps = client.AppsV1Api(kube_api_client)
    apps.patch_namespaced_deployment("edit-normalizer", namespace, {"spec": {"replicas": 7}})
    wait_for(
        "the replica count to be restored",
        lambda: apps.read_namespaced_deployment("edit-normalizer", namespace).spec.replicas == 2,
        timeout=15,
    )


def rolled_out(workload, n):
    """The status a workload controller writes once its latest spec runs on `n` ready Pods."""
    return {
        "status": {
            "observedGeneration": workload.metadata.generation,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
    }


def test_readiness_of_the_children_makes_the_pipeline_ready(pipelines, kube_api_client, namespace):
    pipelines.create("ready", {})
    pipelines.wait_phase("ready", "Progressing")
    apps, batch = client.AppsV1Api(kube_api_client), client.BatchV1Api(kube_api_client)
    found = children(kube_api_client, namespace, "ready")
    for dep in found["Deployment"]:
        apps.patch_namespaced_deployment_status(dep.metadata.name, namespace, rolled_out(dep, dep.spec.replicas))
    for sts in found["StatefulSet"]:
        apps.patch_namespaced_stateful_set_status(sts.metadata.name, namespace, rolled_out(sts, 1))
    for job in found["Job"]:
        now = "2026-01-01T00:00:00Z"
        batch.patch_namespaced_job_status(
            job.metadata.name,
            namespace,
            {
                "status": {
                    "startTime": now,
                    "completionTime": now,
                    "succeeded": 1,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "lastTransitionTime": now},
                    ],
                }
            },
        )
    obj = pipelines.wait_phase("ready", "Ready", timeout=20)
    ready = conditions(obj["status"])["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "AllReady")
    assert obj["status"]["components"]["postgres"] == {"ready": 1, "desired": 1}


def test_a_missing_external_secret_degrades_until_it_exists(pipelines, kube_api_client, namespace):
    pipelines.create("dep", {"engines": {"postgres": {"mode": "external", "secretRef": {"name": "pg-ext"}}}})
    obj = pipelines.wait_phase("dep", "Degraded")
    assert conditions(obj["status"])["Degraded"]["reason"] == "DependencyMissing"
    assert "pg-ext" in obj["status"]["message"]
    client.CoreV1Api(kube_api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "pg-ext"}, "stringData": {"ingest-url": "postgresql://x"}}
    )
    pipelines.wait_phase("dep", "Progressing", timeout=20)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"auth": {"mode": "jwt", "issuer": "https://idp"}},
            "auth.mode=jwt requires auth.issuer, auth.audience and auth.jwksUrl",
        ),
        ({"engines": {"kafka": {"mode": "external"}}}, "engines.kafka: mode external requires secretRef"),
        ({"ingress": {"tls": {"secretName": "tls"}}}, "ingress.tls requires at least one host"),
        ({"engines": {"s3": {"managed": {"flavor": "s3proxy"}}}}, "flavor s3proxy requires image"),
        (
            {"engines": {"kafka": {"mode": "external", "secretRef": {"name": "k"}, "managed": {"flavor": "redpanda"}}}},
            "engines.kafka: managed.flavor is for mode managed",
        ),
    ],
)
def test_an_invalid_pipeline_is_rejected_by_the_api_server_with_the_cel_message(pipelines, spec, message):
    with pytest.raises(client.ApiException) as err:
        pipelines.create("invalid", spec)
    assert err.value.status == 422
    assert message in err.value.body


def test_deleting_a_pipeline_runs_the_finalizer_and_retains_volumes_and_secrets(pipelines, kube_api_client, namespace):
    core = client.CoreV1Api(kube_api_client)
    pipelines.create("keep", {})
    pipelines.wait_phase("keep", "Progressing")
    pvc = _claim(core, namespace, "keep")
    pipelines.delete("keep")
    wait_for("the pipeline to be gone", lambda: pipelines.get("keep") is None, timeout=15)
    assert core.read_namespaced_persistent_volume_claim(pvc, namespace)
    secret = core.read_namespaced_secret("keep-tokenization", namespace)
    assert not secret.metadata.owner_references  # orphaned: survives garbage collection
    assert base64.b64decode(secret.data["secret"])


def test_deleting_a_pipeline_with_the_delete_policy_removes_its_volumes(pipelines, kube_api_client, namespace):
    core = client.CoreV1Api(kube_api_client)
    pipelines.create("drop", {"volumeClaimDeletionPolicy": "Delete"})
    pipelines.wait_phase("drop", "Progressing")
    pvc = _claim(core, namespace, "drop")
    pipelines.delete("drop")
    wait_for("the pipeline to be gone", lambda: pipelines.get("drop") is None, timeout=15)

    def claim_gone():
        try:
            claim = core.read_namespaced_persistent_volume_claim(pvc, namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return claim.metadata.deletion_timestamp is not None  # pvc-protection finalizer (no controller)

    wait_for("the claim to be deleted", claim_gone, timeout=10)
    # ...after the engines' StatefulSets (no garbage collector runs here): a StatefulSet that
    # still exists re-creates a claim deleted under its Pod, which would outlive the pipeline.
    apps = client.AppsV1Api(kube_api_client)
    assert apps.list_namespaced_stateful_set(namespace, label_selector="exchange.dev/pipeline=drop").items == []


def _claim(core, namespace, name):
    """What the StatefulSet controller would create from the volumeClaimTemplate (none runs here)."""
    sts = client.AppsV1Api(core.api_client).read_namespaced_stateful_set(f"{name}-postgres", namespace)
    template = sts.spec.volume_claim_templates[0]
    claim = f"{template.metadata.name}-{name}-postgres-0"
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim, "labels": template.metadata.labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    return claim
