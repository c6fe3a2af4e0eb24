"""Builders, without a cluster: names, labels, selectors, probes, security, managed vs external."""

from pathlib import Path

import pytest

from exchange_operator.apply import adopt_all
from exchange_operator.builders import build_children
from exchange_operator.builders.common import CONFIG_HASH_ANNOTATION, Meta, selector_labels
from exchange_operator.builders.deployments import build_deployment
from exchange_operator.builders.env import config_data
from exchange_operator.builders.ingress import build_ingresses, endpoint_url
from exchange_operator.builders.jobs import build_job
from exchange_operator.builders.network import build_network_policies
from exchange_operator.builders.services import build_services
from exchange_operator.builders.statefulsets import build_postgres_statefulset, build_statefulsets
from exchange_operator.spec import COMPONENTS, parse_spec
from exchange_operator.status import build_status

OWNER = {
    "apiVersion": "exchange.dev/v1alpha1",
    "kind": "ExchangePipeline",
    "metadata": {"name": "demo", "namespace": "health", "uid": "uid-1", "labels": {"team": "data"}},
}


def _container(manifest):
    return manifest["spec"]["template"]["spec"]["containers"][0]


def _env(container):
    return {e["name"]: e for e in container.get("env", [])}


def _kinds(children):
    return sorted({c["kind"] for c in children})


def test_a_managed_pipeline_has_every_kind_of_child(spec, meta):
    children = build_children(spec, meta)
    assert _kinds(children) == sorted(
        [
            "ConfigMap",
            "Service",
            "ServiceAccount",
            "NetworkPolicy",
            "StatefulSet",
            "Deployment",
            "PodDisruptionBudget",
            "Job",
        ]
    )
    names = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert len(names) == len(set(names))
    assert {c["metadata"]["namespace"] for c in children} == {"health"}


