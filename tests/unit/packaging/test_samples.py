"""manifests/samples/: the pipelines people start from parse with the operator's own spec models.

The same documents are applied to a real API server (server-side dry run, so the generated CRD's
schema and CEL rules judge them) in tests/integration/packaging/test_chart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exchange_operator.builders import Meta, build_children
from exchange_operator.builders.env import config_data
from exchange_operator.builders.ingress import build_ingresses, endpoint_url
from exchange_operator.spec import COMPONENTS, GROUP, KIND, VERSION, parse_spec

REPO = Path(__file__).resolve().parents[3]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "manifests" / "samples" / name).read_text())


def test_there_is_a_minimal_a_production_and_a_local_node_sample():
    assert {path.name for path in SAMPLES} >= {"minimal.yaml", "production.yaml", "local.yaml"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_a_sample_is_an_exchange_pipeline_the_operator_accepts(path: Path):
    document = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == f"{GROUP}/{VERSION}"
    assert document["kind"] == KIND
    assert "namespace" not in document["metadata"], "samples go into whatever namespace kubectl targets"
    parse_spec(document["spec"])


def test_the_minimal_sample_uses_dev_auth_and_the_kind_ingress():
    spec = parse_spec(load("minimal.yaml")["spec"])
    assert spec.auth.mode == "dev"
    assert spec.ingress.enabled and spec.ingress.class_name == "nginx"
    assert spec.ingress.ingest and spec.ingress.ingest.path == "/v1"
    assert {spec.engines.postgres.mode, spec.engines.kafka.mode, spec.engines.s3.mode} == {"managed"}
    assert (spec.image.repository, spec.image.tag) == ("exchange", "dev")


def test_the_production_sample_uses_jwt_tls_external_engines_and_explicit_storage():
    spec = parse_spec(load("production.yaml")["spec"])
    assert spec.auth.mode == "jwt" and spec.auth.jwks_url and spec.auth.jwks_url.startswith("https://")
    assert spec.ingress.tls and spec.ingress.tls.secret_name
    assert spec.engines.postgres.mode == "external" and spec.engines.kafka.mode == "external"
    assert spec.engines.s3.managed.storage.storage_class_name
    assert spec.tokenization.secret_ref is not None, "a production secret is referenced, not generated"
    assert all(getattr(spec.components, c).replicas >= 2 for c in ("ingest", "tokenizer", "normalizer", "query"))
    assert spec.image.tag != "latest"


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_specs(children: list[dict]) -> list[dict]:
    return [child["spec"]["template"]["spec"] for child in children if "template" in child.get("spec", {})]


def cpu_requested(children: list[dict]) -> float:
    """CPU the scheduler reserves for every Pod the operator creates (Jobs included)."""
    total = 0.0
    for child in children:
        if child["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        replicas = child["spec"].get("replicas", 1)
        for c in child["spec"]["template"]["spec"]["containers"]:
            total += replicas * cpu_cores(c["resources"]["requests"]["cpu"])
    return total


def test_the_local_sample_runs_on_the_local_node_from_local_images():
    spec = parse_spec(load("local.yaml")["spec"])
    assert (spec.image.repository, spec.image.tag, spec.image.pull_policy) == (
        "localhost/exchange",
        "dev",
        "IfNotPresent",
    )
    assert spec.engines.postgres.managed.image == "localhost/postgres:15-bookworm"
    kafka, s3 = spec.engines.kafka.managed, spec.engines.s3.managed
    assert (kafka.flavor, kafka.image) == ("apache-kafka", "localhost/kafka:4.1.1")
    assert (s3.flavor, s3.image) == ("s3proxy", "localhost/s3proxy:3.0.0")
    children = build_children(spec, Meta("local", "default"))
    images = {c["image"] for pod in pod_specs(children) for c in [*pod["containers"], *pod.get("initContainers", [])]}
    assert all(image.startswith("localhost/") for image in images), images
    for engine in (spec.engines.postgres.managed, kafka, s3):
        assert engine.storage.storage_class_name is None  # the default class: local-path


def test_the_local_sample_asks_for_less_than_one_and_a_half_of_the_nodes_two_cpus():
    spec = parse_spec(load("local.yaml")["spec"])
    assert cpu_requested(build_children(spec, Meta("local", "default"))) < 1.5
    assert all(getattr(spec.components, c).resources.requests.cpu for c in COMPONENTS)


def test_the_local_sample_uses_dev_auth_and_routes_ingest_and_graphql_through_skipper():
    spec = parse_spec(load("local.yaml")["spec"])
    meta = Meta("local", "default")
    assert spec.auth.mode == "dev" and config_data(spec, meta)["ENV"] == "local"
    assert spec.ingress.enabled and spec.ingress.class_name == "skipper"
    paths = {i["metadata"]["name"]: i["spec"]["rules"][0] for i in build_ingresses(spec, meta)}
    assert paths["local-ingest"]["http"]["paths"][0]["path"] == "/v1/ingest"
    assert paths["local-query"]["http"]["paths"][0]["path"] == "/graphql"
    assert "host" not in paths["local-ingest"]  # any host: the controller's 127.0.0.1 address works
    assert endpoint_url(spec, meta, "query") == "http://localhost/graphql"
    assert endpoint_url(spec, meta, "ingest") == "http://localhost"
