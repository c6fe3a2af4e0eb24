"""What the operator watches and may read: only its own children, through a label selector the API
server applies, and no Secret of the cluster (no watch, no list; Secrets are read by name)."""

from pathlib import Path

import kopf
import yaml

from exchange_operator import handlers

REPO = Path(__file__).resolve().parents[3]
RBAC = REPO / "manifests" / "rbac" / "exchange-operator.yaml"


def watched_plurals() -> set[str]:
    """Every resource some kopf handler of ours is registered for: kopf starts one watch for each.
    (kopf keeps its registries private; this is what its watchers are started from.)"""
    registry = kopf.get_default_registry()
    kinds = (registry._watching, registry._changing, registry._spawning, registry._indexing)
    return {s.plural or s.any_name for r in kinds for s in r.get_all_selectors()}


def cluster_role_rules() -> list[dict]:
    (role,) = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole"]
    return role["rules"]


def test_no_kopf_handler_watches_secrets():
    plurals = watched_plurals()
    assert "deployments" in plurals  # the drift handlers are registered
    assert "secrets" not in plurals


def test_every_child_and_pod_watch_is_filtered_by_the_api_server_to_the_operators_own_objects():
    settings = kopf.OperatorSettings()
    handlers.watch_only_owned(settings)
    for group, version, plural in {*handlers.CHILD_RESOURCES, *handlers.HEALTH_RESOURCES}:
        resource = kopf.Resource(group, version, plural)
        assert settings.watching.label_selectors.collect(resource) == ["app.kubernetes.io/managed-by=exchange-operator"]
    assert (
        settings.watching.label_selectors.collect(kopf.Resource("exchange.dev", "v1alpha1", "exchangepipelines")) == []
    )


def test_every_watched_kind_is_a_child_filtered_by_label_or_the_pipeline_itself():
    children = {plural for _, _, plural in (*handlers.CHILD_RESOURCES, *handlers.HEALTH_RESOURCES)}
    assert watched_plurals() <= children | {"exchangepipelines"}
    assert {"pods", "jobs"} <= watched_plurals()  # status follows the Pods and Jobs


def test_the_cluster_role_may_only_list_and_watch_pods():
    verbs = {verb for rule in cluster_role_rules() if "pods" in rule["resources"] for verb in rule["verbs"]}
    assert verbs == {"list", "watch"}


def test_the_cluster_role_may_not_list_or_watch_secrets_only_get_create_and_patch_them():
    verbs = {verb for rule in cluster_role_rules() if "secrets" in rule["resources"] for verb in rule["verbs"]}
    assert verbs == {"get", "create", "patch"}
    assert not any("*" in rule["resources"] or "*" in rule["verbs"] for rule in cluster_role_rules())