def test_every_child_is_labelled_and_owned_after_adoption(spec, meta):
    children = adopt_all(build_children(spec, meta), OWNER)
    for child in children:
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "exchange-operator"
        assert labels["exchange.dev/pipeline"] == "demo"
        assert labels["team"] == "data"  # owner labels are inherited
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == "uid-1" and ref["controller"] is True and ref["blockOwnerDeletion"] is True


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_service_deployment_selects_its_own_pods_and_probes_them(spec, meta, component):
    dep = build_deployment(spec, meta, component)
    assert dep["metadata"]["name"] == f"demo-{component}"
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == selector_labels(meta, component)
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    c = _container(dep)
    assert c["command"] == ["exchange", "serve", component]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert c["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_container_runs_restricted(spec, meta, component):
    dep = build_deployment(spec, meta, component)
    pod = dep["spec"]["template"]["spec"]
    sc = _container(dep)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # Only the tokenizer holds an API token: it reads the cluster's issuer keys (builders.identity).
    assert pod["automountServiceAccountToken"] is (component == "tokenizer")


def test_all_workloads_in_the_tree_run_restricted(spec, meta):
    for child in build_children(spec, meta):
        if child["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for c in child["spec"]["template"]["spec"]["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, child["metadata"]["name"]
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, child["metadata"]["name"]


def test_only_the_tokenizer_gets_the_tokenization_secret(spec, meta):
    for component in COMPONENTS:
        dep = build_deployment(spec, meta, component)
        secret_volumes = [v for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v]
        has = "TOKENIZATION_SECRET_FILE" in _env(_container(dep))
        assert has == (component == "tokenizer") == bool(secret_volumes)


def test_each_service_gets_its_own_database_role(spec, meta):
    keys = {
        c: _env(_container(build_deployment(spec, meta, c))).get("DATABASE_URL", {}).get("valueFrom", {})
        for c in COMPONENTS
    }
    assert keys["query"]["secretKeyRef"] == {"name": "demo-postgres-credentials", "key": "query-url"}
    assert keys["ingest"]["secretKeyRef"]["key"] == "ingest-url"
    assert keys["relay"]["secretKeyRef"]["key"] == "ingest-url"  # it publishes ingest's outbox
    assert keys["tokenizer"] == {}


def test_the_relay_is_a_deployment_of_its_own_that_reaches_postgres_and_kafka_only(spec, meta):
    relay = build_deployment(spec, meta, "relay")
    assert relay["metadata"]["name"] == "demo-relay"
    assert relay["spec"]["template"]["metadata"]["labels"]["exchange.dev/engine-client"] == "true"
    c = _container(relay)
    assert c["command"] == ["exchange", "serve", "relay"]
    env = _env(c)
    database = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database == {"name": "demo-postgres-credentials", "key": "ingest-url"}
    assert not {"S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "TOKENIZATION_SECRET_FILE", "NORMALIZER_ID_KEY"} & set(env)
    assert config_data(spec, meta)["KAFKA_BOOTSTRAP_SERVERS"]  # from the ConfigMap it reads


def test_the_relay_reads_an_external_kafka_from_the_users_secret(external_spec, meta):
    env = _env(_container(build_deployment(external_spec, meta, "relay")))
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["valueFrom"]["secretKeyRef"] == {"name": "kafka", "key": "bootstrap-servers"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "ingest-url"}


@pytest.mark.parametrize(
    ("worker", "variable"), [("relay", "RELAY_METRICS_PORT"), ("normalizer", "NORMALIZER_METRICS_PORT")]
)
def test_a_worker_is_probed_on_the_metrics_port_it_is_told_to_serve(spec, meta, worker, variable):
    c = _container(build_deployment(spec, meta, worker))
    assert c["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    assert _env(c)[variable] == {"name": variable, "value": "9102"}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics"
    (service,) = [s for s in build_services(spec, meta) if s["metadata"]["name"] == f"demo-{worker}"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9102, "targetPort": "metrics", "protocol": "TCP"}]


@pytest.mark.parametrize("component", ["ingest", "tokenizer", "query"])
def test_an_http_service_is_probed_on_its_http_port_and_serves_metrics_on_a_port_of_their_own(spec, meta, component):
    c = _container(build_deployment(spec, meta, component))
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9102, "protocol": "TCP"},
    ]
    assert _env(c)["METRICS_PORT"] == {"name": "METRICS_PORT", "value": "9102"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_the_relay_has_its_own_replicas_and_resources(meta):
    spec = parse_spec({"components": {"relay": {"replicas": 2, "resources": {"requests": {"cpu": "50m"}}}}})
    relay = build_deployment(spec, meta, "relay")
    assert relay["spec"]["replicas"] == 2
    assert _container(relay)["resources"]["requests"] == {"cpu": "50m"}
    assert build_deployment(parse_spec({"suspend": True}), meta, "relay")["spec"]["replicas"] == 0


def test_the_status_counts_every_service_the_relay_included(spec, meta):
    status = build_status(spec, meta, 1, build_children(spec, meta), None, "T0")
    assert set(COMPONENTS) <= set(status["components"])
    assert status["components"]["relay"] == {"ready": 0, "desired": 1}
    assert "relay (0/1)" in status["message"]


def test_managed_engines_are_statefulsets_with_claims(spec, meta):
    sets = build_statefulsets(spec, meta)
    assert [s["metadata"]["name"] for s in sets] == ["demo-postgres", "demo-redpanda", "demo-minio"]
    for sts in sets:
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert claim["metadata"]["labels"]["exchange.dev/pipeline"] == "demo"
        assert sts["spec"]["serviceName"].endswith("-hl")
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_storage_class_and_size_come_from_the_spec(meta):
    spec = parse_spec({"engines": {"postgres": {"managed": {"storage": {"size": "50Gi", "storageClassName": "ssd"}}}}})
    claim = build_postgres_statefulset(spec, meta)["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "ssd"
    assert claim["resources"]["requests"]["storage"] == "50Gi"


def test_external_engines_build_no_statefulset_and_read_the_users_secret(external_spec, meta):
    children = build_children(external_spec, meta)
    assert not [c for c in children if c["kind"] == "StatefulSet"]
    assert [c["metadata"]["name"] for c in children if c["kind"] == "Service"] == [f"demo-{c}" for c in COMPONENTS]
    env = _env(_container(build_deployment(external_spec, meta, "ingest")))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "ingest-url"}
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["valueFrom"]["secretKeyRef"]["name"] == "kafka"
    assert env["S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["name"] == "s3"
    tokenizer = build_deployment(external_spec, meta, "tokenizer")
    (secret_volume,) = [v for v in tokenizer["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secret_volume["secret"]["secretName"] == "tok"
    assert secret_volume["secret"]["items"] == [{"key": "k", "path": "secret"}]


def test_suspend_scales_the_services_to_zero_but_not_the_engines(meta):
    spec = parse_spec({"suspend": True, "components": {"ingest": {"replicas": 3}}})
    children = build_children(spec, meta)
    assert {c["spec"]["replicas"] for c in children if c["kind"] == "Deployment"} == {0}
    assert {c["spec"]["replicas"] for c in children if c["kind"] == "StatefulSet"} == {1}


def test_replicas_and_image_overrides(meta):
    spec = parse_spec({"image": {"tag": "2.0"}, "components": {"query": {"replicas": 3, "image": "q:9"}}})
    assert build_deployment(spec, meta, "query")["spec"]["replicas"] == 3
    assert _container(build_deployment(spec, meta, "query"))["image"] == "q:9"
    assert _container(build_deployment(spec, meta, "ingest"))["image"] == "exchange:2.0"


def test_a_config_change_rolls_the_pods(spec, meta):
    before = build_deployment(spec, meta, "ingest")["spec"]["template"]["metadata"]["annotations"]
    jwt = parse_spec({"auth": {"mode": "jwt", "issuer": "i", "audience": "a", "jwksUrl": "https://i/jwks"}})
    after = build_deployment(jwt, meta, "ingest")["spec"]["template"]["metadata"]["annotations"]
    assert before[CONFIG_HASH_ANNOTATION] != after[CONFIG_HASH_ANNOTATION]


def test_the_token_cache_setting_reaches_the_services_config(meta):
    auth = {"mode": "jwt", "issuer": "i", "audience": "a", "jwksUrl": "https://i/jwks"}
    assert "JWT_CACHE_SECONDS" not in config_data(parse_spec({"auth": auth}), meta)  # the services' default
    data = config_data(parse_spec({"auth": {**auth, "tokenCacheSeconds": 0}}), meta)
    assert data["JWT_CACHE_SECONDS"] == "0"
    with pytest.raises(ValueError, match=r"tokenCacheSeconds|token_cache_seconds"):
        parse_spec({"auth": {**auth, "tokenCacheSeconds": 86400}})


def test_only_the_normalizer_reaches_the_tokenizer(spec, meta):
    policies = {p["metadata"]["name"]: p for p in build_network_policies(spec, meta)}
    tok = policies["demo-tokenizer"]["spec"]
    assert tok["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "tokenizer"
    (rule,) = tok["ingress"]
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for f in rule["from"]] == ["normalizer"]


def test_only_engine_clients_reach_the_engines(spec, meta):
    policies = {p["metadata"]["name"]: p for p in build_network_policies(spec, meta)}
    assert set(policies) == {"demo-tokenizer", "demo-api", "demo-metrics", "demo-postgres", "demo-kafka", "demo-s3"}
    clients = policies["demo-postgres"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert clients == {"exchange.dev/pipeline": "demo", "exchange.dev/engine-client": "true"}
    labelled = {
        c: build_deployment(spec, meta, c)["spec"]["template"]["metadata"]["labels"].get("exchange.dev/engine-client")
        for c in COMPONENTS
    }
    assert labelled == {"ingest": "true", "relay": "true", "tokenizer": None, "normalizer": "true", "query": "true"}


def _selects(policy, component):
    """Whether a NetworkPolicy's podSelector selects the Pods of `component` (of pipeline demo)."""
    selector = policy["spec"]["podSelector"]
    labels = selector_labels(Meta("demo", "health"), component)
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


def test_only_the_monitoring_namespace_reaches_the_metrics_ports(spec, meta):
    policies = {p["metadata"]["name"]: p for p in build_network_policies(spec, meta)}
    metrics = policies["demo-metrics"]
    assert [c for c in COMPONENTS if _selects(metrics, c)] == list(COMPONENTS)
    assert not _selects(metrics, "postgres")
    (rule,) = metrics["spec"]["ingress"]
    assert rule == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 9102}],
    }
    other = parse_spec({"monitoring": {"namespace": "observability"}})
    (rule,) = {p["metadata"]["name"]: p for p in build_network_policies(other, meta)}["demo-metrics"]["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "observability"}


def test_the_api_ports_of_ingest_and_query_stay_open_to_any_client_once_their_pods_are_isolated(spec, meta):
    # NetworkPolicies add up: the metrics policy isolates every service Pod, so the Ingress
    # controller reaches ingest's and query's http port only through a policy that allows it.
    api = {p["metadata"]["name"]: p for p in build_network_policies(spec, meta)}["demo-api"]
    assert [c for c in COMPONENTS if _selects(api, c)] == ["ingest", "query"]
    assert api["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]


def _paths(ingress):
    return [(p["path"], p["pathType"]) for p in ingress["spec"]["rules"][0]["http"]["paths"]]


@pytest.mark.parametrize(
    ("route", "ingest", "query"),
    [
        ("/", [("/v1/ingest", "Prefix")], [("/graphql", "Prefix")]),
        ("/v1", [("/v1/ingest", "Prefix")], None),
        ("/v1/ingest", [("/v1/ingest", "Prefix")], None),
        ("/v1/ingest/bulk", [("/v1/ingest/bulk", "Prefix")], None),
        ("/graphql", None, [("/graphql", "Prefix")]),
        ("/metrics", None, None),
        ("/v1/ingestion", None, None),
    ],
)
def test_an_ingress_routes_only_the_api_paths_under_its_route(meta, route, ingest, query):
    """Never /metrics, /docs, /openapi.json, /healthz or /readyz, whatever the route's prefix."""
    spec = parse_spec({"ingress": {"enabled": True, "ingest": {"path": route}, "query": {"path": route}}})
    ingresses = {i["metadata"]["name"]: i for i in build_ingresses(spec, meta)}
    assert (_paths(ingresses["demo-ingest"]) if "demo-ingest" in ingresses else None) == ingest
    assert (_paths(ingresses["demo-query"]) if "demo-query" in ingresses else None) == query


def test_the_production_sample_routes_only_the_api_paths(meta):
    import yaml

    sample = yaml.safe_load((Path(__file__).resolve().parents[3] / "manifests/samples/production.yaml").read_text())
    spec = parse_spec(sample["spec"])
    routed = {i["metadata"]["name"]: _paths(i) for i in build_ingresses(spec, meta)}
    assert routed == {"demo-ingest": [("/v1/ingest", "Prefix")], "demo-query": [("/graphql", "Prefix")]}
    assert sample["spec"]["ingress"]["ingest"]["path"] == "/v1/ingest"
    assert sample["spec"]["ingress"]["query"]["path"] == "/graphql"


def test_ingress_has_class_hosts_and_tls(meta):
    spec = parse_spec(
        {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "ingest": {"host": "in.example.org"},
                "query": {"host": "q.example.org"},
                "tls": {"secretName": "tls", "hosts": ["in.example.org", "q.example.org"]},
            }
        }
    )
    ingresses = {i["metadata"]["name"]: i["spec"] for i in build_ingresses(spec, meta)}
    assert set(ingresses) == {"demo-ingest", "demo-query"}
    ing = ingresses["demo-ingest"]
    assert ing["ingressClassName"] == "nginx"
    assert ing["rules"][0]["host"] == "in.example.org"
    assert ing["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "demo-ingest"
    assert ing["tls"] == [{"hosts": ["in.example.org", "q.example.org"], "secretName": "tls"}]
    assert endpoint_url(spec, meta, "query") == "https://q.example.org/graphql"


def test_the_endpoints_through_an_ingress_are_the_services_own_paths_whatever_the_route_prefix(meta):
    routes = {"enabled": True, "ingest": {"path": "/v1/ingest"}, "query": {"path": "/graphql", "host": "q.local"}}
    spec = parse_spec({"ingress": routes})
    assert endpoint_url(spec, meta, "ingest") == "http://localhost"  # clients POST {base}/v1/ingest
    assert endpoint_url(spec, meta, "query") == "http://q.local/graphql"  # not /graphql/graphql


def test_without_ingress_the_endpoints_are_in_cluster(spec, meta):
    assert build_ingresses(spec, meta) == []
    assert endpoint_url(spec, meta, "ingest") == "http://demo-ingest.health.svc"


def test_jobs_migrate_and_bootstrap_and_are_renamed_when_the_image_changes(spec, meta):
    migrate = build_job(spec, meta, "migrate")
    assert _container(migrate)["command"] == ["exchange", "migrate"]
    assert _env(_container(migrate))["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "migrate-url"
    assert _container(build_job(spec, meta, "bootstrap"))["command"] == ["exchange", "bootstrap"]
    newer = parse_spec({"image": {"tag": "0.2.0"}})
    assert build_job(newer, meta, "migrate")["metadata"]["name"] != migrate["metadata"]["name"]
    assert build_job(spec, meta, "migrate")["metadata"]["name"] == migrate["metadata"]["name"]


def test_every_service_has_a_pdb_that_never_blocks_a_drain(spec, meta):
    pdbs = [c for c in build_children(spec, meta) if c["kind"] == "PodDisruptionBudget"]
    assert sorted(p["metadata"]["name"] for p in pdbs) == sorted(f"demo-{c}" for c in COMPONENTS)
    assert "demo-relay" in {p["metadata"]["name"] for p in pdbs}
    assert {p["spec"]["maxUnavailable"] for p in pdbs} == {1}


def test_services_in_the_cluster_never_migrate_on_start_even_with_dev_auth(meta):
    """The migrate Job owns the schema; with ENV=local the services would migrate as their own
    roles, which may not create anything, and crash-loop (seen on the first real cluster run)."""
    from exchange.ingest.settings import IngestSettings
    from exchange.normalizer.settings import NormalizerSettings

    data = config_data(parse_spec({"auth": {"mode": "dev"}}), meta)
    assert data["ENV"] == "local"
    secrets = {"S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s", "S3_ENDPOINT_URL": "http://s3:9000"}
    env = {**data, **secrets, "DATABASE_URL": "postgresql://u:p@h/db"}
    assert IngestSettings(**env).migrate_on_start is False
    assert NormalizerSettings(**env).migrate_on_start is False


def test_ingest_in_the_cluster_leaves_the_bucket_to_the_bootstrap_job_even_with_dev_auth(meta):
    """With ENV=local ingest created the bucket as it started, and crashed on an S3 still starting
    (seen on every cold start of the local sample); the bootstrap Job owns it, as the schema."""
    from exchange.ingest.settings import IngestSettings

    data = config_data(parse_spec({"auth": {"mode": "dev"}}), meta)
    secrets = {"S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s", "S3_ENDPOINT_URL": "http://s3:9000"}
    env = {**data, **secrets, "DATABASE_URL": "postgresql://u:p@h/db"}
    assert IngestSettings(**env).create_bucket_on_start is False
    make_dev = {k: v for k, v in env.items() if k != "INGEST_CREATE_BUCKET_ON_START"}
    assert IngestSettings(**make_dev).create_bucket_on_start is True  # `make dev` still creates it
